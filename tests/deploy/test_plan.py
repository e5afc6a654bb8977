"""What a deploy sends and installs on one host (bake.fleet.shipment.plan), from the host's state
alone: no host needed here; the same against real instances is in test_deploy.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from bake.fleet import DeployError
from bake.fleet.hoststate import HostState
from bake.fleet.hoststate import host_extras as _host_extras
from bake.fleet.shipment import Build, plan
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
