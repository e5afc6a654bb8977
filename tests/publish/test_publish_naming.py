"""Glance naming and what ``bake publish`` chooses beyond the artifact (issue 14), through the
installed ``bake`` program against the real Keystone + Glance: a name per build, the spec's
newest build marked ``bake_latest``, ``--hide-older`` (os_hidden), ``--tag``, ``--visibility``,
``bake images --hidden``, and progress lines when stderr is not a terminal."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from tests.fixtures.openstack import CLOUD_NAME
from tests.publish.helpers import bake
from tests.support.cli import table_rows

CLOUD = ("--os-cloud", CLOUD_NAME)


@pytest.fixture
def cli_env(openstack) -> dict[str, str]:
    return {
        "OS_CLIENT_CONFIG_FILE": str(openstack.dir / "clouds.yaml"),
        "BAKE_RETRY_SECONDS": "3",
    }


def _published_id(result) -> str:
    assert result.returncode == 0, result.stderr
    found = re.search(r"published image (\S+) ", result.stdout)
    assert found, result.stdout
    return found.group(1)


def _images_named(glance_client, name: str) -> list[str]:
    """Ids of every image called ``name``, hidden or not (what ``openstack image show NAME``
    has to choose from)."""
    shown = glance_client.images.list(filters={"name": name})
    hidden = glance_client.images.list(filters={"name": name, "os_hidden": True})
    return [image["id"] for image in [*shown, *hidden]]


def test_rebuilds_of_one_version_get_distinct_names_and_older_is_hidden(
    make_artifact, cli_env, glance_client
):
    name = f"bbq-h{uuid.uuid4().hex[:8]}"
    first = make_artifact(name=name, version="0.1.0", mib=1)
    rebuilt = make_artifact(name=name, version="0.1.0", mib=1)  # same spec version, new build
    tags = ("--tag", "nightly", "--tag", "ci", "--tag", "ci")

    old_id = _published_id(
        bake("publish", str(first.path), *CLOUD, *tags, "--visibility", "shared", env=cli_env)
    )
    time.sleep(1.1)  # Glance's created_at has one-second resolution
    published = bake("publish", str(rebuilt.path), *CLOUD, "--hide-older", env=cli_env)
    new_id = _published_id(published)

    old, new = glance_client.images.get(old_id), glance_client.images.get(new_id)
    assert old["name"] == f"{name}-0.1.0-{first.fingerprint[:8]}"
    assert new["name"] == f"{name}-0.1.0-{rebuilt.fingerprint[:8]}"
    assert old["name"] != new["name"]
    assert _images_named(glance_client, old["name"]) == [old_id]  # `image show NAME`: one
    assert _images_named(glance_client, new["name"]) == [new_id]
    assert (old["os_hidden"], new["os_hidden"]) == (True, False)
    assert f"hid older image {old_id} (os_hidden)" in published.stdout
    assert (sorted(old["tags"]), old["visibility"]) == (["ci", "nightly"], "shared")
    assert (new["tags"], new["visibility"]) == ([], "private")  # the spec's default
    # the spec's newest build, by a stable property
    latest = glance_client.images.list(filters={"bake_spec": name, "bake_latest": "True"})
    assert [image["id"] for image in latest] == [new_id]
    assert "bake_latest" not in old

    shown = bake("images", "--spec", name, *CLOUD, env=cli_env)
    every = bake("images", "--spec", name, "--hidden", *CLOUD, env=cli_env)
    listed = bake("images", "--spec", name, "--hidden", "--json", *CLOUD, env=cli_env)

    assert shown.returncode == 0, shown.stderr
    rows = table_rows(shown.stdout)[1:]
    assert [(row[6], row[7], row[8]) for row in rows] == [(new_id, new["name"], "latest")]
    assert every.returncode == 0, every.stderr
    rows = table_rows(every.stdout)[1:]
    assert [(row[6], row[8]) for row in rows] == [(new_id, "latest"), (old_id, "hidden")]
    assert listed.returncode == 0, listed.stderr
    parsed = {row["id"]: row for row in json.loads(listed.stdout)}
    assert (parsed[new_id]["latest"], parsed[new_id]["hidden"]) == (True, False)
    assert (parsed[old_id]["latest"], parsed[old_id]["hidden"]) == (False, True)
    assert sorted(parsed[old_id]["tags"]) == ["ci", "nightly"]


def test_without_hide_older_both_stay_listed_and_latest_moves(
    make_artifact, cli_env, glance_client
):
    name = f"bbq-m{uuid.uuid4().hex[:8]}"
    first = _published_id(
        bake("publish", str(make_artifact(name=name, version="1", mib=1).path), *CLOUD, env=cli_env)
    )
    assert glance_client.images.get(first)["bake_latest"] == "True"
    time.sleep(1.1)
    second = _published_id(
        bake("publish", str(make_artifact(name=name, version="2", mib=1).path), *CLOUD, env=cli_env)
    )

    images = {i["id"]: i for i in glance_client.images.list(filters={"bake_spec": name})}
    assert set(images) == {first, second}  # neither hidden
    assert images[second]["bake_latest"] == "True" and "bake_latest" not in images[first]


def test_bad_visibility_is_refused_by_the_parser(make_artifact, cli_env):
    result = bake("publish", "x", *CLOUD, "--visibility", "everyone", env=cli_env)
    assert result.returncode == 2 and "invalid choice: 'everyone'" in result.stderr


def test_publish_without_a_terminal_prints_progress_lines(make_artifact, cli_env, glance_client):
    artifact = make_artifact(mib=6)
    size = artifact.image_file()[0].stat().st_size

    result = bake(
        "publish", str(artifact.path), *CLOUD, env={**cli_env, "BAKE_PROGRESS_INTERVAL": "0"}
    )

    assert result.returncode == 0, result.stderr
    line = re.compile(
        rf"^bake: {artifact.name}-1\.0\.0-{artifact.fingerprint[:8]}: "
        r"(?P<sent>[\d.]+(B|KiB|MiB)) of (?P<size>[\d.]+MiB) \((?P<pct>\d+)%\), "
        r"[\d.]+(B|KiB|MiB)/s, (ETA \d+s|done in \d+s)$"
    )
    progress = [m for m in map(line.match, result.stderr.splitlines()) if m]
    assert len(progress) >= 6, result.stderr  # one per 1 MiB read at interval 0
    assert progress[-1].group("pct") == "100" and "done in" in progress[-1].group(0)
    assert progress[-1].group("size") == f"{size / 2**20:.1f}MiB"
    assert "MB/s" not in result.stderr and "\r" not in result.stderr  # no bar in a log
    assert [int(m.group("pct")) for m in progress] == sorted(int(m.group("pct")) for m in progress)

    quiet = bake("publish", str(make_artifact(mib=1).path), *CLOUD, "--no-progress", env=cli_env)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_progress_interval_is_checked(make_artifact, cli_env):
    artifact = make_artifact(mib=1)
    for bad in ("nan", "-1", "soon"):
        result = bake(
            "publish", str(artifact.path), *CLOUD, "--progress-interval", bad, env=cli_env
        )
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.splitlines() == [
            f"error: --progress-interval: {bad!r} is not a number of seconds (a number >= 0)"
        ]
