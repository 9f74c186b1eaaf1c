"""Counting and printing of named checks: each check passes or fails with a reason."""

from __future__ import annotations

import traceback
from typing import Callable


class CheckFailed(Exception):
    """A check's assertion did not hold; the message says what is wrong and where."""


def require(condition: bool, message: str) -> None:
    """Fails the current check with `message` unless `condition` holds."""
    if not condition:
        raise CheckFailed(message)


class Report:
    """Runs checks, prints one line per check and keeps the tally for the closing line."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.notes: list[str] = []

    def check(self, name: str, fn: Callable[[], None]) -> bool:
        try:
            fn()
        except CheckFailed as err:
            self.failed += 1
            print(f"FAIL {name}\n     {err}", flush=True)
            return False
        except Exception:  # a crash inside a check is a failure of that check, not of the run
            self.failed += 1
            print(f"FAIL {name}\n     unexpected error:\n{traceback.format_exc()}", flush=True)
            return False
        self.passed += 1
        print(f"ok   {name}", flush=True)
        return True

    def note(self, message: str) -> None:
        """Something not checked, said out loud (never counted as a pass)."""
        self.notes.append(message)
        print(f"note {message}", flush=True)

    def summary(self) -> str:
        return f"deploy checks: {self.passed} passed, {self.failed} failed"
