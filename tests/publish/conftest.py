"""Fixtures for the publish tests: one real Keystone + Glance per session (plus the fake Nova
in its catalog), and real qcow2 artifacts committed to a real artifact store."""

from __future__ import annotations

import datetime
import hashlib
import os
import uuid

import pytest

from bake.artifacts import Artifact, Store
from bake.cloud import auth
from tests.fixtures.fake_nova import FakeNova
from tests.fixtures.openstack import CLOUD_NAME, OpenStack
from tests.publish.helpers import make_qcow2


@pytest.fixture(scope="session")
def openstack(tmp_path_factory):
    """Keystone + Glance on 127.0.0.1, started once; a clouds.yaml at ``openstack.dir``."""
    with OpenStack(tmp_path_factory.mktemp("openstack")) as servers:
        servers.clouds_yaml()
        yield servers


@pytest.fixture(scope="session")
def fake_nova(openstack):
    """The FAKE compute API (tests/fixtures/fake_nova.py), in the catalog as ``compute``."""
    nova = FakeNova().start()
    openstack.register_service("compute", "nova", nova.url)
    yield nova
    nova.stop()


@pytest.fixture
def clouds_env(openstack, monkeypatch):
    """Point openstacksdk's loader at the test clouds.yaml, with no OS_* credentials set."""
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(openstack.dir / "clouds.yaml"))
    return openstack.dir / "clouds.yaml"


@pytest.fixture
def cloud(clouds_env) -> auth.Cloud:
    return auth.connect(cloud=CLOUD_NAME)


@pytest.fixture
def glance_client(openstack):
    """A plain python-glanceclient v2 for the tests' own checks (not the code under test)."""
    from glanceclient import client

    return client.Client("2", session=openstack.admin_session(), region_name="RegionOne")


def spec_dict(name: str, version: str, **overrides) -> dict:
    """The dict form of a spec, as an artifact's manifest holds it."""
    spec = {
        "name": name,
        "version": version,
        "distro": "debian",
        "release": "bookworm",
        "arch": "amd64",
        "elements": ["bbq-base"],
        "glance": {
            "min_ram": 2048,
            "os_version": "12",
            "visibility": "private",
            "properties": {"hw_qemu_guest_agent": "yes", "hw_disk_bus": "scsi"},
        },
        "sahara": {
            "username": "debian",
            "description": "Big Data BBQ Spark image",
            "tags": ["spark", "3.5.1"],
        },
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def make_artifact(tmp_path):
    """``make_artifact(name=..., version=..., mib=...)``: a committed artifact with a fresh
    fingerprint (so each test's images are its own) and a real qcow2 disk image."""
    store = Store(tmp_path / "store")

    def make(name: str | None = None, version: str = "1.0.0", mib: int = 4, **spec) -> Artifact:
        name = name or f"bbq-t{uuid.uuid4().hex[:8]}"
        build_dir = store.new_build_dir(name)
        output = build_dir / "out"
        output.mkdir()
        make_qcow2(output / f"{name}.qcow2", mib)
        manifest = {
            "name": name,
            "version": version,
            "fingerprint": hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
            "spec": spec_dict(name, version, **spec),
            "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "dib_version": "3.43.0",
        }
        return store.commit(build_dir, output, manifest)

    return make
