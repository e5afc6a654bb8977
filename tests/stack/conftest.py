"""Fixtures of the stack tests: the whole small cloud (tests/fixtures/heat.py, started once per
session and only when a test asks for it), flavors, images published with ``bake publish``,
and the ``bake`` command line pointed at the cloud."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bake.artifacts import Store  # noqa: E402
from tests.fixtures import heat as heat_fixtures  # noqa: E402

# heat_cloud, the session's cloud, is a plugin of tests/conftest.py (tests/fixtures/heat.py)
CLOUD_NAME = heat_fixtures.CLOUD_NAME

REPO = Path(_REPO)
BAKE = Path(sys.executable).parent / "bake"
SPECS = ("bbq-datastore", "bbq-spark", "bbq-rest", "bbq-streaming")
SCHEMA_IN_PACKAGE = "usr/lib/python3/dist-packages/cloudinit/config/schemas/"
SCHEMA_FILE = "schema-cloud-config-v1.json"
FLAVORS = {"m1.small": (2048, 1), "m1.medium": (4096, 2), "m1.large": (8192, 4)}


def run_bake(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """The installed ``bake`` from the repository, with ``env`` added to ours (without our
    OS_* variables)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    return subprocess.run(
        [str(BAKE), *args],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def heat_env(heat_cloud) -> dict[str, str]:
    """What ``bake`` needs to use the cloud: its clouds.yaml and cloud name."""
    return {"OS_CLIENT_CONFIG_FILE": str(heat_cloud.clouds_yaml()), "OS_CLOUD": CLOUD_NAME}


@pytest.fixture(scope="session")
def nova(heat_cloud):
    """python-novaclient for the tests' own checks, at compute API 2.3 (user data shown)."""
    from novaclient import client

    return client.Client("2.3", session=heat_cloud.session(), region_name="RegionOne")


@pytest.fixture(scope="session")
def flavors(nova) -> dict[str, str]:
    """{name: id} of the flavors the template's defaults name."""
    return {
        name: nova.flavors.create(name, ram, vcpus, 10).id for name, (ram, vcpus) in FLAVORS.items()
    }


def make_artifact(store: Store, name: str, version: str, work: Path):
    """A committed artifact of spec ``name`` holding a small real qcow2 image."""
    build_dir = store.new_build_dir(name)
    output = build_dir / "out"
    output.mkdir()
    image = output / f"{name}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    manifest = {
        "name": name,
        "version": version,
        "fingerprint": hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
        "spec": {
            "name": name,
            "version": version,
            "distro": "debian",
            "release": "bookworm",
            "arch": "amd64",
            "elements": ["bbq-base"],
        },
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dib_version": "3.43.0",
    }
    return store.commit(build_dir, output, manifest)


@pytest.fixture(scope="session")
def publish(heat_env, tmp_path_factory):
    """``publish(spec, version)``: make an artifact and ``bake publish`` it; its image id."""
    store = Store(tmp_path_factory.mktemp("store"))

    def do(name: str, version: str = "0.1.0") -> str:
        artifact = make_artifact(store, name, version, store.root)
        result = run_bake("publish", str(artifact.path), "--no-progress", env=heat_env)
        assert result.returncode == 0, result.stderr
        # "bake: NAME: published image ID (NAME-VERSION): ..."
        return result.stdout.split("published image ", 1)[1].split()[0]

    return do


@pytest.fixture(scope="session")
def published(publish, flavors) -> dict[str, str]:
    """{spec: image id}: one image of each role's spec, published with bake publish."""
    return {spec: publish(spec) for spec in SPECS}


@pytest.fixture(scope="session")
def cloud_config_schema(tmp_path_factory) -> dict:
    """cloud-init's cloud-config JSON schema, from Debian's cloud-init package."""
    installed = Path("/") / SCHEMA_IN_PACKAGE / SCHEMA_FILE
    if installed.is_file():
        return json.loads(installed.read_text())
    work = tmp_path_factory.mktemp("cloud-init")
    try:
        subprocess.run(
            ["apt-get", "download", "-q", "cloud-init"],
            cwd=work,
            check=True,
            capture_output=True,
            timeout=120,
        )
        deb = next(work.glob("cloud-init_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True, timeout=60)
    except (subprocess.SubprocessError, OSError, StopIteration) as exc:
        pytest.skip(f"cloud-init's schema unavailable (apt-get download cloud-init): {exc}")
    return json.loads((work / "x" / SCHEMA_IN_PACKAGE / SCHEMA_FILE).read_text())
