"""``bake publish/images/prune -f ...`` against the real Keystone + Glance (and the session's
fake Nova for prune's in-use question): one document on stdout, parsed."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid

from tests.fixtures.openstack import CLOUD_NAME
from tests.publish.helpers import bake, images_with

CLOUD = ("--os-cloud", CLOUD_NAME)


def test_publish_images_and_prune_as_json(make_artifact, openstack, fake_nova, glance_client):
    env = {"OS_CLIENT_CONFIG_FILE": str(openstack.dir / "clouds.yaml"), "BAKE_RETRY_SECONDS": "3"}
    name = f"bbq-f{uuid.uuid4().hex[:8]}"
    old = make_artifact(name=name, version="1.0", mib=1)
    first = bake("publish", str(old.path), *CLOUD, "-f", "json", env=env)
    assert first.returncode == 0, first.stderr
    record = json.loads(first.stdout)
    [image] = images_with(glance_client, old.fingerprint)
    size = old.image_file()[0].stat().st_size
    assert record["image_id"] == image["id"] and record["image_name"] == image["name"]
    assert (record["name"], record["fingerprint"]) == (name, old.fingerprint)
    assert (record["uploaded"], record["bytes_sent"], record["verified"]) == (
        True,
        size,
        ["sha512", "md5"],
    )
    assert record["sha512"] == image["os_hash_value"] and record["md5"] == image["checksum"]
    again = bake(
        "publish", str(old.path), *CLOUD, "-f", "value", "-c", "uploaded", "-c", "image_id", env=env
    )
    # the record's order, one value a line (as `openstack image show -f value`)
    assert again.stdout == f"{image['id']}\nFalse\n", again.stderr

    time.sleep(1.1)  # Glance's created_at has one-second resolution
    new = make_artifact(name=name, version="2.0", mib=1)
    assert bake("publish", str(new.path), *CLOUD, "-q", env=env).returncode == 0

    listed = bake(
        "images",
        "--spec",
        name,
        *CLOUD,
        "-f",
        "csv",
        "-c",
        "version",
        "-c",
        "flags",
        "--sort-column",
        "version",
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    assert list(csv.reader(io.StringIO(listed.stdout))) == [
        ["version", "flags"],
        ["1.0", "[]"],
        ["2.0", '["latest"]'],
    ]

    dry = bake("prune", "--spec", name, "--keep", "1", "--dry-run", *CLOUD, "-f", "json", env=env)
    assert dry.returncode == 0, dry.stderr
    rows = {row["version"]: row for row in json.loads(dry.stdout)}
    assert rows["1.0"]["result"] == "would delete" and rows["1.0"]["id"] == image["id"]
    assert (rows["2.0"]["result"], rows["2.0"]["reason"]) == ("kept", "newest")
    assert len(images_with(glance_client, old.fingerprint)) == 1  # a dry run deletes nothing
