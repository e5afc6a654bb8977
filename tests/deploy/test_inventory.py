"""Hosts for fab tasks: ``-H`` lists, and servers chosen from Nova by role metadata or image
(python-novaclient over a real Keystone session; Nova itself is the named fake)."""

from __future__ import annotations

import pytest

from bake.cloud import auth
from bake.fleet import DeployError
from bake.fleet.inventory import from_nova
from bake.fleet.targets import Target, parse_hosts
from tests.fixtures.openstack import ADMIN_PASSWORD, CLOUD_NAME


def test_host_lists():
    assert parse_hosts("a,deploy@b:2222,[fe80::1]:2200, a") == [
        Target("a"),
        Target("b", 2222, "deploy"),
        Target("fe80::1", 2200),
    ]
    for bad in ("a:0", "a:x", "", "a b"):
        with pytest.raises(DeployError):
            parse_hosts(bad)


@pytest.fixture(scope="module")
def servers(nova_cloud, fleet):
    """Fleet instances as Nova servers of role ``rest``, plus servers a deploy must skip."""
    nova, env = nova_cloud
    image = "4a3c2c1e-0b8a-4a57-9d0d-5f0e3b9a1111"
    for i, instance in enumerate(fleet.instances):
        nova.add_server(
            instance.name,
            image,
            {"private": ["127.0.0.1"], "public": [f"203.0.113.{i + 10}"]},
            {"bbq_role": "rest", "bbq_ssh_port": str(instance.port)},
        )
    nova.add_server("spark-1", "other-image", {"private": ["192.0.2.7"]}, {"bbq_role": "spark"})
    nova.add_server(
        "rest-off", image, {"private": ["192.0.2.8"]}, {"bbq_role": "rest"}, status="SHUTOFF"
    )
    return nova, env, image


@pytest.mark.slow
def test_fab_status_on_servers_chosen_by_role(servers, fleet):
    nova, env, _ = servers
    run = fleet.fab(
        "status",
        "--role",
        "rest",
        "--network",
        "private",
        "--os-cloud",
        CLOUD_NAME,
        hosts="",
        env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for instance in fleet.instances:
        assert f"[{instance.name}] current " in run.stdout
    assert "spark-1" not in run.stdout and "rest-off" not in run.stdout
    assert ("/v2.1/servers/detail", {"status": ["ACTIVE"]}) in nova.requests
    assert ADMIN_PASSWORD not in run.stdout + run.stderr  # no secret in the output


@pytest.mark.slow
def test_servers_by_image_and_network(servers, fleet, monkeypatch):
    nova, env, image = servers
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", env["OS_CLIENT_CONFIG_FILE"])
    cloud = auth.connect(cloud=CLOUD_NAME)
    targets = from_nova(cloud, image=image, network="public")
    assert [(t.name, t.host) for t in targets] == [
        (i.name, f"203.0.113.{n + 10}") for n, i in enumerate(fleet.instances)
    ]
    with pytest.raises(DeployError, match="no address on network 'nowhere'"):
        from_nova(cloud, role="rest", network="nowhere")
    with pytest.raises(DeployError, match="no ACTIVE server with bbq_role=db"):
        from_nova(cloud, role="db", network="private")
