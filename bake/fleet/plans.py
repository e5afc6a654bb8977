"""``--check``: what a task would do on a host, read from its state without its deploy lock,
printed and returned, with nothing changed there (no lock taken, nothing staged, sent or
restarted; the state is read as ``status`` reads it).

A plan is a JSON-ready dict (``fab deploy --check --format json`` prints it per host):

==============  ==========================================================================
key             what
==============  ==========================================================================
``task``        deploy, rollback or restart
``action``      deploy: ``nothing`` (on the release already), ``install`` (a new release),
                ``reuse`` (installed, not current), ``complete`` (an unconfirmed switch);
                rollback: ``switch``; restart: ``restart``
``from``/``to`` the releases before and after
``send``        wheels to send (``send_bytes`` in all); ``link``: taken from the host's pool
``install``     wheels installed into the new release (``mode``: clone or fresh);
                ``remove``: distributions removed from a clone; ``pip_check``: whether
                the dependencies changed (so ``pip check`` runs)
``restart``     the units restarted, then checked with ``health`` (the health URL)
``back``        the release switched back to when unhealthy
``prune``       releases removed once healthy
==============  ==========================================================================

Example::

    result = plan_deploy(c, Wheelhouses(Path("app")), keep=3, label="10.0.0.5")
    result.plan["send"], result.plan["prune"]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bake import ui
from bake.fleet.host import DEFAULT_KEEP, check_deployable, pruned, rollback_target
from bake.fleet.hoststate import HostState, host_state
from bake.fleet.layout import DEFAULT, HostLayout
from bake.fleet.results import PLANNED, UNCHANGED, HostResult, attempt, say
from bake.fleet.shipment import Build, plan, tools_for


def _base(task: str, action: str, state: HostState, to: str) -> dict:
    return {
        "task": task,
        "action": action,
        "from": state.current or "",
        "to": to,
        "send": [],
        "send_bytes": 0,
        "link": [],
        "install": [],
        "remove": [],
        "mode": "",
        "pip_check": False,
        "restart": list(state.units),
        "health": state.health_url or "",
        "back": "",
        "prune": [],
    }


def deploy_plan(
    houses: Callable[[Sequence[str]], Build],
    state: HostState,
    keep: int = DEFAULT_KEEP,
    mode: str = "clone",
) -> dict:
    """The plan of a deploy of ``houses.release`` to a host in ``state`` (see the module)."""
    release = houses.release
    back = state.last_healthy() or ""
    if state.current == release and not state.switching:
        return {**_base("deploy", "nothing", state, release), "restart": [], "health": ""}
    if state.current == release:
        found = {**_base("deploy", "complete", state, release), "from": back}
    elif release in state.releases:
        found = _base("deploy", "reuse", state, release)
    else:
        build = houses(state.extras)
        steps = plan(build, state, mode)
        tools = tools_for(steps, state, mode)
        found = {
            **_base("deploy", "install", state, release),
            "send": [*steps.send, *tools],
            "send_bytes": sum(build.sizes[w] for w in steps.send)
            + sum(path.stat().st_size for path in tools.values()),
            "link": list(steps.link),
            "install": list(steps.install),
            "remove": list(steps.remove),
            "mode": mode,
            "pip_check": steps.dependencies_changed,
        }
    return {**found, "back": back, "prune": pruned(state.releases, release, keep, back)}


def rollback_plan(state: HostState) -> dict:
    left = state.current or ""
    return {**_base("rollback", "switch", state, rollback_target(state)), "prune": [left]}


def restart_plan(state: HostState) -> dict:
    return _base("restart", "restart", state, state.current or "")


def describe(found: dict, layout: HostLayout = DEFAULT) -> str:
    """The plan as lines for people (the first one says what, the others how)."""
    task, action, to = found["task"], found["action"], found["to"]
    if action == "nothing":
        return f"already on {to}: nothing to do"
    what = {
        "install": f"would install {to} ({found['mode']}) into {layout.release(to)}",
        "reuse": f"would reuse the installed {to}",
        "complete": f"would complete the unconfirmed switch {found['from']} -> {to}",
        "switch": f"would roll back {found['from']} -> {to}",
        "restart": f"would restart on {to}",
    }[action]
    lines = [what]
    if action == "install":
        sent = ui.binary_size(found["send_bytes"])
        lines.append(f"  send {len(found['send'])} wheel(s), {sent}: {_names(found['send'])}")
        lines.append(f"  link {len(found['link'])} wheel(s) from {layout.pool}")
        lines.append(
            f"  install {_names(found['install'])}; remove {_names(found['remove'])}; "
            f"pip check: {'yes' if found['pip_check'] else 'no'}"
        )
    if task != "restart":
        lines.append(f"  switch {layout.current}: {found['from']} -> {to}")
    health = found["health"] or "units only"
    lines.append(f"  restart {_names(found['restart'])}; check health ({health})")
    if found["back"]:
        lines.append(f"  unhealthy: back to {found['back']}")
    if found["prune"]:
        lines.append(f"  then remove {_names(found['prune'])}")
    return "\n".join(lines)


def _names(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "nothing"


def _planned(c, label: str, task: str, make: Callable[[HostState], dict], layout) -> HostResult:
    def work(result: HostResult) -> None:
        state = host_state(c, layout)
        result.from_release = state.current or ""
        if task == "deploy":
            check_deployable(state, layout)
        found = make(state)
        result.from_release, result.to_release, result.plan = found["from"], found["to"], found
        result.result = UNCHANGED if found["action"] == "nothing" else PLANNED
        say(label, describe(found, layout))

    return attempt(label, work)


def plan_deploy(
    c,
    houses: Callable[[Sequence[str]], Build],
    keep: int = DEFAULT_KEEP,
    mode: str = "clone",
    label: str | None = None,
    layout: HostLayout = DEFAULT,
) -> HostResult:
    """``deploy --check`` on the host behind ``c``: ``planned`` (or ``unchanged``)."""
    make = lambda state: deploy_plan(houses, state, keep, mode)  # noqa: E731
    return _planned(c, label or c.host, "deploy", make, layout)


def plan_rollback(c, label: str | None = None, layout: HostLayout = DEFAULT) -> HostResult:
    """``rollback --check``: where the host would go back to."""
    return _planned(c, label or c.host, "rollback", rollback_plan, layout)


def plan_restart(c, label: str | None = None, layout: HostLayout = DEFAULT) -> HostResult:
    """``restart --check``: which units would restart."""
    return _planned(c, label or c.host, "restart", restart_plan, layout)
