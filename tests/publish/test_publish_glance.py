"""bake.cloud.publish against a real Keystone + Glance: upload, verify, dedupe, failure cleanup."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time

import pytest
import yaml

from bake.artifacts import Artifact
from bake.cloud import auth
from bake.cloud import glance as g
from bake.cloud import publish as pub
from bake.hashing import sha256_file
from tests.fixtures.openstack import CLOUD_NAME
from tests.publish.helpers import CorruptingProxy, images_with, sha256_of_download


def test_publish_uploads_real_qcow2_with_properties(make_artifact, cloud, glance_client):
    artifact = make_artifact(version="2.1.0", mib=6)
    path, _ = artifact.image_file()

    result = pub.publish(artifact, cloud)

    assert result.uploaded and result.bytes_sent == path.stat().st_size
    image = glance_client.images.get(result.image_id)
    assert image["status"] == "active"
    assert sha256_of_download(glance_client, result.image_id) == sha256_file(path)
    assert image["os_hash_algo"] == "sha512" and image["os_hash_value"] == result.sha512
    assert image["checksum"] == result.md5
    expected = {
        "name": f"{artifact.name}-2.1.0-{artifact.fingerprint[:8]}",  # one name per build
        "disk_format": "qcow2",
        "container_format": "bare",
        "visibility": "private",
        "os_distro": "debian",
        "os_version": "12",
        "architecture": "x86_64",
        "hw_qemu_guest_agent": "yes",
        "hw_disk_bus": "scsi",
        "min_ram": 2048,
        "min_disk": 1,  # 6 MiB virtual size, rounded up to whole GiB
        "bake_fingerprint": artifact.fingerprint,
        "bake_spec": artifact.name,
        "bake_spec_version": "2.1.0",
        "bake_built_at": artifact.manifest["built_at"],
        "_sahara_username": "debian",
        "_sahara_description": "Big Data BBQ Spark image",
        "_sahara_tag_spark": "True",
        "_sahara_tag_3.5.1": "True",
        "bake_latest": "True",  # the spec's newest verified image
        "os_hidden": False,
        "tags": [],
    }
    assert {key: image.get(key) for key in expected} == expected
    assert g.PUBLISHER not in image  # the in-progress marker is gone once active


def test_publish_again_sends_zero_bytes(make_artifact, cloud, glance_client):
    artifact = make_artifact()
    first = pub.publish(artifact, cloud)
    sent = []

    second = pub.publish(artifact, cloud, on_read=sent.append)

    assert not second.uploaded and second.bytes_sent == 0 and sent == []
    assert second.image_id == first.image_id
    assert [i["id"] for i in images_with(glance_client, artifact.fingerprint)] == [first.image_id]


def test_sahara_registry_query_finds_image(make_artifact, cloud, glance_client):
    artifact = make_artifact(sahara={"username": "bbq", "tags": ["spark", "3.5.1"]})
    other = make_artifact(sahara=None)
    published = pub.publish(artifact, cloud).image_id
    unregistered = pub.publish(other, cloud).image_id

    # What Sahara's image registry asks Glance for, and how it reads the answer.
    found = list(
        glance_client.images.list(filters={"_sahara_tag_spark": "True", "_sahara_username": "bbq"})
    )
    assert [i["id"] for i in found] == [published]
    prefix = "_sahara_tag_"
    tags = sorted(k[len(prefix) :] for k, v in found[0].items() if k.startswith(prefix) and v)
    assert tags == ["3.5.1", "spark"]
    unregistered_image = glance_client.images.get(unregistered)
    assert not any(k.startswith("_sahara_") for k in unregistered_image)


def test_glance_killed_mid_upload_leaves_nothing_and_retry_succeeds(
    make_artifact, cloud, glance_client, openstack
):
    artifact = make_artifact(mib=24)
    path, _ = artifact.image_file()
    size = path.stat().st_size
    restarted = threading.Event()
    killed_at = []

    def restart_later() -> None:
        time.sleep(2)
        openstack.start_glance()
        restarted.set()

    def on_read(total: int) -> None:
        if not killed_at and total >= size // 3:
            killed_at.append(total)
            openstack.kill_glance()  # SIGKILL, mid-upload: the request dies with it
            threading.Thread(target=restart_later, daemon=True).start()

    try:
        with pytest.raises(pub.PublishError, match=r"deleted$") as failure:
            pub.publish(artifact, cloud, on_read=on_read, retry=g.RetryPolicy(cleanup_seconds=60))
    finally:
        assert restarted.wait(60), "Glance did not come back"
    assert killed_at and killed_at[0] < size
    assert "upload failed" in str(failure.value)
    assert images_with(glance_client, artifact.fingerprint) == []

    again = pub.publish(artifact, cloud)

    assert again.uploaded and again.bytes_sent == size
    assert sha256_of_download(glance_client, again.image_id) == sha256_file(path)
    assert [i["status"] for i in images_with(glance_client, artifact.fingerprint)] == ["active"]


def test_interrupt_mid_upload_deletes_image(make_artifact, cloud, glance_client):
    artifact = make_artifact(mib=8)

    def on_read(total: int) -> None:
        if total >= 3 * 1024 * 1024:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match=r"^interrupted; image \S+ deleted$"):
        pub.publish(artifact, cloud, on_read=on_read)
    assert images_with(glance_client, artifact.fingerprint) == []


def test_leftover_of_dead_publisher_is_removed(make_artifact, cloud, glance_client):
    artifact = make_artifact()
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    leftover = glance_client.images.create(
        name="leftover",
        disk_format="qcow2",
        container_format="bare",
        bake_fingerprint=artifact.fingerprint,
        bake_publisher=f"{socket.gethostname()}:{dead}",
    )
    alive = glance_client.images.create(  # a publish still running on this host: left alone
        name="in-progress",
        disk_format="qcow2",
        container_format="bare",
        bake_fingerprint=artifact.fingerprint,
        bake_publisher=f"{socket.gethostname()}:{os.getpid()}",
    )

    result = pub.publish(artifact, cloud)

    assert result.removed_leftovers == (leftover["id"],)
    remaining = {i["id"]: i["status"] for i in images_with(glance_client, artifact.fingerprint)}
    assert remaining == {alive["id"]: "queued", result.image_id: "active"}
    glance_client.images.delete(alive["id"])


def test_verify_upload_rejects_hash_mismatch(make_artifact, cloud, glance_client, tmp_path):
    artifact = make_artifact()
    image = glance_client.images.get(pub.publish(artifact, cloud).image_id)
    path, _ = artifact.image_file()
    size = path.stat().st_size
    other = tmp_path / "other"
    other.write_bytes(os.urandom(size))  # same size, different bytes
    with open(other, "rb") as handle:
        reader = pub.HashingReader(handle, size)
        while reader.read(1024 * 1024):
            pass

    with pytest.raises(pub.PublishError, match="checksum .* os_hash_value differs"):
        pub.verify_upload(image, reader.digests(), reader.bytes, size)
    pub.verify_upload(image, pub.recorded_digests(artifact, path), size, size)  # passes


def test_manifest_records_what_glance_computes(make_artifact, cloud, glance_client):
    artifact = make_artifact()
    path, _ = artifact.image_file()
    data = path.read_bytes()
    recorded = artifact.files[path.name]
    assert recorded["sha512"] == hashlib.sha512(data).hexdigest()
    assert recorded["md5"] == hashlib.md5(data).hexdigest()

    result = pub.publish(artifact, cloud)

    image = glance_client.images.get(result.image_id)
    assert (image["os_hash_value"], image["checksum"]) == (recorded["sha512"], recorded["md5"])


def _rewrite_manifest(artifact, **changes):
    """The artifact with its image file's manifest entry changed (None removes a key)."""
    path, _ = artifact.image_file()
    manifest = json.loads((artifact.path / "manifest.json").read_text())
    entry = manifest["files"][path.name]
    for key, value in changes.items():
        entry.pop(key) if value is None else entry.update({key: value})
    (artifact.path / "manifest.json").write_text(json.dumps(manifest))
    return Artifact.load(artifact.path)


def test_artifact_without_recorded_digests_hashes_in_the_pass(make_artifact, cloud, glance_client):
    artifact = _rewrite_manifest(make_artifact(mib=6), sha512=None, md5=None)
    path, _ = artifact.image_file()
    assert pub.recorded_digests(artifact, path) is None

    result = pub.publish(artifact, cloud)

    image = glance_client.images.get(result.image_id)
    assert image["os_hash_value"] == result.sha512 == hashlib.sha512(path.read_bytes()).hexdigest()
    assert image["checksum"] == result.md5


def test_wrong_recorded_sha512_fails_and_deletes(make_artifact, cloud, glance_client):
    artifact = _rewrite_manifest(make_artifact(), sha512="0" * 128)

    with pytest.raises(
        pub.PublishError, match=r"os_hash_value differs .*recorded in manifest.json.*deleted$"
    ):
        pub.publish(artifact, cloud)
    assert images_with(glance_client, artifact.fingerprint) == []


def test_artifact_failing_checksums_is_cut_off_and_deleted(make_artifact, cloud, glance_client):
    artifact = make_artifact()
    path, _ = artifact.image_file()
    with open(path, "r+b") as handle:  # flip bytes in place: same size, wrong sha256
        handle.seek(100)
        handle.write(b"\xff" * 16)

    with pytest.raises(pub.PublishError, match=r"fails its checksums: .*SHA256SUMS.*deleted$"):
        pub.publish(artifact, cloud)
    assert images_with(glance_client, artifact.fingerprint) == []


def test_checksums_file_without_the_image_sends_nothing(make_artifact, cloud, glance_client):
    artifact = make_artifact()
    (artifact.path / "SHA256SUMS").write_text("")

    with pytest.raises(pub.PublishError, match="SHA256SUMS does not list"):
        pub.publish(artifact, cloud)
    assert images_with(glance_client, artifact.fingerprint) == []


def test_glance_down_at_start_is_retried(make_artifact, cloud, glance_client, openstack, caplog):
    artifact = make_artifact()
    openstack.kill_glance()
    restart = threading.Timer(2.0, openstack.start_glance)
    restart.start()
    try:
        with caplog.at_level("WARNING", logger="bake.cloud.glance"):
            result = pub.publish(artifact, cloud, retry=g.RetryPolicy(seconds=60))
    finally:
        restart.join()

    assert result.uploaded
    assert any("retrying in" in r.getMessage() for r in caplog.records)  # tenacity backed off
    assert [i["status"] for i in images_with(glance_client, artifact.fingerprint)] == ["active"]


def test_concurrent_publishes_make_one_image(make_artifact, cloud, glance_client):
    artifact = make_artifact(mib=16)
    outcomes: list[object] = []

    def publish_once() -> None:
        try:
            outcomes.append(pub.publish(artifact, cloud))
        except pub.PublishError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=publish_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    [image] = images_with(glance_client, artifact.fingerprint)
    assert image["status"] == "active"
    uploaded = [o for o in outcomes if isinstance(o, pub.PublishResult) and o.uploaded]
    assert [o.image_id for o in uploaded] == [image["id"]]
    for other in outcomes:
        if isinstance(other, pub.PublishError):
            assert "being uploaded right now" in str(other)
        elif other is not uploaded[0]:
            assert not other.uploaded and other.image_id == image["id"]


def test_republish_after_delete_uses_a_new_id(make_artifact, cloud, glance_client):
    artifact = make_artifact()
    first = pub.publish(artifact, cloud).image_id
    glance_client.images.delete(first)

    second = pub.publish(artifact, cloud)

    assert second.uploaded and second.image_id != first
    project = cloud.project_id()
    assert first == pub.image_id_for(project, artifact.fingerprint, 0)
    assert second.image_id == pub.image_id_for(project, artifact.fingerprint, 1)


def test_data_corrupted_in_transit_is_caught_and_deleted(
    make_artifact, openstack, glance_client, tmp_path, monkeypatch
):
    artifact = make_artifact(mib=6)
    proxy = CorruptingProxy(openstack.glance_port, at=3 * 1024 * 1024)
    clouds = openstack.clouds_yaml(tmp_path / "clouds.yaml")
    config = yaml.safe_load(clouds.read_text())
    config["clouds"][CLOUD_NAME]["image_endpoint_override"] = f"http://127.0.0.1:{proxy.port}"
    clouds.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    try:
        with pytest.raises(pub.PublishError, match=r"Glance disagrees: checksum .*deleted$"):
            pub.publish(artifact, auth.connect(cloud=CLOUD_NAME))
    finally:
        proxy.close()
    assert proxy.corrupted == 1
    assert images_with(glance_client, artifact.fingerprint) == []
