"""Hosts for fab tasks: ``-H`` lists, and servers chosen from Nova by role metadata or image
(python-novaclient over a real Keystone session; Nova itself is the named fake)."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from bake.cloud import auth
from bake.fleet import DeployError
from bake.fleet.inventory import CloudOptions, from_nova
from bake.fleet.targets import Target, parse_hosts
from tests.deploy.fleet import FAB, REPO
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
    """Fleet instances as Nova servers of role ``rest``, plus servers a deploy must skip."""
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


@pytest.fixture(scope="module")
def stacks(nova_cloud, monkeypatch_module):
    """Servers of two stacks (Heat sets bbq_stack and bbq_role on each) in the fake Nova."""
    nova, env = nova_cloud
    image = "7d1f0c52-3b7e-4c1a-9e55-5a1b2c3d4e5f"
    for name, stack, role, port in (
        ("prod-master", "prod", "master", None),
        ("prod-worker-1", "prod", "worker", "2222"),
        ("prod-worker-0", "prod", "worker", None),
        ("test-worker-0", "test", "worker", None),
    ):
        metadata = {"bbq_stack": stack, "bbq_role": role}
        if port:
            metadata["bbq_ssh_port"] = port
        nova.add_server(name, image, {"private": [f"10.1.0.{len(nova.servers) + 1}"]}, metadata)
    nova.add_server(
        "prod-worker-2",
        image,
        {"private": ["10.1.0.99"]},
        {"bbq_stack": "prod", "bbq_role": "worker"},
        status="SHUTOFF",
    )
    monkeypatch_module.setenv("OS_CLIENT_CONFIG_FILE", env["OS_CLIENT_CONFIG_FILE"])
    return auth.connect(cloud=CLOUD_NAME)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.slow  # a real Keystone (and Glance) starts for it
def test_servers_of_a_stack(stacks):
    targets = from_nova(stacks, stack="prod", network="private")
    assert [(t.name, t.port) for t in targets] == [
        ("prod-master", 22),
        ("prod-worker-0", 22),
        ("prod-worker-1", 2222),
    ]  # by name; the SHUTOFF one and the other stack's are not
    workers = from_nova(stacks, stack="prod", role="worker", network="private", user="debian")
    assert [(t.name, t.user) for t in workers] == [
        ("prod-worker-0", "debian"),
        ("prod-worker-1", "debian"),
    ]
    assert [t.name for t in from_nova(stacks, stack="test")] == ["test-worker-0"]
    with pytest.raises(DeployError, match="no ACTIVE server with bbq_stack=prod and bbq_role=db$"):
        from_nova(stacks, stack="prod", role="db")
    with pytest.raises(DeployError, match="no ACTIVE server with bbq_stack=gone$"):
        from_nova(stacks, stack="gone")


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
