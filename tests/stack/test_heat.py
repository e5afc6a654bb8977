"""``bake stack`` against real Heat, Nova (fake virt driver), Neutron, Cinder (its fake volume
driver), Zaqar, Glance and Keystone on 127.0.0.1 (tests/fixtures/heat.py): create to
CREATE_COMPLETE, what Nova says of every server, outputs, update 2 -> 3 workers, a rebuild onto
a newer image, delete leaving nothing, the template's optional branches (the stack's Zaqar
queue, floating IPs, the data volume) with their conditions on, and the failures a user meets
first.

Nova's fake driver boots nothing, so no cloud-init runs: the test sends each server's
wait-condition signal from its own user data (tests/stack/signals.py), as cloud-init would.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import uuid

import pytest
import yaml

from bake.cloud import stackfiles as sf
from tests.fixtures.heat import EXTERNAL_CIDR, EXTERNAL_NETWORK, NETWORK
from tests.stack.conftest import run_bake
from tests.stack.signals import Signaller, user_data
from tests.stack.test_template import schema_problems
from tests.support.paths import FAB, REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SECRET = "zaqar-Secret-4711"
BASE = ["-P", f"network={NETWORK}", "-P", "ready_timeout=180", "--timeout", "15"]
JOB = [
    "-P",
    "zaqar_url=http://192.0.2.50:8888",
    "-P",
    "keystone_auth_url=http://192.0.2.51:5000/v3",
    "-P",
    "keystone_username=bbq-job",
    "-P",
    f"keystone_password={SECRET}",
    "-P",
    "keystone_project_name=bbq",
]


def stack_servers(nova, name: str) -> dict[str, list]:
    """{role: [servers]} of a stack, from Nova's metadata."""
    roles: dict[str, list] = {}
    for server in nova.servers.list(detailed=True):
        if (server.metadata or {}).get("bbq_stack") == name:
            roles.setdefault(server.metadata["bbq_role"], []).append(server)
    return {role: sorted(found, key=lambda s: s.name) for role, found in roles.items()}


def address(server) -> str:
    return next(a["addr"] for entries in server.addresses.values() for a in entries)


def fab_hosts(env: dict[str, str], *args: str) -> list[dict]:
    """``fab hosts ARGS --format json``: the hosts fab would reach, resolved through the real
    Nova (nothing is connected to: the fake driver's servers have no sshd)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("OS_")} | env
    result = subprocess.run(
        [str(FAB), "hosts", *args, "--format", "json"],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert not any("Traceback" in line for line in lines), result.stderr
    return lines[-1]


def check_servers(nova, name, published, flavors, schema) -> dict[str, list]:
    """Each server's image, flavor, metadata and user data, as Nova has them."""
    roles = stack_servers(nova, name)
    assert {r: len(s) for r, s in roles.items()} == {
        "datastore": 1,
        "master": 1,
        "worker": 2,
        "rest": 1,
        "streaming": 1,
    }
    flavor_of = {"datastore": "m1.medium", "master": "m1.medium", "worker": "m1.large"}
    flavor_of |= {"rest": "m1.small", "streaming": "m1.medium"}
    master_ip = address(roles["master"][0])
    for role, servers in roles.items():
        for server in servers:
            assert server.status == "ACTIVE"
            assert server.image["id"] == published[sf.ROLES[role]], (role, server.image)
            assert server.flavor["id"] == flavors[flavor_of[role]], role
            assert server.metadata["bbq_stack"] == name
            text = user_data(nova, server.id)
            assert text.startswith("#cloud-config\n") and sf.placeholders(text) == set(), role
            assert schema_problems(yaml.safe_load(text), schema) == [], role
            if role in ("master", "worker", "streaming"):
                assert master_ip in text, role
    streaming = user_data(nova, roles["streaming"][0].id)
    for host in (roles["datastore"][0], roles["rest"][0], roles["streaming"][0]):
        assert address(host) in streaming
    assert SECRET in streaming and "auth_type = password" in streaming
    assert "SPARK_WORKER_CORES=2" in user_data(nova, roles["worker"][0].id)
    return roles


def test_create_show_outputs_update_delete(
    heat_env, nova, publish, published, flavors, cloud_config_schema
):
    name = "bbq1"
    with Signaller(nova, name) as signals:
        created = run_bake("stack", "create", name, "--wait", *BASE, *JOB, env=heat_env)
    assert created.returncode == 0, created.stderr[-3000:]
    assert f"bake: stack {name}: CREATE_COMPLETE" in created.stdout
    assert "streaming_handle SIGNAL_COMPLETE" in created.stderr  # progress from events
    assert signals.errors == [] and len(signals.signalled) == 6, signals.signalled
    assert all(status.endswith(" 200 OK") for status in signals.signalled.values())
    assert SECRET not in created.stdout + created.stderr

    roles = check_servers(nova, name, published, flavors, cloud_config_schema)

    # fab resolves the stack's hosts from the real Nova (by bbq_stack, and by bbq_role too)
    every = {s.name: address(s) for servers in roles.values() for s in servers}
    assert {h["name"]: h["address"] for h in fab_hosts(heat_env, "--stack", name)} == every
    rest_hosts = fab_hosts(heat_env, "--stack", name, "--role", "rest")
    assert [h["name"] for h in rest_hosts] == [roles["rest"][0].name]

    outputs = run_bake("stack", "outputs", name, "--json", env=heat_env)
    assert outputs.returncode == 0, outputs.stderr
    assert SECRET not in outputs.stdout
    values = json.loads(outputs.stdout)
    master_ip = address(roles["master"][0])
    assert values["spark_master_url"] == f"spark://{master_ip}:7077"
    assert values["spark_ui_url"] == f"http://{master_ip}:8080/"
    rest_ip = address(roles["rest"][0])
    assert values["dashboard_url"] == f"http://{rest_ip}:8780/"
    assert values["rest_url"] == f"http://{rest_ip}:8780/api/v1"
    assert {r: sorted(ids) for r, ids in values["servers"].items()} == {
        r: sorted(s.id for s in servers) for r, servers in roles.items()
    }
    one = run_bake("stack", "outputs", name, "spark_master_url", env=heat_env)
    assert one.stdout.strip() == f"spark://{master_ip}:7077"

    shown = run_bake("stack", "show", name, env=heat_env)
    assert shown.returncode == 0 and "CREATE_COMPLETE" in shown.stdout
    assert SECRET not in shown.stdout and "keystone_password = ******" in shown.stdout
    assert sum(f"{name}-worker-" in line for line in shown.stdout.splitlines()) == 2
    listed = run_bake("stack", "list", "--json", env=heat_env)
    assert [s["name"] for s in json.loads(listed.stdout)] == [name]

    before = {s.id for s in roles["worker"]}
    with Signaller(nova, name) as signals:
        signals.signalled.update({s.name: "before" for r in roles.values() for s in r})
        updated = run_bake("stack", "update", name, "--workers", "3", "--wait", env=heat_env)
    assert updated.returncode == 0, updated.stderr[-3000:]
    assert f"bake: stack {name}: UPDATE_COMPLETE" in updated.stdout
    assert "worker_count: 2 -> 3" in updated.stderr
    workers = stack_servers(nova, name)["worker"]
    assert len(workers) == 3 and before < {s.id for s in workers}
    assert signals.errors == [] and signals.signalled[f"{name}-worker-2"].endswith(" 200 OK")
    again = run_bake("stack", "update", name, "--workers", "3", env=heat_env)
    assert again.returncode == 0 and "nothing to change" in again.stdout

    # A newer rest image: --latest-images rebuilds that server in place (same server, address)
    rest = stack_servers(nova, name)["rest"][0]
    newer = publish("bbq-rest", "0.2.0")
    rebuilt = run_bake("stack", "update", name, "--latest-images", "--wait", env=heat_env)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert f"rest_image: {published['bbq-rest']} -> {newer}" in rebuilt.stderr
    assert "master_image:" not in rebuilt.stderr  # unchanged roles are not sent
    now = stack_servers(nova, name)["rest"][0]
    assert (now.id, address(now), now.image["id"]) == (rest.id, address(rest), newer)

    # bake prune asks the real Nova which images are in use: the stack's spark image stays
    newer_spark = publish("bbq-spark", "0.2.0")
    pruned = run_bake("prune", "--spec", "bbq-spark", "--keep", "1", "--dry-run", env=heat_env)
    assert pruned.returncode == 0, pruned.stderr
    spark = published["bbq-spark"]
    now_roles = stack_servers(nova, name)
    users = sorted(s.name for r in ("master", "worker") for s in now_roles[r])
    assert f"bbq-spark: kept {newer_spark} " in pruned.stdout and ": newest" in pruned.stdout
    kept = next(line for line in pruned.stdout.splitlines() if f"kept {spark} " in line)
    assert sorted(kept.split(": in use by ", 1)[1].split(", ")) == users, pruned.stdout
    assert "would delete" not in pruned.stdout

    deleted = run_bake("stack", "delete", name, env=heat_env)
    assert deleted.returncode == 0, deleted.stderr[-3000:]
    assert "nothing left" in deleted.stdout
    assert stack_servers(nova, name) == {}
    ports = nova.client.session.get(
        nova.client.session.get_endpoint(service_type="network", interface="public")
        + "/v2.0/ports",
        timeout=60,
    ).json()["ports"]
    assert [p["name"] for p in ports if p["name"].startswith(f"{name}-")] == []
    listed = run_bake("stack", "list", "--json", env=heat_env)
    assert json.loads(listed.stdout) == []
    gone = run_bake("stack", "show", name, env=heat_env)
    assert gone.returncode == 2 and one_line_error(gone) == f"error: no stack '{name}'"


def test_missing_image_fails_in_one_clear_line(heat_env, published, flavors):
    result = run_bake(
        "stack", "create", "bbq-bad", "--image", "rest=no-such-image", *BASE, env=heat_env
    )
    assert result.returncode == 2
    line = one_line_error(result)
    assert "rest_image" in line and "no-such-image" in line, line
    listed = run_bake("stack", "list", "--json", env=heat_env)
    assert "bbq-bad" not in listed.stdout


def test_spec_never_published_fails_in_one_clear_line(heat_cloud, heat_env, published, tmp_path):
    """A project that sees no image of a role's spec: bake names the spec, creates nothing."""
    s = heat_cloud.session()
    ks = heat_cloud.auth_url
    project = s.post(f"{ks}/projects", json={"project": {"name": "empty"}}).json()["project"]
    user = s.post(f"{ks}/users", json={"user": {"name": "nobody", "password": "nobody-pw"}}).json()[
        "user"
    ]
    for role_name in ("member", "heat_stack_owner"):
        role = s.get(f"{ks}/roles", params={"name": role_name}).json()["roles"][0]
        s.put(f"{ks}/projects/{project['id']}/users/{user['id']}/roles/{role['id']}")
    clouds = {
        "clouds": {
            "empty": {
                "auth": {
                    "auth_url": ks,
                    "username": "nobody",
                    "password": "nobody-pw",
                    "project_name": "empty",
                    "user_domain_name": "Default",
                    "project_domain_name": "Default",
                },
                "region_name": "RegionOne",
            }
        }
    }
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(clouds))
    env = {"OS_CLIENT_CONFIG_FILE": str(path), "OS_CLOUD": "empty"}
    result = run_bake("stack", "create", "bbq-empty", *BASE, env=env)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "Glance has no active image of spec bbq-datastore" in line, line
    assert "--image datastore=" in line


# -- the optional branches: the stack's queue, floating IPs, the data volume ------------------


def neutron(cloud, path: str) -> list[dict]:
    """``GET /v2.0/<path>`` of the real Neutron: the listed resources."""
    s = cloud.session()
    url = s.get_endpoint(service_type="network", interface="public").rstrip("/")
    kind = path.split("?")[0]
    return s.get(f"{url}/v2.0/{path}", timeout=60).json()[kind]


def volumes(cloud, name: str) -> list[dict]:
    """Cinder's volumes named ``name`` (detailed, attachments included)."""
    s = cloud.session()
    url = s.get_endpoint(service_type="volumev3", interface="public").rstrip("/")
    found = s.get(f"{url}/volumes/detail", params={"name": name}, timeout=60).json()["volumes"]
    return [v for v in found if v["name"] == name]


def zaqar(cloud, method: str, path: str, **kw):
    """A request to the real Zaqar as the admin (the stacks' project), Keystone token auth."""
    s = cloud.session()
    headers = {"X-Auth-Token": s.get_token(), "Client-ID": str(uuid.uuid4())}
    resp = s.request(
        f"{cloud.zaqar.url}/v2/{path}",
        method,
        headers=headers,
        authenticated=False,
        raise_exc=False,
        timeout=60,
        **kw,
    )
    assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
    return resp.json() if resp.content else {}


def queue_names(cloud) -> set[str]:
    return {q["name"] for q in zaqar(cloud, "GET", "queues").get("queues", [])}


def test_optional_branches_queue_floating_ips_and_data_volume(
    heat_cloud, heat_env, nova, published, flavors
):
    """create_queue, floating_network and data_volume_size on: Heat's OS::Zaqar::Queue on the
    real Zaqar (the job gets the catalog's endpoint; stack delete deletes the queue), floating IPs
    from the real Neutron on the master's and the REST server's ports (the outputs' addresses),
    and a Cinder volume attached to the data store server per Nova and Cinder."""
    name, queue = "bbq2", "bbq2-events"
    options = ["-P", "create_queue=true", "-P", f"zaqar_queue={queue}"]
    options += ["-P", f"floating_network={EXTERNAL_NETWORK}", "-P", "data_volume_size=1"]
    floating_before = {f["id"] for f in neutron(heat_cloud, "floatingips")}
    with Signaller(nova, name) as signals:
        created = run_bake(
            "stack", "create", name, "--workers", "1", "--wait", *BASE, *options, env=heat_env
        )
    assert created.returncode == 0, created.stderr[-3000:]
    assert signals.errors == [] and len(signals.signalled) == 5, signals.signalled
    roles = stack_servers(nova, name)
    outputs = json.loads(run_bake("stack", "outputs", name, "--json", env=heat_env).stdout)

    # The queue: the job is pointed at the catalog's Zaqar (bake fills zaqar_url). Zaqar v2
    # creates a queue with its first message (Heat's resource only names it): one is posted
    # as bbq-send would, and Zaqar lists the queue with it.
    assert f"bake: create_queue: Zaqar at {heat_cloud.zaqar.url} (zaqar_url)" in created.stderr
    streaming = user_data(nova, roles["streaming"][0].id)
    assert f"url = {heat_cloud.zaqar.url}\n" in streaming and f"queue = {queue}\n" in streaming
    assert outputs["queue"] == queue
    zaqar(heat_cloud, "POST", f"queues/{queue}/messages", json={"messages": [{"body": 1}]})
    assert queue in queue_names(heat_cloud)

    # Floating IPs on the external network, on the master's and the REST server's ports.
    ext = neutron(heat_cloud, f"networks?name={EXTERNAL_NETWORK}")[0]
    fips = {f["port_id"]: f for f in neutron(heat_cloud, "floatingips") if f["port_id"]}
    floating = {}
    for role in ("master", "rest"):
        [port] = neutron(heat_cloud, f"ports?name={name}-{role}")
        fip = fips[port["id"]]
        assert fip["floating_network_id"] == ext["id"]
        assert fip["fixed_ip_address"] == address(roles[role][0])
        assert ipaddress.ip_address(fip["floating_ip_address"]) in ipaddress.ip_network(
            EXTERNAL_CIDR
        )
        floating[role] = fip["floating_ip_address"]
    assert len(set(floating.values())) == 2
    assert outputs["floating_addresses"] == floating
    assert outputs["dashboard_url"] == f"http://{floating['rest']}:8780/"
    assert outputs["rest_url"] == f"http://{address(roles['rest'][0])}:8780/api/v1"

    # The data volume: 1 GiB, in use, attached to the data store server (Cinder and Nova
    # agree), its id given to the datastore role's cloud-config.
    datastore = roles["datastore"][0]
    [volume] = volumes(heat_cloud, f"{name}-data")
    assert (volume["size"], volume["status"]) == (1, "in-use")
    assert [a["server_id"] for a in volume["attachments"]] == [datastore.id]
    _, body = nova.client.get(f"/servers/{datastore.id}/os-volume_attachments")
    assert [a["volumeId"] for a in body["volumeAttachments"]] == [volume["id"]]
    assert f'volume="{volume["id"]}"' in user_data(nova, datastore.id)

    deleted = run_bake("stack", "delete", name, env=heat_env)
    assert deleted.returncode == 0, deleted.stderr[-3000:]
    assert "nothing left" in deleted.stdout
    assert stack_servers(nova, name) == {}
    assert queue not in queue_names(heat_cloud)  # Heat deleted it, message and all
    assert {f["id"] for f in neutron(heat_cloud, "floatingips")} == floating_before
    assert volumes(heat_cloud, f"{name}-data") == []
