"""Many hosts: ``batch`` at a time (threads), stopping before the next batch once more than
``max_fail`` hosts failed; and the results table.

Example::

    results = rollout(targets, lambda t: deploy_host(connect(t), houses), batch=2)
    print(table(results))
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable, Sequence

from bake import ui
from bake.errors import EXIT_BAD_INPUT
from bake.fleet import DeployError
from bake.fleet.results import COUNTED, FAILED, FAILURES, SKIPPED, HostResult, reason, say
from bake.fleet.targets import Target


def rollout(
    targets: Sequence[Target],
    action: Callable[[Target], HostResult],
    batch: int = 1,
    max_fail: int = 0,
) -> list[HostResult]:
    """Run ``action`` on ``targets`` ``batch`` at a time (threads); stop before the next batch
    once more than ``max_fail`` hosts failed or rolled back. Hosts not reached are ``skipped``.
    """
    if batch < 1:
        raise DeployError(f"--batch must be at least 1, not {batch}", EXIT_BAD_INPUT)
    if max_fail < 0:
        raise DeployError(f"--max-fail must be 0 or more, not {max_fail}", EXIT_BAD_INPUT)
    if not targets:
        raise DeployError("no hosts to deploy to", EXIT_BAD_INPUT)
    results: list[HostResult] = []
    failures = 0
    for first in range(0, len(targets), batch):
        group = targets[first : first + batch]
        if failures > max_fail:
            for target in group:
                results.append(HostResult(target.label, result=SKIPPED, message="rollout stopped"))
            continue
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(group)) as pool:
            done = list(pool.map(_guarded(action), group))
        results += done
        failures += sum(r.result in COUNTED for r in done)
        if failures > max_fail and first + batch < len(targets):
            say("rollout", f"stopping: {failures} host(s) failed (--max-fail {max_fail})")
    return results


def _guarded(action: Callable[[Target], HostResult]) -> Callable[[Target], HostResult]:
    def run(target: Target) -> HostResult:
        try:
            return action(target)
        except Exception as exc:  # connection refused, host key rejected, ...
            say(target.label, f"FAILED: {reason(exc)}")
            return HostResult(target.label, result=FAILED, message=reason(exc))

    return run


def failed(results: Iterable[HostResult]) -> list[HostResult]:
    """The results that count as failures (failed, rolled back, or skipped)."""
    return [r for r in results if r.result in FAILURES]


def table(results: Sequence[HostResult]) -> str:
    """A text table: host, from-version, to-version, result, time (and bytes sent)."""
    rows = [
        (
            r.host,
            r.from_release or "-",
            r.to_release or "-",
            r.result,
            f"{r.seconds:.1f}s",
            ui.binary_size(r.bytes_sent),
        )
        for r in results
    ]
    return ui.table(("host", "from", "to", "result", "time", "sent"), rows, rule=True)
