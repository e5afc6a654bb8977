"""Servers a local stack runs on the host: the data store and the Zaqar queue, whose images
cannot be built here (the datastore image's MongoDB repository does not answer; Zaqar has
no image of ours). Each is started from the project's server venvs, the way the tests start
them (``tests/fixtures/{mongo,zaqar}.py``): SecantusDB (a MongoDB-wire server, ``.venvs/mongo``)
on the datastore's address, and Zaqar (``.venvs/zaqar``, gunicorn) on Redis
(``redis-server``) on 127.0.0.1. They run in their own sessions, outliving ``create``;
:func:`stop` ends one by its recorded pid (after checking its command line).

Example::

    db = start_datastore(workdir / "datastore", "127.77.1.1")
    db.url                      # 'mongodb://127.77.1.1:27017'
    for server in start_zaqar(workdir / "zaqar"): ...
    stop(db)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import requests

from bake import hostsys
from bake.cloud.local.state import HostServer
from bake.errors import OperationFailed

REPO = Path(__file__).resolve().parents[3]
VENVS = REPO / ".venvs"
START_TIMEOUT = 90.0
MONGO_PORT = 27017

# Zaqar's configuration on Redis (RUNBOOK), also used by the test suite's Zaqar server.
ZAQAR_CONF = """\
[DEFAULT]
auth_strategy = {auth_strategy}
debug = False

[drivers]
transport = wsgi
message_store = redis
management_store = sqlalchemy

[drivers:message_store:redis]
uri = redis://127.0.0.1:{redis_port}?socket_timeout=10

[drivers:management_store:sqlalchemy]
uri = sqlite:///{workdir}/zaqar.sqlite

[transport]
max_messages_per_claim_or_pop = 1000
max_messages_per_page = 1000
max_messages_post_size = 262144
"""


class HostServerError(OperationFailed):
    """A host server is missing or did not start (one line)."""


def _spawn(argv: list[str], log: Path, env: dict | None = None) -> int:
    """Start ``argv`` in its own session (it outlives us), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return process.pid


def _wait_port(host: str, port: int, pid: int, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not alive(pid):
            raise HostServerError(f"{what} exited before listening on {host}:{port} (log: {log})")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.2)
    raise HostServerError(f"{what}: nothing listens on {host}:{port} after {START_TIMEOUT:.0f}s")


def start_datastore(workdir: Path, address: str) -> HostServer:
    """SecantusDB on ``address``:27017, its data in ``workdir``."""
    python = VENVS / "mongo" / "bin" / "python"
    if not python.exists():
        raise HostServerError(
            f"no data store: {python} missing (run tools/bootstrap --tests), or give "
            "--datastore-url"
        )
    _need_free(address, MONGO_PORT, "the data store")
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    log = workdir / "secantus.log"
    argv = [str(python), "-m", "secantus", "--host", address, "--port", str(MONGO_PORT)]
    pid = _spawn([*argv, "--storage-path", str(data)], log)
    server = HostServer(
        name="datastore",
        what="SecantusDB (.venvs/mongo), a MongoDB-wire server",
        url=f"mongodb://{address}:{MONGO_PORT}",
        pid=pid,
        marker="secantus",
        log=str(log),
    )
    _wait_port(address, MONGO_PORT, pid, log, "SecantusDB")
    return server


def start_zaqar(workdir: Path) -> list[HostServer]:
    """Redis, then Zaqar's API (gunicorn, 2 workers) on it; [redis, zaqar]."""
    gunicorn = VENVS / "zaqar" / "bin" / "gunicorn"
    redis = shutil.which("redis-server")
    if not gunicorn.exists() or redis is None:
        missing = gunicorn if not gunicorn.exists() else "redis-server"
        raise HostServerError(
            f"no Zaqar: {missing} missing (run tools/bootstrap --tests), or give --zaqar-url"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    redis_port = hostsys.free_port()
    log = workdir / "redis.log"
    argv = [redis, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
    pid = _spawn([*argv, "--appendonly", "no", "--dir", str(workdir)], log)
    servers = [
        HostServer(
            "redis",
            "Redis (Zaqar's message store)",
            f"redis://127.0.0.1:{redis_port}",
            pid,
            "redis-server",
            str(log),
        )
    ]
    try:
        _wait_port("127.0.0.1", redis_port, pid, log, "redis-server")
        servers.append(_start_zaqar_api(workdir, redis_port))
    except BaseException:
        for server in servers:
            stop(server)
        raise
    return servers


def _start_zaqar_api(workdir: Path, redis_port: int) -> HostServer:
    bindir = VENVS / "zaqar" / "bin"
    home = workdir / "home"
    (home / ".zaqar").mkdir(parents=True, exist_ok=True)
    conf = home / ".zaqar" / "zaqar.conf"
    conf.write_text(ZAQAR_CONF.format(redis_port=redis_port, workdir=workdir, auth_strategy=""))
    # Creates the Queues table, then fails at a MySQL-only migration (RUNBOOK): enough.
    subprocess.run(
        [str(bindir / "zaqar-sql-db-manage"), "--config-file", str(conf), "upgrade", "head"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    port = hostsys.free_port()
    log = workdir / "zaqar.log"
    argv = [str(bindir / "gunicorn"), "-w", "2", "--limit-request-line", "0"]
    argv += ["-b", f"127.0.0.1:{port}", "zaqar.transport.wsgi.app:app"]
    pid = _spawn(argv, log, env=dict(os.environ, HOME=str(home)))
    server = HostServer(
        "zaqar", "Zaqar (.venvs/zaqar) on Redis", f"http://127.0.0.1:{port}", pid, "zaqar", str(log)
    )
    try:
        _wait_port("127.0.0.1", port, pid, log, "Zaqar")
        _wait_zaqar(server.url, pid, log)
    except BaseException:
        stop(server)
        raise
    return server


def _wait_zaqar(url: str, pid: int, log: Path) -> None:
    """Until Zaqar answers a queue listing (its workers are up)."""
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "bbq"}
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not alive(pid):
            raise HostServerError(f"Zaqar exited while starting (log: {log})")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/v2/queues", headers=headers, timeout=5).status_code < 500:
                return
        time.sleep(0.5)
    raise HostServerError(f"Zaqar at {url} did not answer after {START_TIMEOUT:.0f}s (log: {log})")


def _need_free(address: str, port: int, what: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((address, port))
        except OSError:
            raise HostServerError(f"{what}: {address}:{port} is taken on this host") from None


alive = hostsys.process_alive  # whether a pid runs (a zombie does not)


def is_ours(server: HostServer) -> bool:
    """Whether the recorded pid still is that server (not a process that reused the pid)."""
    if not alive(server.pid):
        return False
    try:
        argv = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return server.marker in argv


def stop(server: HostServer, grace: float = 15) -> bool:
    """Stop a host server's whole process group (SIGTERM, SIGKILL after ``grace``); True
    when it had to be killed."""
    if not is_ours(server):
        return False
    pgid = server.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    if _wait_group(pgid, server.pid, grace):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    _wait_group(pgid, server.pid, 10)
    return True


def _wait_group(pgid: int, pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not hostsys.group_alive(pgid):
            return True
        time.sleep(0.2)
    return not hostsys.group_alive(pgid)
