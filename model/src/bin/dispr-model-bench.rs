//! Prints the model's speed figures (no timed tests: figures go here).
//!
//! ```text
//! cargo run --release -p dispr-model --bin dispr-model-bench -- [--configs shape-32,small,dispr-64]
//!     [--batches 1,4] [--iters 3] [--sample-config shape-16] [--samplers ddim-2,dpmpp2m-8]
//!     [--cells 16] [--warmup 1] [--forward-only] [--skip-shipped]
//! cargo run --release -p dispr-model --bin dispr-model-bench -- --agreement dispr-64-ref
//! ```
//! For every configuration and batch size: forward time, FLOPs per forward, GFLOP/s and the
//! peak resident memory so far; then, for `--sample-config`, the seconds per sample of each
//! sampler when `--cells` cells x 1 sample are sampled together (batched as a worker does), and
//! the same for the shipped default checkpoint (`checkpoints/default`, with its height
//! calibration) with the default sampler.
//! `--agreement CONFIG` only compares this build's forward pass (the GPU's in a CUDA build, this
//! project's CPU kernels otherwise) with Burn's CPU operations on random weights, and exits 1
//! beyond 1e-3 of the output's standard deviation. `--configs none` skips the forward table,
//! `--skip-shipped` the shipped checkpoint's line. `--forward-only` stops after the forward table; `--warmup 0` skips the untimed first pass
//! (at full size one pass is seconds: `scripts/bench-vs-pytorch.sh` times a single pass, as it
//! does PyTorch's). `DISPR_CPU_KERNELS=burn` times Burn's own CPU operations instead of this
//! project's kernels (`dispr_model::cpu_kernels`).
//! Build with `--features cuda` to run on a GPU.

use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use dispr_model::unet::Conditioning;
use dispr_model::{CellInput, DefaultBackend, ModelConfig, Objective, Predictor, UNet};
use dispr_proto::SamplerSpec;

type B = DefaultBackend;

/// Peak resident set size of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn list<T: std::str::FromStr>(args: &[String], flag: &str, default: &str) -> Vec<T> {
    let raw = args
        .iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .unwrap_or(default);
    raw.split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

/// Largest difference from the CPU, relative to the output's standard deviation, that passes.
const AGREEMENT_BOUND: f64 = 1e-3;

fn agreement(name: &str) -> ! {
    let config = match ModelConfig::named(name) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("--agreement: {e}");
            std::process::exit(2);
        }
    };
    let what = std::any::type_name::<B>();
    match dispr_model::agreement::forward_agreement::<B>(&config, &Default::default()) {
        Ok(a) => {
            let verdict = if a.relative() <= AGREEMENT_BOUND { "agree" } else { "DISAGREE" };
            println!(
                "{name} forward, batch 2, {what} vs the CPU (Burn's operations): largest difference {:.2e}, output std {:.3}, {:.2e} of it (bound {AGREEMENT_BOUND:.0e}): {verdict}",
                a.max_abs_diff,
                a.reference_std,
                a.relative()
            );
            std::process::exit(if a.relative() <= AGREEMENT_BOUND { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("--agreement {name}: {e}");
            std::process::exit(1);
        }
    }
}

/// What `--help` prints: the usage and flags of this file's header.
const HELP: &str = "\
dispr-model-bench: prints the model's speed figures (forward time, FLOPs, GFLOP/s, peak memory;
seconds per sample of the samplers). Release builds only give meaningful figures.

Usage: dispr-model-bench [--configs tiny,shape-16,shape-32,small,dispr-64 | none] [--batches 1,4]
           [--iters 3] [--warmup 1] [--forward-only] [--sample-config NAME]
           [--samplers ddim-2,ddim-4,ddim-8,dpmpp2m-8,ddim-25] [--cells 16] [--skip-shipped]
       dispr-model-bench --agreement CONFIG

  --configs        network configurations of the forward table (none: skip it)
  --batches        batch sizes of the forward table
  --iters          timed forward passes per row (their mean is printed)
  --warmup         untimed passes before them (0: time the first pass, as PyTorch's is timed)
  --forward-only   stop after the forward table
  --sample-config  configuration whose samplers are timed (default: the default checkpoint's)
  --samplers       samplers to time, --cells cells x 1 sample batched together
  --skip-shipped   leave out the shipped default checkpoint's line
  --agreement      only compare this build's forward pass with Burn's CPU operations on random
                   weights; exit 1 beyond 1e-3 of the output's standard deviation

DISPR_CPU_KERNELS=burn times Burn's own CPU operations instead of this project's kernels.
Build with --features cuda to run on a GPU.
";

/// Flags that take a value, and flags that do not.
const VALUED: [&str; 8] = [
    "--configs",
    "--batches",
    "--iters",
    "--warmup",
    "--sample-config",
    "--samplers",
    "--cells",
    "--agreement",
];
const SWITCHES: [&str; 2] = ["--forward-only", "--skip-shipped"];

/// Refuses what this bench does not understand, instead of running the whole default bench
/// (minutes at full size) with a typo ignored.
fn check_args(args: &[String]) {
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--help" || a == "-h" {
            print!("{HELP}");
            std::process::exit(0);
        } else if VALUED.contains(&a) {
            if args.get(i + 1).is_none_or(|v| v.starts_with("--")) {
                eprintln!("dispr-model-bench: {a} needs a value; see --help");
                std::process::exit(2);
            }
            i += 2;
        } else if SWITCHES.contains(&a) {
            i += 1;
        } else {
            eprintln!("dispr-model-bench: unknown argument '{a}'; see --help");
            std::process::exit(2);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    check_args(&args);
    dispr_model::cpu_kernels::keep_large_buffers_in_heap();
    if let Some(name) = args.iter().position(|a| a == "--agreement").and_then(|i| args.get(i + 1)) {
        agreement(name);
    }
    let skip_shipped = args.iter().any(|a| a == "--skip-shipped");
    let mut configs: Vec<String> = list(&args, "--configs", "tiny,shape-16,shape-32,small,dispr-64");
    configs.retain(|c| c != "none");
    let batches: Vec<usize> = list(&args, "--batches", "1,4");
    let iters: usize = list(&args, "--iters", "3").first().copied().unwrap_or(3).max(1);
    let warmup: usize = list(&args, "--warmup", "1").first().copied().unwrap_or(1);
    let forward_only = args.iter().any(|a| a == "--forward-only");
    let sample_config: String =
        list(&args, "--sample-config", dispr_model::config::DEFAULT_CONFIG).pop().unwrap_or_default();
    let default_samplers = format!("{},ddim-4,ddim-8,dpmpp2m-8,ddim-25", dispr_proto::DEFAULT_SAMPLER);
    let samplers: Vec<SamplerSpec> = list(&args, "--samplers", &default_samplers);
    let cells: usize = list(&args, "--cells", "16").first().copied().unwrap_or(16).max(1);
    let device = Default::default();
    let kernels = if dispr_model::cpu_kernels::enabled::<B>() {
        "this project's CPU kernels"
    } else {
        "the backend's own operations"
    };
    println!("backend: {} ({kernels})", std::any::type_name::<B>());
    println!("| config | params | batch | forward s | GFLOP/forward | GFLOP/s | peak RSS MiB |");
    println!("|---|---|---|---|---|---|---|");
    for name in &configs {
        let config = match ModelConfig::named(name) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        };
        let net = UNet::<B>::new(&config, &device);
        let params = burn::module::Module::num_params(&net);
        let r = config.resolution;
        for &b in &batches {
            let x = Tensor::<B, 5>::random([b, 1, r, r, r], Distribution::Normal(0.0, 1.0), &device);
            let planes = Tensor::<B, 5>::random([b, 2, 1, r, r], Distribution::Uniform(0.0, 1.0), &device);
            let prior = (config.objective == Objective::PriorX0)
                .then(|| Tensor::<B, 5>::random([b, 1, r, r, r], Distribution::Uniform(0.0, 1.0), &device));
            let c = Conditioning { planes, prior };
            let t = vec![500.0; b];
            // Warm-up (allocations, kernel selection), then the timed passes.
            for _ in 0..warmup {
                let _ = net.forward(x.clone(), &c, &t).into_data();
            }
            let start = Instant::now();
            for _ in 0..iters {
                let _ = net.forward(x.clone(), &c, &t).into_data();
            }
            let secs = start.elapsed().as_secs_f64() / iters as f64;
            let gflop = dispr_model::unet::Plan::new(&config).forward_flops() * b as f64 / 1e9;
            println!(
                "| {name} | {params} | {b} | {secs:.3} | {gflop:.1} | {:.1} | {:.0} |",
                gflop / secs,
                peak_rss_mib().unwrap_or(f64::NAN)
            );
        }
    }

    if forward_only {
        return;
    }

    // Seconds per sample of each sampler, `cells` cells x 1 sample batched as a worker does.
    let config = match ModelConfig::named(&sample_config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("--sample-config: {e}");
            std::process::exit(2);
        }
    };
    let predictor = Predictor::<B>::from_model(config.clone(), UNet::new(&config, &device), &device);
    let image = vec![128u8; 4096];
    let mask: Vec<u8> = (0..4096)
        .map(|i: usize| if (i % 64).abs_diff(32) < 12 && (i / 64usize).abs_diff(32) < 12 { 255 } else { 0 })
        .collect();
    let inputs = vec![CellInput { image: &image, mask: &mask }; cells];
    let seeds: Vec<Vec<u64>> = (0..cells as u64).map(|c| vec![c]).collect();
    println!(
        "\n| sampler ({}, {cells} cells x 1 sample, batch {}) | s per sample | s per step per sample |",
        config.name,
        predictor.batch_size().min(cells)
    );
    println!("|---|---|---|");
    for spec in &samplers {
        let start = Instant::now();
        if let Err(e) = predictor.sample(&inputs, &seeds, spec, &mut |_, _| {}) {
            eprintln!("{spec}: {e}");
            continue;
        }
        let per = start.elapsed().as_secs_f64() / cells as f64;
        println!("| {spec} | {per:.3} | {:.4} |", per / spec.steps().max(1) as f64);
    }

    if skip_shipped {
        println!("\npeak RSS: {:.0} MiB", peak_rss_mib().unwrap_or(f64::NAN));
        return;
    }
    // The default model exactly as shipped (its weights and its height calibration), with the
    // default sampler: what a worker does per sample unless told otherwise.
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("checkpoints/default/model.mpk");
    match Predictor::<B>::load(&shipped, &device) {
        Ok(p) => {
            let spec: SamplerSpec = match dispr_proto::DEFAULT_SAMPLER.parse() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("the default sampler does not parse: {e}");
                    std::process::exit(2);
                }
            };
            let start = Instant::now();
            match p.sample(&inputs, &seeds, &spec, &mut |_, _| {}) {
                Ok(_) => println!(
                    "| {spec}, the shipped default checkpoint{} | {:.3} | |",
                    if p.z_calibration().is_some() { " with its height calibration" } else { "" },
                    start.elapsed().as_secs_f64() / cells as f64
                ),
                Err(e) => eprintln!("the shipped checkpoint: {e}"),
            }
        }
        Err(e) => eprintln!("the shipped checkpoint {}: {e}", shipped.display()),
    }
    println!("\npeak RSS: {:.0} MiB", peak_rss_mib().unwrap_or(f64::NAN));
}
