"""``fab deploy`` and friends against real sshd and systemd in instances of our bbq-rest image.

The instances are shared (session fixture ``fleet``); each test reads the state it starts
from, so the tests hold whatever order they run in.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from bake.fleet.shipment import INSTALLER, installer_wheel
from tests.deploy.fleet import FAB, REPO, UNHEALTHY_FLAG

pytestmark = pytest.mark.slow


def rows(output: str) -> dict[str, list[str]]:
    """The final table of a fab run: {host: [from, to, result, time, sent]}."""
    table = output[output.rindex("host ") :].splitlines()[2:]
    return {line.split()[0]: line.split()[1:] for line in table if line.strip()}


def test_fab_lists_the_tasks():
    out = subprocess.run([str(FAB), "-l"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in ("deploy", "rollback", "status", "restart", "releases"):
        assert re.search(rf"^\s+{name}\s", out.stdout, re.M), out.stdout


def test_deploy_new_version_everywhere(fleet, app_versions):
    app = app_versions("v2")
    before = [fleet.current(i) for i in range(3)]
    pids = [fleet.main_pid(i) for i in range(3)]
    # reinstall.py's pinned pypa/installer wheel goes once to a host whose pool lacks it.
    helper = [
        0
        if INSTALLER in fleet.sh(i, "ls /opt/bbq/wheels || true")
        else installer_wheel().stat().st_size
        for i in range(3)
    ]
    run = fleet.fab("deploy", "--app", str(app), "--batch", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    table = rows(run.stdout)
    for i in range(3):
        release = fleet.current(i)
        assert release.startswith("0.2.0-") and release != before[i]
        assert fleet.health(i) == {"status": "ok", "marker": "v2"}  # the new code answers
        assert fleet.main_pid(i) != pids[i]  # restarted
        assert before[i] in fleet.releases(i)  # the old release is kept for rollback
        host = fleet.hosts(i)
        assert table[host][:3] == [before[i], release, "deployed"]
        assert f"[{host}] switched to {release}" in run.stdout  # output prefixed per host
        # Only the app's own wheel travelled (every dependency is already on the host).
        sent = table[host][4]
        assert sent.endswith("KiB") and float(sent[:-3]) < 200 + helper[i] / 1024, sent
        assert INSTALLER in fleet.sh(i, "ls /opt/bbq/wheels || true")
        assert fleet.sh(i, "stat -c %U /opt/bbq/current/RELEASE") == "bbq"


def test_second_identical_deploy_sends_and_restarts_nothing(fleet, app_versions):
    app = app_versions("v2")
    first = fleet.fab("deploy", "--app", str(app), "--batch", "3")  # (already there, or now)
    assert first.returncode == 0, first.stdout + first.stderr
    pids = [fleet.main_pid(i) for i in range(3)]
    pools = [fleet.pool(i) for i in range(3)]
    second = fleet.fab("deploy", "--app", str(app), "--batch", "3")
    assert second.returncode == 0, second.stdout + second.stderr
    table = rows(second.stdout)
    for i in range(3):
        assert table[fleet.hosts(i)][2] == "unchanged" and table[fleet.hosts(i)][4] == "0B"
        assert fleet.main_pid(i) == pids[i]
        assert fleet.pool(i) == pools[i]


def test_failing_health_rolls_back_that_host_and_stops_the_rollout(fleet, app_versions):
    app = app_versions("v3-fragile")
    before = [fleet.current(i) for i in range(3)]
    markers = [fleet.health(i)["marker"] for i in range(3)]
    untouched = (fleet.releases(2), fleet.pool(2), fleet.main_pid(2))
    fleet.sh(1, f"touch {UNHEALTHY_FLAG}")
    try:
        run = fleet.fab(
            "deploy",
            "--app",
            str(app),
            "--batch",
            "1",
            "--health-timeout",
            "15",
            hosts=fleet.hosts(0, 1, 2),
        )
    finally:
        fleet.sh(1, f"rm -f {UNHEALTHY_FLAG}")
    assert run.returncode != 0
    assert "not ok" in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    table = rows(run.stdout)
    assert table[fleet.hosts(0)][2] == "deployed"
    assert fleet.health(0)["marker"] == "v3"
    # The unhealthy host is back on its old release, serving the old code, bad release gone.
    assert table[fleet.hosts(1)][2] == "rolled-back"
    assert fleet.current(1) == before[1]
    assert fleet.health(1) == {"status": "ok", "marker": markers[1]}
    assert not [r for r in fleet.releases(1) if r.startswith("0.3.0-")]
    # The next batch never started.
    assert table[fleet.hosts(2)][2] == "skipped"
    assert fleet.current(2) == before[2]
    assert (fleet.releases(2), fleet.pool(2), fleet.main_pid(2)) == untouched


def test_failure_before_the_switch_leaves_the_host_untouched(fleet, app_versions):
    # The host runs one more bbq unit, whose program the new release does not have.
    unit = "/etc/systemd/system/bbq-extra.service"
    fleet.sh(
        2,
        f"printf '[Service]\\nExecStart=/opt/bbq/current/bin/bbq-extra\\n"
        f"[Install]\\nWantedBy=multi-user.target\\n' > {unit} && systemctl daemon-reload && "
        "systemctl enable -q bbq-extra.service",
    )
    before = (fleet.current(2), fleet.releases(2), fleet.main_pid(2), fleet.pool(2))
    try:
        run = fleet.fab("deploy", "--app", str(app_versions("v3-fragile")), hosts=fleet.hosts(2))
    finally:
        fleet.sh(
            2, f"systemctl disable -q bbq-extra.service; rm -f {unit}; systemctl daemon-reload"
        )
    assert run.returncode != 0
    assert "bbq-extra.service: bin/bbq-extra missing in the new release" in run.stdout
    assert rows(run.stdout)[fleet.hosts(2)][2] == "failed"
    assert (fleet.current(2), fleet.releases(2), fleet.main_pid(2), fleet.pool(2)) == before
    assert fleet.health(2)["status"] == "ok"


def test_rollback_and_status(fleet, app_versions):
    v2, v3 = app_versions("v2"), app_versions("v3-fragile")
    for app in (v3, v2):  # healthy here: no unhealthy flag on this host
        run = fleet.fab("deploy", "--app", str(app), hosts=fleet.hosts(0))
        assert run.returncode == 0, run.stdout + run.stderr
    new = fleet.current(0)
    assert new.startswith("0.2.0-") and fleet.health(0)["marker"] == "v2"
    status = fleet.fab("status", hosts=fleet.hosts(0))
    assert status.returncode == 0
    assert f"current {new}" in status.stdout and "healthy" in status.stdout
    run = fleet.fab("rollback", hosts=fleet.hosts(0))
    assert run.returncode == 0, run.stdout + run.stderr
    old = fleet.current(0)
    assert old.startswith("0.3.0-") and fleet.health(0)["marker"] == "v3"
    assert new not in fleet.releases(0)
    listed = fleet.fab("releases", hosts=fleet.hosts(0))
    assert f"[{fleet.hosts(0)}] {old} *" in listed.stdout
    status = fleet.fab("status", hosts=fleet.hosts(0))
    assert f"current {old}" in status.stdout


def test_restart(fleet):
    pid = fleet.main_pid(1)
    run = fleet.fab("restart", hosts=fleet.hosts(1))
    assert run.returncode == 0, run.stdout + run.stderr
    assert fleet.main_pid(1) != pid
    assert fleet.health(1)["status"] == "ok"


def test_keep_last_releases(fleet, app_versions):
    v2, v3 = app_versions("v2"), app_versions("v3-fragile")
    for app, mode in ((v3, "fresh"), (v2, "clone")):
        run = fleet.fab(
            "deploy", "--app", str(app), "--keep", "2", "--mode", mode, hosts=fleet.hosts(2)
        )
        assert run.returncode == 0, run.stdout + run.stderr
        if mode == "fresh":  # a new venv installed offline from the wheels alone
            assert f"({mode}) offline" in run.stdout or "reusing it" in run.stdout
            assert fleet.health(2)["marker"] == "v3"
            assert "Version: 0.3.0" in fleet.sh(2, "/opt/bbq/current/bin/pip show bbq")
    releases = fleet.releases(2)
    assert sorted(r.split("-")[0] for r in releases) == ["0.2.0", "0.3.0"], releases
    assert fleet.current(2).startswith("0.2.0-")


def test_host_keys_are_checked(fleet, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    refused = fleet.fab("status", known_hosts=empty, hosts=fleet.hosts(0))
    assert refused.returncode != 0 and "host key not in known_hosts" in refused.stdout
    accepted = fleet.fab(
        "status", "--accept-new-host-keys", known_hosts=empty, hosts=fleet.hosts(0)
    )
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    recorded = empty.read_text().split()
    assert recorded[1:] == fleet.known_hosts.read_text().splitlines()[0].split()[1:]
    # A changed key is refused even with --accept-new-host-keys.
    wrong = fleet.known_hosts.read_text().splitlines()[1].split()[1:]
    empty.write_text(" ".join([recorded[0], *wrong]) + "\n")
    changed = fleet.fab("status", "--accept-new-host-keys", known_hosts=empty, hosts=fleet.hosts(0))
    assert changed.returncode != 0 and "BadHostKeyException" in changed.stdout


@pytest.mark.parametrize(
    ("hosts", "args", "message"),
    [
        ("127.0.0.1:99999", [], "bad port in host"),
        (None, ["--app", "/nonexistent"], "not an app directory"),
        (None, ["--batch", "0"], "--batch must be comma-separated numbers of hosts"),
        (None, ["--mode", "rsync"], "--mode must be one of"),
        (None, ["--keep", "1"], "--keep must be a whole number, at least 2"),
        (None, ["--batch", "20x"], "--batch must be"),
    ],
)
def test_bad_input_is_one_line_and_touches_nothing(fleet, hosts, args, message):
    before = (fleet.releases(0), fleet.main_pid(0))
    run = fleet.fab("deploy", *args, hosts=hosts or fleet.hosts(0))
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], run.stderr
    assert (fleet.releases(0), fleet.main_pid(0)) == before
