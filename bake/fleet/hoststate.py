"""A host's release state (``remote/state.py``, one round trip), read with or without the
host's deploy lock.

Example::

    state = host_state(c)                  # changes nothing
    with locked_state(c, "0.2.0-ab12") as state:   # a second deploy now fails at once
        print(state.current, state.releases, state.pool)
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import re
import shlex
import socket
import time
from collections.abc import Iterator

from bake import wheelhouse
from bake.fleet import DeployError, scripts, ssh
from bake.fleet.layout import DEFAULT, HostLayout

# How long reading a host's state waits for a switch still running there (a dropped deploy).
SWITCH_WAIT = 180.0
# locked.sh's exit status when another deploy holds the host's lock.
LOCKED_EXIT = 75

_EXTRAS = re.compile(r"[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*")


@dataclasses.dataclass(frozen=True)
class HostState:
    """What a host runs: current release, complete releases oldest first, pool hashes,
    the current release's distributions ``{name: version}``, the app extras, and a switch
    not confirmed yet (``switching``: its from and to releases)."""

    current: str | None
    releases: tuple[str, ...]
    pool: dict[str, str]
    units: tuple[str, ...]
    health_url: str | None
    installed: dict[str, str] = dataclasses.field(default_factory=dict)
    extras: tuple[str, ...] = ()
    switching: tuple[str, str] | None = None
    switch_busy: bool = False

    def previous(self) -> str | None:
        """The newest complete release installed before the current one (rollback target)."""
        if self.current not in self.releases:
            return None
        index = self.releases.index(self.current)
        return self.releases[index - 1] if index > 0 else None

    def last_healthy(self) -> str | None:
        """The release the units ran before a switch not confirmed yet, else the current."""
        return self.switching[0] if self.switching else self.current


def host_extras(text: str | None, layout: HostLayout = DEFAULT) -> tuple[str, ...]:
    """The app extras of the host's extras file's ``text`` (None: no file); DeployError
    naming the file and value when it is no comma-separated list of names."""
    if text is None:
        return ()
    value = text.strip()
    if value and not _EXTRAS.fullmatch(value):
        raise DeployError(
            f"{layout.extras_file}: {value!r} is not a comma-separated list of extras"
        )
    return wheelhouse.normalize_extras(value.split(",") if value else ())


def parse_state(line: str, layout: HostLayout = DEFAULT) -> HostState:
    """The HostState of state.py's JSON line."""
    data = json.loads(line)
    switching = data["switching"]
    return HostState(
        current=data["current"],
        releases=tuple(name for name, _ in data["releases"]),
        pool=data["pool"],
        units=tuple(data["units"]),
        health_url=data["health_url"],
        installed=data["installed"],
        extras=host_extras(data["extras"], layout),
        switching=tuple(switching) if switching and len(switching) == 2 else None,
        switch_busy=data["switch_busy"],
    )


def state_args(
    user: str, release: str = "", wait: float = SWITCH_WAIT, cache: bool = True
) -> list[str]:
    """state.py's arguments: the release to stage for, the SSH user, the switch wait, and
    whether to write the pool's hash cache (only under the deploy lock)."""
    return [release, user, str(wait), "yes" if cache else "no"]


def host_state(c, layout: HostLayout = DEFAULT) -> HostState:
    """Read the host's release state (without its deploy lock; writes nothing there)."""
    command = scripts.command("state.py", state_args(c.user, cache=False), layout)
    out = ssh.check(c, command, "reading host state", SWITCH_WAIT + 120)
    return parse_state(out.strip().splitlines()[-1], layout)


def locked_command(user: str, release: str = "", layout: HostLayout = DEFAULT) -> str:
    """The command line of locked.sh running state.py (for the SSH ``user``) under the
    host's deploy lock."""
    who = f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"
    args = [
        f"{who} since {time.strftime('%Y-%m-%d %H:%M:%S')}",
        scripts.source("state.py"),
        *state_args(user, release),
    ]
    env = scripts.assignments(layout, {"BBQ_LOCKED_EXIT": str(LOCKED_EXIT)})
    script = shlex.quote(scripts.source("locked.sh"))
    return f"{env} bash -c {script} bbq-deploy-lock " + " ".join(map(shlex.quote, args))


@contextlib.contextmanager
def locked_state(c, release: str = "", layout: HostLayout = DEFAULT) -> Iterator[HostState]:
    """Hold the host's deploy lock for the block and yield its state read under it.

    DeployError at once when another deploy holds the lock. With ``release`` (not the
    current one), an empty staging directory for it is made too.
    """
    c.open()
    channel = c.client.get_transport().open_session()
    try:
        channel.settimeout(SWITCH_WAIT + 120)
        channel.exec_command(ssh.as_root(c, locked_command(c.user, release, layout)))
        line = channel.makefile("r").readline()
        if not line.strip():
            status = channel.recv_exit_status()
            error = channel.makefile_stderr("r").read().strip()
            if isinstance(error, bytes):
                error = error.decode(errors="replace")
            if status == LOCKED_EXIT:
                raise DeployError(error.splitlines()[-1])
            tail = " | ".join(error.splitlines()[-5:])
            raise DeployError(f"reading host state failed (exit {status}): {tail}")
        yield parse_state(line, layout)
    finally:
        with contextlib.suppress(Exception):
            channel.shutdown_write()
        channel.close()
