"""Publish the real bbq-spark image (built by diskimage-builder and smoke tested once per test
session, tests/fixtures/images.py) the way Sahara's Spark plugin finds it."""

from __future__ import annotations

import pytest

from bake.artifacts import CHECKSUMS, parse_checksums
from bake.cloud import publish as pub
from tests.publish.helpers import sha256_of_download

pytestmark = pytest.mark.slow


def test_real_spark_image_is_published_for_sahara(spark_artifact, cloud, glance_client):
    path, disk_format = spark_artifact.image_file()
    sums = parse_checksums((spark_artifact.path / CHECKSUMS).read_text())

    result = pub.publish(spark_artifact, cloud)
    again = pub.publish(spark_artifact, cloud)

    assert result.uploaded and result.bytes_sent == path.stat().st_size
    assert not again.uploaded and again.image_id == result.image_id
    assert sha256_of_download(glance_client, result.image_id) == sums[path.name]
    image = glance_client.images.get(result.image_id)
    spec = spark_artifact.spec
    assert (image["disk_format"], image["status"]) == (disk_format, "active")
    assert image["name"] == f"bbq-spark-{spark_artifact.version}-{spark_artifact.fingerprint[:8]}"
    assert (image["min_disk"], image["min_ram"]) == (spec["glance"]["min_disk"], 2048)
    assert image["os_distro"] == "debian"
    assert image["bake_fingerprint"] == spark_artifact.fingerprint
    assert image["_sahara_username"] == spec["sahara"]["username"]
    assert "spark" in spec["sahara"]["tags"]
    sahara_query = {f"_sahara_tag_{tag}": "True" for tag in spec["sahara"]["tags"]}
    sahara_query["_sahara_username"] = spec["sahara"]["username"]
    found = glance_client.images.list(filters=sahara_query)
    assert result.image_id in [i["id"] for i in found]
