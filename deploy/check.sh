#!/usr/bin/env bash
# Static checks of deploy/: the Dockerfiles, compose.yaml, the Kubernetes manifests (rendered
# with kubectl kustomize, validated against the Kubernetes schemas and KEDA's documented
# fields) and the commands they run. Idempotent: installs its tools only when missing.
#
#   deploy/check.sh            # from anywhere; prints `deploy checks: N passed, M failed`
#
# Tools: kubectl (Debian package `kubectl` where the machine has its repository, else Debian's
# `kubernetes-client`), and the pinned Python packages of deploy/checks/requirements.txt.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
checks="$root/deploy/checks"

need_root_for() {
    if [ "$(id -u)" != 0 ]; then
        echo "deploy/check.sh: $1 is missing and installing it needs root; install it and run again" >&2
        exit 1
    fi
}

# kubectl with kustomize v4 or later (older ones lack `components` and `labels`).
kustomize_ok() {
    command -v kubectl > /dev/null 2>&1 || return 1
    local v
    v="$(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p')"
    [ -n "$v" ] && [ "$v" -ge 4 ]
}

if ! kustomize_ok; then
    need_root_for kubectl
    if ! apt-cache show kubectl > /dev/null 2>&1 && ! apt-cache show kubernetes-client > /dev/null 2>&1; then
        apt-get update -qq
    fi
    if apt-cache show kubectl > /dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl
    else
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client
    fi
    if ! kustomize_ok; then
        echo "deploy/check.sh: kubectl with kustomize v4 or later is needed; $(kubectl version --client 2>&1 | tr '\n' ' ')" >&2
        exit 1
    fi
fi

# Python tools: install the pinned requirements only when one is missing or of another version.
if ! python3 - "$checks/requirements.txt" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, _, want = line.partition("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
then
    python3 -m pip install --quiet --disable-pip-version-check -r "$checks/requirements.txt"
fi

exec python3 "$checks/check_deploy.py" "$root"
