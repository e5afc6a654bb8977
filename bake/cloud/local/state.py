"""A local stack's state: one JSON file per stack, ``<store>/.stacks/NAME.json``, beside its
work directory ``<store>/.stacks/NAME/`` (keys, known_hosts, each instance's overlay and
console log, the host servers' data and logs). ``<store>`` is the artifact store the images
come from (``--output``, else ``$BBQ_ARTIFACTS``, else ``./artifacts``).

The file is rewritten (atomically) at every step of ``create``, so a stack whose create was
cut short can still be shown and deleted. ``fab --stack NAME`` reads it too
(:mod:`bake.fleet.inventory`).

Example::

    stack = load(default_store(), "dev")      # StateError (exit 2) when there is none
    [s.name for s in stack.servers_of("worker")]   # ['dev-worker-0', 'dev-worker-1']
    stack.outputs["dashboard_url"]                 # 'http://127.77.1.3:8780/'
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from bake.errors import InputError

STACKS_DIR = ".stacks"
STATE_FORMAT = 1
# Stack names become host and machine names (NAME-worker-0): a DNS label, with room.
NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")


class StateError(InputError):
    """No such local stack, a bad name, or a state file that cannot be read (one line)."""


def default_store() -> Path:
    """The artifact store when none is given: ``$BBQ_ARTIFACTS``, else ``./artifacts``."""
    return Path(os.environ.get("BBQ_ARTIFACTS") or "artifacts")


def check_name(name: str) -> str:
    if not NAME.fullmatch(name) or name.endswith("-"):
        raise StateError(
            f"stack name {name!r}: lower-case letters, digits and '-', starting with a letter, "
            "at most 40 (local stack names become host names)"
        )
    return name


def stacks_dir(store: Path) -> Path:
    return Path(store).resolve() / STACKS_DIR


def state_path(store: Path, name: str) -> Path:
    return stacks_dir(store) / f"{name}.json"


def exists(store: Path, name: str) -> bool:
    """Whether the store has a local stack ``name`` (False for a name no stack can have)."""
    return bool(NAME.fullmatch(name)) and state_path(store, name).is_file()


@dataclasses.dataclass
class Server:
    """One instance of the stack: a role's server, booted with systemd-nspawn."""

    role: str
    name: str
    address: str  # its own loopback address: its services listen there
    image: str  # the artifact directory it boots from
    rootfs: str  # its image's unpacked root filesystem (the overlay's lower layer)
    workdir: str
    ssh_port: int
    ports: dict[str, int]
    pid: int | None = None  # systemd-nspawn's
    status: str = "PENDING"  # PENDING, BOOTING, BOOTED, READY, FAILED
    reason: str = ""
    handle: str = ""  # its wait condition's name (the role, or worker-N)

    def console_log(self) -> Path:
        return Path(self.workdir) / "console.log"


@dataclasses.dataclass
class HostServer:
    """A server run on the host for the stack (the data store, the queue)."""

    name: str
    what: str  # e.g. "SecantusDB (.venvs/mongo)"
    url: str
    pid: int | None = None
    marker: str = ""  # a word of its command line, checked before it is signalled
    log: str = ""


@dataclasses.dataclass
class LocalStack:
    name: str
    store: str
    subnet: str  # 127.A.B: the servers' addresses are subnet.N
    key: str  # the SSH client key of every instance
    known_hosts: str  # every instance's host key
    status: str = "CREATE_IN_PROGRESS"
    reason: str = ""
    created: str = ""
    servers: list[Server] = dataclasses.field(default_factory=list)
    host_servers: list[HostServer] = dataclasses.field(default_factory=list)
    outputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    parameters: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def path(self) -> Path:
        return state_path(Path(self.store), self.name)

    @property
    def workdir(self) -> Path:
        return stacks_dir(Path(self.store)) / self.name

    def servers_of(self, role: str | None = None) -> list[Server]:
        return [s for s in self.servers if role in (None, s.role)]

    def to_dict(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, **dataclasses.asdict(self)}

    def save(self) -> None:
        """Write the state file atomically (a reader never sees half of it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        partial.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        partial.replace(self.path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalStack:
        data = {k: v for k, v in data.items() if k != "format"}
        data["servers"] = [Server(**s) for s in data.get("servers", [])]
        data["host_servers"] = [HostServer(**h) for h in data.get("host_servers", [])]
        return cls(**data)


def load(store: Path, name: str) -> LocalStack:
    """The local stack ``name`` of ``store``; StateError (exit 2) when there is none."""
    check_name(name)
    path = state_path(store, name)
    if not path.is_file():
        raise StateError(f"no local stack {name!r} in {stacks_dir(store)}")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {STATE_FORMAT}")
        return LocalStack.from_dict(data)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise StateError(f"{path}: unreadable local stack state ({exc})") from None


def all_stacks(store: Path) -> list[LocalStack]:
    """Every local stack of ``store`` that can be read, by name."""
    directory = stacks_dir(store)
    found = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        try:
            found.append(load(store, path.stem))
        except StateError:
            continue
    return found
