"""The command lines the deploy files run, checked against the project's CLI.

`CONTRACT` is the command-line contract the team agreed on (subcommands, flags and the
environment variables the flags read). Every command in compose.yaml and the Kubernetes
manifests must use only what it lists. Where the real binaries are built (target/debug or
target/release, or DISPR_BIN_DIR), `--help` of each subcommand is read as well, so a flag that
the binaries do not (or no longer) have is caught.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from report import Report, require

# binary -> subcommand -> flags it takes.
CONTRACT: dict[str, dict[str, set[str]]] = {
    "dispr-worker": {
        "serve": {
            "--amqp-url",
            "--prefetch",
            "--drain-timeout-secs",
            "--http-addr",
            "--queue-prefix",
            "--log-format",
            "--model-cache-dir",
            "--max-jobs",
            "--idle-timeout-secs",
        },
        "train": {"--dataset", "--out", "--config"},
    },
    "dispr-coordinator": {
        "submit": {
            "--dataset",
            "--output",
            "--model",
            "--sampler",
            "--samples",
            "--cells-per-job",
            "--seed",
            "--run-id",
            "--amqp-url",
            "--queue-prefix",
        },
        "watch": {"--output", "--run-id", "--amqp-url", "--http-addr", "--allow-failures"},
        "status": {"--output", "--run-id", "--json"},
        "report": {"--output", "--run-id"},
        "dead-letters": {"--requeue"},
        "local": {"--dataset", "--output", "--model", "--sampler", "--workers"},
        "synth": {"--out", "--cells", "--seed", "--preview", "--overwrite"},
        "demo": set(),
    },
}

# Flags the deploy files need beyond the agreed contract, asked of a binary's owner and not yet
# built: reported as missing rather than failing. None at present.
REQUESTED: dict[str, dict[str, set[str]]] = {}

# The AWS SDK's own settings that the deploy files may set (DISPR_* ones are read from the
# sources: workspace.env_read).
AWS_ENV: set[str] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL"}


@dataclass(frozen=True)
class Invocation:
    """One command a deploy file runs: where, which binary, which subcommand, which flags."""

    where: str
    binary: str
    subcommand: str
    flags: tuple[str, ...]


def parse_argv(where: str, argv: list[str]) -> Invocation | None:
    """Splits `dispr-x sub --flag value ...`; None for commands that are not ours."""
    if not argv or argv[0] not in CONTRACT:
        return None
    sub = argv[1] if len(argv) > 1 else ""
    flags = tuple(a.split("=", 1)[0] for a in argv[2:] if a.startswith("--"))
    return Invocation(where, argv[0], sub, flags)


def check_against_contract(inv: Invocation) -> list[str]:
    """Problems of one invocation against CONTRACT (+ REQUESTED); empty when it is fine."""
    subs = CONTRACT[inv.binary]
    if inv.subcommand not in subs:
        return [
            f"{inv.where}: `{inv.binary} {inv.subcommand}` is not a subcommand "
            f"(known: {', '.join(sorted(subs))})"
        ]
    allowed = subs[inv.subcommand] | REQUESTED.get(inv.binary, {}).get(inv.subcommand, set())
    return [
        f"{inv.where}: `{inv.binary} {inv.subcommand}` has no flag {f}" for f in inv.flags if f not in allowed
    ]


def find_binaries(root: Path) -> tuple[Path | None, str]:
    """The folder holding fresh builds of both binaries, or None and why not."""
    candidates = (
        [Path(os.environ["DISPR_BIN_DIR"])]
        if os.environ.get("DISPR_BIN_DIR")
        else [root / "target" / "debug", root / "target" / "release"]
    )
    sources = [p for crate in ("worker", "coordinator") for p in (root / crate / "src").rglob("*.rs")]
    newest_source = max((p.stat().st_mtime for p in sources), default=0.0)
    reasons = []
    for folder in candidates:
        bins = [folder / b for b in CONTRACT]
        if not all(b.is_file() for b in bins):
            reasons.append(f"{folder} lacks {' or '.join(b.name for b in bins if not b.is_file())}")
            continue
        if min(b.stat().st_mtime for b in bins) < newest_source:
            reasons.append(f"{folder} holds binaries older than worker/ or coordinator/ sources")
            continue
        return folder, ""
    return None, "; ".join(reasons)


_FLAG = re.compile(r"(--[a-z0-9][a-z0-9-]*)")


def help_text(bin_dir: Path, binary: str, subcommand: str) -> str | None:
    """`<binary> <subcommand> --help`, or None when the subcommand does not exist."""
    out = subprocess.run(
        [str(bin_dir / binary), subcommand, "--help"], capture_output=True, text=True, timeout=60
    )
    return out.stdout if out.returncode == 0 else None


def check_against_binaries(bin_dir: Path, invocations: list[Invocation]) -> tuple[list[str], list[str]]:
    """(problems, requested-but-missing) of the invocations against the built binaries."""
    problems, missing_requested = [], []
    helps: dict[tuple[str, str], str | None] = {}
    for inv in invocations:
        key = (inv.binary, inv.subcommand)
        if key not in helps:
            helps[key] = help_text(bin_dir, *key)
        text = helps[key]
        if text is None:
            problems.append(f"{inv.where}: the built {inv.binary} has no subcommand `{inv.subcommand}`")
            continue
        have = set(_FLAG.findall(text))
        for flag in inv.flags:
            if flag in have:
                continue
            if flag in REQUESTED.get(inv.binary, {}).get(inv.subcommand, set()):
                missing_requested.append(f"{inv.where}: {inv.binary} {inv.subcommand} {flag}")
            else:
                problems.append(f"{inv.where}: the built `{inv.binary} {inv.subcommand}` has no flag {flag}")
    return problems, missing_requested


def run(report: Report, root: Path, invocations: list[Invocation]) -> None:
    """Every command the deploy files run, against the agreed contract and the built binaries."""

    def contract() -> None:
        require(
            len(invocations) >= 5, f"found only {len(invocations)} dispr commands in compose.yaml and k8s"
        )
        problems = [p for inv in invocations for p in check_against_contract(inv)]
        require(not problems, "\n     ".join(problems))

    report.check("commands in compose.yaml and k8s follow the CLI contract", contract)
    bin_dir, why = find_binaries(root)
    if bin_dir is None:
        report.note(f"built binaries not checked ({why}); build them or set DISPR_BIN_DIR")
        return
    unique = list({(i.binary, i.subcommand, i.flags): i for i in invocations}.values())
    problems, missing_requested = check_against_binaries(bin_dir, unique)

    def binaries() -> None:
        require(not problems, "\n     ".join(problems))

    report.check(f"commands match the binaries in {bin_dir}", binaries)
    for gap in missing_requested:
        report.note(
            f"WARNING requested flag missing in the built binary: {gap} (the ScaledJob variant needs it)"
        )
