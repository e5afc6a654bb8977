"""``bake images`` listing and pruning on real Glance. Which images are in use is asked of the
real Nova of the stack tests' cloud (tests/fixtures/heat.py: servers booted by Nova with its
fake virt driver, in the admin's project and in another one); a Nova that cannot answer is a
compute endpoint on a closed port."""

from __future__ import annotations

import os
import time
import uuid

import pytest
import yaml

from bake.cloud import auth
from bake.cloud import glance as g
from bake.cloud import prune as pr
from bake.cloud import publish as pub
from bake.hostsys import free_port
from tests.fixtures.heat import CLOUD_NAME as HEAT_CLOUD
from tests.fixtures.openstack import CLOUD_NAME


@pytest.fixture
def real_cloud(heat_cloud, tmp_path, monkeypatch) -> auth.Cloud:
    """The stack tests' cloud (Keystone, Glance, the real Nova, ...) as bake connects to it."""
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(heat_cloud.clouds_yaml(tmp_path / "c.yaml")))
    return auth.connect(cloud=HEAT_CLOUD)


def other_project_nova(heat_cloud, tag: str):
    """python-novaclient as a member of a project of its own (not the admin's)."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    from novaclient import client

    s, ks = heat_cloud.session(), heat_cloud.auth_url
    project = s.post(f"{ks}/projects", json={"project": {"name": f"other-{tag}"}}).json()
    user = s.post(f"{ks}/users", json={"user": {"name": f"u-{tag}", "password": "pw-" + tag}})
    project, user = project["project"], user.json()["user"]
    role = s.get(f"{ks}/roles", params={"name": "member"}).json()["roles"][0]
    s.put(f"{ks}/projects/{project['id']}/users/{user['id']}/roles/{role['id']}")
    auth_ = v3.Password(
        auth_url=ks,
        username=f"u-{tag}",
        password="pw-" + tag,
        project_name=f"other-{tag}",
        user_domain_name="Default",
        project_domain_name="Default",
    )
    return client.Client("2.37", session=session.Session(auth=auth_, timeout=60))


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


@pytest.mark.slow  # the stack tests' cloud starts for it (once per session)
def test_prune_keeps_newest_and_in_use(make_artifact, heat_cloud, real_cloud):
    """Kept: the newest two, and every image a server was booted from, in the admin's project
    or another one (Nova's all_tenants, for admins)."""
    tag = uuid.uuid4().hex[:8]
    name = f"bbq-p{tag}"
    oldest, other, old, newer, newest = _publish_versions(
        make_artifact, real_cloud, name, ["1.0", "1.1", "1.2", "1.3", "1.4"]
    )
    glance = g.Glance(real_cloud)
    glance_admin = heat_cloud_glance(heat_cloud)
    glance_admin.images.update(other, visibility="public")  # so the other project can boot it
    nova, elsewhere = heat_cloud.nova(), other_project_nova(heat_cloud, tag)
    flavor = heat_cloud.flavor()
    servers = [
        nova.servers.create("spark-master-0", oldest, flavor, nics="none"),
        elsewhere.servers.create("their-worker", other, flavor, nics="none"),
    ]
    try:
        for server in servers:
            heat_cloud.wait_status(server.id, "ACTIVE")

        preview = pr.prune(glance, name, keep=2, dry_run=True)

        assert [r.id for r in preview.pruned] == [old]
        assert preview.nova_checked
        assert preview.in_use == {oldest: ["spark-master-0"], other: ["their-worker"]}
        assert len(pr.list_images(glance, name)) == 5  # dry run changed nothing

        done = pr.prune(glance, name, keep=2)

        assert [r.id for r in done.pruned] == [old]
        left = {r.id for r in pr.list_images(glance, name)}
        assert left == {newest, newer, other, oldest}
    finally:
        for server in servers:
            nova.servers.delete(server.id)


def heat_cloud_glance(heat_cloud):
    from glanceclient import client

    return client.Client("2", session=heat_cloud.session(), region_name="RegionOne")


@pytest.mark.slow
def test_prune_deactivate_instead_of_delete(make_artifact, real_cloud):
    name = f"bbq-d{uuid.uuid4().hex[:8]}"
    first, second = _publish_versions(make_artifact, real_cloud, name, ["1", "2"])
    glance = g.Glance(real_cloud)

    pr.prune(glance, name, keep=1, deactivate=True)

    status = {r.id: r.status for r in pr.list_images(glance, name)}
    assert status == {first: "deactivated", second: "active"}
    again = pr.prune(glance, name, keep=1, deactivate=True)
    assert again.pruned == []


def test_prune_refuses_when_nova_cannot_answer(
    make_artifact, cloud, openstack, tmp_path, monkeypatch
):
    """The cloud's compute endpoint is a closed port (no Nova listens): nothing is pruned."""
    name = f"bbq-n{uuid.uuid4().hex[:8]}"
    ids = _publish_versions(make_artifact, cloud, name, ["1", "2"])
    clouds = yaml.safe_load(openstack.clouds_yaml(tmp_path / "base.yaml").read_text())
    closed = f"http://127.0.0.1:{free_port()}/v2.1"
    clouds["clouds"][CLOUD_NAME]["compute_endpoint_override"] = closed
    (tmp_path / "closed.yaml").write_text(yaml.safe_dump(clouds))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "closed.yaml"))
    no_nova = auth.connect(cloud=CLOUD_NAME)
    glance = g.Glance(no_nova)

    with pytest.raises(pr.PruneError, match=f"cannot ask Nova .*{closed}.* nothing pruned"):
        pr.prune(glance, name, keep=1)

    assert {r.id for r in pr.list_images(glance, name)} == set(ids)


def test_prune_refuses_keep_zero(cloud):
    with pytest.raises(pr.PruneError, match="at least 1"):
        pr.prune(g.Glance(cloud), "anything", keep=0)
