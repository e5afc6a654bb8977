"""Behind ``fabfile.py``: :func:`run_task` runs one task over all its hosts, and
:class:`RolloutExecutor` (named by ``fabric.yaml``) hands a task the whole ``-H`` list.

Each task is one row of :data:`ACTIONS`: the per-host function it runs on each connection.

Example::

    run_task("deploy", hosts="10.0.0.5,10.0.0.6", app="app", batch=2)
    run_task("status", stack="prod", role="rest", network="private", os_cloud="mycloud")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import fabric
import invoke

from bake.errors import EXIT_BAD_INPUT
from bake.fleet import DeployError, host, inventory
from bake.fleet.results import HostResult, say
from bake.fleet.rollout import failed, rollout, table
from bake.fleet.shipment import MODES, Wheelhouses
from bake.fleet.ssh import SshOptions, connect
from bake.fleet.targets import Target

DEFAULT_KEEP = host.DEFAULT_KEEP
HEALTH_TIMEOUT = host.HEALTH_TIMEOUT


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a task's host function needs beyond the connection and the host's label."""

    houses: Wheelhouses | None = None
    keep: int = DEFAULT_KEEP
    mode: str = "clone"
    health_timeout: float = HEALTH_TIMEOUT


# task name -> what it does on one host: (connection, label, settings) -> HostResult
ACTIONS: dict[str, Callable[[fabric.Connection, str, Settings], HostResult]] = {
    "deploy": lambda c, label, s: host.deploy_host(
        c, s.houses, s.keep, s.mode, s.health_timeout, label
    ),
    "rollback": lambda c, label, s: host.rollback_host(c, s.health_timeout, label),
    "status": lambda c, label, s: host.status_host(c, label),
    "restart": lambda c, label, s: host.restart_host(c, s.health_timeout, label),
    "releases": lambda c, label, s: host.releases_result(c, label),
}


def _bad(message: str) -> DeployError:
    return DeployError(message, EXIT_BAD_INPUT)


def check_settings(action: str, keep: int, mode: str, batch: int, max_fail: int, timeout: float):
    """DeployError (exit 2) naming the first bad option; before any host is touched."""
    if action not in ACTIONS:
        raise _bad(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    if mode not in MODES:
        raise _bad(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    if keep < 2:
        raise _bad(f"--keep must be at least 2 (current and its rollback), not {keep}")
    if batch < 1 or max_fail < 0:
        raise _bad(f"--batch must be >= 1 and --max-fail >= 0 (got {batch}, {max_fail})")
    if timeout <= 0:
        raise _bad(f"--health-timeout must be positive, not {timeout}")


def ssh_options(known_hosts: str, key: Sequence[str], accept_new_host_keys: bool) -> SshOptions:
    keys = tuple(Path(k).expanduser() for k in key)
    for path in keys:
        if not path.is_file():
            raise _bad(f"--key {path}: no such file")
    return SshOptions(Path(known_hosts), keys, accept_new_host_keys)


def run_task(
    action: str,
    hosts: str | None = None,
    role: str | None = None,
    image: str | None = None,
    network: str | None = None,
    os_cloud: str | None = None,
    user: str = "root",
    known_hosts: str = "~/.ssh/known_hosts",
    key: Sequence[str] = (),
    accept_new_host_keys: bool = False,
    batch: int = 1,
    max_fail: int = 0,
    app: str = "app",
    keep: int = DEFAULT_KEEP,
    mode: str = "clone",
    health_timeout: float = HEALTH_TIMEOUT,
    stack: str | None = None,
) -> list[HostResult]:
    """Run one fab task over its hosts (``-H`` list, else Nova by stack/role/image); print
    the table.

    Raises DeployError for bad input (before any host is touched; exit code 2) and for
    failed hosts (after the table), so that ``fab`` exits non-zero with one line.
    """
    check_settings(action, keep, mode, batch, max_fail, health_timeout)
    ssh = ssh_options(known_hosts, key, accept_new_host_keys)
    targets = inventory.choose(
        hosts,
        stack=stack,
        role=role,
        image=image,
        network=network,
        os_cloud=os_cloud,
        user=user,
    )
    ssh = inventory.stack_ssh(stack, ssh)  # a local stack's own key and known_hosts
    houses = Wheelhouses(Path(app)) if action == "deploy" else None
    settings = Settings(houses, keep, mode, health_timeout)
    act = ACTIONS[action]

    def on(target: Target) -> HostResult:
        with connect(target, ssh) as c:
            return act(c, target.label, settings)

    if houses is not None:
        say("rollout", f"{houses.release} to {len(targets)} host(s), batch {batch}")
    results = rollout(targets, on, batch=batch, max_fail=max_fail)
    print(table(results), flush=True)
    bad = failed(results)
    if bad:
        raise DeployError(
            f"{len(bad)} of {len(results)} host(s) not ok: "
            + ", ".join(f"{r.host} {r.result}" for r in bad)
        )
    return results


class RolloutExecutor(fabric.Executor):
    """Fabric's executor, except that tasks marked ``all_hosts`` run once and get the whole
    ``-H`` list as their ``hosts`` argument (a rollout needs all its hosts at once).

    Selected by ``tasks.executor_class`` in the project's ``fabric.yaml``.
    """

    def expand_calls(self, calls, apply_hosts=True):
        host_str = self.core[0].args.hosts.value
        expanded = []
        for call in calls:
            if isinstance(call, invoke.Task):
                call = invoke.Call(task=call)
            if getattr(call.task.body, "all_hosts", False):
                expanded += super().expand_calls(call.pre, apply_hosts=False)
                if host_str and apply_hosts and not call.kwargs.get("hosts"):
                    call.kwargs["hosts"] = host_str
                expanded.append(call)
                expanded += super().expand_calls(call.post, apply_hosts=False)
            else:
                expanded += super().expand_calls([call], apply_hosts)
        return expanded
