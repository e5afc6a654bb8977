"""``bake images`` listing and pruning, on real Glance with the FAKE Nova in the catalog."""

from __future__ import annotations

import time
import uuid

import pytest

from bake.cloud import glance as g
from bake.cloud import prune as pr
from bake.cloud import publish as pub


def _publish_versions(make_artifact, cloud, name: str, versions: list[str]) -> list[str]:
    ids = []
    for version in versions:
        ids.append(pub.publish(make_artifact(name=name, version=version, mib=1), cloud).image_id)
        time.sleep(1.1)  # Glance's created_at has one-second resolution
    return ids


def test_images_lists_a_spec_newest_first(make_artifact, cloud):
    name = f"bbq-l{uuid.uuid4().hex[:8]}"
    ids = _publish_versions(make_artifact, cloud, name, ["1.0.0", "1.1.0"])

    rows = pr.list_images(g.Glance(cloud), spec=name)

    assert [(r.id, r.version, r.status) for r in rows] == [
        (ids[1], "1.1.0", "active"),
        (ids[0], "1.0.0", "active"),
    ]
    assert all(r.size and len(r.fingerprint) == 64 and r.age().endswith("s") for r in rows)


def test_prune_keeps_newest_and_in_use(make_artifact, cloud, glance_client, fake_nova):
    name = f"bbq-p{uuid.uuid4().hex[:8]}"
    oldest, old, newer, newest = _publish_versions(
        make_artifact, cloud, name, ["1.0", "1.1", "1.2", "1.3"]
    )
    fake_nova.add_server("spark-master-0", oldest)
    glance = g.Glance(cloud)

    preview = pr.prune(glance, name, keep=2, dry_run=True)

    assert [r.id for r in preview.pruned] == [old]
    assert preview.nova_checked and preview.in_use == {oldest: ["spark-master-0"]}
    assert len(pr.list_images(glance, name)) == 4  # dry run changed nothing

    done = pr.prune(glance, name, keep=2)

    assert [r.id for r in done.pruned] == [old]
    left = {r.id for r in pr.list_images(glance, name)}
    assert left == {newest, newer, oldest}
    asked = {q["image"][0] for path, q in fake_nova.requests if "image" in q}
    assert {oldest, old} <= asked


def test_prune_deactivate_instead_of_delete(make_artifact, cloud, fake_nova):
    name = f"bbq-d{uuid.uuid4().hex[:8]}"
    first, second = _publish_versions(make_artifact, cloud, name, ["1", "2"])
    glance = g.Glance(cloud)

    pr.prune(glance, name, keep=1, deactivate=True)

    status = {r.id: r.status for r in pr.list_images(glance, name)}
    assert status == {first: "deactivated", second: "active"}
    again = pr.prune(glance, name, keep=1, deactivate=True)
    assert again.pruned == []


def test_prune_refuses_when_nova_cannot_answer(make_artifact, cloud, fake_nova):
    name = f"bbq-n{uuid.uuid4().hex[:8]}"
    ids = _publish_versions(make_artifact, cloud, name, ["1", "2"])
    glance = g.Glance(cloud)
    fake_nova.fail_with = 500
    try:
        with pytest.raises(pr.PruneError, match="cannot ask Nova .* nothing pruned"):
            pr.prune(glance, name, keep=1)
    finally:
        fake_nova.fail_with = None
    assert {r.id for r in pr.list_images(glance, name)} == set(ids)


def test_prune_refuses_keep_zero(cloud):
    with pytest.raises(pr.PruneError, match="at least 1"):
        pr.prune(g.Glance(cloud), "anything", keep=0)
