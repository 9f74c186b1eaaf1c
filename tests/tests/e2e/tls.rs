//! Scenario 8: a run over TLS, `amqps://` to RabbitMQ and `https://` to S3. The real services
//! sit behind TLS-terminating proxies (tokio-rustls, in this test) with a server certificate of
//! a private CA made with openssl; the processes trust that CA only through SSL_CERT_FILE, as an
//! operator would point them at a cluster's CA bundle. Without it the certificate is refused and
//! the error says so.

use crate::support::*;
use dispr_proto::keys;
use dispr_tests::TestEnv;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

const CELLS: usize = 4;

/// A private CA and a certificate for localhost / 127.0.0.1 signed by it, made with openssl.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder for certificates");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("running openssl (Debian package `openssl`)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let subject_ca = "/CN=dispr test CA";
        openssl(&[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject_ca, "-keyout",
            "ca.key", "-out", "ca.pem",
        ]);
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        Certs { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Listens on a loopback port and forwards every connection, TLS terminated, to `upstream`.
async fn tls_proxy(certs: &Certs, upstream: String) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certs.path("server.pem")).unwrap().collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(certs.path("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends here, as it should.
                let Ok(mut tls) = acceptor.accept(client).await else { return };
                let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    port
}

/// `host:port` of an `amqp://user:pass@host:port/vhost` URL.
fn amqp_host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_amqps_and_https_completes_and_an_untrusted_certificate_is_refused() {
    let plain = TestEnv::from_env();
    let certs = Certs::new();
    let amqp_upstream = amqp_host_port(&plain.amqp_url).to_string();
    let amqp_port = tls_proxy(&certs, amqp_upstream.clone()).await;
    let s3_upstream = plain.s3_endpoint.trim_start_matches("http://").to_string();
    let s3_port = tls_proxy(&certs, s3_upstream).await;

    let mut tls = plain.clone();
    tls.amqp_url = plain.amqp_url.replacen("amqp://", "amqps://", 1).replacen(
        &amqp_upstream,
        &format!("localhost:{amqp_port}"),
        1,
    );
    tls.s3_endpoint = format!("https://localhost:{s3_port}");
    let mut ctx = Ctx::with_env("e2e-tls", tls);
    ctx.extra_env.push(("SSL_CERT_FILE", certs.path("ca.pem").to_string_lossy().into_owned()));
    // The test itself reads and writes through the plain endpoint: same bucket, same objects.
    write_cells(&plain.open(&ctx.dataset_uri()), CELLS).await;

    let mut worker = ctx.spawn_worker("tls", &[]);
    let report = ctx.submit(1, &[]);
    assert_eq!(report["report"]["cells_published"], CELLS);
    let output = plain.open(&ctx.output_uri());
    let features = keys::features_prefix(&ctx.run);
    wait_for(Duration::from_secs(120), "every cell's features, over TLS", || async {
        count(&output, &features).await == CELLS
    })
    .await;
    worker.signal("TERM");
    assert_eq!(worker.wait_exit(Duration::from_secs(30)), Some(Some(0)), "{}", worker.log_text());
    let log = worker.log_text();
    let broker = format!("amqps://***@localhost:{amqp_port}/");
    assert!(log.contains(&broker), "the worker used amqps (credentials hidden):\n{log}");
    ctx.assert_no_secrets_in_logs();

    // Without the CA the same commands refuse the server: status (S3 over https)...
    let status_args = ["status", "--no-broker", "--output", &ctx.output_uri(), "--run-id", ctx.run.as_str()];
    let out = ctx.coordinator(&status_args).env_remove("SSL_CERT_FILE").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "status trusted an unknown CA:\n{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "the error names the certificate:\n{stderr}");
    // ...and the worker (RabbitMQ over amqps), at once rather than after minutes of retries.
    let mut untrusting = ctx.spawn_worker_without("untrusting", &[], &["SSL_CERT_FILE"]);
    let exit = untrusting.wait_exit(Duration::from_secs(60));
    let log = untrusting.log_text();
    assert_eq!(exit, Some(Some(1)), "the worker should stop with an error:\n{log}");
    assert!(log.to_lowercase().contains("certificate"), "the error names the certificate:\n{log}");

    delete_queues(&amqp(&plain).await, &ctx).await;
}
