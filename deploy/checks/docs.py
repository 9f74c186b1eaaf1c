"""Checks of the operator guide (deploy/README.md): every dispr command it shows is one the
project supports (collected for the CLI checks, like the commands of the deploy files), and
every deploy/ path it names exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import cli
from report import Report, require

_FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.M | re.S)
_SHELL_FENCES = {"sh", "bash", "shell", "console"}
_INLINE = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"(?<![\w/.-])(deploy/[\w./-]*[\w/])")
_SEPARATORS = {"&&", "||", "|", ";"}


def code_chunks(text: str) -> list[str]:
    """Lines of shell code blocks (continuations joined) and inline code spans that run a
    dispr subcommand (a bare `dispr-worker` in prose is a name, not a command)."""
    chunks = []
    for info, block in _FENCE.findall(text):
        if info.strip() in _SHELL_FENCES:
            chunks += [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    prose = _FENCE.sub("", text)
    chunks += [
        span
        for span in _INLINE.findall(prose)
        if re.search(r"(^|\s)(dispr-worker|dispr-coordinator) [a-z]", span)
    ]
    return chunks


def commands(chunk: str) -> list[list[str]]:
    """The argv of every dispr-* command in a shell line, looking inside `sh -c '...'` too."""
    try:
        words = shlex.split(chunk, comments=True)
    except ValueError:
        words = chunk.split()
    found = []
    for i, w in enumerate(words):
        if w in cli.CONTRACT:
            argv = []
            for x in words[i:]:
                if x in _SEPARATORS:
                    break
                argv.append(x)
            found.append(argv)
        elif " " in w and any(b in w for b in cli.CONTRACT):
            found += commands(w)
    return found


def run(report: Report, root: Path, invocations: list[cli.Invocation]) -> None:
    path = root / "deploy" / "README.md"
    text = path.read_text() if path.is_file() else ""
    found = [argv for chunk in code_chunks(text) for argv in commands(chunk)]

    def readme_commands() -> None:
        require(
            len(found) >= 8,
            f"deploy/README.md shows only {len(found)} dispr commands; is it the operator guide?",
        )
        subs = {(a[0], a[1]) for a in found if len(a) > 1}
        for needed in [
            ("dispr-coordinator", s) for s in ("submit", "status", "dead-letters", "report", "synth")
        ]:
            require(
                needed in subs or any(n == needed[1] for _, n in subs),
                f"deploy/README.md never shows `{' '.join(needed)}`",
            )
        problems = []
        for argv in found:
            inv = cli.parse_argv(f"deploy/README.md `{' '.join(argv)}`", argv)
            problems += cli.check_against_contract(inv)
            invocations.append(inv)
        require(not problems, "\n     ".join(problems))

    def readme_paths() -> None:
        # deploy/.env is the operator's own copy of .env.example; `deploy/dispr-...` is kubectl's
        # short form of a Deployment (`kubectl exec deploy/dispr-toolbox`), not a path.
        names = {p for p in _PATH.findall(text) if p != "deploy/.env" and not p.startswith("deploy/dispr-")}
        missing = sorted(p for p in names if not (root / p).exists())
        require(not missing, f"deploy/README.md names paths that do not exist: {missing}")

    report.check("deploy/README.md: every dispr command is one the project supports", readme_commands)
    report.check("deploy/README.md: every deploy/ path exists", readme_paths)
