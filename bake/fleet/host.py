"""Actions on one host over a Fabric connection: deploy, rollback, restart, status, releases.

A deploy of one host, in three host scripts (``remote/``):

1. under the host's deploy lock (held for the whole deploy: a second deploy to the host fails
   at once and changes nothing) read its state; the release it already runs → ``unchanged``
   (nothing sent, nothing restarted);
2. send only the wheels the host lacks (:func:`bake.fleet.shipment.plan`);
3. build ``releases/<release>`` offline — a hard-linked clone of the current venv with the
   changed wheels reinstalled (``clone``, the default), or a fresh venv of ``bbq[<extras>]``
   (``fresh``) — and check it (``pip check`` when the dependencies changed, imports, every
   unit's program present); any failure leaves the host untouched on its old release;
4. switch ``current`` atomically (a new symlink renamed over the old), restart the units and
   wait until healthy (systemd state and the HTTP health endpoint, polled; the same processes
   up ``HEALTH_SETTLE`` seconds at least since the restart); unhealthy → switch back,
   restart, remove the bad release (``rolled-back``); healthy → keep the last ``keep``
   releases. The host runs this step to its end even if the connection drops; the switching
   marker names a switch not confirmed yet (``status`` reports it, and the next deploy
   completes it or rolls back).

Output lines are prefixed ``[host]``. A user other than root needs passwordless sudo.

Example::

    with connect(Target("10.0.0.5"), ssh) as c:
        result = deploy_host(c, Wheelhouses(Path("app")), keep=3)
"""

from __future__ import annotations

import dataclasses
import posixpath
import time
from collections.abc import Callable, Sequence

from bake.fleet import DeployError, scripts, ssh
from bake.fleet.hoststate import HostState, host_state, locked_state
from bake.fleet.layout import DEFAULT, HostLayout
from bake.fleet.results import (
    DEPLOYED,
    FAILED,
    OK,
    ROLLED_BACK,
    UNCHANGED,
    HostResult,
    attempt,
    reason,
    say,
)
from bake.fleet.shipment import INSTALLER, NOTHING, Build, plan, tools_for

DEFAULT_KEEP = 3
HEALTH_TIMEOUT = 60.0
# Healthy means the same unit processes up this long at least since the restart (and a good
# answer): a unit that crashes right after starting (and is restarted by systemd) is not
# healthy. One slower to answer than this is healthy at its first good answer.
HEALTH_SETTLE = 2.0


@dataclasses.dataclass(frozen=True)
class Switched:
    """How a switch ended: ``healthy``, ``unhealthy`` or ``rolled-back`` (with why, and the
    old release's health after going back), and the releases removed."""

    outcome: str
    why: str
    again: str
    removed: tuple[str, ...]
    # Seconds of each step on the host (switch.sh's BBQ-PHASES line): lock, restart, ...
    phases: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Switch:
    """A switch to run on a host: to release ``to`` from ``from_`` (the switching marker's;
    empty: no marker), back to ``back`` when unhealthy (empty: stay), then ``prune``."""

    to: str
    from_: str = ""
    back: str = ""
    prune: Sequence[str] = ()


def install(
    c,
    build: Build,
    state: HostState,
    mode: str,
    result: HostResult,
    label: str,
    layout: HostLayout = DEFAULT,
) -> None:
    """Send what the host lacks and build the release there (checked); before the switch."""
    reuse = build.release in state.releases
    steps = NOTHING if reuse else plan(build, state, mode)
    files = {wheel: build.house.path / wheel for wheel in steps.send}
    files.update(tools_for(steps, state, mode))  # reinstall.py's installer, once a host
    say(label, f"{state.current} -> {build.release}: sending {len(files)} wheel(s)")
    if files:
        with result.phase("send"):
            sftp = c.sftp()
            for wheel, path in files.items():
                sftp.put(str(path), posixpath.join(layout.stage, wheel))
                result.bytes_sent += path.stat().st_size
    if reuse:
        say(label, f"{build.release} is already installed: reusing it")
    else:
        extras = f"[{','.join(build.extras)}]" if build.extras else ""
        say(label, f"installing {layout.app}{extras} {build.release} ({mode}) offline")
    args = [
        build.release,
        state.current or "",
        "reuse" if reuse else mode,
        layout.stage,
        build.manifest(),
        build.house.requirement,
        build.house.version,
        " ".join(steps.link),
        " ".join(files),
        " ".join(steps.install),
        " ".join(steps.remove),
        "yes" if steps.dependencies_changed else "no",
        INSTALLER,
        *state.units,
    ]
    with result.phase("install"):
        out = scripts.run(c, "install.sh", args, "offline install and pre-switch check", layout)
    lines = out.strip().splitlines()
    for line in lines:
        if line.startswith("BBQ-PHASES\t"):
            result.phases.update(parse_phases(line.split("\t", 1)[1]))
    installed = lines[-1] if lines else ""
    if installed != build.house.version:
        raise DeployError(f"{layout.app} {installed!r} installed, {build.house.version} expected")


def switch_command(
    state: HostState, switch: Switch, health_timeout: float, layout: HostLayout = DEFAULT
) -> str:
    """switch.sh's command line: its output goes to a file on the host first, and hangups
    and broken pipes are ignored, so a dropped connection does not stop it half-way."""
    args = [switch.to, switch.from_, switch.back, str(health_timeout), str(HEALTH_SETTLE)]
    args += [state.health_url or "", " ".join(switch.prune), *state.units]
    log = layout.switch_log
    return (
        "trap '' HUP PIPE\n"
        f"{scripts.command('switch.sh', args, layout)} >{log} 2>&1\n"
        f"rc=$?; cat {log}; exit $rc"
    )


def parse_switched(out: str, to: str, label: str) -> Switched:
    """The Switched of switch.sh's output; its other lines are printed, prefixed."""
    result, phases = None, {}
    for line in out.splitlines():
        if line.startswith("BBQ-RESULT\t"):
            result = line.split("\t")[1:]
        elif line.startswith("BBQ-PHASES\t"):
            phases = parse_phases(line.split("\t", 1)[1])
        elif line.strip():
            say(label, line)
    if result is None:
        raise DeployError(f"switching to {to}: no result from the host")
    outcome, why, extra = (result + ["", ""])[:3]
    if outcome == "healthy":
        return Switched(outcome, "", "", tuple(extra.split()), phases)
    return Switched(outcome, why, extra, (), phases)


def parse_phases(text: str) -> dict[str, float]:
    """``{name: seconds}`` of a host script's ``NAME=SECONDS ...`` (malformed pairs skipped)."""
    phases: dict[str, float] = {}
    for pair in text.split():
        name, _, seconds = pair.partition("=")
        try:
            phases[name] = round(phases.get(name, 0.0) + float(seconds), 3)
        except ValueError:
            continue
    return phases


def switch(
    c,
    state: HostState,
    change: Switch,
    health_timeout: float,
    label: str,
    layout: HostLayout = DEFAULT,
) -> Switched:
    """Run switch.sh on the host (to its end there, even if the connection drops)."""
    command = switch_command(state, change, health_timeout, layout)
    try:
        out = ssh.check(c, command, "switching", 3 * health_timeout + 120)
    except DeployError:
        raise
    except Exception as exc:
        raise DeployError(
            f"connection lost while switching to {change.to} ({reason(exc)}): the host "
            "completes the switch on its own (health-checked, switched back if unhealthy); "
            "see fab status"
        ) from None
    return parse_switched(out, change.to, label)


def _report_deploy(result: HostResult, switched: Switched, back: str, label: str) -> None:
    if switched.outcome == "healthy":
        result.result = DEPLOYED
        removed = ", ".join(switched.removed)
        say(label, "healthy" + (f"; removed {removed}" if removed else ""))
        return
    result.result, result.message = ROLLED_BACK, switched.why
    if switched.again:
        result.message += f"; old release unhealthy too: {switched.again}"
    unhealthy = f", unhealthy: {switched.again}" if switched.again else ""
    say(label, f"back on {back}{unhealthy}")


def check_deployable(state: HostState, layout: HostLayout) -> None:
    if state.current is None:
        raise DeployError(f"no {layout.current} on the host: not a bbq instance")
    if state.switch_busy:
        raise DeployError("a switch of an earlier deploy is still running on the host")


def pruned(releases: Sequence[str], release: str, keep: int, back: str) -> list[str]:
    """The releases a healthy switch to ``release`` removes: all but the newest ``keep``
    (``release`` counted) and the one to go back to."""
    order = [r for r in releases if r != release] + [release]
    kept = set(order[-keep:]) | {release, back}
    return [r for r in order if r not in kept]


def deploy_host(
    c,
    houses: Callable[[Sequence[str]], Build],
    keep: int = DEFAULT_KEEP,
    mode: str = "clone",
    health_timeout: float = HEALTH_TIMEOUT,
    label: str | None = None,
    layout: HostLayout = DEFAULT,
) -> HostResult:
    """Deploy the app to the host behind Connection ``c``; never leaves it half-deployed.

    ``houses(extras)`` gives the Build for the host's app extras (a Wheelhouses, or one
    Build). Returns a HostResult: ``unchanged`` (already running it: nothing sent or
    restarted), ``deployed``, ``rolled-back`` (unhealthy after the switch: back on the old
    release) or ``failed`` (before the switch: the host is untouched on its old release).
    """
    label = label or c.host
    release = houses.release

    def work(result: HostResult) -> None:
        result.to_release = release
        with result.phase("connect"):
            c.open()
        started = time.monotonic()
        with locked_state(c, release, layout) as state:
            result.phases["state"] = round(time.monotonic() - started, 3)
            result.from_release = state.current or ""
            check_deployable(state, layout)
            back = state.last_healthy() or ""
            if state.current == release and not state.switching:
                say(label, f"already on {release}: nothing to do")
                result.result = UNCHANGED
                return
            if state.current == release:
                say(label, f"completing the unconfirmed switch {back} -> {release}")
                result.from_release = back
            else:
                try:
                    install(c, houses(state.extras), state, mode, result, label, layout)
                except Exception as exc:
                    raise DeployError(
                        f"before the switch, still on {state.current}: {reason(exc)}"
                    ) from None
            change = Switch(release, back, back, pruned(state.releases, release, keep, back))
            with result.phase("switch"):
                switched = switch(c, state, change, health_timeout, label, layout)
            result.phases.update(switched.phases)
            result.restarted = True
            _report_deploy(result, switched, back, label)

    return attempt(label, work)


def rollback_target(state: HostState) -> str:
    """The release a rollback goes to: the one an unconfirmed switch came from, else the
    one installed before the current one (DeployError when there is none)."""
    target = state.previous()
    if state.switching and state.switching[0] != state.current:
        target = state.switching[0]
    if target is None:
        raise DeployError(f"no release older than {state.current} to roll back to")
    return target


def rollback_host(
    c,
    health_timeout: float = HEALTH_TIMEOUT,
    label: str | None = None,
    layout: HostLayout = DEFAULT,
) -> HostResult:
    """Switch the host back to the release installed before its current one (or to the one
    an unconfirmed switch came from); health-checked. The release left is removed."""
    label = label or c.host

    def work(result: HostResult) -> None:
        with locked_state(c, layout=layout) as state:
            result.from_release = state.current or ""
            target = rollback_target(state)
            result.to_release = target
            left = state.current or ""
            change = Switch(target, left, "", [left])
            switched = switch(c, state, change, health_timeout, label, layout)
            result.restarted = True
            result.result, result.message = (OK, "") if not switched.why else (FAILED, switched.why)
            why = f": {switched.why}" if switched.why else ""
            say(label, f"rolled back {state.current} -> {target}{why}")

    return attempt(label, work)


def restart_host(
    c,
    health_timeout: float = HEALTH_TIMEOUT,
    label: str | None = None,
    layout: HostLayout = DEFAULT,
) -> HostResult:
    """Restart the host's bbq units and check health."""
    label = label or c.host

    def work(result: HostResult) -> None:
        with locked_state(c, layout=layout) as state:
            result.from_release = result.to_release = state.current or ""
            change = Switch(state.current or "")
            switched = switch(c, state, change, health_timeout, label, layout)
            result.restarted = True
            result.result, result.message = (OK, "") if not switched.why else (FAILED, switched.why)
            say(label, f"restarted {', '.join(state.units)}: " + (switched.why or "healthy"))

    return attempt(label, work)


def _unhealthy_why(c, state: HostState, layout: HostLayout) -> str:
    """Why the host is not healthy (empty when it is); an unconfirmed switch counts."""
    why = scripts.run(c, "status.sh", [state.health_url or "", *state.units], "health", layout)
    why = why.strip()
    if state.switch_busy:
        return f"a switch to {state.current} is still running"
    if state.switching:
        return (
            f"switch {state.switching[0]} -> {state.switching[1]} not confirmed healthy "
            f"(units: {why or 'healthy'}): deploy again or roll back"
        )
    return why


def status_host(c, label: str | None = None, layout: HostLayout = DEFAULT) -> HostResult:
    """Report the current release, the units' state and health (changes nothing); a switch
    whose health was never confirmed counts as a failure."""
    label = label or c.host

    def work(result: HostResult) -> None:
        state = host_state(c, layout)
        result.from_release = result.to_release = state.current or ""
        why = _unhealthy_why(c, state, layout)
        result.result, result.message = (FAILED, why) if why else (OK, "")
        say(
            label,
            f"current {state.current}; releases {', '.join(state.releases)}; "
            + (f"UNHEALTHY: {why}" if why else "healthy"),
        )

    return attempt(label, work)


def releases_host(c, label: str | None = None, layout: HostLayout = DEFAULT) -> list[str]:
    """The host's complete releases, oldest first; the current one marked with ``*``."""
    label = label or c.host
    state = host_state(c, layout)
    marked = [f"{r}{' *' if r == state.current else ''}" for r in state.releases]
    for line in marked:
        say(label, line)
    return marked


def releases_result(c, label: str, layout: HostLayout = DEFAULT) -> HostResult:
    """:func:`releases_host` as a HostResult (``ok``, current release as from and to)."""
    start = time.monotonic()
    marked = releases_host(c, label, layout)
    current = next((r[:-2] for r in marked if r.endswith(" *")), "")
    return HostResult(label, current, current, OK, round(time.monotonic() - start, 1))
