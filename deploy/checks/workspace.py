"""What the Cargo workspace builds: packages, their [[bin]] targets and features, and the queue
names of the wire contract (proto), read from the sources so the deploy files cannot drift."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Package:
    name: str
    bins: list[str]
    features: set[str]


@dataclass
class Workspace:
    root: Path
    packages: dict[str, Package] = field(default_factory=dict)

    @property
    def bins(self) -> dict[str, str]:
        """Binary name -> package name."""
        return {b: p.name for p in self.packages.values() for b in p.bins}


def load(root: Path) -> Workspace:
    manifest = tomllib.loads((root / "Cargo.toml").read_text())
    ws = Workspace(root)
    for member in manifest["workspace"]["members"]:
        crate = tomllib.loads((root / member / "Cargo.toml").read_text())
        name = crate["package"]["name"]
        bins = [b["name"] for b in crate.get("bin", [])]
        # Cargo's implicit binary: src/main.rs named after the package.
        if not bins and (root / member / "src" / "main.rs").exists():
            bins = [name]
        ws.packages[name] = Package(name, bins, set(crate.get("features", {})))
    return ws


def proto_queue_names(root: Path) -> dict[str, str]:
    """The queue constants of proto/src/queues.rs (`pub const JOBS: &str = "dispr.jobs";`)."""
    text = (root / "proto" / "src" / "queues.rs").read_text()
    return dict(re.findall(r'pub const (\w+): &str = "([^"]+)";', text))


def env_read(root: Path) -> set[str]:
    """The DISPR_* environment variables the product reads: every `"DISPR_..."` string literal
    in the sources of the crates the binaries are built from (clap `env = "..."` attributes
    and direct `std::env::var` reads alike)."""
    names: set[str] = set()
    for crate in ("worker", "coordinator", "amqp", "store", "model", "shape", "proto"):
        for path in (root / crate / "src").rglob("*.rs"):
            names.update(re.findall(r'"(DISPR_[A-Z0-9_]+)"', path.read_text()))
    return names
