"""Many hosts in batches (threads), stopping before the next batch once ``--max-fail`` says
so; and the results as a table or one JSON document.

Example::

    results = rollout(targets, lambda t: deploy_host(connect(t), houses), Batches.of(2))
    results = rollout(targets, act, read_batches("batch", "1,25%,100%"), MaxFail.of("10%"))
    print(table(results))
"""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable, Iterable, Sequence

from bake import ui
from bake.errors import EXIT_BAD_INPUT
from bake.fleet import DeployError
from bake.fleet.options import Batches, MaxFail
from bake.fleet.results import COUNTED, FAILED, FAILURES, SKIPPED, HostResult, reason, say
from bake.fleet.targets import Target


def rollout(
    targets: Sequence[Target],
    action: Callable[[Target], HostResult],
    batch: Batches | int = 1,
    max_fail: MaxFail | int | str = 0,
) -> list[HostResult]:
    """Run ``action`` on ``targets`` batch by batch (the hosts of a batch side by side);
    stop before the next batch once ``max_fail`` says so. Hosts not reached are ``skipped``.
    """
    batches = batch if isinstance(batch, Batches) else Batches.of(batch)
    limit = max_fail if isinstance(max_fail, MaxFail) else MaxFail.of(max_fail)
    if not targets:
        raise DeployError("no hosts to deploy to", EXIT_BAD_INPUT)
    results: list[HostResult] = []
    failures, stopped, first = 0, False, 0
    for size in batches.split(len(targets)):
        group, first = targets[first : first + size], first + size
        if stopped:
            results += [
                HostResult(t.label, result=SKIPPED, message="rollout stopped") for t in group
            ]
            continue
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(group)) as pool:
            done = list(pool.map(_guarded(action), group))
        results += done
        failed_now = sum(r.result in COUNTED for r in done)
        failures += failed_now
        stopped = limit.stops(failures, failed_now, len(group))
        if stopped and first < len(targets):
            say("rollout", f"stopping: {failures} host(s) failed (--max-fail {limit})")
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


def as_json(results: Sequence[HostResult]) -> str:
    """The results as one JSON document: a list with an object per host (``from``/``to``:
    releases, empty when none; ``plan``: what ``--check`` found, only then; ``phases``:
    seconds per phase of the task on the host, when it timed them)."""
    rows = []
    for r in results:
        row = {
            "host": r.host,
            "from": r.from_release,
            "to": r.to_release,
            "result": str(r.result),
            "seconds": r.seconds,
            "bytes_sent": r.bytes_sent,
            "restarted": r.restarted,
            "message": r.message,
        }
        if r.plan is not None:
            row["plan"] = r.plan
        if r.phases:
            row["phases"] = r.phases
        rows.append(row)
    return json.dumps(rows, indent=2)
