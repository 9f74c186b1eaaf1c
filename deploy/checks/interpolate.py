"""Compose-style variable interpolation (`${VAR}`, `${VAR:-default}`, `${VAR-default}`,
`${VAR:?error}`, `${VAR?error}`, `$VAR`, `$$`), enough to resolve deploy/compose.yaml with the
values of deploy/.env.example the way `docker compose` does."""

from __future__ import annotations

import re
from typing import Any

_VAR = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?(?P<arg>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    """A `${VAR:?message}` whose variable is not set."""


def parse_env_file(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            env[key.strip()] = value.strip().strip('"').strip("'")
    return env


def variables(value: Any) -> set[str]:
    """Every variable name a (nested) value refers to."""
    if isinstance(value, str):
        return {m.group("braced") or m.group("plain") for m in _VAR.finditer(value) if m.group(0) != "$$"}
    if isinstance(value, dict):
        return set().union(*(variables(k) | variables(v) for k, v in value.items())) if value else set()
    if isinstance(value, list):
        return set().union(*(variables(v) for v in value)) if value else set()
    return set()


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {interpolate(k, env): interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("plain")
        op, arg = m.group("op"), m.group("arg") or ""
        present = name in env and (env[name] != "" or not (op or "").startswith(":"))
        if present:
            return env[name]
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        return ""

    return _VAR.sub(one, value)


def literal_parts(value: str) -> str:
    """What is left of a string once every interpolation is removed (the hard-coded part)."""
    return _VAR.sub("", value)
