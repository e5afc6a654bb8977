"""The ``bake publish/images/prune`` commands, run as the installed ``bake`` program against
the real Keystone + Glance: output, exit codes, and one-line errors for bad input."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import time
import uuid

import pytest

from bake.artifacts import Store
from bake.spec import load_spec
from tests.fixtures.openstack import ADMIN_PASSWORD, CLOUD_NAME, free_port
from tests.publish.helpers import BAKE, REPO, bake, images_with, make_qcow2
from tests.support.cli import table_rows

MIRROR_ENV = {  # fixed mirrors: the spec's fingerprint must not depend on this host's apt
    "DIB_DISTRIBUTION_MIRROR": "http://mirror.invalid/debian",
    "DIB_DEBIAN_SECURITY_MIRROR": "http://mirror.invalid/debian-security",
}


@pytest.fixture
def cli_env(openstack, tmp_path) -> dict[str, str]:
    """OS_CLIENT_CONFIG_FILE for the test clouds.yaml; fast retries for unreachable servers."""
    return {
        "OS_CLIENT_CONFIG_FILE": str(openstack.dir / "clouds.yaml"),
        "BAKE_RETRY_SECONDS": "3",
    }


def test_publish_command_and_again(make_artifact, cli_env, glance_client):
    artifact = make_artifact()

    first = bake("publish", str(artifact.path), "--os-cloud", CLOUD_NAME, env=cli_env)
    second = bake("publish", str(artifact.path), "--os-cloud", CLOUD_NAME, env=cli_env)

    assert first.returncode == 0, first.stderr
    assert "sha512 and md5 verified" in first.stdout
    image_id = images_with(glance_client, artifact.fingerprint)[0]["id"]
    assert f"published image {image_id}" in first.stdout
    assert second.returncode == 0, second.stderr
    assert f"already published as image {image_id}" in second.stdout
    assert "nothing sent" in second.stdout

    args = ("images", "--spec", artifact.name, "--json", "--os-cloud", CLOUD_NAME)
    listed = bake(*args, env=cli_env)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["fingerprint"], row["status"]) == (
        image_id,
        artifact.fingerprint,
        "active",
    )
    assert row["size"] == artifact.image_file()[0].stat().st_size


def test_publish_with_oslo_config_file(make_artifact, openstack, tmp_path, glance_client):
    artifact = make_artifact(mib=1)
    conf = tmp_path / "bake.conf"
    conf.write_text(
        "[keystone]\nauth_type = password\n"
        f"auth_url = {openstack.auth_url}\nusername = admin\npassword = {ADMIN_PASSWORD}\n"
        "project_name = admin\nuser_domain_name = Default\nproject_domain_name = Default\n"
        "region_name = RegionOne\nvalid_interfaces = internal\n"
    )

    result = bake("publish", str(artifact.path), "--config-file", str(conf), env={})

    assert result.returncode == 0, result.stderr
    assert [i["status"] for i in images_with(glance_client, artifact.fingerprint)] == ["active"]


def test_publish_with_os_environment_and_progress(make_artifact, openstack, glance_client):
    artifact = make_artifact(mib=3)

    result = bake("publish", str(artifact.path), "--progress", env=openstack.env())

    assert result.returncode == 0, result.stderr
    assert "100%" in result.stderr  # tqdm: bytes, rate, done
    assert re.search(r"\d(KiB|MiB|GiB)/s\]", result.stderr), result.stderr
    assert "MB/s" not in result.stderr  # the bar divides by 1024 and says so
    assert [i["status"] for i in images_with(glance_client, artifact.fingerprint)] == ["active"]


def test_publish_spec_resolves_its_artifact(tmp_path, cli_env, glance_client):
    spec_path = REPO / "image-specs" / "base.yaml"
    fp = bake("fingerprint", str(spec_path), env=MIRROR_ENV)
    assert fp.returncode == 0, fp.stderr
    fingerprint = fp.stdout.strip()
    store = Store(tmp_path / "store")
    spec = load_spec(spec_path, [REPO / "elements"], root=REPO)
    env = {**cli_env, **MIRROR_ENV}

    missing = bake("publish", str(spec_path), "--output", str(store.root), env=env)
    assert missing.returncode != 0 and len(missing.stderr.splitlines()) == 1
    assert f"no artifact with fingerprint {fingerprint[:12]}" in missing.stderr

    build_dir = store.new_build_dir(spec.name)
    (build_dir / "out").mkdir()
    make_qcow2(build_dir / "out" / f"{spec.name}.qcow2", 2)
    store.commit(
        build_dir,
        build_dir / "out",
        {
            "name": spec.name,
            "version": spec.version,
            "fingerprint": fingerprint,
            "spec": spec.to_dict(),
            "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "dib_version": "3.43.0",
        },
    )
    args = ("publish", str(spec_path), "--output", str(store.root), "--os-cloud", CLOUD_NAME)
    result = bake(*args, env=env)

    assert result.returncode == 0, result.stderr
    [image] = images_with(glance_client, fingerprint)
    assert image["name"] == f"{spec.name}-{spec.version}-{fingerprint[:8]}"
    assert image["min_disk"] == 3

    # build --publish: the build is up to date, so it goes straight on to publish (deduped).
    chained = bake(
        "build",
        str(spec_path),
        "--output",
        str(store.root),
        "--no-test",
        "--publish",
        "--os-cloud",
        CLOUD_NAME,
        env=env,
    )
    assert chained.returncode == 0, chained.stderr
    assert "up to date" in chained.stdout and "publishing untested (--no-test)" in chained.stderr
    assert f"already published as image {image['id']}" in chained.stdout


def test_images_and_prune_commands(make_artifact, cli_env, fake_nova):
    name = f"bbq-c{uuid.uuid4().hex[:8]}"
    for version in ("1.0", "2.0"):
        run = bake(
            "publish",
            str(make_artifact(name=name, version=version, mib=1).path),
            "--os-cloud",
            CLOUD_NAME,
            env=cli_env,
        )
        assert run.returncode == 0, run.stderr
        subprocess.run(["sleep", "1.1"], check=True)  # created_at has 1 s resolution

    listing = bake("images", "--spec", name, "--os-cloud", CLOUD_NAME, env=cli_env)
    dry = bake(
        "prune", "--spec", name, "--keep", "1", "--dry-run", "--os-cloud", CLOUD_NAME, env=cli_env
    )
    args = ("prune", "--spec", name, "--keep", "1", "--os-cloud", CLOUD_NAME)
    unconfirmed = bake(*args, env=cli_env)
    pruned = bake(*args, "--yes", env=cli_env)
    after = bake("images", "--spec", name, "--os-cloud", CLOUD_NAME, env=cli_env)

    assert listing.returncode == 0, listing.stderr
    lines = table_rows(listing.stdout)  # cliff's table
    header = ["spec", "version", "fingerprint", "size", "status", "age", "id", "name", "flags"]
    assert lines[0] == header
    assert [line[1] for line in lines[1:]] == ["2.0", "1.0"]
    assert [line[-1] for line in lines[1:]] == ["latest", "-"]
    # no terminal and no --yes: one line, exit 2, nothing pruned
    assert unconfirmed.returncode == 2 and unconfirmed.stdout == ""
    [line] = unconfirmed.stderr.splitlines()
    assert line.startswith("error: prune: no terminal to confirm on: pass --yes")
    assert dry.returncode == 0 and "would delete" in dry.stdout and "1.0" in dry.stdout
    assert pruned.returncode == 0 and "deleted" in pruned.stdout
    assert [line[1] for line in table_rows(after.stdout)[1:]] == ["2.0"]


def _bad_cloud(openstack, tmp_path, **auth) -> dict[str, str]:
    path = openstack.clouds_yaml(tmp_path / f"clouds-{uuid.uuid4().hex[:6]}.yaml", **auth)
    return {"OS_CLIENT_CONFIG_FILE": str(path), "BAKE_RETRY_SECONDS": "3"}


@pytest.mark.parametrize(
    "case",
    ["unknown cloud", "wrong password", "unreachable endpoint", "missing artifact", "bad sums"],
)
def test_bad_input_is_one_line_and_nonzero(case, make_artifact, openstack, tmp_path, glance_client):
    artifact = make_artifact(mib=1)
    target, cloud_name, env = str(artifact.path), CLOUD_NAME, _bad_cloud(openstack, tmp_path)
    expected = {
        "unknown cloud": "Cloud no-such-cloud was not found",
        "wrong password": "authentication refused",
        "unreachable endpoint": "cannot connect to http://127.0.0.1:",
        "missing artifact": "no such artifact directory",
        "bad sums": "fails its checksums",
    }[case]
    if case == "unknown cloud":
        cloud_name = "no-such-cloud"
    elif case == "wrong password":
        env = _bad_cloud(openstack, tmp_path, password="not-the-password")
    elif case == "unreachable endpoint":
        env = _bad_cloud(openstack, tmp_path, auth_url=f"http://127.0.0.1:{free_port()}/v3")
    elif case == "missing artifact":
        target = str(tmp_path / "no-such-artifact")
    else:
        path, _ = artifact.image_file()
        with open(path, "r+b") as handle:
            handle.seek(512)
            handle.write(b"corrupt!")

    result = bake("publish", target, "--os-cloud", cloud_name, env=env, timeout=60)

    assert result.returncode != 0
    assert result.stdout == ""
    # Glance may answer a transient 500 while the half-made image is deleted: that retry is
    # logged as a warning line of its own; the error itself is one line
    lines = [line for line in result.stderr.splitlines() if "retrying in" not in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    assert images_with(glance_client, artifact.fingerprint) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_upload_deletes_image(signum, make_artifact, openstack, cli_env, glance_client):
    artifact = make_artifact(mib=160)
    store_dir = openstack.dir / "glance" / "images"
    before = set(store_dir.iterdir())
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "DIB_"))}
    proc = subprocess.Popen(
        [str(BAKE), "publish", str(artifact.path), "--os-cloud", CLOUD_NAME],
        cwd=REPO,
        env={**base, **cli_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        receiving = [p for p in set(store_dir.iterdir()) - before if p.stat().st_size > 0]
        if receiving:  # Glance is writing our data: the upload is under way
            proc.send_signal(signum)
            break
        time.sleep(0.01)
    stdout, stderr = proc.communicate(timeout=120)

    assert proc.returncode == 128 + signum, stderr
    assert stdout == "" and len(stderr.splitlines()) == 1, stderr
    assert re.search(r": interrupted; image \S+ deleted \(SIG(INT|TERM)\)$", stderr), stderr
    assert images_with(glance_client, artifact.fingerprint) == []


def test_glance_unreachable_fails_after_retries(make_artifact, openstack, cli_env, glance_client):
    artifact = make_artifact(mib=1)
    openstack.kill_glance()
    try:
        result = bake(
            "publish",
            str(artifact.path),
            "--os-cloud",
            CLOUD_NAME,
            "--retry-seconds",
            "2",
            env=cli_env,
        )
    finally:
        openstack.start_glance()

    assert result.returncode == 1 and result.stdout == ""
    *retries, error = result.stderr.splitlines()
    assert retries and all("retrying in" in line for line in retries)  # tenacity backing off
    assert error.startswith("error: ") and "Glance unreachable" in error
    assert images_with(glance_client, artifact.fingerprint) == []
