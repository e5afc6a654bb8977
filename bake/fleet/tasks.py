"""Behind ``fabfile.py``: :func:`run_task` runs one task over all its hosts, and
:class:`RolloutExecutor` (named by ``fabric.yaml``) hands a task the whole ``-H`` list.

Each task is one row of :data:`ACTIONS` (and, for ``--check``, of :data:`PLANS`): the
per-host function it runs on each connection. Its options are read by
:func:`bake.fleet.options.parse` first: a bad one is one line and exit code 2.

With ``--format json`` stdout holds one JSON document (:func:`bake.fleet.rollout.as_json`)
and nothing else: the per-host lines go to stderr, and so does the output of anything the
task runs (file descriptor 1 is pointed at stderr meanwhile).

Example::

    run_task("deploy", hosts="10.0.0.5,10.0.0.6", app="app", batch="1,50%")
    run_task("deploy", hosts="10.0.0.5", app="app", check=True, format="json")
    run_task("status", stack="prod", role="rest", network="private", os_cloud="mycloud")
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import fabric
import invoke

from bake import ui
from bake.fleet import DeployError, host, inventory, plans
from bake.fleet.options import NEVER, TaskOptions, parse
from bake.fleet.results import HostResult, say
from bake.fleet.rollout import as_json, failed, rollout, table
from bake.fleet.shipment import Wheelhouses
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


Action = Callable[[fabric.Connection, str, Settings], HostResult]
# task name -> what it does on one host: (connection, label, settings) -> HostResult
ACTIONS: dict[str, Action] = {
    "deploy": lambda c, label, s: host.deploy_host(
        c, s.houses, s.keep, s.mode, s.health_timeout, label
    ),
    "rollback": lambda c, label, s: host.rollback_host(c, s.health_timeout, label),
    "status": lambda c, label, s: host.status_host(c, label),
    "restart": lambda c, label, s: host.restart_host(c, s.health_timeout, label),
    "releases": lambda c, label, s: host.releases_result(c, label),
}
# --check: what the task would do on one host (nothing changed there)
PLANS: dict[str, Action] = {
    "deploy": lambda c, label, s: plans.plan_deploy(c, s.houses, s.keep, s.mode, label),
    "rollback": lambda c, label, s: plans.plan_rollback(c, label),
    "restart": lambda c, label, s: plans.plan_restart(c, label),
}


def ssh_options(known_hosts: str, key: Sequence[str], accept_new_host_keys: bool) -> SshOptions:
    keys = tuple(Path(k).expanduser() for k in key)  # each checked by options.parse
    return SshOptions(Path(known_hosts).expanduser(), keys, accept_new_host_keys)


def choose_targets(opts: TaskOptions) -> list[Target]:
    """The task's hosts: ``-H``, a local stack, or Nova with the cloud options."""
    cloud = inventory.CloudOptions(
        opts.os_cloud, opts.config_file, opts.os_region_name, opts.os_interface
    )
    return inventory.choose(
        opts.hosts,
        stack=opts.stack,
        role=opts.role,
        image=opts.image,
        network=opts.network,
        cloud=cloud,
        user=opts.user,
    )


@contextlib.contextmanager
def stdout_kept_for(document: bool) -> Iterator[Any]:
    """The stream the result goes to. ``document``: every other output, this process's
    and its children's, goes to stderr meanwhile, so stdout holds the document alone."""
    if not document:
        yield sys.stdout
        return
    sys.stdout.flush()
    saved = os.dup(1)
    real = os.fdopen(os.dup(saved), "w", closefd=True)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield real
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        real.close()


def run_task(action: str, **given: Any) -> list[HostResult]:
    """Run one fab task over its hosts (``-H`` list, else Nova by stack/role/image) with
    the options ``given`` (name: text as typed, None when not given); print the results as
    a table or (``format="json"``) one JSON document on stdout.

    Raises DeployError for bad input (before any host is touched; exit code 2) and for
    failed hosts (after the results), so that ``fab`` exits non-zero with one line.
    """
    opts = parse(action, given)
    if action == "hosts":
        return list_hosts(opts)
    with stdout_kept_for(opts.format == "json") as out:
        results = _run(action, opts)
        print(as_json(results) if opts.format == "json" else table(results), file=out)
        out.flush()
    bad = failed(results)
    if bad:
        raise DeployError(
            f"{len(bad)} of {len(results)} host(s) not ok: "
            + ", ".join(f"{r.host} {r.result}" for r in bad)
        )
    return results


def list_hosts(opts: TaskOptions) -> list[HostResult]:
    """``fab hosts``: the hosts the other tasks would reach with the same options, resolved
    (``-H``, a local stack or Nova) and printed, without connecting to any of them."""
    targets = choose_targets(opts)
    rows = [(t.name or "-", t.host, t.port, t.user) for t in targets]
    header = ("name", "address", "port", "user")
    if opts.format == "json":
        print(json.dumps([dict(zip(header, row, strict=True)) for row in rows], indent=2))
    else:
        print(ui.table(header, rows, rule=True))
    return [HostResult(t.label) for t in targets]


def _run(action: str, opts: TaskOptions) -> list[HostResult]:
    ssh = ssh_options(opts.known_hosts, opts.key, opts.accept_new_host_keys)
    targets = choose_targets(opts)
    ssh = inventory.stack_ssh(opts.stack, ssh)  # a local stack's own key and known_hosts
    houses = None
    if action == "deploy":
        houses = Wheelhouses(Path(opts.app or "app"))
    settings = Settings(houses, opts.keep, opts.mode, opts.health_timeout)
    act = (PLANS if opts.check else ACTIONS)[action]

    def on(target: Target) -> HostResult:
        with connect(target, ssh) as c:
            return act(c, target.label, settings)

    sizes = opts.batch.split(len(targets))
    what = f"{houses.release} to " if houses else ""
    if opts.check:
        say("rollout", f"--check: {action} {what}{len(targets)} host(s), changing nothing")
        return rollout(targets, on, opts.batch, NEVER)
    batches = "+".join(map(str, sizes))
    say(
        "rollout",
        f"{action} {what}{len(targets)} host(s) in batches of {batches} "
        f"(--batch {opts.batch}, --max-fail {opts.max_fail})",
    )
    return rollout(targets, on, opts.batch, opts.max_fail)


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
