"""Proof that the checks can fail: each mutation breaks one deploy file in a scratch copy of the
repository, runs the checks that cover it, and expects a named check to fail. A mutation that
goes unnoticed is itself reported as a failure."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cli
import compose
import dockerfiles
import docs
import k8s
import workspace
from report import CheckFailed, Report


@dataclass(frozen=True)
class Mutation:
    what: str  # the defect, in words
    file: str  # path relative to the repository root
    old: str  # text that must occur exactly once
    new: str
    module: str  # dockerfiles | compose | k8s | cli | docs
    expect: str  # substring of the name of the check that must fail
    only: tuple[str, ...] = ("base",)  # k8s targets to render


MUTATIONS = [
    Mutation(
        "image runs as root",
        "deploy/docker/Dockerfile.cpu",
        "USER 10001:10001",
        "USER root",
        "dockerfiles",
        "non-root",
    ),
    Mutation(
        "image copies a binary the workspace does not build",
        "deploy/docker/Dockerfile.cpu",
        "/out/bin/dispr-worker /out/bin/dispr-coordinator /usr/local/bin/",
        "/out/bin/dispr-worker /out/bin/dispr-coordinator /out/bin/dispr-admin /usr/local/bin/",
        "dockerfiles",
        "copies only binaries",
    ),
    Mutation(
        "CUDA image built without the cuda feature",
        "deploy/docker/Dockerfile.cuda",
        "--features dispr-worker/cuda,dispr-coordinator/cuda",
        "",
        "dockerfiles",
        "cargo features",
    ),
    Mutation(
        "unpinned builder image",
        "deploy/docker/Dockerfile.cpu",
        "rust:1.95.0-slim-bookworm",
        "rust:latest",
        "dockerfiles",
        "pinned",
    ),
    Mutation(
        "health check not on /healthz",
        "deploy/docker/Dockerfile.cpu",
        '/healthz" > /dev/null',
        '/" > /dev/null',
        "dockerfiles",
        "HEALTHCHECK",
    ),
    Mutation(
        "literal S3 secret in compose",
        "deploy/compose.yaml",
        "AWS_SECRET_ACCESS_KEY: ${S3_SECRET_KEY:?set S3_SECRET_KEY in deploy/.env (copy deploy/.env.example)}",
        "AWS_SECRET_ACCESS_KEY: minio-secret-123",
        "compose",
        "no literal credentials",
    ),
    Mutation(
        "worker starts before the broker is healthy",
        "deploy/compose.yaml",
        "    depends_on:\n      rabbitmq:\n        condition: service_healthy\n      dataset:",
        "    depends_on:\n      rabbitmq:\n        condition: service_started\n      dataset:",
        "compose",
        "depends_on",
    ),
    Mutation(
        "grace period shorter than the drain timeout",
        "deploy/compose.yaml",
        "stop_grace_period: 150s",
        "stop_grace_period: 30s",
        "compose",
        "grace period",
    ),
    Mutation(
        "unknown compose property",
        "deploy/compose.yaml",
        "      replicas: ${DISPR_WORKERS:-2}",
        "      replica: ${DISPR_WORKERS:-2}",
        "compose",
        "Compose Specification",
    ),
    Mutation(
        "consumer_timeout too short for long jobs",
        "deploy/rabbitmq/rabbitmq.conf",
        "consumer_timeout = 7200000",
        "consumer_timeout = 600000",
        "compose",
        "consumer_timeout",
    ),
    Mutation(
        "submit planning for another consumer_timeout than the broker's",
        "deploy/compose.yaml",
        'DISPR_CONSUMER_TIMEOUT_SECS: "7200"',
        'DISPR_CONSUMER_TIMEOUT_SECS: "1800"',
        "compose",
        "consumer_timeout",
    ),
    Mutation(
        "CPU overlay planning with GPU step times",
        "deploy/k8s/overlays/cpu/kustomization.yaml",
        "        value: cpu\n",
        "        value: gpu\n",
        "k8s",
        "CPU/GPU",
        ("cpu",),
    ),
    Mutation(
        "pod grace period shorter than the drain timeout",
        "deploy/k8s/base/worker-deployment.yaml",
        "terminationGracePeriodSeconds: 660",
        "terminationGracePeriodSeconds: 60",
        "k8s",
        "grace",
        ("cpu",),
    ),
    Mutation(
        "port of the wrong type",
        "deploy/k8s/base/worker-deployment.yaml",
        "containerPort: 9090",
        'containerPort: "9090"',
        "k8s",
        "schemas",
    ),
    Mutation(
        "KEDA watches the wrong queue",
        "deploy/k8s/base/worker-scaledobject.yaml",
        "queueName: dispr.jobs",
        "queueName: dispr.job",
        "k8s",
        "KEDA trigger",
        ("cpu",),
    ),
    Mutation(
        "KEDA metadata value not a string",
        "deploy/k8s/base/worker-scaledobject.yaml",
        'activationValue: "0"',
        "activationValue: 0",
        "k8s",
        "KEDA objects",
    ),
    Mutation(
        "field KEDA does not know",
        "deploy/k8s/base/worker-scaledobject.yaml",
        "cooldownPeriod: 300",
        "cooldownPeriods: 300",
        "k8s",
        "KEDA objects",
    ),
    Mutation(
        "GPU worker without a GPU",
        "deploy/k8s/components/gpu/gpu-deployment.yaml",
        "              nvidia.com/gpu: 1\n",
        "",
        "k8s",
        "CPU/GPU",
        ("gpu",),
    ),
    Mutation(
        "kustomization names a missing file",
        "deploy/k8s/base/kustomization.yaml",
        "  - configmap.yaml",
        "  - configmap-missing.yaml",
        "k8s",
        "renders",
    ),
    Mutation(
        "Secret key that the example does not define",
        "deploy/k8s/base/worker-deployment.yaml",
        "key: DISPR_AMQP_URL",
        "key: amqp-url",
        "k8s",
        "references",
    ),
    Mutation(
        "ScaledJob worker that never exits",
        "deploy/k8s/components/scaledjob/worker-scaledjob.yaml",
        'args: ["dispr-worker", "serve", "--max-jobs", "1", "--idle-timeout-secs", "120"]',
        'args: ["dispr-worker", "serve"]',
        "k8s",
        "worker pods",
        ("gpu-jobs",),
    ),
    Mutation(
        "a flag the coordinator does not have",
        "deploy/k8s/base/coordinator-job.yaml",
        "            - --cells-per-job\n",
        "            - --cells-per-jobs\n",
        "cli",
        "CLI contract",
    ),
    Mutation(
        "a subcommand the coordinator does not have",
        "deploy/compose.yaml",
        "      - dispr-coordinator\n      - synth\n",
        "      - dispr-coordinator\n      - synthesize\n",
        "cli",
        "CLI contract",
    ),
    Mutation(
        "the guide shows a flag that does not exist",
        "deploy/README.md",
        "dead-letters --requeue  #",
        "dead-letters --retry  #",
        "docs",
        "every dispr command",
    ),
    Mutation(
        "the guide names a file that does not exist",
        "deploy/README.md",
        "deploy/k8s/overlays/gpu          #",
        "deploy/k8s/overlays/gpus          #",
        "docs",
        "path exists",
    ),
]


def scratch_copy(root: Path) -> Path:
    dest = Path(tempfile.mkdtemp(prefix="dispr-deploy-selftest-"))
    # Build products, history and the test environment are left out: no check reads them.
    skip = shutil.ignore_patterns("target", ".git", ".test-env", "dispr-demo", "__pycache__")
    shutil.copytree(root, dest / "repo", symlinks=True, ignore=skip)
    # A repository of its own, so that git's ignore rules (.gitignore files) apply as in the original.
    subprocess.run(["git", "init", "-q", str(dest / "repo")], check=True)
    return dest / "repo"


def failed_checks(root: Path, m: Mutation) -> list[str]:
    """Names of the checks that failed on the mutated copy."""
    report, out = Report(), io.StringIO()
    with contextlib.redirect_stdout(out):
        if m.module == "dockerfiles":
            dockerfiles.run(report, root, workspace.load(root))
        elif m.module == "compose":
            compose.run(report, root, [])
        elif m.module == "docs":
            docs.run(report, root, [])
        elif m.module == "k8s":
            k8s.run(report, root, workspace.proto_queue_names(root), [], only=set(m.only))
        else:
            invocations: list[cli.Invocation] = []
            compose.run(report, root, invocations)
            k8s.run(report, root, workspace.proto_queue_names(root), invocations, only=set(m.only))
            cli.run(report, root, invocations)
    return [line[5:] for line in out.getvalue().splitlines() if line.startswith("FAIL ")]


def run(report: Report, root: Path) -> None:
    copy = scratch_copy(root)
    # What already fails without any mutation: a mutation only counts if it makes a check fail
    # that passed before.
    baseline: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    try:
        for m in MUTATIONS:
            target = copy / m.file
            original = target.read_text()

            def caught(m: Mutation = m, target: Path = target, original: str = original) -> None:
                if original.count(m.old) != 1:
                    raise CheckFailed(f"mutation text not found exactly once in {m.file}: {m.old!r}")
                key = (m.module, m.only)
                if key not in baseline:
                    baseline[key] = failed_checks(copy, m)
                already = [name for name in baseline[key] if m.expect in name]
                if already:
                    raise CheckFailed(f"cannot prove it: {already} fails already without the mutation")
                target.write_text(original.replace(m.old, m.new))
                try:
                    failed = failed_checks(copy, m)
                finally:
                    target.write_text(original)
                if not any(m.expect in name for name in failed):
                    raise CheckFailed(
                        f"{m.file}: the defect went unnoticed (failed checks: {failed or 'none'})"
                    )

            report.check(f"self-test: catches {m.what}", caught)
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
