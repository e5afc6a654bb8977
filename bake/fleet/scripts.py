"""The scripts that run on hosts (``remote/``, package data) and the command lines that run
them there: the host's layout in ``BBQ_*`` variables, values as arguments.

=============  ==================================================================
script         what
=============  ==================================================================
state.py       the host's release state as one JSON line (stdlib Python)
locked.sh      holds the deploy lock while stdin is open; runs state.py under it
timing.sh      bash functions: usec, lap, phases (each step's seconds; sent ahead)
health.sh      bash functions: why_unhealthy, wait_healthy (sent ahead of others)
status.sh      why the units or the health URL are unhealthy
install.sh     builds and checks a release offline (clone, fresh, reuse)
reinstall.py   reinstalls universal wheels into a clone with pypa/installer (install.sh)
switch.sh      switches current, restarts, waits for health; prunes or goes back
=============  ==================================================================

Each is linted (shellcheck, bashate, ruff: ``tools/lint``) and unit-tested on a temporary
tree (``tests/deploy/test_remote.py``) with :meth:`HostLayout.under
<bake.fleet.layout.HostLayout.under>`.

Example::

    line = command("status.sh", ["http://127.0.0.1:8780/healthz", "bbq-rest.service"])
    run(c, "status.sh", [url, *units], "health")      # over a Fabric connection, as root
"""

from __future__ import annotations

import functools
import importlib.resources
import shlex
from collections.abc import Mapping, Sequence

from bake.fleet import ssh
from bake.fleet.layout import DEFAULT, HostLayout

# Scripts whose bash functions go ahead of a script (health.sh defines what these call).
NEEDS = {
    "status.sh": ("timing.sh", "health.sh"),
    "switch.sh": ("timing.sh", "health.sh"),
    "install.sh": ("timing.sh", "reinstall.py"),
}
# The end marker of a Python helper's here-document inside a bash script.
PY_END = "BBQ_PY"
# A here-document's end marker: no script has a line that is just this.
END = "BBQ_SCRIPT"


@functools.cache
def text(name: str) -> str:
    """The text of ``remote/<name>``."""
    return importlib.resources.files("bake.fleet.remote").joinpath(name).read_text()


def source(name: str) -> str:
    """What runs on the host for ``name``: the scripts it needs first (a Python one as a bash
    function printing its text: ``reinstall.py`` as ``reinstall_py``), then its own text."""
    return "".join(_needed(part) for part in NEEDS.get(name, ())) + text(name)


def _needed(name: str) -> str:
    if not name.endswith(".py"):
        return text(name)
    body = text(name)
    if f"\n{PY_END}\n" in f"\n{body}":
        raise ValueError(f"remote/{name} has a line {PY_END}: it would end its here-document")
    return f"{name[:-3]}_py() {{\n    cat <<'{PY_END}'\n{body}{PY_END}\n}}\n"


def assignments(layout: HostLayout = DEFAULT, env: Mapping[str, str] | None = None) -> str:
    """``BBQ_ROOT=/opt/bbq ...``: the layout (and ``env``) as shell variable assignments."""
    values = {**layout.environment(), **(env or {})}
    return " ".join(f"{key}={shlex.quote(value)}" for key, value in values.items())


def command(
    name: str,
    args: Sequence[str],
    layout: HostLayout = DEFAULT,
    env: Mapping[str, str] | None = None,
) -> str:
    """A shell command line that runs the host script ``name`` with ``args``: bash scripts
    read from a here-document (``bash -s -- ARGS``), Python ones given by ``python3 -c``."""
    quoted = " ".join(shlex.quote(a) for a in args)
    if name.endswith(".py"):
        return f"{assignments(layout, env)} python3 -c {shlex.quote(source(name))} {quoted}"
    body = source(name)
    if f"\n{END}\n" in f"\n{body}":
        raise ValueError(f"remote/{name} has a line {END}: it would end its here-document")
    return f"{assignments(layout, env)} bash -s -- {quoted} <<'{END}'\n{body}{END}"


def run(
    c,
    name: str,
    args: Sequence[str],
    what: str,
    layout: HostLayout = DEFAULT,
    timeout: float = 900,
) -> str:
    """Run the host script ``name`` as root over the Fabric connection ``c``; its stdout
    (DeployError naming ``what`` when it fails)."""
    return ssh.check(c, command(name, args, layout), what, timeout)
