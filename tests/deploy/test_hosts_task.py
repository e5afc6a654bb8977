"""``fab hosts``: the hosts a task would reach, resolved and printed, none connected to."""

from __future__ import annotations

import json
import os
import subprocess
import time

from tests.support.paths import FAB, REPO


def fab(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    return subprocess.run(
        [str(FAB), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_hosts_from_h_as_json_and_table():
    # TEST-NET addresses: fab hosts resolves them and connects to none.
    given = "root@192.0.2.10:2222,debian@192.0.2.11"
    listed = fab("-H", given, "hosts", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {"name": "-", "address": "192.0.2.10", "port": 2222, "user": "root"},
        {"name": "-", "address": "192.0.2.11", "port": 22, "user": "debian"},
    ]
    table = fab("-H", given, "hosts")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["name", "address", "port", "user"]
    assert len(table.stdout.splitlines()) == 4


def test_hosts_refuses_options_it_does_not_take():
    result = fab("-H", "192.0.2.10", "hosts", "--batch", "2")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def test_fab_against_a_silent_keystone_ends_in_one_line(tmp_path):
    """A Keystone that accepts TCP and never answers: fab ends within the cloud's
    api_timeout (clouds.yaml) with one line naming the URL, instead of hanging."""
    from tests.publish.helpers import SilentServer

    with SilentServer() as silent:
        clouds = tmp_path / "clouds.yaml"
        clouds.write_text(
            "clouds:\n  hung:\n    api_timeout: 2\n    auth:\n"
            f"      auth_url: {silent.url}/v3\n      username: u\n      password: p\n"
            "      project_name: p\n      user_domain_name: Default\n"
            "      project_domain_name: Default\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["OS_CLIENT_CONFIG_FILE"] = str(clouds)
        started = time.monotonic()
        result = subprocess.run(
            [str(FAB), "hosts", "--stack", "bbq", "--os-cloud", "hung"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        seconds = time.monotonic() - started
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and silent.url in lines[0], result.stderr
    assert seconds < 60, seconds
