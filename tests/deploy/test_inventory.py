"""Hosts for fab tasks: ``-H`` lists, and servers chosen from Nova by stack or role metadata
or image.

Servers chosen by image, network, stack and role are booted by the real Nova of the stack tests'
cloud (tests/fixtures/heat.py: Nova with its fake virt driver, ports on real Neutron networks,
images in the real Glance). ``fab status`` on servers chosen from Nova must reach them over SSH:
the booted bbq-rest instances listen on 127.0.0.1 only, and Neutron refuses a loopback subnet
("not a routable CIDR"), so no real Nova server can have that address. Those tests list the
instances through the FAKE compute API (tests/fixtures/fake_nova.py) instead.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest
import yaml

from bake.cloud import auth
from bake.fleet import DeployError
from bake.fleet.inventory import CloudOptions, from_nova
from bake.fleet.targets import Target, parse_hosts
from tests.deploy.fleet import FAB, REPO
from tests.fixtures.heat import CLOUD_NAME as HEAT_CLOUD
from tests.fixtures.openstack import ADMIN_PASSWORD, CLOUD_NAME, REGION


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
    """Fleet instances as servers of role ``rest`` in the FAKE Nova (their address is
    127.0.0.1: see the module's docstring), plus servers a deploy must skip."""
    nova, env = nova_cloud
    image = "4a3c2c1e-0b8a-4a57-9d0d-5f0e3b9a1111"
    for i, instance in enumerate(fleet.instances):
        nova.add_server(
            instance.name,
            image,
            {"private": ["127.0.0.1"], "public": [f"203.0.113.{i + 10}"]},
            {"bbq_role": "rest", "bbq_ssh_port": str(instance.port), "bbq_stack": "bbq-test"},
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


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def real_nova(heat_cloud, tmp_path_factory, monkeypatch_module):
    """Servers booted by the real Nova from real Glance images on two real networks:

    - image ``rest``: ``rest-a``, ``rest-b`` (private and public networks, bbq_role rest),
      ``rest-off`` (stopped: SHUTOFF); image ``spark``: ``spark-1`` (bbq_role spark);
    - image ``stack``: servers of stacks ``prod`` and ``test`` (bbq_stack, bbq_role, one
      with bbq_ssh_port), ``prod-worker-2`` stopped.

    Yields (the bake Cloud, {image kind: id}, {"private"|"public": (network name, id)},
    {server name: server}); the servers are deleted afterwards."""
    tag = uuid.uuid4().hex[:6]
    work = tmp_path_factory.mktemp("inventory")
    images = {}
    for kind in ("rest", "spark", "stack"):
        path = work / f"{kind}.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
        images[kind] = heat_cloud.upload_image(f"inv-{kind}-{tag}", path)
    networks = {
        kind: (f"inv-{kind}-{tag}", heat_cloud.make_network(f"inv-{kind}-{tag}", cidr)["id"])
        for kind, cidr in (("private", "10.31.0.0/24"), ("public", "10.32.0.0/24"))
    }
    private = [networks["private"][1]]
    both = [*private, networks["public"][1]]
    plan = [
        ("rest-a", "rest", both, {"bbq_role": "rest"}),
        ("rest-b", "rest", both, {"bbq_role": "rest"}),
        ("rest-off", "rest", both, {"bbq_role": "rest"}),
        ("spark-1", "spark", private, {"bbq_role": "spark"}),
        ("prod-master", "stack", private, {"bbq_stack": "prod", "bbq_role": "master"}),
        (
            "prod-worker-1",
            "stack",
            private,
            {"bbq_stack": "prod", "bbq_role": "worker", "bbq_ssh_port": "2222"},
        ),
        ("prod-worker-0", "stack", private, {"bbq_stack": "prod", "bbq_role": "worker"}),
        ("prod-worker-2", "stack", private, {"bbq_stack": "prod", "bbq_role": "worker"}),
        ("test-worker-0", "stack", private, {"bbq_stack": "test", "bbq_role": "worker"}),
    ]
    nova = heat_cloud.nova()
    flavor = heat_cloud.flavor()
    created = {}
    try:
        for name, kind, nets, metadata in plan:  # all created, then waited for
            nics = [{"net-id": n} for n in nets]
            created[name] = nova.servers.create(
                name, images[kind], flavor, nics=nics, meta=metadata
            )
        servers = {n: heat_cloud.wait_status(s.id, "ACTIVE") for n, s in created.items()}
        for name in ("rest-off", "prod-worker-2"):
            nova.servers.stop(servers[name].id)
            servers[name] = heat_cloud.wait_status(servers[name].id, "SHUTOFF")
        config = heat_cloud.clouds_yaml(work / "clouds.yaml")
        monkeypatch_module.setenv("OS_CLIENT_CONFIG_FILE", str(config))
        cloud = auth.connect(cloud=HEAT_CLOUD)
        yield cloud, images, networks, servers
    finally:
        for server in created.values():
            nova.servers.delete(server.id)


def neutron_address(heat_cloud, server_id: str, network_id: str) -> str:
    """The fixed address Neutron gave the server's port on the network."""
    s = heat_cloud.session()
    url = s.get_endpoint(service_type="network", interface="public").rstrip("/")
    params = {"device_id": server_id, "network_id": network_id}
    [port] = s.get(f"{url}/v2.0/ports", params=params, timeout=60).json()["ports"]
    return port["fixed_ips"][0]["ip_address"]


@pytest.mark.slow  # the stack tests' cloud (Keystone, Glance, Nova, Neutron, ...) starts for it
def test_servers_by_image_and_network(real_nova, heat_cloud):
    cloud, images, networks, servers = real_nova
    (private, private_id), (public, public_id) = networks["private"], networks["public"]
    by_image = {
        net: [(t.name, t.host, t.port) for t in from_nova(cloud, image=images["rest"], network=net)]
        for net in (private, public)
    }
    for net, net_id in ((private, private_id), (public, public_id)):
        assert by_image[net] == [
            (name, neutron_address(heat_cloud, servers[name].id, net_id), 22)
            for name in ("rest-a", "rest-b")
        ]  # by name; the stopped one is not chosen, nor the other image's
    assert {h for _, h, _ in by_image[private]}.isdisjoint(h for _, h, _ in by_image[public])
    assert [t.name for t in from_nova(cloud, role="spark", network=private)] == ["spark-1"]
    with pytest.raises(DeployError, match="no address on network 'nowhere'"):
        from_nova(cloud, role="rest", network="nowhere")
    with pytest.raises(DeployError, match="no ACTIVE server with bbq_role=db"):
        from_nova(cloud, role="db", network=private)


@pytest.mark.slow
def test_servers_of_a_stack(real_nova):
    cloud, _, networks, _ = real_nova
    private = networks["private"][0]
    targets = from_nova(cloud, stack="prod", network=private)
    assert [(t.name, t.port) for t in targets] == [
        ("prod-master", 22),
        ("prod-worker-0", 22),
        ("prod-worker-1", 2222),
    ]  # by name; the SHUTOFF one and the other stack's are not
    workers = from_nova(cloud, stack="prod", role="worker", network=private, user="debian")
    assert [(t.name, t.user) for t in workers] == [
        ("prod-worker-0", "debian"),
        ("prod-worker-1", "debian"),
    ]
    assert [t.name for t in from_nova(cloud, stack="test")] == ["test-worker-0"]
    with pytest.raises(DeployError, match="no ACTIVE server with bbq_stack=prod and bbq_role=db$"):
        from_nova(cloud, stack="prod", role="db")
    with pytest.raises(DeployError, match="no ACTIVE server with bbq_stack=gone$"):
        from_nova(cloud, stack="gone")


def oslo_config(env: dict[str, str], path) -> str:
    """An oslo.config file whose [keystone] group holds the clouds.yaml cloud's credentials."""
    clouds = yaml.safe_load(open(env["OS_CLIENT_CONFIG_FILE"]))
    cloud = clouds["clouds"][CLOUD_NAME]
    lines = ["[keystone]", "auth_type = password"]
    lines += [f"{key} = {value}" for key, value in cloud["auth"].items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.slow
def test_fab_takes_the_cloud_options_bake_takes(servers, fleet, tmp_path):
    nova, env, _ = servers
    conf = oslo_config(env, tmp_path / "fab.conf")
    bare = {k: v for k, v in env.items() if k != "OS_CLIENT_CONFIG_FILE"}  # no clouds.yaml
    common = ["--role", "rest", "--network", "private", "--config-file", conf]
    run = fleet.fab(
        "status",
        *common,
        "--os-region-name",
        REGION,
        "--os-interface",
        "internal",
        hosts="",
        env=bare,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for instance in fleet.instances:
        assert f"[{instance.name}] current " in run.stdout
    # The region and interface reach the catalog lookup.
    cloud = CloudOptions(config_file=conf, region=REGION, interface="internal").connect()
    assert (cloud.region_name, cloud.interface) == (REGION, "internal")
    elsewhere = fleet.fab("status", *common, "--os-region-name", "Nowhere", hosts="", env=bare)
    assert elsewhere.returncode != 0
    lines = elsewhere.stderr.strip().splitlines()
    assert len(lines) == 1 and "Nowhere" in lines[0], elsewhere.stderr
    assert ADMIN_PASSWORD not in run.stdout + run.stderr + elsewhere.stdout + elsewhere.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-H", "127.0.0.1:99999", "status"], "bad port in host '127.0.0.1:99999'"),
        (["status"], "choose servers by --stack, --role or --image (or give hosts with -H)"),
        (["-H", "127.0.0.1", "deploy", "--mode", "rsync"], "--mode must be one of"),
        (["status", "--role", "rest", "--config-file", "/nonexistent.conf"], "no such file"),
        (["status", "--role", "rest", "--os-interface", "inside"], "--os-interface must be"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no OS_* credentials either
    run = subprocess.run(
        [str(FAB), *args], cwd=REPO, capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], run.stderr


@pytest.mark.slow
def test_fab_status_on_the_servers_of_a_stack(servers, fleet):
    nova, env, _ = servers
    run = fleet.fab(
        "status",
        "--stack",
        "bbq-test",
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
    assert "prod-" not in run.stdout and "spark-1" not in run.stdout
