"""``bake stack ACTION --local``: the stack on this machine (bake/cloud/local/).

Fast tests: the role files filled with local values (cloud-init's schema, every placeholder,
each server's own address), the wait-condition endpoint answering the role files' own curl
line, the state file, ``fab --stack`` over a local stack's state, and bad input (one line,
exit 2, nothing started).

Slow tests: the data store and the queue started on the host and stopped leaving nothing;
and the whole stack end to end from the spark, streaming and rest images built by the
session fixtures (tests/fixtures/images.py; run with BBQ_TEST_IMAGE_STORE=/work/imgstore):
``bake stack create --local`` with two workers, events through Zaqar into the store by the
job running on both workers, the dashboard in Chromium, ``fab deploy --stack`` and
``rollback``, and ``delete`` leaving no instance, mount or process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bake import hostsys  # noqa: E402
from bake.cloud import stackfiles as sf  # noqa: E402
from bake.cloud.local import create, hostservers, roles  # noqa: E402
from bake.cloud.local import state as st  # noqa: E402
from bake.cloud.local.signals import Endpoint  # noqa: E402
from tests.fixtures import browser as browser_fixtures  # noqa: E402
from tests.stack.signals import send, success_signal  # noqa: E402
from tests.stack.test_template import schema_problems  # noqa: E402
from tests.support.cli import table_rows  # noqa: E402

chromedriver = browser_fixtures.chromedriver  # Chromium for the dashboard
browser = browser_fixtures.browser
REPO = Path(_REPO)
BAKE = Path(sys.executable).parent / "bake"
FAB = Path(sys.executable).parent / "fab"
SUBNET = "127.77.200"


def run(tool: Path, *args: str, store: Path, timeout: float = 120, **env: str):
    """``bake``/``fab`` from the repository with ``$BBQ_ARTIFACTS`` = ``store``."""
    environment = {**os.environ, "BBQ_ARTIFACTS": str(store), **env}
    return subprocess.run(
        [str(tool), *args],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def filled(endpoint: Endpoint, workers: int = 2) -> dict[str, tuple[roles.Planned, str]]:
    """{server name: (server, its filled role file)} of a stack ``t`` in SUBNET."""
    settings = roles.Settings(
        workers=workers,
        zaqar_url="http://127.0.0.1:8888",
        datastore_url=f"mongodb://{SUBNET}.1:27017",
    )
    return {
        server.name: (
            server,
            roles.user_data(
                server,
                roles.values(server, SUBNET, settings, endpoint.curl_cli(server.handle)),
            ),
        )
        for server in roles.plan("t", SUBNET, workers)
    }


# -- the role files, filled with local values ----------------------------------------------


def test_every_server_gets_its_role_file_filled_and_valid(cloud_config_schema):
    with Endpoint() as endpoint:
        servers = filled(endpoint)
    assert [s.role for s, _ in servers.values()] == [
        "master",
        "worker",
        "worker",
        "rest",
        "streaming",
    ]
    for name, (server, text) in servers.items():
        source = sf.role_files()[server.role].read_text()
        # The same file as Heat's, only its placeholders replaced.
        assert text.splitlines()[:2] == source.splitlines()[:2], name
        assert sf.placeholders(text) == set(), name
        document = yaml.safe_load(text)
        assert schema_problems(document, cloud_config_schema) == [], name
        assert endpoint.curl_cli(server.handle) in text, name
    master = yaml.safe_load(servers["t-master"][1])["write_files"][0]["content"]
    assert f"SPARK_MASTER_HOST={SUBNET}.2" in master
    for i, name in enumerate(("t-worker-0", "t-worker-1")):
        conf = yaml.safe_load(servers[name][1])["write_files"][0]["content"]
        assert f"SPARK_LOCAL_IP={SUBNET}.{10 + i}" in conf
        assert f"SPARK_MASTER_URL=spark://{SUBNET}.2:7077" in conf
        assert f'"id": "worker-{i}"' in servers[name][1]
    job = yaml.safe_load(servers["t-streaming"][1])["write_files"][0]["content"]
    assert f"spark.driver.host={SUBNET}.4" in job
    assert f"mongodb://{SUBNET}.1:27017" in job
    assert "url = http://127.0.0.1:8888" in job
    assert f"url = http://{SUBNET}.3:8780" in job


def test_addresses_are_distinct_per_server_and_stack():
    servers = roles.plan("t", SUBNET, 3)
    addresses = [s.address for s in servers] + [roles.address(SUBNET, "datastore")]
    assert len(set(addresses)) == len(addresses) == 7
    assert all(a.startswith(SUBNET + ".") for a in addresses)
    taken = {f"127.77.{n}" for n in range(1, 5)}
    subnet = roles.free_subnet(taken)
    assert subnet not in taken and subnet.startswith("127.77.")


def test_master_ui_told_its_own_address():
    master = roles.plan("t", SUBNET, 1)[0]
    files = roles.adaptations(master)
    assert list(files) == ["/etc/systemd/system/spark-master.service.d/50-local-stack.conf"]
    assert f"Environment=SPARK_LOCAL_IP={SUBNET}.2" in next(iter(files.values()))


# -- the wait-condition endpoint -------------------------------------------------------------


def test_endpoint_takes_the_role_files_own_signal_and_refuses_a_bad_token():
    with Endpoint() as endpoint:
        servers = filled(endpoint)
        master = servers["t-master"][1]
        line = success_signal(master)  # the SUCCESS line of the role's ready script
        forged = line.replace(endpoint.token, "not-the-token")
        assert send(forged).split()[1] == "401"
        assert endpoint.signal("master") is None and endpoint.refused == 1
        assert send(line).split()[1] == "200"
        got = endpoint.signal("master")
        assert (got.status, got.reason, got.id) == ("SUCCESS", "spark master up", "master")
        worker = success_signal(servers["t-worker-1"][1])
        send(worker)
        assert endpoint.signal("worker-1").id == "worker-1"
        assert endpoint.signal("worker-0") is None
        failure = line.replace("SUCCESS", "FAILURE").replace("/signal/master", "/signal/rest")
        send(failure)
        assert endpoint.signal("rest").status == "FAILURE"


# -- state, outputs, inventory ---------------------------------------------------------------


def local_state(store: Path, name: str = "dev") -> st.LocalStack:
    """A state file as create writes it, for two servers that do not run."""
    stack = st.LocalStack(
        name=name,
        store=str(store),
        subnet=SUBNET,
        key=str(store / "id_ed25519"),
        known_hosts=str(store / "known_hosts"),
        status="CREATE_COMPLETE",
    )
    for role, port in (("master", 40001), ("worker", 40002)):
        server = st.Server(
            role=role,
            name=f"{name}-{role}",
            address=roles.address(SUBNET, role),
            image="x",
            rootfs="x",
            workdir=str(store / name / role),
            ssh_port=port,
            ports=roles.ports(role),
            pid=None,
            status="READY",
            handle=role,
        )
        stack.servers.append(server)
    settings = roles.Settings(zaqar_url="http://127.0.0.1:1", datastore_url="mongodb://u:pw@h:1")
    stack.outputs = create.outputs(stack, settings)
    stack.save()
    return stack


def test_state_round_trip_and_outputs_without_secret(tmp_path):
    stack = local_state(tmp_path)
    again = st.load(tmp_path, "dev")
    assert again == stack
    assert again.outputs["spark_master_url"] == f"spark://{SUBNET}.2:7077"
    assert again.outputs["dashboard_url"] == f"http://{SUBNET}.3:8780/"
    assert again.outputs["servers"]["worker"] == ["dev-worker"]
    assert again.outputs["datastore_url"] == "mongodb://u:******@h:1"
    assert "pw" not in json.dumps(again.outputs)
    result = run(BAKE, "stack", "outputs", "--local", "dev", "spark_ui_url", store=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"http://{SUBNET}.2:8080/"
    shown = run(BAKE, "stack", "show", "--local", "dev", store=tmp_path)
    assert "CREATE_COMPLETE" in shown.stdout and "dev-worker" in shown.stdout
    assert "not running" in shown.stdout
    listed = run(BAKE, "stack", "list", "--local", "--json", store=tmp_path)
    assert [s["name"] for s in json.loads(listed.stdout)] == ["dev"]


def test_show_outputs_and_list_take_the_output_formats(tmp_path):
    """-f/-c as every reporting command has them (the openstack CLI's), on a local stack."""
    local_state(tmp_path)
    csv = run(
        BAKE, "stack", "list", "--local", "-f", "csv", "-c", "name", "-c", "status", store=tmp_path
    )
    assert csv.returncode == 0, csv.stderr
    assert csv.stdout.splitlines() == ['"name","status"', '"dev","CREATE_COMPLETE"']  # cliff's
    value = run(
        BAKE,
        "stack",
        "outputs",
        "--local",
        "dev",
        "-f",
        "value",
        "-c",
        "dashboard_url",
        store=tmp_path,
    )
    assert value.stdout.strip() == f"http://{SUBNET}.3:8780/"
    document = json.loads(
        run(BAKE, "stack", "outputs", "--local", "dev", "-f", "json", store=tmp_path).stdout
    )
    assert document["spark_master_url"] == f"spark://{SUBNET}.2:7077"
    shown = yaml.safe_load(
        run(
            BAKE,
            "stack",
            "show",
            "--local",
            "dev",
            "-f",
            "yaml",
            "-c",
            "name",
            "-c",
            "status",
            store=tmp_path,
        ).stdout
    )
    assert shown == {"name": "dev", "status": "CREATE_COMPLETE"}
    table = run(BAKE, "stack", "outputs", "--local", "dev", store=tmp_path).stdout
    assert table_rows(table)[0] == ["Field", "Value"] and "dashboard_url" in table  # cliff's
    for args, message in (
        (["outputs", "--local", "dev", "-c", "nope"], "-c nope: no such column"),
        (["list", "--local", "--sort-column", "nope"], "--sort-column nope: no such column"),
        (["show", "--local", "dev", "-f", "xml"], "invalid choice: 'xml'"),
    ):
        result = run(BAKE, "stack", *args, store=tmp_path)
        assert result.returncode == 2 and result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr


def test_fab_stack_reads_a_local_stack_and_its_ssh_settings(tmp_path):
    local_state(tmp_path)
    from bake.fleet import inventory, tasks
    from bake.fleet.ssh import SshOptions

    old = os.environ.get("BBQ_ARTIFACTS")
    os.environ["BBQ_ARTIFACTS"] = str(tmp_path)
    try:
        ssh = inventory.stack_ssh("dev", tasks.ssh_options("~/.ssh/known_hosts", (), False))
        assert ssh.key_files == (tmp_path / "id_ed25519",)
        assert ssh.known_hosts == tmp_path / "known_hosts"
        given = SshOptions(Path("/k/known"), (Path("/k/id"),))
        assert inventory.stack_ssh("dev", given) == given
        assert inventory.stack_ssh("elsewhere", given) == given
    finally:
        if old is None:
            os.environ.pop("BBQ_ARTIFACTS")
        else:
            os.environ["BBQ_ARTIFACTS"] = old
    # Its servers do not run: fab says so in one line (exit 1), never asks a cloud.
    result = run(FAB, "status", "--stack", "dev", "--role", "worker", store=tmp_path)
    assert result.returncode == 1
    assert "local stack dev has no running server with role worker" in result.stderr


# -- bad input: one line, exit 2, nothing started --------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["create", "--local", "Bad_Name"], "stack name 'Bad_Name'"),
        (["create", "--local", "s1", "--workers", "0"], "--workers: 1 to 20"),
        (["create", "--local", "s1", "-P", "a=b"], "-P: not for --local"),
        (["create", "--local", "s1", "--image", "gateway=x"], "--image 'gateway=x'"),
        (["create", "s1", "--serial"], "--serial needs --local"),
        (["show", "--local", "nope"], "no local stack 'nope'"),
        (["outputs", "--local", "nope"], "no local stack 'nope'"),
        (["delete", "--local", "nope"], "no local stack 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = run(BAKE, "stack", *args, store=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in one_line(result)
    assert not (tmp_path / ".stacks").exists() or not list((tmp_path / ".stacks").iterdir())


def test_missing_image_names_the_build_to_run(tmp_path):
    result = run(BAKE, "stack", "create", "--local", "s1", store=tmp_path)
    assert result.returncode == 2
    line = one_line(result)
    assert "no good bbq-spark image of the current fingerprint" in line
    assert f"run `bake build image-specs/spark.yaml --plain --output {tmp_path}`" in line
    assert not st.state_path(tmp_path, "s1").exists()


def test_existing_stack_is_not_created_again(tmp_path):
    local_state(tmp_path, "s1")
    result = run(BAKE, "stack", "create", "--local", "s1", store=tmp_path)
    assert result.returncode == 2
    assert "local stack 's1' exists (bake stack delete --local s1)" in one_line(result)


# -- host servers ----------------------------------------------------------------------------


@pytest.mark.slow
def test_host_servers_start_answer_and_stop_leaving_nothing(tmp_path):
    import pymongo
    import requests

    address = f"{roles.free_subnet(set())}.1"
    db = hostservers.start_datastore(tmp_path / "db", address)
    started = [db]
    try:
        started += hostservers.start_zaqar(tmp_path / "zaqar")
        client = pymongo.MongoClient(db.url, serverSelectionTimeoutMS=10000)
        assert client.admin.command("ping")["ok"] == 1
        client.close()
        zaqar = started[-1].url
        headers = {"Client-ID": "0b8f6b46-8b1e-4e2b-9a1b-2f6b1f0f5d6e", "X-Project-ID": "bbq"}
        posted = requests.post(
            f"{zaqar}/v2/queues/q1/messages",
            json={"messages": [{"ttl": 300, "body": "x"}]},
            headers=headers,
            timeout=30,
        )
        assert posted.status_code == 201, posted.text
    finally:
        for server in reversed(started):
            hostservers.stop(server)
    for server in started:
        assert not hostservers.is_ours(server), server.name
        assert not hostsys.group_alive(server.pid), server.name


# -- the whole stack, end to end -------------------------------------------------------------


def ssh(stack: st.LocalStack, server: st.Server, command: str) -> str:
    """Run ``command`` on a server as root with OpenSSH, the stack's key and known_hosts
    (strict: an unknown or changed host key fails)."""
    argv = ["ssh", "-i", stack.key, "-p", str(server.ssh_port), "-o", "BatchMode=yes"]
    argv += ["-o", f"UserKnownHostsFile={stack.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    argv += ["-o", "ConnectTimeout=15", "root@127.0.0.1", command]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{server.name}: {command}: {result.stderr}"
    return result.stdout.strip()


def current_releases(stack: st.LocalStack) -> dict[str, str]:
    return {s.name: ssh(stack, s, "basename $(readlink /opt/bbq/current)") for s in stack.servers}


def job_executors(workers: list[str]) -> dict[str, set[str]]:
    """{worker address: names of the applications it runs executors for}, from each
    worker's own status page (its web UI's JSON, on its address)."""
    import requests

    found = {}
    for address in workers:
        try:
            state = requests.get(f"http://{address}:8081/json/", timeout=30).json()
        except (requests.RequestException, ValueError):
            return {}  # not answering yet (a busy machine): asked again
        found[address] = {e["appdesc"]["name"] for e in state.get("executors", [])}
    return found


def stored(url: str) -> int:
    import pymongo

    client = pymongo.MongoClient(url, serverSelectionTimeoutMS=10000)
    try:
        return client["bbq"]["packets"].count_documents({})
    finally:
        client.close()


def send_events(zaqar_url: str, count: int, prefix: str) -> None:
    from tests.fixtures.rest import bbq_command

    args = ["--config-file", "/dev/null", "--zaqar-url", zaqar_url, "--zaqar-queue", "bbq"]
    result = subprocess.run(
        [bbq_command("bbq-send"), *args, "post", "--generate", str(count), "--id-prefix", prefix],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and f"sent {count} messages" in result.stderr, result.stderr


def nothing_left(stack: st.LocalStack) -> list[str]:
    """Instances, mounts and processes of the stack still there (ps, /proc/self/mounts)."""
    from bake import hostsys

    left = [p for p in hostsys.mounts_under(Path(stack.store)) if stack.name in p]
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    left += [line for line in ps.splitlines() if str(stack.workdir) in line]
    left += [f"{h.name} {h.pid}" for h in stack.host_servers if hostservers.is_ours(h)]
    return left


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_local_stack_end_to_end(
    spark_artifact,
    streaming_artifact,
    rest_artifact,
    image_store,
    browser,
    tmp_path,
):
    from bbq import testing

    from tests.deploy.fleet import app_variant

    name = f"e2e{os.getpid() % 10000}"
    n = 2000
    created = run(
        BAKE, "stack", "create", "--local", name, "--workers", "2", store=image_store, timeout=1200
    )
    stack = st.load(image_store, name) if st.exists(image_store, name) else None
    try:
        assert created.returncode == 0, created.stderr[-4000:]
        for handle in ("master", "worker-0", "worker-1", "rest", "streaming"):
            assert f"{handle}: ready after" in created.stderr
        assert "datastore: served on the host" in created.stderr
        assert "zaqar: served on the host" in created.stderr
        assert stack.status == "CREATE_COMPLETE"
        outputs = json.loads(
            run(BAKE, "stack", "outputs", "--local", name, "--json", store=image_store).stdout
        )
        workers = outputs["addresses"]["worker"]
        assert len(workers) == 2 and outputs["servers"]["worker"] == [
            f"{name}-worker-0",
            f"{name}-worker-1",
        ]

        # Events through Zaqar, stored once each by the job on the local cluster.
        send_events(outputs["zaqar_url"], n, "e2e")
        testing.wait_until(lambda: stored(outputs["datastore_url"]) >= n, 300, what="stored")
        assert stored(outputs["datastore_url"]) == n
        # The job's executors run on both workers (each worker says so itself).
        running = testing.wait_until(
            lambda: (e := job_executors(workers)) and all(e.values()) and e, 120, what="executors"
        )
        assert running == {address: {"bbq-stream"} for address in workers}

        # The dashboard shows them.
        browser.open(outputs["dashboard_url"])
        # data-value: the number itself (the card shows it with separators, "1,000")
        total = "return document.getElementById('total').dataset.value"
        browser.wait_for(f"{total} === '{n}'", timeout=60, what="dashboard total")
        browser.screenshot(tmp_path / "dashboard.png")

        # An app change to every role, then back.
        before = current_releases(stack)  # each image's baked release
        variant = app_variant(tmp_path / "v2", version="0.9.0", marker="local-stack")
        common = ["--stack", name, "--batch", "5"]
        deployed = run(
            FAB, "deploy", *common, "--app", str(variant), store=image_store, timeout=1200
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        after = current_releases(stack)
        assert set(after) == set(before) and len(set(after.values())) == 1
        assert set(after.values()) != set(before.values())
        assert "0.9.0" in next(iter(after.values()))
        rolled = run(FAB, "rollback", *common, store=image_store, timeout=1200)
        assert rolled.returncode == 0, rolled.stdout + rolled.stderr
        assert current_releases(stack) == before
        status = run(FAB, "status", "--stack", name, "--role", "streaming", store=image_store)
        assert status.returncode == 0 and f"{name}-streaming" in status.stdout, status.stderr

        # The job runs again after its restarts: more events are stored.
        send_events(outputs["zaqar_url"], 500, "after")
        testing.wait_until(lambda: stored(outputs["datastore_url"]) >= n + 500, 300, what="more")
        assert stored(outputs["datastore_url"]) == n + 500
    finally:
        if stack is not None:
            deleted = run(BAKE, "stack", "delete", "--local", name, store=image_store, timeout=600)
            assert deleted.returncode == 0, deleted.stderr
            assert "nothing left" in deleted.stdout
            assert nothing_left(stack) == []
            assert not stack.path.exists() and not stack.workdir.exists()
