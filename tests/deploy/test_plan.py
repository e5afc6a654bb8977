"""What a deploy sends and installs on one host (bake.fleet.shipment.plan), from the host's state
alone: no host needed here; the same against real instances is in test_deploy.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bake.fleet import DeployError
from bake.fleet.hoststate import HostState
from bake.fleet.hoststate import host_extras as _host_extras
from bake.fleet.plans import deploy_plan, describe, rollback_plan
from bake.fleet.shipment import INSTALLER, INSTALLER_SHA256, Build, installer_wheel, plan
from bake.wheelhouse import Wheelhouse

WHEELS = (
    "bbq-0.2.0-py3-none-any.whl",
    "Flask-3.1.3-py3-none-any.whl",
    "oslo.config-9.4.0-py3-none-any.whl",
    "pymongo-4.6.0-cp311-cp311-manylinux_2_17_x86_64.whl",
)


def build() -> Build:
    house = Wheelhouse(Path("/nonexistent"), "0.2.0", "0.2.0-abc", WHEELS)
    hashes = {w: f"sha-{w}" for w in WHEELS}
    return Build(house, hashes, {w: 100 for w in WHEELS})


def state(pool=None, installed=None) -> HostState:
    return HostState(
        current="0.1.0-old",
        releases=("0.1.0-old",),
        pool=pool or {},
        units=("bbq-rest.service",),
        health_url=None,
        installed=installed or {},
    )


def test_clone_sends_the_app_and_what_differs_from_the_current_release():
    installed = {
        "bbq": "0.2.0",  # same version, other code: the app goes all the same
        "flask": "3.1.3",  # name normalized: Flask
        "oslo_config": "9.4.0",  # the wheel's name is oslo.config
        "pymongo": "4.5.0",  # another version
        "pandas": "2.2.0",  # not in the wheelhouse any more
        "pip": "23.0.1",  # the venv's own
        "setuptools": "66.1.1",
    }
    steps = plan(build(), state(installed=installed), "clone")
    assert steps.send == (WHEELS[0], WHEELS[3])
    assert steps.install == (WHEELS[0], WHEELS[3]) and steps.link == ()
    assert steps.remove == ("pandas",)
    assert steps.dependencies_changed


def test_the_pool_serves_wheels_with_the_same_hash_only():
    installed = {"flask": "3.1.3", "oslo.config": "9.4.0", "pymongo": "4.6.0"}
    pool = {WHEELS[0]: "sha-stale"}
    steps = plan(build(), state(pool=pool, installed=installed), "clone")
    assert steps.send == (WHEELS[0],) and steps.remove == ()
    assert not steps.dependencies_changed  # only the app: the base's check still holds
    steps = plan(build(), state(pool={WHEELS[0]: f"sha-{WHEELS[0]}"}, installed=installed), "clone")
    assert steps.send == () and steps.link == (WHEELS[0],)


def test_fresh_needs_every_wheel_installed_ones_too():
    installed = {"flask": "3.1.3", "oslo.config": "9.4.0", "pymongo": "4.6.0"}
    pool = {WHEELS[1]: f"sha-{WHEELS[1]}"}
    steps = plan(build(), state(pool=pool, installed=installed), "fresh")
    assert steps.link == (WHEELS[1],)
    assert steps.send == (WHEELS[0], WHEELS[2], WHEELS[3])
    assert steps.install == WHEELS


@pytest.mark.parametrize(
    ("text", "extras"),
    [(None, ()), ("", ()), ("\n", ()), ("stream\n", ("stream",)), ("b,a", ("a", "b"))],
)
def test_host_extras(text, extras):
    assert _host_extras(text) == extras


@pytest.mark.parametrize("text", ["stream;rm", "a, b", "a,,b", "[stream]"])
def test_bad_host_extras_name_the_file_and_value(text):
    with pytest.raises(DeployError, match=r"/etc/bbq/app-extras: .* is not a comma-separated"):
        _host_extras(text)


def test_a_clone_keeps_the_venvs_own_seeds():
    wheels = (*WHEELS, "setuptools-84.2.1-py3-none-any.whl")
    house = Wheelhouse(Path("/nonexistent"), "0.2.0", "0.2.0-abc", wheels)
    seeded = Build(house, {w: w for w in wheels}, {w: 1 for w in wheels})
    installed = {"flask": "3.1.3", "oslo.config": "9.4.0", "pymongo": "4.6.0"}
    steps = plan(seeded, state(installed={**installed, "setuptools": "66.1.1"}), "clone")
    assert steps.install == (WHEELS[0],) and steps.remove == ()
    steps = plan(seeded, state(installed=installed), "clone")  # none in the venv: installed
    assert steps.install == (WHEELS[0], wheels[-1])


def test_the_check_plan_of_a_deploy():
    installed = {"flask": "3.1.3", "oslo.config": "9.4.0", "pymongo": "4.5.0"}
    host = HostState(
        current="0.1.0-b",
        releases=("0.0.9-a", "0.1.0-old", "0.1.0-b"),
        pool={INSTALLER: INSTALLER_SHA256},
        units=("bbq-rest.service",),
        health_url="http://127.0.0.1:8780/healthz",
        installed=installed,
    )
    found = deploy_plan(build(), host, keep=3, mode="clone")
    assert (found["action"], found["from"], found["to"], found["back"]) == (
        "install",
        "0.1.0-b",
        "0.2.0-abc",
        "0.1.0-b",
    )
    assert found["send"] == [WHEELS[0], WHEELS[3]] and found["send_bytes"] == 200
    assert found["restart"] == ["bbq-rest.service"] and found["pip_check"]
    assert found["prune"] == ["0.0.9-a"]  # keep 3: the two newest and the new one
    text = describe(found)
    assert text.splitlines()[0] == (
        "would install 0.2.0-abc (clone) into /opt/bbq/releases/0.2.0-abc"
    )
    assert "send 2 wheel(s), 200B: bbq-0.2.0" in text
    assert "switch /opt/bbq/current: 0.1.0-b -> 0.2.0-abc" in text
    assert "restart bbq-rest.service; check health (http://127.0.0.1:8780/healthz)" in text
    assert "then remove 0.0.9-a" in text
    json.dumps(found)  # JSON-ready for --format json


def test_a_clone_sends_the_pinned_installer_once():
    """reinstall.py's pypa/installer wheel goes with the first clone to a host whose pool
    lacks it (or has other bytes under its name), and is in the --check plan then."""
    size = installer_wheel().stat().st_size
    for pool in ({}, {INSTALLER: "sha-other"}):
        found = deploy_plan(build(), state(pool=pool), keep=3, mode="clone")
        assert found["send"][-1] == INSTALLER and found["send_bytes"] == 400 + size
    found = deploy_plan(build(), state(pool={INSTALLER: INSTALLER_SHA256}), mode="clone")
    assert INSTALLER not in found["send"] and found["send_bytes"] == 400
    found = deploy_plan(build(), state(), mode="fresh")  # no reinstall.py: pip
    assert INSTALLER not in found["send"]


def test_the_check_plan_when_there_is_nothing_or_little_to_do():
    on_it = dataclasses.replace(state(), current="0.2.0-abc", releases=("0.1.0-old", "0.2.0-abc"))
    found = deploy_plan(build(), on_it)
    assert found["action"] == "nothing" and found["restart"] == [] and found["prune"] == []
    assert describe(found) == "already on 0.2.0-abc: nothing to do"
    installed = dataclasses.replace(state(), releases=("0.1.0-old", "0.2.0-abc"))
    found = deploy_plan(build(), installed)
    assert found["action"] == "reuse" and found["send"] == [] and found["install"] == []
    unconfirmed = dataclasses.replace(on_it, switching=("0.1.0-old", "0.2.0-abc"))
    found = deploy_plan(build(), unconfirmed)
    assert (found["action"], found["from"], found["back"]) == ("complete", "0.1.0-old", "0.1.0-old")
    back = rollback_plan(dataclasses.replace(state(), releases=("0.0.9", "0.1.0-old")))
    assert (back["from"], back["to"], back["prune"]) == ("0.1.0-old", "0.0.9", ["0.1.0-old"])
    with pytest.raises(DeployError, match="no release older than 0.1.0-old"):
        rollback_plan(state())
