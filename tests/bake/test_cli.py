"""The bake CLI without building: dry runs, listings, refusals before any work."""

from __future__ import annotations

import json
import shlex

import pytest

from bake import build
from bake.artifacts import Store
from bake.spec import spec_files
from tests.support.cli import MIRROR_ENV, run_bake, table_rows
from tests.support.paths import REPO


def test_dry_run_prints_the_exact_command_and_environment(tmp_path):
    result = run_bake(
        "build",
        "image-specs/base.yaml",
        "--plain",
        "--dry-run",
        "--output",
        str(tmp_path),
        env=MIRROR_ENV,
    )
    assert result.returncode == 0, result.stderr
    fingerprint = run_bake("fingerprint", "image-specs/base.yaml", "--plain", env=MIRROR_ENV)
    fp = fingerprint.stdout.strip()
    lines = result.stdout.splitlines()
    assert lines[0] == f"# bbq-base 0.1.0  fingerprint {fp}"
    assert "  DIB_RELEASE=bookworm \\" in lines
    assert "  DIB_DISTRIBUTION_MIRROR=http://mirror.invalid/debian \\" in lines
    assert f"  ELEMENTS_PATH={REPO / 'elements'} \\" in lines
    command = shlex.split(lines[-1])
    assert command[:3] == ["disk-image-create", "-a", "amd64"]
    assert command[command.index("-o") + 1] == str(tmp_path / "bbq-base" / fp / "bbq-base")
    assert command[command.index("-t") + 1] == "qcow2,tar"
    assert command[-6:] == [
        "debian-minimal",
        "baremetal",
        "bbq-base",
        "openssh-server",
        "cloud-init",
        "cloud-init-datasources",
    ]
    assert not tmp_path.joinpath("bbq-base").exists()


def test_partitioned_choice_changes_elements_and_fingerprint():
    plain = run_bake("build", "image-specs/base.yaml", "--plain", "--dry-run", env=MIRROR_ENV)
    disk = run_bake("build", "image-specs/base.yaml", "--dry-run", env=MIRROR_ENV)
    assert " baremetal " in plain.stdout and " vm " not in plain.stdout
    assert " vm " in disk.stdout and " baremetal " not in disk.stdout
    assert plain.stdout.splitlines()[0] != disk.stdout.splitlines()[0]


def test_partitioned_build_without_device_mapper_is_refused(tmp_path, monkeypatch, capsys):
    from bake import cli

    monkeypatch.setattr(build, "DEVICE_MAPPER", tmp_path / "no-device-mapper")
    monkeypatch.chdir(REPO)
    for key, value in MIRROR_ENV.items():
        monkeypatch.setenv(key, value)
    code = cli.main(["build", "image-specs/base.yaml", "--output", str(tmp_path / "store")])
    assert code == 2
    err = capsys.readouterr().err
    assert "needs device-mapper" in err and "--plain" in err
    assert not (tmp_path / "store" / "bbq-base").exists()


def test_fingerprint_json_lists_every_input():
    result = run_bake("fingerprint", "image-specs/base.yaml", "--plain", "--json", env=MIRROR_ENV)
    data = json.loads(result.stdout)
    assert set(data) == {
        "fingerprint",
        "format",
        "spec",
        "elements",
        "environment",
        "dib_version",
        "app",
    }
    assert data["spec"]["name"] == "bbq-base" and "bbq-base" in data["elements"]


def test_list_of_an_empty_store_and_json(tmp_path):
    result = run_bake("list", "--output", str(tmp_path))
    assert result.returncode == 0 and "no artifacts" in result.stdout
    result = run_bake("list", "--output", str(tmp_path), "--json")
    assert json.loads(result.stdout) == []


def test_missing_spec_file_is_a_clear_error(tmp_path):
    result = run_bake("build", "image-specs/nope.yaml", "--output", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: image-specs/nope.yaml: file not found"
    assert not any(Store(tmp_path).artifacts())


@pytest.mark.parametrize("spec", [p.name for p in spec_files(REPO / "image-specs")], ids=str)
def test_every_project_spec_dry_runs(spec):
    """Every spec resolves to a disk-image-create command, the ones that cannot be built
    here (datastore: MongoDB's repository does not answer) included."""
    result = run_bake("build", f"image-specs/{spec}", "--plain", "--dry-run", env=MIRROR_ENV)
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout.splitlines()[-1])
    assert command[0] == "disk-image-create" and command[-1] != "baremetal"
    if "app: true" in (REPO / "image-specs" / spec).read_text():
        assert "DIB_BBQ_RELEASE=0.1.0-" in result.stdout


def test_builds_sharing_a_cache_wait_for_each_other_and_stop_cleanly(tmp_path):
    """A second build waits for the download cache (DIB's apt cache cannot be shared by
    two builds at once), says so, and an interrupt while it waits leaves nothing."""
    import fcntl
    import os
    import signal
    import subprocess

    from tests.support.paths import BAKE

    cache, store = tmp_path / "cache", tmp_path / "store"
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIB_")}
    env.update(MIRROR_ENV, DIB_IMAGE_CACHE=str(cache))
    with open(cache / ".bake-build.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        process = subprocess.Popen(
            [str(BAKE), "build", "image-specs/base.yaml", "--plain", "--output", str(store)],
            cwd=REPO,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in process.stderr:
            if "waiting for another build using" in line:
                break
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=60)[1]
    assert process.returncode == 130, rest
    assert "interrupted by SIGINT; nothing was kept" in rest
    assert not (store / "bbq-base").exists()
    assert not any((store / ".tmp").iterdir())


def test_manifest_packages_are_those_installed(tmp_path):
    """DIB's dpkg manifest also lists packages removed during the build whose configuration
    files stay (status "rc", e.g. a build-only package); they are not in the image."""
    manifests = tmp_path / "img.d" / "dib-manifests"
    manifests.mkdir(parents=True)
    (manifests / "dib-manifest-dpkg-img").write_text(
        '{"packages": [\n'
        '{"package": "libc6:amd64", "arch": "amd64", "version": "2.36", "status": "ii "},\n'
        '{"package": "unzip", "arch": "amd64", "version": "6.0", "status": "rc "},\n'
        '{"package": "zlib1g", "arch": "amd64", "version": "1.2", "status": "hi "}\n]}\n'
    )
    assert build.packages(tmp_path, "img") == [
        {"name": "libc6", "version": "2.36", "arch": "amd64"},
        {"name": "zlib1g", "version": "1.2", "arch": "amd64"},
    ]


def test_list_json_is_machine_readable(tmp_path):
    """Whole fingerprints, sizes in bytes, a status word and the artifact's directory."""
    path = tmp_path / "bbq-base" / ("ab" * 32)
    path.mkdir(parents=True)
    (path / "bbq-base.tar").write_bytes(b"x" * 3000)
    manifest = {
        "name": "bbq-base",
        "version": "0.1.0",
        "fingerprint": "ab" * 32,
        "spec": {},
        "files": {"bbq-base.tar": {"size": 3000}},
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    result = run_bake("list", "--output", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {
            "name": "bbq-base",
            "version": "0.1.0",
            "fingerprint": "ab" * 32,
            "status": "untested",
            "size": 3000,
            "built": None,
            "path": str(path),
        }
    ]
    table = run_bake("list", "--output", str(tmp_path))
    assert table_rows(table.stdout)[1][:4] == ["bbq-base", "0.1.0", "ab" * 6, "untested"]
