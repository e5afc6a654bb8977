"""SSH connections to hosts (Fabric), host keys checked, and commands run as root.

Host keys are checked against ``known_hosts`` by :class:`bake.hostsys.HostKeyPolicy`, the
policy instances use too: an unknown key is refused unless ``accept_new_host_keys`` (then it
is recorded); a changed key is always refused.

Example::

    with connect(Target("10.0.0.5"), SshOptions(key_files=(Path("id_ed25519"),))) as c:
        print(check(c, "systemctl is-active bbq-rest", "asking"))
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import fabric

from bake import hostsys
from bake.fleet import DeployError
from bake.fleet.targets import Target


@dataclasses.dataclass(frozen=True)
class SshOptions:
    """How to reach hosts: keys, and where host keys are checked (strictly by default).

    ``accept_new_host_keys`` trusts a host key seen for the first time and records it in
    ``known_hosts`` (for freshly booted instances); a *changed* key is always refused.
    """

    known_hosts: Path = Path("~/.ssh/known_hosts")
    key_files: tuple[Path, ...] = ()
    accept_new_host_keys: bool = False
    connect_timeout: float = 15


def _unknown_host_key(hostname: str) -> DeployError:
    return DeployError(
        f"{hostname}: host key not in known_hosts (use --accept-new-host-keys for a fresh instance)"
    )


def connect(target: Target, ssh: SshOptions = SshOptions()):
    """A Fabric Connection to ``target`` that checks its host key against ``ssh.known_hosts``."""
    # Commands never read our stdin: deploys run unattended (and under pytest).
    run = {"hide": True, "warn": True, "in_stream": False}
    overrides = {"load_ssh_configs": False, "run": run}
    config = fabric.Config(overrides=overrides)
    kwargs: dict = {"allow_agent": not ssh.key_files, "look_for_keys": not ssh.key_files}
    if ssh.key_files:
        kwargs["key_filename"] = [str(k) for k in ssh.key_files]
    connection = fabric.Connection(
        target.host,
        user=target.user,
        port=target.port,
        config=config,
        connect_kwargs=kwargs,
        connect_timeout=ssh.connect_timeout,
    )
    policy = hostsys.HostKeyPolicy(ssh.known_hosts, _unknown_host_key, ssh.accept_new_host_keys)
    policy.apply(connection.client)
    return connection


def as_root(c, command: str) -> str:
    """``command`` (a shell command line) run by bash as root: through ``sudo -n`` for others."""
    wrapped = f"bash -c {shlex.quote(command)}"
    return wrapped if c.user == "root" else f"sudo -n {wrapped}"


def check(c, command: str, what: str, timeout: float | None = 900) -> str:
    """Run ``command`` as root; its stdout, or DeployError with the end of its output."""
    result = c.run(as_root(c, command), timeout=timeout)
    if result.exited != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise DeployError(f"{what} failed (exit {result.exited}): {' | '.join(tail)}")
    return result.stdout
