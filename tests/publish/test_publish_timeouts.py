"""Every call to the cloud has a timeout (issue 13 item 5), and the retry and timeout settings
are checked (issue 14): ``bake publish/images/prune`` against an endpoint that accepts TCP and
never answers (a silent server on 127.0.0.1) end with one line naming the URL, within a bound;
bad ``--retry-seconds``/``BAKE_RETRY_SECONDS``/``--api-timeout`` values are one-line errors
(exit 2), and a bad ``BAKE_RETRY_SECONDS`` does not break commands that never reach the cloud."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.fixtures.openstack import CLOUD_NAME
from tests.publish.helpers import REPO, SilentServer, bake
from tests.support.cli import table_rows

CLOUD = ("--os-cloud", CLOUD_NAME)
BOUND = 45  # seconds any of these commands may take with --api-timeout 2


@pytest.fixture
def silent():
    with SilentServer() as server:
        yield server


def _clouds(openstack, tmp_path: Path, **cloud_keys) -> dict[str, str]:
    """A clouds.yaml of the test cloud with ``cloud_keys`` added to (or auth_url replaced in)
    its entry."""
    base = yaml.safe_load(openstack.clouds_yaml(tmp_path / "base.yaml").read_text())
    entry = base["clouds"][CLOUD_NAME]
    if "auth_url" in cloud_keys:
        entry["auth"]["auth_url"] = cloud_keys.pop("auth_url")
    entry.update(cloud_keys)
    path = tmp_path / f"clouds-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(base))
    return {"OS_CLIENT_CONFIG_FILE": str(path), "BAKE_RETRY_SECONDS": "3"}


def _timed(*args: str, env: dict[str, str]):
    started = time.monotonic()
    result = bake(*args, "--api-timeout", "2", env=env, timeout=BOUND + 30)
    return result, time.monotonic() - started


def test_silent_keystone(openstack, tmp_path, silent, make_artifact):
    env = _clouds(openstack, tmp_path, auth_url=f"{silent.url}/v3")
    artifact = make_artifact(mib=1)
    for command in (
        ("publish", str(artifact.path), *CLOUD),
        ("images", *CLOUD),
        ("prune", "--keep", "1", "--dry-run", *CLOUD),
    ):
        result, seconds = _timed(*command, env=env)

        assert result.returncode == 2 and result.stdout == "", (command, result.stderr)
        [line] = result.stderr.splitlines()
        assert line.startswith(f"error: cloud '{CLOUD_NAME}': {silent.url}/v3")
        assert line.endswith("did not answer within 2s (--api-timeout)"), line
        assert seconds < BOUND
    assert silent.accepted  # the requests did reach the silent server


def test_silent_glance(openstack, tmp_path, silent, make_artifact, glance_client):
    env = _clouds(openstack, tmp_path, image_endpoint_override=silent.url)
    artifact = make_artifact(mib=1)
    for command in (
        ("publish", str(artifact.path), *CLOUD),
        ("images", *CLOUD),
        ("prune", "--keep", "1", "--dry-run", *CLOUD),
    ):
        result, seconds = _timed(*command, env=env)

        assert result.returncode == 1 and result.stdout == "", (command, result.stderr)
        *retries, line = result.stderr.splitlines()
        assert all("retrying in" in r for r in retries), result.stderr
        assert line.startswith("error: ")
        assert f"Glance at {silent.url}/v2/images" in line, line
        assert line.endswith("did not answer in time (--api-timeout)"), line
        assert seconds < BOUND
    assert list(glance_client.images.list(filters={"bake_fingerprint": artifact.fingerprint})) == []


def test_silent_nova_when_pruning(openstack, tmp_path, silent, make_artifact, fake_nova):
    good = {"OS_CLIENT_CONFIG_FILE": str(openstack.dir / "clouds.yaml")}
    name = f"bbq-s{uuid.uuid4().hex[:8]}"
    for version in ("1", "2"):
        artifact = make_artifact(name=name, version=version, mib=1)
        published = bake("publish", str(artifact.path), *CLOUD, env=good)
        assert published.returncode == 0, published.stderr
        time.sleep(1.1)
    env = _clouds(openstack, tmp_path, compute_endpoint_override=silent.url)

    result, seconds = _timed("prune", "--spec", name, "--keep", "1", "--yes", *CLOUD, env=env)

    assert result.returncode == 1 and result.stdout == "", result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: cannot ask Nova whether image ")
    assert f"(Nova at {silent.url}/servers" in line
    assert line.endswith("did not answer in time (--api-timeout)); nothing pruned"), line
    assert seconds < BOUND
    listing = bake("images", "--spec", name, *CLOUD, env=good)
    assert len(table_rows(listing.stdout)) == 3  # header and both images: nothing pruned


@pytest.mark.parametrize(
    "flags, environ, what",
    [
        (("--retry-seconds", "nan"), {}, "--retry-seconds: 'nan'"),
        (("--retry-seconds", "-1"), {}, "--retry-seconds: '-1'"),
        (("--retry-seconds", "inf"), {}, "--retry-seconds: 'inf'"),
        ((), {"BAKE_RETRY_SECONDS": "thirty"}, "BAKE_RETRY_SECONDS: 'thirty'"),
        ((), {"BAKE_RETRY_SECONDS": "nan"}, "BAKE_RETRY_SECONDS: 'nan'"),
        (("--api-timeout", "-5"), {}, "--api-timeout: '-5'"),
        ((), {"BAKE_API_TIMEOUT": "x"}, "BAKE_API_TIMEOUT: 'x'"),
    ],
)
def test_bad_retry_and_timeout_values_are_one_line(flags, environ, what, openstack, make_artifact):
    env = {"OS_CLIENT_CONFIG_FILE": str(openstack.dir / "clouds.yaml"), **environ}
    artifact = make_artifact(mib=1)
    for command in (("publish", str(artifact.path)), ("images",), ("prune", "--keep", "1")):
        result = bake(*command, *CLOUD, *flags, env=env, timeout=60)

        assert result.returncode == 2 and result.stdout == "", (command, result.stderr)
        assert result.stderr.splitlines() == [
            f"error: {what} is not a number of seconds (a number >= 0)"
        ]


def test_bad_retry_seconds_in_the_environment_leaves_other_commands_alone(tmp_path):
    env = {"BAKE_RETRY_SECONDS": "garbage", "BAKE_API_TIMEOUT": "nan"}
    spec = str(REPO / "image-specs" / "base.yaml")

    validated = bake("validate", spec, env=env, timeout=60)
    listed = bake("list", "--output", str(tmp_path / "store"), env=env, timeout=60)
    helped = bake("publish", "--help", env=env, timeout=60)

    assert validated.returncode == 0 and validated.stdout == f"ok: {spec}\n", validated.stderr
    assert listed.returncode == 0, listed.stderr
    assert helped.returncode == 0 and "--api-timeout" in helped.stdout
