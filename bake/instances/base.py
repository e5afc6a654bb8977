"""What every kind of instance shares: the Instance (where to reach it over SSH, checked
against its own known_hosts), InstanceError, and the wait-until-up loop."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bake import hostsys
from bake.errors import OperationFailed


class InstanceError(OperationFailed):
    """An instance could not be booted or reached."""


@dataclasses.dataclass
class Instance:
    """A booted instance: where to reach it over SSH, and how to stop it."""

    name: str
    host: str
    port: int
    key_file: Path
    known_hosts: Path
    root: Path
    process: subprocess.Popen
    console_log: Path

    def connect_kwargs(self) -> dict[str, Any]:
        return {"key_filename": str(self.key_file), "look_for_keys": False, "allow_agent": False}

    def connection(self, user: str = "root"):
        """A Fabric connection that checks the host key against the instance's known_hosts."""
        from fabric import Config, Connection

        # in_stream False: commands never read the caller's stdin (absent under pytest/CI).
        run = {"hide": True, "warn": True, "in_stream": False}
        config = Config(overrides={"load_ssh_configs": False, "run": run})
        connection = Connection(
            self.host,
            user=user,
            port=self.port,
            config=config,
            connect_kwargs=self.connect_kwargs(),
            connect_timeout=10,
        )
        hostsys.HostKeyPolicy(self.known_hosts, _unknown_host_key).apply(connection.client)
        return connection

    def run(self, command: str, timeout: float = 60, user: str = "root"):
        """Run a command over SSH; returns Fabric's Result (exited, stdout, stderr)."""
        with self.connection(user) as connection:
            return connection.run(command, timeout=timeout)


def _unknown_host_key(hostname: str) -> InstanceError:
    return InstanceError(f"unknown SSH host key for {hostname}: refusing to connect")


def wait_until_up(
    instance: Instance, probe: Callable[[], bool], timeout: float, runner: str
) -> None:
    """Poll ``probe()`` until it returns True (an exception means: not up yet) or ``timeout``
    seconds pass; raises InstanceError then, or as soon as the ``runner`` process exits."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if instance.process.poll() is not None:
            raise InstanceError(
                f"{instance.name}: {runner} exited ({instance.process.returncode}) "
                f"during boot; console: {instance.console_log}"
            )
        try:
            if probe():
                return
        except Exception as exc:  # not up yet: sshd starting, key exchange refused, ...
            last_error = exc
        time.sleep(1)
    raise InstanceError(
        f"{instance.name}: no SSH on {instance.host}:{instance.port} after {timeout:.0f}s "
        f"({last_error}); console: {instance.console_log}"
    )
