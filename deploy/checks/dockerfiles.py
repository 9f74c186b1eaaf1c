"""Checks of deploy/docker/Dockerfile.*: stages, pinned bases, non-root user, exec-form
entrypoint, HEALTHCHECK on /healthz, the binaries copied are the ones the workspace builds,
the context paths exist and are not excluded by /.dockerignore, and hadolint is clean."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser

import cli
from report import Report, require
from workspace import Workspace

# An image reference pinned by tag (not `latest`) or by digest.
_PINNED = re.compile(r"^[\w./-]+(:[\w][\w.-]*)?(@sha256:[0-9a-f]{64})?$")
_SECRETISH = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.I)


@dataclass
class Stage:
    base: str  # the FROM image with ARG defaults substituted
    name: str | None
    instructions: list[dict] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [i["value"] for i in self.instructions if i["instruction"] == instruction]

    def last(self, instruction: str) -> str | None:
        values = self.all(instruction)
        return values[-1] if values else None


def stages_of(path: Path) -> list[Stage]:
    """The build stages, with `${ARG}` in FROM lines resolved from the ARG defaults."""
    parser = DockerfileParser(fileobj=path.open("rb"))
    bases = iter(parser.parent_images)  # already ARG-substituted by dockerfile-parse
    stages: list[Stage] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            parts = ins["value"].split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(next(bases), name))
        elif stages and ins["instruction"] != "COMMENT":
            stages[-1].instructions.append(ins)
    return stages


def copy_args(value: str) -> tuple[dict[str, str], list[str], str]:
    """(--options, sources, destination) of a COPY/ADD value."""
    words = json.loads(value) if value.lstrip().startswith("[") else shlex.split(value)
    opts = {}
    while words and words[0].startswith("--"):
        key, _, val = words.pop(0)[2:].partition("=")
        opts[key] = val
    return opts, words[:-1], words[-1]


def dockerignore_patterns(root: Path) -> list[str]:
    path = root / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    return [ln.strip().lstrip("/") for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def ignored(rel: str, patterns: list[str]) -> str | None:
    """The .dockerignore pattern that excludes `rel` (or one of its parents), if any.
    Negations (!pattern) are not used in this project and are refused by a check."""
    parts = Path(rel).parts
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for pat in patterns:
            if fnmatch.fnmatch(prefix, pat) or fnmatch.fnmatch(prefix, pat.replace("**/", "")):
                return pat
    return None


def cargo_build_commands(stage: Stage) -> list[list[str]]:
    """The `cargo build ...` words of every RUN in a stage."""
    commands = []
    for run in stage.all("RUN"):
        for part in re.split(r"&&|;", run):
            words = shlex.split(part.replace("\\\n", " "))
            words = [w for w in words if not w.startswith("--mount=")]
            while words and "=" in words[0] and not words[0].startswith("-"):
                words.pop(0)  # leading VAR=value assignments
            if words[:2] == ["cargo", "build"]:
                commands.append(words)
    return commands


def option_values(words: list[str], *names: str) -> list[str]:
    values = []
    for i, w in enumerate(words):
        for n in names:
            if w == n and i + 1 < len(words):
                values.append(words[i + 1])
            elif w.startswith(n + "="):
                values.append(w.split("=", 1)[1])
    return values


def check_dockerfile(report: Report, root: Path, ws: Workspace, path: Path, gpu: bool) -> None:
    rel = path.relative_to(root)
    stages = stages_of(path)
    final = stages[-1] if stages else None
    names = {s.name for s in stages if s.name}

    def structure() -> None:
        require(
            len(stages) >= 2,
            f"{rel}: expected a multi-stage build (builder -> runtime), got {len(stages)} stage(s)",
        )
        require(
            any(cargo_build_commands(s) for s in stages[:-1]),
            f"{rel}: no stage before the last runs `cargo build`",
        )
        require(
            not cargo_build_commands(final),
            f"{rel}: the runtime stage must not build (it would ship the toolchain)",
        )

    def pinned() -> None:
        for s in stages:
            if s.base in names:
                continue
            require("$" not in s.base, f"{rel}: FROM {s.base}: an ARG without a default")
            require(
                bool(_PINNED.match(s.base)) and (":" in s.base.split("/")[-1] or "@" in s.base),
                f"{rel}: FROM {s.base} is not pinned to a tag or digest",
            )
            require(not s.base.endswith(":latest"), f"{rel}: FROM {s.base}: `latest` is not a pin")

    def non_root() -> None:
        user = final.last("USER")
        require(user is not None, f"{rel}: the runtime stage sets no USER (it would run as root)")
        name = user.split(":")[0]
        require(name not in ("root", "0"), f"{rel}: USER {user} is root")
        require(
            name.isdigit(), f"{rel}: USER {user}: use a numeric uid so Kubernetes can verify runAsNonRoot"
        )

    def entrypoint() -> None:
        ep, cmd = final.last("ENTRYPOINT"), final.last("CMD")
        require(ep is not None and cmd is not None, f"{rel}: the runtime stage needs ENTRYPOINT and CMD")
        for what, value in (("ENTRYPOINT", ep), ("CMD", cmd)):
            require(
                value.lstrip().startswith("["),
                f"{rel}: {what} {value}: use the exec (JSON) form so signals reach the process",
            )
        argv = json.loads(cmd)
        inv = cli.parse_argv(f"{rel} CMD", argv)
        require(inv is not None, f"{rel}: CMD {argv} does not run dispr-worker or dispr-coordinator")
        problems = cli.check_against_contract(inv)
        require(not problems, "; ".join(problems))

    def healthcheck() -> None:
        hc = final.last("HEALTHCHECK")
        require(hc is not None, f"{rel}: no HEALTHCHECK in the runtime stage")
        require("/healthz" in hc, f"{rel}: HEALTHCHECK does not probe /healthz: {hc}")
        tool = re.search(r"CMD\s+\[?\"?([\w./-]+)", hc)
        require(tool is not None, f"{rel}: HEALTHCHECK has no command")
        installs = " ".join(final.all("RUN"))
        require(
            tool.group(1) in installs or tool.group(1).startswith("dispr-"),
            f"{rel}: HEALTHCHECK runs {tool.group(1)}, which the runtime stage does not install",
        )

    def binaries() -> None:
        builds = [w for s in stages for w in cargo_build_commands(s)]
        built_pkgs = [p for w in builds for p in option_values(w, "-p", "--package")]
        for p in built_pkgs:
            require(p in ws.packages, f"{rel}: cargo build -p {p}: no such workspace package")
        built_bins = {b for p in built_pkgs for b in ws.packages[p].bins}
        built_bins |= {b for w in builds for b in option_values(w, "--bin")}
        copied = []
        for value in final.all("COPY"):
            opts, sources, _ = copy_args(value)
            if opts.get("from") and opts["from"] in names and "/bin/" in " ".join(sources):
                copied += [Path(s).name for s in sources]
        require(bool(copied), f"{rel}: the runtime stage copies no binary from a build stage")
        for b in copied:
            require(
                b in ws.bins,
                f"{rel}: copies `{b}`, which is not a [[bin]] of the workspace ({', '.join(sorted(ws.bins))})",
            )
            require(b in built_bins, f"{rel}: copies `{b}` but no cargo build in the Dockerfile builds it")
        for needed in cli.CONTRACT:
            require(needed in copied, f"{rel}: the image lacks {needed}")

    def features() -> None:
        feats = [
            f
            for w in cargo_build_commands_all(stages)
            for v in option_values(w, "--features", "-F")
            for f in v.split(",")
        ]
        cuda = [f for f in feats if f.split("/")[-1] == "cuda"]
        if gpu:
            for b in cli.CONTRACT:
                pkg = ws.bins[b]
                require(
                    f"{pkg}/cuda" in cuda,
                    f"{rel}: the CUDA image must build {pkg} with --features {pkg}/cuda",
                )
                require(
                    "cuda" in ws.packages[pkg].features,
                    f"{rel}: {pkg} has no `cuda` feature in its Cargo.toml",
                )
        else:
            require(not cuda, f"{rel}: the CPU image must not enable cuda features ({cuda})")

    def context_paths() -> None:
        patterns = dockerignore_patterns(root)
        require(
            not any(p.startswith("!") for p in patterns),
            ".dockerignore: negated patterns are not supported by this check",
        )
        for s in stages:
            for value in s.all("COPY") + s.all("ADD"):
                opts, sources, _ = copy_args(value)
                if "from" in opts:
                    continue
                for src in sources:
                    if src in (".", "./"):
                        continue
                    require(
                        (root / src).exists(),
                        f"{rel}: COPY {src}: no such path in the build context (repository root)",
                    )
                    pat = ignored(src.rstrip("/"), patterns)
                    require(pat is None, f"{rel}: COPY {src} is excluded by .dockerignore pattern `{pat}`")
        for must in ("target", ".git", "**/.env"):
            require(must in patterns, f".dockerignore must exclude {must}")

    def no_secrets() -> None:
        for s in stages:
            for what in ("ENV", "ARG"):
                for value in s.all(what):
                    for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", value) or [value.split("=")[0]]:
                        require(
                            not _SECRETISH.search(name),
                            f"{rel}: {what} {name}: credentials must come from the environment at run time, not the image",
                        )

    def hadolint() -> None:
        config = path.parent / ".hadolint.yaml"
        out = subprocess.run(
            ["hadolint", "--no-color", "--config", str(config), str(path)], capture_output=True, text=True
        )
        require(out.returncode == 0, f"{rel}: hadolint:\n{out.stdout}{out.stderr}")

    for name, fn in [
        ("multi-stage build", structure),
        ("base images pinned", pinned),
        ("runs as a non-root numeric user", non_root),
        ("ENTRYPOINT/CMD exec form, known command", entrypoint),
        ("HEALTHCHECK on /healthz", healthcheck),
        ("copies only binaries the workspace builds", binaries),
        ("cargo features", features),
        ("COPY sources exist and are not dockerignored", context_paths),
        ("no credentials in ENV/ARG", no_secrets),
        ("hadolint clean", hadolint),
    ]:
        if final is None and name != "multi-stage build":
            continue
        report.check(f"{rel}: {name}", fn)


def repo_path_in_image(root: Path, uri: str) -> Path | None:
    """The repository file that a `file:///...` URI inside the CPU image comes from (through a
    COPY from the build context), or None when no COPY puts anything there."""
    if not uri.startswith("file:///"):
        return None
    image_path = uri[len("file://") :]
    final = stages_of(root / "deploy" / "docker" / "Dockerfile.cpu")[-1]
    for value in final.all("COPY"):
        opts, sources, dest = copy_args(value)
        if "from" in opts or len(sources) != 1:
            continue
        dest = dest.rstrip("/") + "/"
        if image_path.startswith(dest):
            return root / sources[0].rstrip("/") / image_path[len(dest) :]
    return None


def check_model_uri(root: Path, uri: str, where: str) -> None:
    """A model URI inside the image must name a checkpoint the image really holds."""
    if not uri.startswith("file://"):
        return
    source = repo_path_in_image(root, uri)
    require(source is not None, f"{where}: {uri} is not a path the image's COPY lines fill")
    require(source.is_file(), f"{where}: {uri} would be {source.relative_to(root)}, which does not exist")
    # A checkpoint record travels with its JSON sidecar (dispr_model::sidecar_path).
    sidecar = source.with_suffix(".json")
    require(sidecar.is_file(), f"{where}: the checkpoint's sidecar {sidecar.relative_to(root)} does not exist")


def cargo_build_commands_all(stages: list[Stage]) -> list[list[str]]:
    return [w for s in stages for w in cargo_build_commands(s)]


def run(report: Report, root: Path, ws: Workspace) -> None:
    docker = root / "deploy" / "docker"
    files = {"Dockerfile.cpu": False, "Dockerfile.cuda": True}
    for name, gpu in files.items():
        path = docker / name
        if not report.check(
            f"deploy/docker/{name}: exists", lambda p=path: require(p.is_file(), f"{p} is missing")
        ):
            continue
        check_dockerfile(report, root, ws, path, gpu)
