"""Fixtures for the deploy tests: three instances of the bbq-rest image (real sshd, real
systemd, the image's own bbq-rest service), booted once per session; app versions to ship."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bake.fleet.shipment import build_wheelhouse
from bake.instances import unpacked_rootfs
from tests.deploy.fleet import Fleet, app_variant


@pytest.fixture(scope="session")
def rest_rootfs(request, tmp_path_factory):
    """The bbq-rest image's root filesystem, unpacked once.

    ``BBQ_DEPLOY_ROOTFS`` names an already unpacked one (a developer's shortcut past the
    session's image build); CI leaves it unset and builds the image.
    """
    given = os.environ.get("BBQ_DEPLOY_ROOTFS")
    if given:
        return Path(given)
    artifact = request.getfixturevalue("rest_artifact")
    return unpacked_rootfs(artifact.tar_file(), tmp_path_factory.mktemp("rest-rootfs") / "r")


@pytest.fixture(scope="session")
def fleet(rest_rootfs, app_versions, tmp_path_factory):
    """Three booted bbq-rest instances, shared by the deploy tests (each test reads the state
    it starts from)."""
    with Fleet.boot(rest_rootfs, tmp_path_factory.mktemp("fleet"), count=3) as booted:
        booted.markers.update(VARIANTS.values())
        yield booted


# The app versions the tests ship: name -> (version, marker: fleet.health()'s name for it).
# The fragile one is deployed where a test flags the host unhealthy (UNHEALTHY_FLAG).
VARIANTS = {
    "v2": ("0.2.0", "v2"),
    "v3-fragile": ("0.3.0", "v3"),
    "v4": ("0.4.0", "v4"),
}


@pytest.fixture(scope="session")
def app_versions(tmp_path_factory):
    """``app_versions(name)``: the app copy for a VARIANTS name, its wheelhouse built (once,
    in the background while the instances boot)."""
    root = tmp_path_factory.mktemp("apps")
    for name, (version, marker) in VARIANTS.items():
        app_variant(root / name, version, marker)
    errors = []

    def build():
        for name in VARIANTS:
            try:
                build_wheelhouse(root / name)
            except Exception as exc:  # reported when a test asks for the version
                errors.append(exc)

    builder = threading.Thread(target=build, daemon=True)
    builder.start()

    def get(name):
        builder.join()
        if errors:
            raise errors[0]
        return root / name

    return get


@pytest.fixture(scope="session")
def nova_cloud(tmp_path_factory):
    """A real Keystone whose catalog's ``compute`` service is the FAKE Nova server listing
    (tests/fixtures/fake_nova.py); yields (FakeNova, env for clouds.yaml)."""
    from tests.fixtures.fake_nova import FakeNova
    from tests.fixtures.openstack import OpenStack

    with OpenStack(tmp_path_factory.mktemp("openstack")) as cloud:
        nova = FakeNova().start()
        try:
            cloud.register_service("compute", "nova", nova.url)
            env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
            env["OS_CLIENT_CONFIG_FILE"] = str(cloud.clouds_yaml())
            yield nova, env
        finally:
            nova.stop()
