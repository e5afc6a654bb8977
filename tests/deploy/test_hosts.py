"""``fab deploy`` on hosts as they come: images whose wheel pool was emptied, app extras,
a sudoer instead of root, two deploys at once, and a connection dropped mid-switch (real
sshd and systemd in instances of our bbq-rest image; the shared ``fleet`` fixture)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from bake.fleet.layout import DEFAULT as LAYOUT
from bake.fleet.shipment import INSTALLER, build_wheelhouse
from tests.deploy.fleet import FAB, REPO
from tests.deploy.test_deploy import rows

LOCK, SWITCHING = LAYOUT.lock, LAYOUT.switching

pytestmark = pytest.mark.slow


def other_version(fleet, index, app_versions, *names):
    """The first app of ``names`` whose version the host does not run now."""
    current = fleet.current(index)
    for name in names:
        app = app_versions(name)
        if not current.startswith(build_wheelhouse(app).house.version + "-"):
            return app
    raise AssertionError(f"host {index} runs every one of {names}")


def test_emptied_pool_sends_only_what_the_current_release_lacks(fleet, app_versions):
    app = other_version(fleet, 1, app_versions, "v4", "v2")
    house = build_wheelhouse(app).house
    # An earlier test may have left this version's release on the host: deploy would switch
    # to it and send nothing. Remove it so the release is built from what is sent.
    for release in fleet.releases(1):
        if release.startswith(house.version + "-"):
            fleet.sh(1, f"rm -rf /opt/bbq/releases/{release}")
    fleet.sh(1, "rm -f /opt/bbq/wheels/*.whl /opt/bbq/wheels/.sha256.json")
    listed = fleet.sh(
        1, "/opt/bbq/current/bin/python -m pip list --format=json --disable-pip-version-check"
    )
    have = {canonicalize_name(d["name"]): Version(d["version"]) for d in json.loads(listed)}
    seeds = {"pip", "setuptools", "wheel"}  # the venv's own: kept at the version it has
    expected = sorted(
        w
        for w, (name, version, *_) in ((w, parse_wheel_filename(w)) for w in house.wheels)
        if name == "bbq" or (have.get(name) != version and not (name in seeds and name in have))
    )
    run = fleet.fab("deploy", "--app", str(app), hosts=fleet.hosts(1))
    assert run.returncode == 0, run.stdout + run.stderr
    # The emptied pool also lost reinstall.py's pinned pypa/installer wheel: sent again.
    sent = sorted([*expected, INSTALLER])
    assert f"sending {len(sent)} wheel(s)" in run.stdout
    # What was sent joined the emptied pool: exactly the wheels the release lacked.
    assert sorted(fleet.sh(1, "ls /opt/bbq/wheels").split()) == sent
    assert expected[0].startswith("bbq-") and len(expected) < len(house.wheels) / 2
    assert fleet.health(1)["marker"] == fleet.markers[house.version]


def test_app_extras_of_the_host(fleet, app_versions):
    app = other_version(fleet, 2, app_versions, "v4", "v2")
    original = fleet.sh(2, "cat /etc/bbq/app-extras 2>/dev/null || true")
    before = (fleet.current(2), fleet.releases(2), fleet.main_pid(2))
    try:
        fleet.sh(2, "echo 'stream;x' > /etc/bbq/app-extras")
        bad = fleet.fab("deploy", "--app", str(app), hosts=fleet.hosts(2))
        assert bad.returncode != 0
        assert "/etc/bbq/app-extras: 'stream;x' is not a comma-separated list" in bad.stdout
        assert (fleet.current(2), fleet.releases(2), fleet.main_pid(2)) == before
        fleet.sh(2, "echo stream > /etc/bbq/app-extras")
        run = fleet.fab("deploy", "--app", str(app), hosts=fleet.hosts(2))
        assert run.returncode == 0, run.stdout + run.stderr
        assert "installing bbq[stream]" in run.stdout
        fleet.sh(2, "/opt/bbq/current/bin/python -c 'import pyarrow, pandas'")
        assert fleet.health(2)["status"] == "ok"
    finally:
        fleet.sh(2, f"printf '%s\\n' '{original}' > /etc/bbq/app-extras")


def test_deploy_as_a_sudoer(fleet, app_versions):
    fleet.sh(
        0,
        # Password '*': none, yet not a locked account (sshd refuses those without PAM).
        "id deployer >/dev/null 2>&1 || useradd -m -p '*' -s /bin/bash deployer; "
        "install -d -m 700 -o deployer -g deployer ~deployer/.ssh; "
        "install -m 600 -o deployer -g deployer /root/.ssh/authorized_keys ~deployer/.ssh/; "
        "echo 'deployer ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deployer; "
        "chmod 440 /etc/sudoers.d/deployer",
    )
    app = other_version(fleet, 0, app_versions, "v2", "v4")
    host = f"deployer@{fleet.hosts(0)}"
    run = fleet.fab("deploy", "--app", str(app), hosts=host)
    assert run.returncode == 0, run.stdout + run.stderr
    assert rows(run.stdout)[fleet.hosts(0)][2] == "deployed"
    release = fleet.current(0)
    assert release == rows(run.stdout)[fleet.hosts(0)][1]
    assert fleet.sh(0, f"find /opt/bbq/releases/{release} ! -user bbq | wc -l") == "0"
    assert fleet.sh(0, "ls -A /opt/bbq | grep -c incoming || true") == "0"
    status = fleet.fab("status", hosts=host)
    assert status.returncode == 0 and f"current {release}" in status.stdout


def test_a_second_deploy_to_a_host_fails_and_changes_nothing(fleet, app_versions):
    first_app = other_version(fleet, 0, app_versions, "v2", "v4")
    second_app = app_versions("v3-fragile")
    before = set(fleet.releases(0))
    ssh = fleet.ssh_args()
    first = subprocess.Popen(
        [str(FAB), "-H", fleet.hosts(0), "deploy", *ssh, "--app", str(first_app)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while fleet.instances[0].run(f"flock -n {LOCK} true").exited == 0:
            assert first.poll() is None, "the first deploy ended before it was seen holding"
            time.sleep(0.05)
        second = fleet.fab("deploy", "--app", str(second_app), hosts=fleet.hosts(0))
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, out + err
    assert second.returncode != 0
    assert f"another deploy holds this host's lock {LOCK}" in second.stdout, second.stdout
    assert "sending" not in second.stdout
    new = rows(out)[fleet.hosts(0)][1]
    assert fleet.current(0) == new
    assert set(fleet.releases(0)) <= before | {new}


def start_and_kill_after_the_switch(fleet, index, app, kill_on_host: bool):
    """Run fab deploy; once current points elsewhere, kill fab (the SSH client: the connection
    drops) and with ``kill_on_host`` the switch script on the host too. The new release."""
    ssh = fleet.ssh_args()
    before = fleet.current(index)
    deploy = subprocess.Popen(
        [str(FAB), "-H", fleet.hosts(index), "deploy", *ssh, "--app", str(app)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with fleet.instances[index].connection() as c:
            while True:
                current = c.run("basename $(readlink /opt/bbq/current)").stdout.strip()
                if current != before:
                    break
                assert deploy.poll() is None, "fab ended before the switch was seen"
                time.sleep(0.03)
            deploy.kill()
            if kill_on_host:
                # ([b]ash: the pattern does not match the shell running pkill itself)
                c.run(f"pkill -KILL -f '[b]ash -s -- {current} '")
    finally:
        deploy.kill()
        deploy.wait()
    assert deploy.returncode < 0, "fab was not killed mid-switch"
    return current


def test_connection_dropped_after_the_switch(fleet, app_versions):
    app = other_version(fleet, 2, app_versions, "v2", "v4")
    new = start_and_kill_after_the_switch(fleet, 2, app, kill_on_host=False)
    # The host finished the switch on its own; status waits for it and reports it.
    status = fleet.fab("status", hosts=fleet.hosts(2))
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"current {new}" in status.stdout and "healthy" in status.stdout
    assert fleet.sh(2, f"test -e {SWITCHING} && echo marker || echo none") == "none"
    again = fleet.fab("deploy", "--app", str(app), hosts=fleet.hosts(2))
    assert again.returncode == 0 and rows(again.stdout)[fleet.hosts(2)][2] == "unchanged"


def test_switch_killed_on_the_host_is_completed_by_the_next_deploy(fleet, app_versions):
    app = other_version(fleet, 2, app_versions, "v2", "v4")
    new = start_and_kill_after_the_switch(fleet, 2, app, kill_on_host=True)
    status = fleet.fab("status", hosts=fleet.hosts(2))
    assert status.returncode != 0
    assert f"current {new}" in status.stdout and "not confirmed healthy" in status.stdout
    again = fleet.fab("deploy", "--app", str(app), hosts=fleet.hosts(2))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "completing the unconfirmed switch" in again.stdout
    assert rows(again.stdout)[fleet.hosts(2)][1:3] == [new, "deployed"]
    assert fleet.sh(2, f"test -e {SWITCHING} && echo marker || echo none") == "none"
    status = fleet.fab("status", hosts=fleet.hosts(2))
    assert status.returncode == 0 and "healthy" in status.stdout
