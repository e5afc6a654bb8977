"""Smoke checks run on a booted instance over SSH, and the report of a smoke test."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bake.instances.base import Instance


@dataclasses.dataclass(frozen=True)
class CheckResult:
    name: str
    command: str
    passed: bool
    exit_code: int | None
    output: str
    seconds: float
    reason: str = ""


def run_checks(instance: Instance, checks: Sequence[Mapping[str, Any]]) -> list[CheckResult]:
    """Run smoke checks (name, run, expect regex, timeout) on an instance, each as root."""
    results = []
    for check in checks:
        start = time.monotonic()
        try:
            result = instance.run(check["run"], timeout=check.get("timeout", 60))
            output = (result.stdout + result.stderr).strip()
            code: int | None = result.exited
            reason = "" if code == 0 else f"exit code {code}"
            if not reason and "expect" in check and not re.search(check["expect"], output, re.M):
                reason = f"output does not match {check['expect']!r}"
        except Exception as exc:  # timeouts and SSH failures fail the check, not the run
            output, code, reason = "", None, f"{type(exc).__name__}: {exc}"
        results.append(
            CheckResult(
                check["name"],
                check["run"],
                not reason,
                code,
                output[-2000:],
                round(time.monotonic() - start, 2),
                reason,
            )
        )
    return results


@dataclasses.dataclass(frozen=True)
class SmokeReport:
    """The outcome of booting an image and running its smoke checks."""

    image: str
    passed: bool
    checks: list[CheckResult]
    boot_seconds: float
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        """One human-readable line per check (and the boot error, if any)."""
        if self.error:
            return [f"FAIL boot: {self.error}"]
        return [
            f"{'ok  ' if c.passed else 'FAIL'} {c.name} ({c.seconds:.1f}s)"
            + ("" if c.passed else f": {c.reason}; output: {c.output[-300:]!r}")
            for c in self.checks
        ]
