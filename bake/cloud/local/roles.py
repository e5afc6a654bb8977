"""The servers of a local stack and what each is given: its address, ports, the SAME role
file as on Heat (``stacks/cloud-config/<role>.yaml``) filled with local values, and the few
files that adapt an instance to sharing the host's network.

Addresses: a stack gets a loopback /24, ``127.77.N.0`` (the first N no other local stack
of the store uses, and where nothing answers), and each server its own address in it, as
each Heat server has its own port on the stack's network. Every service keeps its port
(Spark master 7077 and UI 8080, workers 7078 and 8081, the dashboard 8780, MongoDB 27017,
the driver 4040 and 7100+, block managers 7200+) on its server's own address, so servers
sharing the host do not collide and the role files' health checks (a worker is listed by
its address) hold as on a cloud. SSH listens on 127.0.0.1 on a free port per server.

Two services listen on every address in their role files (as a cloud server would on its
one interface): bbq-rest on 0.0.0.0:8780 and the job's Spark UI on 4040, which the role
files check on 127.0.0.1; those two ports must be free on the host (one local stack at a
time). The Spark master, which binds its UI to every address unless told, is told its own
(``SPARK_LOCAL_IP`` in a unit drop-in).

=========  ======================  ===========================================
server     address                 runs
=========  ======================  ===========================================
datastore  127.77.N.1 (the host)   SecantusDB on :27017, or ``--datastore-url``
master     127.77.N.2              spark-master (7077, UI 8080)
rest       127.77.N.3              bbq-rest (8780, on every address)
streaming  127.77.N.4              bbq-streaming (driver 7100+, UI 4040)
worker-i   127.77.N.(10+i)         spark-worker (7078, UI 8081)
=========  ======================  ===========================================
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from pathlib import Path
from typing import Any

from bake.cloud import stackfiles as sf

SUBNET_PREFIX = "127.77"
HOST_SUFFIX = {"datastore": 1, "master": 2, "rest": 3, "streaming": 4}
FIRST_WORKER = 10
MAX_WORKERS = 20
PORTS = {
    "master": {"spark": 7077, "ui": 8080},
    "worker": {"spark": 7078, "ui": 8081},
    "rest": {"http": 8780},
    "streaming": {"ui": 4040, "driver": 7100, "block_manager": 7200},
}
# Ports that role files make listen on every address (checked free before create).
WILDCARD_PORTS = {8780: "the rest role's bbq-rest (0.0.0.0:8780)", 4040: "the job's Spark UI"}
# Booted roles; the streaming job comes last (as on Heat: after the others are ready).
BOOTED_ROLES = ("master", "worker", "rest", "streaming")


@dataclasses.dataclass(frozen=True)
class Planned:
    """A server to boot: role, name, address, ports and its wait condition's handle."""

    role: str
    name: str
    address: str
    handle: str
    index: int | None = None


@dataclasses.dataclass(frozen=True)
class Settings:
    """Local values of the template's parameters."""

    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "1g"
    zaqar_url: str = ""
    queue: str = "bbq"
    datastore_url: str = ""


def address(subnet: str, role: str, index: int = 0) -> str:
    suffix = FIRST_WORKER + index if role == "worker" else HOST_SUFFIX[role]
    return f"{subnet}.{suffix}"


def plan(stack: str, subnet: str, workers: int) -> list[Planned]:
    """The servers of a stack, in boot order: master, workers, rest, streaming."""
    servers = [Planned("master", f"{stack}-master", address(subnet, "master"), "master")]
    for i in range(workers):
        name = f"{stack}-worker-{i}"
        servers.append(Planned("worker", name, address(subnet, "worker", i), f"worker-{i}", i))
    for role in ("rest", "streaming"):
        servers.append(Planned(role, f"{stack}-{role}", address(subnet, role), role))
    return servers


def values(server: Planned, subnet: str, settings: Settings, signal: str) -> dict[str, Any]:
    """Every placeholder's local value for ``server``'s role file (what bbq.yaml and
    worker.yaml give on Heat)."""
    return {
        "__SIGNAL__": signal,
        "__MASTER_HOST__": address(subnet, "master"),
        "__SELF_HOST__": server.address,
        "__WORKER_CORES__": settings.worker_cores,
        "__WORKER_MEMORY__": settings.worker_memory,
        "__WORKER_ID__": server.handle,
        "__DATA_VOLUME_ID__": "",
        "__DATASTORE_URL__": settings.datastore_url
        or f"mongodb://{address(subnet, 'datastore')}:27017",
        "__REST_HOST__": address(subnet, "rest"),
        "__ZAQAR_URL__": settings.zaqar_url,
        "__ZAQAR_QUEUE__": settings.queue,
        # noauth Zaqar, as on Heat without keystone_auth_url
        "__KEYSTONE_AUTH_TYPE__": "",
        "__KEYSTONE_URL__": "",
        "__KEYSTONE_USER__": "",
        "__KEYSTONE_PASSWORD__": "",
        "__KEYSTONE_PROJECT__": "",
        "__KEYSTONE_DOMAIN__": "Default",
    }


def user_data(server: Planned, filled_values: dict[str, Any], directory: Path | None = None) -> str:
    """The role's file from ``stacks/cloud-config/`` filled with ``filled_values``;
    ValueError naming a placeholder left without a value."""
    path = sf.role_files(directory)[server.role]
    return sf.fill(path.read_text(), filled_values)


def adaptations(server: Planned) -> dict[str, str]:
    """Files written into the instance before it boots (outside the role file): what
    sharing the host's network needs."""
    if server.role == "master":
        drop_in = "/etc/systemd/system/spark-master.service.d/50-local-stack.conf"
        return {
            drop_in: (
                "# bake stack --local: the master's web UI on its own address, not on every\n"
                "# address of the host it shares.\n"
                f"[Service]\nEnvironment=SPARK_LOCAL_IP={server.address}\n"
            )
        }
    return {}


def ports(role: str) -> dict[str, int]:
    return dict(PORTS.get(role, {}))


def answers(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def free_subnet(taken: set[str]) -> str:
    """The first ``127.77.N`` no stack in ``taken`` uses and where no server answers."""
    for n in range(1, 255):
        subnet = f"{SUBNET_PREFIX}.{n}"
        if subnet in taken:
            continue
        probes = [(address(subnet, "master"), 7077), (address(subnet, "datastore"), 27017)]
        if not any(answers(host, port) for host, port in probes):
            return subnet
    raise RuntimeError("no free 127.77.N.0/24 left for a local stack")


def wildcard_port_users() -> list[str]:
    """What keeps a wildcard port of the role files from being bound on this host."""
    taken = []
    for port, what in WILDCARD_PORTS.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                taken.append(f"port {port} ({what})")
    return taken
