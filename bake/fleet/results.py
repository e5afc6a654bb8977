"""What an action did on one host: a :class:`Result` and a :class:`HostResult`.

Example::

    result = attempt("10.0.0.5", work)   # work(result) fills it in; an exception: FAILED
    result.result in FAILURES
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import time
from collections.abc import Callable, Iterator

from bake import ui
from bake.fleet import DeployError


class Result(enum.StrEnum):
    """The outcome of an action on one host (printed in the results table)."""

    UNCHANGED = "unchanged"  # a deploy found the host on the release already: nothing done
    DEPLOYED = "deployed"
    ROLLED_BACK = "rolled-back"  # unhealthy after the switch: back on the old release
    FAILED = "failed"
    SKIPPED = "skipped"  # not reached: the rollout stopped before the host's batch
    OK = "ok"  # rollback, restart, status, releases done
    PLANNED = "planned"  # --check: the plan printed, nothing changed


UNCHANGED = Result.UNCHANGED
DEPLOYED = Result.DEPLOYED
ROLLED_BACK = Result.ROLLED_BACK
FAILED = Result.FAILED
SKIPPED = Result.SKIPPED
OK = Result.OK
PLANNED = Result.PLANNED
# The results that count against --max-fail; a rollout with any of FAILURES fails.
COUNTED = frozenset({FAILED, ROLLED_BACK})
FAILURES = frozenset({FAILED, ROLLED_BACK, SKIPPED})


@dataclasses.dataclass
class HostResult:
    """The outcome on one host."""

    host: str
    from_release: str = ""
    to_release: str = ""
    result: Result = SKIPPED
    seconds: float = 0.0
    bytes_sent: int = 0
    restarted: bool = False
    message: str = ""
    plan: dict | None = None  # --check: what the task would do on the host (JSON-ready)
    # Seconds spent in each phase (connect, state, send, install, switch, and the switch's
    # own: restart, health, settle, prune), in the order they ran.
    phases: dict[str, float] = dataclasses.field(default_factory=dict)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as phase ``name`` (added up when it runs more than once)."""
        start = time.monotonic()
        try:
            yield
        finally:
            spent = self.phases.get(name, 0.0) + time.monotonic() - start
            self.phases[name] = round(spent, 3)


def reason(exc: Exception) -> str:
    """One line for ``exc``: a DeployError's own message, else its type and message."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if isinstance(exc, DeployError) else f"{type(exc).__name__}: {text}"


def say(host: str, message: str, stream=None) -> None:
    """Print ``[host] message`` (whole lines only, safe from many threads)."""
    ui.say(host, message, stream)


def attempt(label: str, work: Callable[[HostResult], None]) -> HostResult:
    """Run ``work`` on a new HostResult, timed; an exception makes it ``failed`` (one line)."""
    start = time.monotonic()
    result = HostResult(label)
    try:
        work(result)
    except Exception as exc:
        result.result, result.message = FAILED, reason(exc)
        say(label, f"FAILED: {result.message}")
    result.seconds = round(time.monotonic() - start, 1)
    return result
