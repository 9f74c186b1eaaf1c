"""Static checks of everything under deploy/ (run by deploy/check.sh, which installs the tools).

Prints one line per check and closes with `deploy checks: N passed, M failed`; exits 1 when any
check failed. Usage: python3 deploy/checks/check_deploy.py [repository root]"""

from __future__ import annotations

import sys
from pathlib import Path

import cli
import compose
import dockerfiles
import docs
import k8s
import selftest
import workspace
from report import Report


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2]).resolve()
    report = Report()
    ws = workspace.load(root)
    queues = workspace.proto_queue_names(root)
    invocations: list[cli.Invocation] = []
    dockerfiles.run(report, root, ws)
    compose.run(report, root, invocations)
    k8s.run(report, root, queues, invocations)
    docs.run(report, root, invocations)
    cli.run(report, root, invocations)
    selftest.run(report, root)
    print(report.summary())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
