"""Checks of deploy/compose.yaml (with deploy/.env.example): schema, services, health checks,
depends_on conditions, credentials only from .env, broker settings, the worker's grace period,
and the dispr commands it runs (collected for the CLI checks)."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import yaml

import cli
import dockerfiles
import workspace
from interpolate import MissingVariable, interpolate, literal_parts, parse_env_file, variables
from report import Report, require

EXPECTED_SERVICES = {"rabbitmq", "minio", "minio-init", "dataset", "submit", "watch", "report", "worker"}
_SECRET_KEY = re.compile(r"PASS|SECRET|TOKEN|ACCESS_KEY|ROOT_USER|_USER$|CREDENTIAL", re.I)
_USERINFO_URL = re.compile(r"^[a-z][a-z0-9+.-]*://(?P<userinfo>[^@/]*)@", re.I)
_S3_URI = re.compile(r"s3://([^/\s]+)")


def seconds(duration: str) -> float:
    """Compose durations: `1m30s`, `150s`, `2h`."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(duration))
    require(bool(parts), f"cannot read duration {duration!r}")
    return sum(float(n) * units[u] for n, u in parts)


def schema_valid(doc: dict, label: str) -> None:
    """Validates against the Compose Specification schema (vendored by check-jsonschema)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
        yaml.safe_dump(doc, tmp)
    out = subprocess.run(
        ["check-jsonschema", "--builtin-schema", "vendor.compose-spec", tmp.name],
        capture_output=True,
        text=True,
    )
    Path(tmp.name).unlink()
    require(
        out.returncode == 0, f"{label} does not follow the Compose Specification:\n{out.stdout}{out.stderr}"
    )


def argv_of(service: dict) -> list[str]:
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def run(report: Report, root: Path, invocations: list[cli.Invocation]) -> None:
    deploy = root / "deploy"
    path, env_path = deploy / "compose.yaml", deploy / ".env.example"
    state: dict = {}

    def parses() -> None:
        require(path.is_file(), f"{path} is missing")
        require(env_path.is_file(), f"{env_path} is missing (copy source of deploy/.env)")
        state["raw"] = yaml.safe_load(path.read_text())
        state["env"] = parse_env_file(env_path.read_text())
        require(isinstance(state["raw"], dict) and "services" in state["raw"], "compose.yaml has no services")

    if not report.check("deploy/compose.yaml: parses, with deploy/.env.example", parses):
        return
    raw, env = state["raw"], state["env"]

    def variables_defined() -> None:
        text = path.read_text()
        required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text))
        defaulted = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?-", text))
        missing = sorted(v for v in variables(raw) if v not in env and (v in required or v not in defaulted))
        require(not missing, f"compose.yaml uses variables that .env.example does not define: {missing}")
        state["resolved"] = interpolate(raw, env)

    def interpolated_schema() -> None:
        schema_valid(raw, "compose.yaml")
        require("resolved" in state, "variables did not resolve")
        schema_valid(state["resolved"], "compose.yaml with .env.example values")

    def required_fail_without_env() -> None:
        # Without deploy/.env the credentials must be refused, not silently empty.
        try:
            interpolate(raw, {})
        except MissingVariable:
            return
        require(False, "compose.yaml resolves with no .env at all: credentials must use ${VAR:?message}")

    report.check("deploy/compose.yaml: every variable is defined in .env.example", variables_defined)
    report.check(
        "deploy/compose.yaml: follows the Compose Specification (raw and resolved)", interpolated_schema
    )
    report.check("deploy/compose.yaml: refuses to start without credentials", required_fail_without_env)
    if "resolved" not in state:
        return
    services: dict[str, dict] = state["resolved"]["services"]
    one_shot = {n for n, s in services.items() if str(s.get("restart", "")) == "no"}

    def expected_services() -> None:
        missing = EXPECTED_SERVICES - set(services)
        require(not missing, f"compose.yaml lacks services {sorted(missing)}")

    def healthchecks() -> None:
        for name, svc in services.items():
            if name in one_shot:
                continue
            hc = svc.get("healthcheck")
            require(
                bool(hc) and not hc.get("disable") and hc.get("test"),
                f"long-running service {name} has no health check",
            )
        worker_hc = " ".join(map(str, services["worker"]["healthcheck"]["test"]))
        require("/healthz" in worker_hc, f"the worker's health check does not probe /healthz: {worker_hc}")

    def depends_on() -> None:
        for name, svc in services.items():
            deps = svc.get("depends_on", {})
            require(isinstance(deps, dict), f"{name}: depends_on must use the long form with a condition")
            for dep, spec in deps.items():
                require(dep in services, f"{name} depends on unknown service {dep}")
                cond = (spec or {}).get("condition")
                if dep in one_shot:
                    require(
                        cond == "service_completed_successfully",
                        f"{name} -> {dep}: a one-shot service needs condition service_completed_successfully, not {cond}",
                    )
                else:
                    require(
                        cond == "service_healthy",
                        f"{name} -> {dep}: use condition service_healthy, not {cond}",
                    )
        for name in one_shot - {"report"}:
            require(
                any(name in s.get("depends_on", {}) for s in services.values()),
                f"one-shot service {name} gates nothing (no depends_on refers to it)",
            )

    def credentials() -> None:
        for name, svc in raw["services"].items():
            # YAML merge keys (<<: *dispr-env) are already resolved by the loader.
            for key, value in env_of(svc).items():
                value = str(value)
                if _SECRET_KEY.search(key):
                    require(
                        literal_parts(value).strip() == "",
                        f"{name}: {key} holds a literal value; take it from deploy/.env as ${{VAR:?...}}",
                    )
                m = _USERINFO_URL.match(value)
                if m:
                    require(
                        literal_parts(m.group("userinfo")) in ("", ":"),
                        f"{name}: {key} has literal credentials in its URL",
                    )
        ignored = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", "deploy/.env"])
        require(ignored.returncode == 0, "deploy/.env (the operator's passwords) is not ignored by git")
        for key, value in env.items():
            if re.search(r"PASS|SECRET", key, re.I):
                require(
                    "change-me" in value,
                    f".env.example: {key} must be a placeholder (change-me...), not a real password",
                )

    def broker() -> None:
        rabbit = services["rabbitmq"]
        require(
            "management" in rabbit["image"], f"rabbitmq image {rabbit['image']} lacks the management plugin"
        )
        confs = [v.split(":")[0] for v in rabbit.get("volumes", []) if "rabbitmq" in v.split(":")[1]]
        conf_files = [deploy / c for c in confs if c.endswith(".conf")]
        require(bool(conf_files), "no rabbitmq.conf mounted into the rabbitmq service")
        for conf in conf_files:
            require(conf.is_file(), f"mounted {conf} does not exist")
            m = re.search(r"^\s*consumer_timeout\s*=\s*(\d+)\s*$", conf.read_text(), re.M)
            require(m is not None, f"{conf.relative_to(root)} sets no consumer_timeout")
            require(
                int(m.group(1)) >= 3_600_000,
                f"consumer_timeout {m.group(1)} ms is under an hour: long jobs would be requeued mid-run",
            )
            planned = env_of(services["submit"]).get("DISPR_CONSUMER_TIMEOUT_SECS")
            require(
                planned is not None and int(planned) * 1000 == int(m.group(1)),
                f"submit plans for a consumer_timeout of {planned} s, the broker has {m.group(1)} ms",
            )
        require(
            env_of(services["worker"]).get("DISPR_DEVICE") == "cpu"
            and env_of(services["submit"]).get("DISPR_DEVICE") == "cpu",
            "compose runs CPU workers: set DISPR_DEVICE=cpu so submit plans with CPU step times",
        )

    def storage() -> None:
        bucket_cmd = argv_of(services["minio-init"])
        require("mb" in bucket_cmd, "minio-init does not create a bucket (mc mb)")
        bucket = bucket_cmd[-1].split("/", 1)[1]
        for name, svc in services.items():
            for uri in _S3_URI.findall(" ".join(argv_of(svc))):
                require(uri == bucket, f"{name} uses bucket {uri}, but minio-init creates {bucket}")
        for name in ("dataset", "submit", "watch", "report", "worker"):
            e = env_of(services[name])
            require(
                e.get("AWS_ENDPOINT_URL", "").startswith("http://minio:"),
                f"{name}: AWS_ENDPOINT_URL must point at the minio service",
            )

    def workers() -> None:
        worker = services["worker"]
        replicas = worker.get("deploy", {}).get("replicas")
        require(replicas is not None and int(replicas) >= 1, "worker: set deploy.replicas (N workers)")
        drain = float(env_of(worker).get("DISPR_DRAIN_TIMEOUT_SECS", "300"))
        grace = seconds(worker.get("stop_grace_period", "10s"))
        require(
            grace > drain,
            f"worker: stop_grace_period {grace:.0f}s must exceed DISPR_DRAIN_TIMEOUT_SECS {drain:.0f}s",
        )

    def images() -> None:
        dispr = [n for n, s in services.items() if cli.parse_argv(n, argv_of(s))]
        require(set(dispr) >= {"dataset", "submit", "watch", "report", "worker"}, f"dispr services: {dispr}")
        for name in dispr:
            build = services[name].get("build", {})
            dockerfile = (
                deploy / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            ).resolve()
            require(
                dockerfile == (deploy / "docker" / "Dockerfile.cpu").resolve(),
                f"{name}: builds {dockerfile}, expected deploy/docker/Dockerfile.cpu",
            )
        for name, svc in services.items():
            image = svc.get("image", "")
            if name not in dispr:
                require(
                    ":" in image and not image.endswith(":latest"), f"{name}: image {image} is not pinned"
                )

    def model() -> None:
        argv = argv_of(services["submit"])
        require("--model" in argv, "submit passes no --model")
        dockerfiles.check_model_uri(root, argv[argv.index("--model") + 1], "compose.yaml submit --model")

    def env_names() -> None:
        read = workspace.env_read(root)
        for name, svc in services.items():
            if not cli.parse_argv(name, argv_of(svc)):
                continue
            for key in env_of(svc):
                if key.startswith("DISPR_"):
                    require(key in read, f"{name}: {key} is not a variable the binaries read")

    for label, fn in [
        ("services", expected_services),
        ("health checks", healthchecks),
        ("depends_on conditions", depends_on),
        ("no literal credentials", credentials),
        ("RabbitMQ management + consumer_timeout", broker),
        ("one bucket, MinIO endpoint", storage),
        ("workers: replicas and grace period", workers),
        ("images built or pinned", images),
        ("DISPR_* variables are ones the binaries read", env_names),
        ("the model is a checkpoint the image holds", model),
    ]:
        report.check(f"deploy/compose.yaml: {label}", fn)

    for name, svc in services.items():
        inv = cli.parse_argv(f"compose.yaml service {name}", argv_of(svc))
        if inv:
            invocations.append(inv)
