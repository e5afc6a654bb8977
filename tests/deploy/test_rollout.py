"""The rollout scheduler on its own: batches run side by side, and the rollout stops before
the next batch once more than --max-fail hosts failed (the hosts here are plain functions;
the same logic against real instances is in test_deploy.py)."""

from __future__ import annotations

import threading
import time

import pytest

from bake.fleet import DeployError
from bake.fleet.results import DEPLOYED, FAILED, ROLLED_BACK, SKIPPED, HostResult
from bake.fleet.rollout import rollout, table
from bake.fleet.targets import Target


def test_batches_and_max_fail():
    running, peak, lock = set(), [0], threading.Lock()
    outcome = {"a": FAILED, "b": DEPLOYED, "c": ROLLED_BACK, "d": DEPLOYED, "e": DEPLOYED}

    def act(target: Target) -> HostResult:
        with lock:
            running.add(target.host)
            peak[0] = max(peak[0], len(running))
        time.sleep(0.2)
        with lock:
            running.discard(target.host)
        return HostResult(target.host, "1", "2", outcome[target.host], 0.2)

    targets = [Target(h) for h in "abcde"]
    results = rollout(targets, act, batch=2, max_fail=1)
    assert [r.result for r in results] == [FAILED, DEPLOYED, ROLLED_BACK, DEPLOYED, SKIPPED]
    assert peak[0] == 2
    assert [r.result for r in rollout(targets, act, batch=5, max_fail=0)] == list(outcome.values())
    assert rollout(targets[:2], act, batch=1, max_fail=0)[1].result == SKIPPED
    lines = table(results).splitlines()
    assert lines[0].split() == ["host", "from", "to", "result", "time", "sent"]
    assert lines[-1].split()[:4] == ["e", "-", "-", SKIPPED]


def test_an_exception_fails_only_its_host():
    def act(target: Target) -> HostResult:
        if target.host == "b":
            raise ConnectionRefusedError("refused")
        return HostResult(target.host, result=DEPLOYED)

    results = rollout([Target("a"), Target("b")], act, batch=2)
    assert [r.result for r in results] == [DEPLOYED, FAILED]
    assert "refused" in results[1].message


@pytest.mark.parametrize(("batch", "max_fail"), [(0, 0), (1, -1)])
def test_bad_batch_settings(batch, max_fail):
    with pytest.raises(DeployError):
        rollout([Target("a")], lambda t: HostResult(t.host), batch=batch, max_fail=max_fail)
