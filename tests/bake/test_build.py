"""Real diskimage-builder builds of the default image (image-specs/base.yaml, plain
filesystem image): the artifact, its checksums and manifest, the up-to-date skip, and
interrupted builds that leave nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from bake import hostsys
from bake.artifacts import Artifact
from bake.hashing import tree_hash
from tests.support.cli import run_bake
from tests.support.paths import BAKE, REPO

pytestmark = pytest.mark.slow
SPEC = "image-specs/base.yaml"
BUILD_TIMEOUT = 1800


def host_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}


def assert_nothing_left(store: Path) -> None:
    """No artifact, no build directory, mount, loop device or chrooted process under store."""
    assert not (store / "bbq-base").exists() or not any((store / "bbq-base").iterdir())
    tmp = store / ".tmp"
    assert not tmp.exists() or not any(tmp.iterdir()), list(tmp.iterdir())
    assert hostsys.mounts_under(store) == []
    assert hostsys.loops_under(store) == []
    assert hostsys.processes_under(store) == []


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """diskimage-builder's download cache for this module's builds, empty at first: the
    first build fetches everything, the later ones show what the cache saves."""
    return tmp_path_factory.mktemp("image-cache")


@pytest.fixture(scope="module")
def built(tmp_path_factory, cache):
    store = tmp_path_factory.mktemp("store")
    env = {"DIB_IMAGE_CACHE": str(cache)}
    result = run_bake(
        "build", SPEC, "--plain", "--output", str(store), env=env, timeout=BUILD_TIMEOUT
    )
    assert result.returncode == 0, result.stderr[-4000:]
    fingerprint = run_bake("fingerprint", SPEC, "--plain").stdout.strip()
    return store, result, Artifact.load(store / "bbq-base" / fingerprint)


def test_build_reports_progress_by_phase(built):
    _, result, artifact = built
    for phase in ("root.d", "install.d", "finalise.d", "cleanup.d"):
        assert f"] {phase}" in result.stderr
    assert "built in" in result.stdout and str(artifact.path) in result.stdout
    log = (artifact.path / "build.log").read_text()
    assert "dib-run-parts Running" in log and "50-bbq-base" in log


def test_build_says_where_its_log_is_before_it_starts(built):
    store, result, _ = built
    lines = result.stderr.splitlines()
    [where] = [i for i, line in enumerate(lines) if line.startswith("bake: bbq-base: log: ")]
    first_phase = next(i for i, line in enumerate(lines) if "] root.d" in line)
    assert where < first_phase
    assert lines[where].endswith("/out/build.log") and str(store) in lines[where]


def test_build_boots_the_image_and_passes_its_smoke_checks(built):
    _, result, artifact = built
    assert "smoke: ok   sshd is running" in result.stderr
    assert artifact.manifest["status"] == "good"
    assert artifact.manifest["smoke"]["passed"] is True
    report = json.loads((artifact.path / "smoke-report.json").read_text())
    assert [c["name"] for c in report["checks"]] == [c["name"] for c in artifact.spec["smoke"]]
    assert all(c["passed"] for c in report["checks"])


def test_bake_test_reruns_the_checks_on_an_artifact(built):
    _, _, artifact = built
    result = run_bake("test", str(artifact.path), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bbq-base: ok   bbq service account exists" in result.stdout
    assert "smoke test passed" in result.stdout


@pytest.fixture(scope="module")
def broken(tmp_path_factory, cache, built):
    """A second build, after ``built`` in the same cache: a Debian image (a subset of the
    base image's packages) with one smoke check that cannot pass."""
    project = tmp_path_factory.mktemp("project")
    for name in ("elements", "image-specs"):
        shutil.copytree(REPO / name, project / name)
    (project / "image-specs" / "broken.yaml").write_text(
        "name: bbq-broken\nversion: '0.0.1'\ninclude: [common/debian.yaml]\n"
        "smoke:\n  - {name: impossible file, run: test -e /etc/bbq/no-such-file}\n"
    )
    store = project / "store"
    result = run_bake(
        "build",
        "image-specs/broken.yaml",
        "--plain",
        "--output",
        str(store),
        cwd=project,
        env={"DIB_IMAGE_CACHE": str(cache)},
        timeout=BUILD_TIMEOUT,
    )
    return store, result


def test_failing_smoke_check_is_never_marked_good(broken):
    store, result = broken
    assert result.returncode == 1, result.stderr[-3000:]
    assert "smoke: FAIL impossible file" in result.stderr
    assert "smoke test failed; image set aside, not in the store" in result.stderr
    assert not (store / "bbq-broken").exists()
    (failed,) = (store / ".failed").iterdir()
    report = json.loads((failed / "smoke-report.json").read_text())
    assert report["passed"] is False
    # Every check of the shared Debian include passes; only the impossible one fails.
    assert len(report["checks"]) > 1
    assert [c["name"] for c in report["checks"] if not c["passed"]] == ["impossible file"]
    assert (failed / "build.log").is_file() and (failed / "bbq-broken.qcow2").is_file()
    assert hostsys.mounts_under(store) == [] and hostsys.loops_under(store) == []


def test_artifact_files_checksums_and_qcow2(built):
    _, _, artifact = built
    names = set(artifact.files)
    assert {"bbq-base.qcow2", "bbq-base.tar", "bbq-base.vmlinuz", "bbq-base.initrd"} <= names
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=artifact.path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(": OK") == len(names)
    artifact.verify()
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(artifact.path / "bbq-base.qcow2")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert info["virtual-size"] > 500 * 2**20


def test_manifest_records_inputs_and_packages(built):
    _, _, artifact = built
    m = artifact.manifest
    assert m["name"] == "bbq-base" and m["version"] == "0.1.0"
    assert m["spec"]["partitioned"] is False
    assert m["elements"]["bbq-base"] == tree_hash(REPO / "elements" / "bbq-base")
    assert m["dib_version"]
    packages = {p["name"] for p in m["packages"]}
    assert {"openssh-server", "python3", "python3-venv", "cloud-init"} <= packages
    for name, info in m["files"].items():
        assert (artifact.path / name).stat().st_size == info["size"]
    assert m["total_size"] == sum(i["size"] for i in m["files"].values())
    assert m["build_seconds"] > 0 and "install.d" in m["phases"]


def test_our_element_is_inside_the_image(built):
    _, _, artifact = built
    with tarfile.open(artifact.path / "bbq-base.tar") as tar:
        members = {m.name.lstrip("./"): m for m in tar.getmembers()}
        image_conf = tar.extractfile(members["etc/bbq/image.conf"]).read().decode()
        passwd = tar.extractfile(members["etc/passwd"]).read().decode()
    assert "BBQ_IMAGE_NAME=bbq-base" in image_conf
    assert "BBQ_IMAGE_VERSION=0.1.0" in image_conf
    assert any(line.startswith("bbq:x:950:950:") for line in passwd.splitlines())
    releases = members["opt/bbq/releases"]
    assert releases.isdir() and releases.uid == 950


def test_build_left_nothing_mounted_or_attached(built):
    store, _, _ = built
    tmp = store / ".tmp"
    assert not tmp.exists() or not any(tmp.iterdir())
    assert hostsys.mounts_under(store) == [] and hostsys.loops_under(store) == []


def test_second_build_is_a_skip(built):
    store, _, artifact = built
    before = artifact.manifest["built_at"]
    result = run_bake("build", SPEC, "--plain", "--output", str(store))
    assert result.returncode == 0, result.stderr
    assert "up to date, not rebuilt" in result.stdout
    assert "root.d" not in result.stderr
    assert Artifact.load(artifact.path).manifest["built_at"] == before
    listing = run_bake("list", "--output", str(store))
    assert artifact.fingerprint[:12] in listing.stdout and "good" in listing.stdout


@pytest.mark.parametrize(
    ("signum", "phase"),
    [(signal.SIGINT, "install.d"), (signal.SIGTERM, "finalise.d")],
    ids=["sigint-in-chroot", "sigterm-with-loop-device"],
)
def test_interrupted_build_leaves_nothing(tmp_path, signum, phase, cache, built):
    store = tmp_path / "store"
    process = subprocess.Popen(
        [str(BAKE), "build", SPEC, "--plain", "--output", str(store)],
        cwd=REPO,
        env={**host_env(), "DIB_IMAGE_CACHE": str(cache)},
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    seen = []
    deadline = time.monotonic() + BUILD_TIMEOUT
    for line in process.stderr:
        seen.append(line)
        if f"] {phase}" in line or time.monotonic() > deadline:
            break
    assert f"] {phase}" in "".join(seen), "".join(seen)
    if phase == "finalise.d":
        assert hostsys.loops_under(store), "expected the image's loop device to be attached"
    assert hostsys.mounts_under(store), "expected the build to have mounts when interrupted"
    time.sleep(2)
    process.send_signal(signum)
    _, rest = process.communicate(timeout=300)
    assert process.returncode == 128 + signum, "".join(seen) + rest
    assert f"interrupted by {signal.Signals(signum).name}; nothing was kept" in rest
    assert_nothing_left(store)


def test_plain_builds_reuse_the_debs_of_earlier_builds(built, broken, cache):
    """diskimage-builder runs apt-get clean on the cache it bind-mounts: each build has its
    own cache slot, and what apt fetched goes back into the shared cache for the next. The
    module's first build (``built``) started from an empty cache; the second (``broken``),
    whose packages are a subset of the first's, fetches next to nothing."""
    from bake.matrix import apt_fetched_bytes

    _, _, first = built
    store, _ = broken
    (failed,) = (store / ".failed").iterdir()
    logs = [first.path / "build.log", failed / "build.log"]
    first_fetched, second_fetched = (
        apt_fetched_bytes(log.read_text(errors="replace")) for log in logs
    )
    debs = list((cache / "apt").rglob("*.deb"))
    assert len(debs) > 20, "the shared cache keeps the .deb files apt fetched"
    assert first_fetched > 10 * 2**20 and first.manifest["cache_new_bytes"] > 10 * 2**20
    assert second_fetched < first_fetched / 20, (first_fetched, second_fetched)
    assert not any((cache / ".bake-slots").iterdir()), "no slot is left behind"
    # The first build's bootstrapped root, cached whole, is where the second one started.
    assert "Caching debootstrap result" in logs[0].read_text(errors="replace")
    assert "found in cache. Using." in logs[1].read_text(errors="replace")
    assert list(cache.glob("debootstrap-debian-bookworm-*.tar.gz"))
