"""``fab``'s OpenStack-tool options against real sshd and systemd in instances of our bbq-rest
image (the shared ``fleet`` fixture): ``--batch 1,50%`` runs a canary first and stops on its
failure, ``--check`` changes nothing on a host and plans what a deploy then does, and
``--format json`` is one document on stdout. Parsing alone is in test_options.py."""

from __future__ import annotations

import json

import pytest

from tests.deploy.fleet import UNHEALTHY_FLAG
from tests.deploy.test_hosts import other_version

pytestmark = pytest.mark.slow

# Everything a deploy could touch on a host: every path under the app's tree and its
# configuration (kind, size, mode, owner, modification and change times, link target), the
# content of every file, the enabled units and the running service's process and start.
SNAPSHOT = (
    "find /opt/bbq /etc/bbq -printf '%p %y %s %m %u %T@ %C@ %l\\n' | sort; "
    "find /opt/bbq /etc/bbq -type f -print0 | sort -z | xargs -0 sha256sum; "
    "systemctl list-unit-files --no-legend 'bbq-*'; "
    "systemctl show -P MainPID,ActiveEnterTimestamp,NRestarts bbq-rest.service"
)


def snapshot(fleet, index: int) -> str:
    return fleet.sh(index, SNAPSHOT)


def test_canary_first_then_stop_on_its_failure(fleet, app_versions):
    app = other_version(fleet, 0, app_versions, "v3-fragile", "v4", "v2")
    before = [fleet.current(i) for i in range(3)]
    untouched = [snapshot(fleet, i) for i in (1, 2)]
    fleet.sh(0, f"touch {UNHEALTHY_FLAG}")  # the canary fails its health check
    try:
        run = fleet.fab(
            "deploy",
            "--app",
            str(app),
            "--batch",
            "1,50%",
            "--max-fail",
            "10%",
            "--health-timeout",
            "15",
            "--format",
            "json",
        )
    finally:
        fleet.sh(0, f"rm -f {UNHEALTHY_FLAG}")
    assert run.returncode == 1, run.stdout + run.stderr
    results = {r["host"]: r for r in json.loads(run.stdout)}
    canary = results[fleet.hosts(0)]
    assert canary["result"] == "rolled-back" and canary["restarted"], canary
    assert canary["from"] == before[0] and canary["bytes_sent"] > 0
    assert "unhealthy" in canary["message"] or "503" in canary["message"], canary
    for i in (1, 2):
        assert results[fleet.hosts(i)]["result"] == "skipped"
        assert results[fleet.hosts(i)]["bytes_sent"] == 0
    assert "in batches of 1+1+1 (--batch 1,50%, --max-fail 10%)" in run.stderr
    assert "stopping: 1 host(s) failed" in run.stderr
    # The canary is back where it was; the other hosts were never touched.
    assert fleet.current(0) == before[0] and fleet.health(0)["status"] == "ok"
    assert [snapshot(fleet, i) for i in (1, 2)] == untouched


def test_check_changes_nothing_and_plans_what_deploy_does(fleet, app_versions):
    app = other_version(fleet, 1, app_versions, "v4", "v2", "v3-fragile")
    before = [snapshot(fleet, i) for i in range(3)]
    run = fleet.fab("deploy", "--app", str(app), "--check", "--batch", "3", "--format", "json")
    assert run.returncode == 0, run.stdout + run.stderr
    plans = {r["host"]: r for r in json.loads(run.stdout)}
    assert [snapshot(fleet, i) for i in range(3)] == before  # byte-identical hosts
    plan = plans[fleet.hosts(1)]
    assert plan["result"] == "planned" and plan["bytes_sent"] == 0 and not plan["restarted"]
    assert plan["from"] == fleet.current(1) and plan["plan"]["action"] in ("install", "reuse")
    assert plan["plan"]["restart"] == ["bbq-rest.service"]
    assert plan["plan"]["health"].endswith("/healthz")
    assert f"[{fleet.hosts(1)}] would " in run.stderr  # the plan lines, on stderr here

    # The table's way: the plan lines on stdout, then the table.
    table = fleet.fab("deploy", "--app", str(app), "--check", hosts=fleet.hosts(1))
    assert table.returncode == 0, table.stdout + table.stderr
    assert f"[{fleet.hosts(1)}]   restart bbq-rest.service; check health" in table.stdout
    assert f"{fleet.hosts(1)}  {plan['from']}" in table.stdout and "planned" in table.stdout
    assert snapshot(fleet, 1) == before[1]

    # The deploy itself sends what the plan said, no more.
    deployed = fleet.fab("deploy", "--app", str(app), "--format", "json", hosts=fleet.hosts(1))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    (result,) = json.loads(deployed.stdout)
    assert result["result"] == "deployed" and result["to"] == plan["to"]
    assert result["bytes_sent"] == plan["plan"]["send_bytes"]
    assert f"sending {len(plan['plan']['send'])} wheel(s)" in deployed.stderr
    assert sorted(fleet.releases(1)) == sorted(
        {*(r for r in before_releases(before[1]) if r not in plan["plan"]["prune"]), plan["to"]}
    )

    # Going back and restarting, checked: plans, and the host stays as it is.
    after = snapshot(fleet, 1)
    for task, line in (
        ("rollback", f"would roll back {plan['to']} -> {plan['from']}"),
        ("restart", f"would restart on {plan['to']}"),
    ):
        checked = fleet.fab(task, "--check", "--format", "json", hosts=fleet.hosts(1))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"[{fleet.hosts(1)}] {line}" in checked.stderr
        (found,) = json.loads(checked.stdout)
        assert found["result"] == "planned" and found["plan"]["task"] == task
    assert snapshot(fleet, 1) == after


def before_releases(snap: str) -> list[str]:
    """The complete releases of a snapshot (those with a RELEASE file)."""
    found = []
    for line in snap.splitlines():
        path = line.split(" ", 1)[0]
        parts = path.split("/")
        if (
            len(parts) == 6
            and parts[:4] == ["", "opt", "bbq", "releases"]
            and parts[5] == "RELEASE"
        ):
            found.append(parts[4])
    return found


def test_status_as_json(fleet):
    run = fleet.fab("status", "--format", "json", "--batch", "100%")
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(run.stdout)
    assert [r["host"] for r in results] == [fleet.hosts(i) for i in range(3)]
    for i, result in enumerate(results):
        assert result["result"] == "ok" and result["from"] == result["to"] == fleet.current(i)
        assert result["message"] == "" and result["bytes_sent"] == 0
    assert "[rollout] status 3 host(s) in batches of 3" in run.stderr
