"""In-place updates of running instances over SSH with Fabric: atomic, health-checked, rolling.

Hosts carry the layout the ``bbq-app`` element bakes: ``/opt/bbq/releases/<release>/`` (a venv
with the app, ``RELEASE`` inside, written last), ``/opt/bbq/current -> releases/<release>``,
``/opt/bbq/wheels/`` (wheels sent so far; images may ship it empty), ``/etc/bbq/app-extras``
(the app's extras on this host, comma-separated; none when absent) and ``bbq-*.service`` units
running from ``/opt/bbq/current``. A deploy of one host, in three remote scripts:

1. under the host's deploy lock (held for the whole deploy: a second deploy to the host fails
   at once and changes nothing) read its state; the release it already runs → ``unchanged``
   (nothing sent, nothing restarted);
2. send only the wheels the host lacks: not in its pool with the same sha256, and (cloning)
   not installed in the current release with the same name and version (its dist-info); the
   app's own wheel always goes unless the pool has those exact bytes;
3. build ``releases/<release>`` offline — a hard-linked clone of the current venv with the
   changed wheels reinstalled (``clone``, the default), or a fresh venv of ``bbq[<extras>]``
   (``fresh``) — and check it (``pip check`` when the dependencies changed, imports, every
   unit's program present); any failure leaves the host untouched on its old release;
4. switch ``current`` atomically (a new symlink renamed over the old), restart the units and
   wait until healthy (systemd state and the HTTP health endpoint, polled; the same processes
   still up ``HEALTH_SETTLE`` seconds later); unhealthy → switch back, restart, remove the bad
   release (``rolled-back``); healthy → keep the last ``keep`` releases. The host runs this
   step to its end even if the connection drops; ``/opt/bbq/.switching`` marks a switch not
   confirmed yet (``status`` reports it, and the next deploy completes it or rolls back).

A rollout runs hosts ``batch`` at a time and stops before the next batch once more than
``max_fail`` hosts failed. Output lines are prefixed ``[host]``; :func:`table` renders results.
A user other than root needs passwordless sudo on the hosts.

Example::

    houses = Wheelhouses(Path("app"))
    results = rollout([Target("10.0.0.5")], lambda t: deploy_host(connect(t), houses), batch=2)
    print(table(results))
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import getpass
import json
import os
import posixpath
import re
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import fabric
import invoke
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from bake import hashing, ui, wheelhouse
from bake.errors import OperationFailed

ROOT = "/opt/bbq"
RELEASES = f"{ROOT}/releases"
CURRENT = f"{ROOT}/current"
POOL = f"{ROOT}/wheels"
STAGE = f"{ROOT}/.incoming"
LOCK = f"{ROOT}/.deploy.lock"
SWITCH_LOCK = f"{ROOT}/.switch.lock"
SWITCHING = f"{ROOT}/.switching"
EXTRAS_FILE = "/etc/bbq/app-extras"
APP = "bbq"
# Distributions a venv brings itself: a clone keeps the ones it has at their version (as a
# fresh venv does) and never removes them.
VENV_SEEDS = frozenset({"pip", "setuptools", "wheel"})
DEFAULT_KEEP = 3
HEALTH_TIMEOUT = 60.0
# Healthy means the same unit processes are still up this long after the first good answer:
# a unit that crashes right after starting (and is restarted by systemd) is not healthy.
HEALTH_SETTLE = 2.0
# How long reading a host's state waits for a switch still running there (a dropped deploy).
SWITCH_WAIT = 180.0
MODES = ("clone", "fresh")
LOCKED_EXIT = 75

# Results of one host's deploy (or rollback/restart).
UNCHANGED, DEPLOYED, ROLLED_BACK, FAILED, SKIPPED, OK = (
    "unchanged",
    "deployed",
    "rolled-back",
    "failed",
    "skipped",
    "ok",
)


class DeployError(OperationFailed):
    """A deploy cannot go on (bad input, or a host step failed); the message says which."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A host to deploy to: ``host[:port]`` reached as ``user`` (default root)."""

    host: str
    port: int = 22
    user: str = "root"
    name: str = ""

    @property
    def label(self) -> str:
        base = self.name or self.host
        return base if self.port == 22 or self.name else f"{base}:{self.port}"


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


@dataclasses.dataclass
class HostResult:
    """The outcome on one host (``result`` is one of the module's result names)."""

    host: str
    from_release: str = ""
    to_release: str = ""
    result: str = SKIPPED
    seconds: float = 0.0
    bytes_sent: int = 0
    restarted: bool = False
    message: str = ""


# ---------------------------------------------------------------------------------------------
# Output


def say(host: str, message: str, stream=None) -> None:
    """Print ``[host] message`` (whole lines only, safe from many threads)."""
    ui.say(host, message, stream)


def table(results: Sequence[HostResult]) -> str:
    """A text table: host, from-version, to-version, result, time (and bytes sent)."""
    rows = [
        (
            r.host,
            r.from_release or "-",
            r.to_release or "-",
            r.result,
            f"{r.seconds:.1f}s",
            ui.binary_size(r.bytes_sent),
        )
        for r in results
    ]
    return ui.table(("host", "from", "to", "result", "time", "sent"), rows, rule=True)


# ---------------------------------------------------------------------------------------------
# Connections


class _RejectUnknown:
    def missing_host_key(self, client, hostname, key):
        raise DeployError(
            f"{hostname}: host key not in known_hosts (use --accept-new-host-keys for a fresh "
            "instance)"
        )


class _AcceptNew:
    """Trust a first-seen host key and save it (a changed key never reaches a policy)."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()

    def missing_host_key(self, client, hostname, key):
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as known:
                known.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


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
    known = ssh.known_hosts.expanduser()
    if known.exists():
        connection.client.load_host_keys(str(known))
    policy = _AcceptNew(known) if ssh.accept_new_host_keys else _RejectUnknown()
    connection.client.set_missing_host_key_policy(policy)
    return connection


def _as_root(c, command: str) -> str:
    """``command`` (a shell command line) run by bash as root: through ``sudo -n`` for others."""
    wrapped = f"bash -c {shlex.quote(command)}"
    return wrapped if c.user == "root" else f"sudo -n {wrapped}"


def _check(c, command: str, what: str, timeout: float | None = 900) -> str:
    """Run ``command`` as root; its stdout, or DeployError with the end of its output."""
    result = c.run(_as_root(c, command), timeout=timeout)
    if result.exited != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise DeployError(f"{what} failed (exit {result.exited}): {' | '.join(tail)}")
    return result.stdout


def _script(c, script: str, args: Sequence[str], what: str, timeout: float = 900) -> str:
    """Run one of this module's bash scripts as root with ``args``; its stdout."""
    quoted = " ".join(shlex.quote(a) for a in args)
    command = f"bash -s -- {quoted} <<'BBQ_SCRIPT'\n{_fmt(script)}\nBBQ_SCRIPT"
    return _check(c, command, what, timeout)


def _fmt(script: str) -> str:
    return script.format(
        root=ROOT,
        releases=RELEASES,
        current=CURRENT,
        pool=POOL,
        app=APP,
        switch_lock=SWITCH_LOCK,
        switching=SWITCHING,
        health=_HEALTH,
    )


# ---------------------------------------------------------------------------------------------
# Host state (read in one round trip by a small stdlib-only Python script on the host)

_STATE = r"""
import configparser, fcntl, glob, hashlib, json, os, pwd, shutil, subprocess, sys, time
root, release, owner, wait = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
state = {"current": None, "releases": [], "pool": {}, "units": [], "health_url": None,
         "installed": {}, "extras": None, "switching": None, "switch_busy": False}
# A switch still running on the host (its deploy's connection dropped) ends first.
try:
    lock = os.open(root + "/.switch.lock", os.O_RDONLY)
except OSError:
    lock = None
deadline = time.monotonic() + wait
while lock is not None:
    try:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        break
    except BlockingIOError:
        if time.monotonic() >= deadline:
            state["switch_busy"] = True
            break
        time.sleep(0.1)
try:
    with open(root + "/.switching") as f:
        state["switching"] = f.read().split()[:2] or None
except OSError:
    pass
if os.path.islink(root + "/current"):
    state["current"] = os.path.basename(os.readlink(root + "/current").rstrip("/"))
for path in sorted(glob.glob(root + "/releases/*/")):
    marker = os.path.join(path, "RELEASE")
    if os.path.exists(marker):
        state["releases"].append([os.path.basename(path.rstrip("/")), os.stat(marker).st_mtime])
state["releases"].sort(key=lambda r: r[1])
# The distributions the current release has installed (name and version of each dist-info).
pattern = root + "/current/lib/python*/site-packages/*.dist-info/METADATA"
for meta in glob.glob(pattern):
    fields = {}
    with open(meta, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip() or len(fields) == 2:
                break
            key, _, value = line.partition(":")
            if key in ("Name", "Version"):
                fields[key] = value.strip()
    if len(fields) == 2:
        state["installed"][fields["Name"]] = fields["Version"]
# Pool hashes are remembered by (size, mtime): a wheel is hashed again only once changed.
pool = os.path.join(root, "wheels")
known_path = os.path.join(pool, ".sha256.json")
try:
    with open(known_path) as f:
        known = json.load(f)
except (OSError, ValueError):
    known = {}
changed = False
for path in sorted(glob.glob(pool + "/*.whl")):
    name = os.path.basename(path)
    st = os.stat(path)
    entry = known.get(name)
    if not entry or entry[:2] != [st.st_size, st.st_mtime_ns]:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        known[name] = entry = [st.st_size, st.st_mtime_ns, digest.hexdigest()]
        changed = True
    state["pool"][name] = entry[2]
if changed:
    with open(known_path + ".new", "w") as f:
        json.dump(known, f)
    os.replace(known_path + ".new", known_path)
try:
    with open("/etc/bbq/app-extras") as f:
        state["extras"] = f.read()
except FileNotFoundError:
    pass
out = subprocess.run(["systemctl", "list-unit-files", "--no-legend", "--state=enabled",
                      "bbq-*.service"], capture_output=True, text=True).stdout
state["units"] = [line.split()[0] for line in out.splitlines() if line.strip()]
conf = configparser.ConfigParser(interpolation=None, strict=False)
for path in sorted(glob.glob("/etc/bbq/bbq.conf.d/*.conf")):
    try:
        conf.read(path)
    except configparser.Error:
        pass
if conf.has_section("rest"):
    port = conf.get("rest", "port", fallback="8780")
    url = conf.get("rest", "url", fallback="http://127.0.0.1:" + port)
    state["health_url"] = url.rstrip("/") + "/healthz"
# A deploy of another release gets an empty staging directory, writable by the SSH user.
if release and release != state["current"]:
    stage = root + "/.incoming"
    shutil.rmtree(stage, ignore_errors=True)
    os.mkdir(stage, 0o755)
    user = pwd.getpwnam(owner)
    os.chown(stage, user.pw_uid, user.pw_gid)
print(json.dumps(state))
"""

# Holds the host's deploy lock (flock) while its stdin is open: the deployer closes it when
# done, and a dropped connection closes it too. Prints the state first.
_LOCKED = r"""
exec 8>>{lock}
if ! flock -n 8; then
    echo "another deploy holds this host's lock {lock} ($(cat {lock}.owner 2>/dev/null))" >&2
    exit {locked_exit}
fi
echo "$1" > {lock}.owner
shift
python3 -c "$@" || exit
exec cat >/dev/null
"""

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


def _host_extras(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    value = text.strip()
    if value and not _EXTRAS.fullmatch(value):
        raise DeployError(f"{EXTRAS_FILE}: {value!r} is not a comma-separated list of extras")
    return wheelhouse.normalize_extras(value.split(",") if value else ())


def _parse_state(line: str) -> HostState:
    data = json.loads(line)
    switching = data["switching"]
    return HostState(
        current=data["current"],
        releases=tuple(name for name, _ in data["releases"]),
        pool=data["pool"],
        units=tuple(data["units"]),
        health_url=data["health_url"],
        installed=data["installed"],
        extras=_host_extras(data["extras"]),
        switching=tuple(switching) if switching and len(switching) == 2 else None,
        switch_busy=data["switch_busy"],
    )


def _state_args(c, release: str = "") -> list[str]:
    return [_STATE, ROOT, release, c.user, str(SWITCH_WAIT)]


def host_state(c) -> HostState:
    """Read the host's release state (without its deploy lock; changes nothing)."""
    args = " ".join(shlex.quote(a) for a in _state_args(c))
    out = _check(c, f"python3 -c {args}", "reading host state", SWITCH_WAIT + 120)
    return _parse_state(out.strip().splitlines()[-1])


@contextlib.contextmanager
def locked_state(c, release: str = "") -> Iterator[HostState]:
    """Hold the host's deploy lock for the block and yield its state read under it.

    DeployError at once when another deploy holds the lock. With ``release`` (not the
    current one), an empty staging directory for it is made too.
    """
    c.open()
    channel = c.client.get_transport().open_session()
    try:
        channel.settimeout(SWITCH_WAIT + 120)
        who = f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"
        script = _LOCKED.format(lock=LOCK, locked_exit=LOCKED_EXIT)
        args = [f"{who} since {time.strftime('%Y-%m-%d %H:%M:%S')}", *_state_args(c, release)]
        channel.exec_command(
            _as_root(c, script) + " bbq-deploy-lock " + " ".join(map(shlex.quote, args))
        )
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
        yield _parse_state(line)
    finally:
        with contextlib.suppress(Exception):
            channel.shutdown_write()
        channel.close()


# ---------------------------------------------------------------------------------------------
# The local side: wheelhouses built and hashed once per app source and extras


@dataclasses.dataclass(frozen=True)
class Build:
    """A wheelhouse to deploy, with each wheel's sha256 and size."""

    house: wheelhouse.Wheelhouse
    hashes: dict[str, str]
    sizes: dict[str, int]

    @property
    def release(self) -> str:
        return self.house.release

    @property
    def extras(self) -> tuple[str, ...]:
        return self.house.extras

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def manifest(self) -> str:
        """``sha256sum`` lines of every wheel, sorted by name (a release's WHEELS file)."""
        return "\n".join(f"{self.hashes[w]}  {w}" for w in sorted(self.house.wheels))

    def app_wheels(self) -> list[str]:
        return [w for w in self.house.wheels if parse_wheel_filename(w)[0] == APP]

    def __call__(self, extras: Sequence[str] = ()) -> Build:
        """This build, for hosts with its extras (DeployError for others)."""
        if wheelhouse.normalize_extras(extras) != self.extras:
            raise DeployError(
                f"the host's app extras {','.join(extras) or '(none)'} differ from the "
                f"wheelhouse's {','.join(self.extras) or '(none)'}"
            )
        return self


def _app_hash(app_dir: Path) -> str:
    if not (app_dir / "setup.cfg").is_file():
        raise DeployError(f"{app_dir}: not an app directory (no setup.cfg)")
    return hashing.tree_hash(app_dir)


def build_wheelhouse(app_dir: Path, extras: Sequence[str] = (), app_hash: str = "") -> Build:
    """Build (once per app source and extras) and hash the app's wheelhouse; DeployError for
    a bad directory or an extra the app does not declare."""
    app_dir = Path(app_dir)
    app_hash = app_hash or _app_hash(app_dir)
    try:
        house = wheelhouse.ensure(app_dir, app_hash, extras=extras)
    except wheelhouse.WheelhouseError as exc:
        raise DeployError(str(exc)) from None
    hashes, sizes = {}, {}
    for name in house.wheels:
        path = house.path / name
        hashes[name] = hashing.sha256_cached(path)
        sizes[name] = path.stat().st_size
    build = Build(house, hashes, sizes)
    if not build.app_wheels():
        raise DeployError(f"{house.path}: no {APP} wheel in the wheelhouse")
    return build


class Wheelhouses:
    """The app's builds by extras: ``houses(extras)`` builds each distinct set once (threads
    asking for the same set wait for the one build)."""

    def __init__(self, app_dir: Path):
        self.app_dir = Path(app_dir)
        self.app_hash = _app_hash(self.app_dir)
        try:
            self.release = wheelhouse.release_name(self.app_dir, self.app_hash)
        except wheelhouse.WheelhouseError as exc:
            raise DeployError(str(exc)) from None
        self._builds: dict[tuple[str, ...], Build] = {}
        self._lock = threading.Lock()

    def __call__(self, extras: Sequence[str] = ()) -> Build:
        key = wheelhouse.normalize_extras(extras)
        with self._lock:
            if key not in self._builds:
                self._builds[key] = build_wheelhouse(self.app_dir, key, self.app_hash)
            return self._builds[key]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a deploy does to one host's files: wheels ``send`` (the host lacks them) and
    ``link`` (from its pool) into the staging directory, ``install`` into the new release
    (every wheel for a fresh venv), distributions ``remove``d from a clone."""

    send: tuple[str, ...]
    link: tuple[str, ...]
    install: tuple[str, ...]
    remove: tuple[str, ...]
    dependencies_changed: bool


def plan(build: Build, state: HostState, mode: str) -> Plan:
    """The plan for ``build`` on a host in ``state``: a clone keeps every distribution the
    current release has at the wheel's name and version (and the venv's own seeds at any
    version), removes the ones not in the wheelhouse, and reinstalls the app always."""
    wheels = build.house.wheels
    in_pool = {w for w in wheels if state.pool.get(w) == build.hashes[w]}
    remove: list[str] = []
    if mode == "fresh":
        install = list(wheels)
    else:
        installed = {canonicalize_name(n): v for n, v in state.installed.items()}
        names = set()
        install = []
        for wheel in wheels:
            name, version, *_ = parse_wheel_filename(wheel)
            names.add(name)
            if name in VENV_SEEDS and name in installed:
                continue  # the venv's own, as in a fresh venv (pip check tells if too old)
            if name == APP or not _same_version(installed.get(name), version):
                install.append(wheel)
        remove = sorted(n for n in installed if n not in names and n not in VENV_SEEDS)
    return Plan(
        send=tuple(w for w in install if w not in in_pool),
        link=tuple(w for w in install if w in in_pool),
        install=tuple(install),
        remove=tuple(remove),
        dependencies_changed=mode == "fresh"
        or bool(remove)
        or any(parse_wheel_filename(w)[0] != APP for w in install),
    )


def _same_version(text: str | None, version: Version) -> bool:
    try:
        return text is not None and Version(text) == version
    except InvalidVersion:
        return False


# ---------------------------------------------------------------------------------------------
# Host-side scripts

# Health, shared by the scripts below (bash functions; plain braces: not formatted).
_HEALTH = r"""
# why_unhealthy URL UNIT...: why the units or the URL are not healthy; nothing when healthy.
why_unhealthy() {
    local url=$1 bad="" i=0 unit code
    shift
    local states=()
    if [ $# -gt 0 ]; then
        mapfile -t states < <(systemctl is-active "$@" 2>/dev/null)
    fi
    for unit in "$@"; do
        [ "${states[$i]:-unknown}" = active ] || bad+="${bad:+, }$unit=${states[$i]:-unknown}"
        i=$((i + 1))
    done
    if [ -n "$bad" ]; then
        echo "unit not active: $bad"
    elif [ -n "$url" ]; then
        code=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' "$url" 2>&1) || true
        case $code in
            2??) ;;
            *) echo "$url answered ${code//$'\n'/ }" ;;
        esac
    fi
}
main_pids() {
    if [ $# -gt 0 ]; then systemctl show -P MainPID "$@" | tr '\n' ' '; fi
}
# wait_healthy TIMEOUT SETTLE URL UNIT...: polls until healthy (0 when so, and the same unit
# processes still up SETTLE seconds later), or prints why not once TIMEOUT seconds passed.
wait_healthy() {
    local timeout=$1 settle=$2 url=$3 why before end
    shift 3
    end=$(($(date +%s) + ${timeout%.*}))
    while :; do
        why=$(why_unhealthy "$url" "$@")
        if [ -z "$why" ]; then
            before=$(main_pids "$@")
            sleep "$settle"
            why=$(why_unhealthy "" "$@")
            if [ -z "$why" ] && [ "$(main_pids "$@")" = "$before" ]; then
                return 0
            fi
            why=${why:-"unit restarted right after starting"}
        fi
        if [ "$(date +%s)" -ge "$end" ]; then
            echo "$why"
            return 1
        fi
        sleep 0.2
    done
}
"""

_STATUS = r"""
{health}
url=$1
shift
why_unhealthy "$url" "$@"
"""

# Build releases/<release> from the staging directory (clone, fresh, or reuse a complete
# one), check it, and make it complete; on any failure remove what it made.
_INSTALL = r"""
set -eu -o pipefail
release=$1 base=$2 mode=$3 stage=$4 manifest=$5 requirement=$6 version=$7
link=$8 send=$9 install=${{10}} remove=${{11}} deps_changed=${{12}}
shift 12
target={releases}/$release
finished=
cleanup() {{
    rm -rf "$stage"
    if [ -z "$finished" ] && [ "$mode" != reuse ]; then rm -rf "$target"; fi
}}
trap cleanup EXIT
pip=(-m pip --quiet --disable-pip-version-check)
offline=(--no-index --no-cache-dir)
requires() {{
    cat "$1"/lib/python3*/site-packages/{app}-*.dist-info/METADATA | grep '^Requires-Dist:' || true
}}
for wheel in $link; do ln -f "{pool}/$wheel" "$stage/$wheel"; done
check=yes
case $mode in
clone)
    rm -rf "$target"
    cp -al "{releases}/$base" "$target"
    rm -f "$target/RELEASE" "$target/WHEELS"
    # Scripts and activate files name the venv's own path: rewrite them (new files, not the
    # hard-linked originals).
    grep -rlIF "{releases}/$base/" "$target/bin" | while read -r file; do
        sed -i "s|{releases}/$base\b|{releases}/$release|g" "$file"
    done
    sed -i "s|{releases}/$base\b|{releases}/$release|g" "$target/pyvenv.cfg"
    before=$(requires "$target")
    wheels=()
    for wheel in $install; do wheels+=("$stage/$wheel"); done
    "$target/bin/python" "${{pip[@]}}" install "${{offline[@]}}" --no-deps --force-reinstall \
        "${{wheels[@]}}"
    if [ -n "$remove" ]; then
        # shellcheck disable=SC2086
        "$target/bin/python" "${{pip[@]}}" uninstall --yes $remove
    fi
    # The base's dependencies passed this check when it was made: only a changed dependency
    # or changed app requirements need it again.
    if [ "$deps_changed" = no ] && [ "$(requires "$target")" = "$before" ]; then check=no; fi
    ;;
fresh)
    rm -rf "$target"
    python3 -m venv "$target"
    "$target/bin/python" "${{pip[@]}}" install "${{offline[@]}}" --find-links "$stage" \
        "$requirement==$version"
    ;;
esac
if [ "$check" = yes ]; then
    "$target/bin/python" -m pip check --disable-pip-version-check >&2
fi
for unit in "$@"; do
    program=$(systemctl show -P ExecStart "$unit" | sed -n 's/.*path=\([^ ;]*\).*/\1/p')
    case "$program" in
        {current}/*) test -x "$target/${{program#{current}/}}" || {{
            echo "$unit: ${{program#{current}/}} missing in the new release" >&2; exit 1; }} ;;
    esac
done
installed=$("$target/bin/python" -c \
    'import {app}, importlib.metadata as m; print(m.version("{app}"))')
# WHEELS (sha256sum lines): what the release is built from.
echo "$manifest" > "$target/WHEELS"
echo "$release" > "$target/RELEASE.new"
user=$(stat -c %U {releases}) group=$(stat -c %G {releases})
# Only what is not the owner's yet (a clone's hard links mostly are): fewer inode writes.
find "$target" \( ! -user "$user" -o ! -group "$group" \) -exec chown -h "$user:$group" {{}} +
if [ -n "$send" ]; then
    [ -d {pool} ] || install -d -o "$user" -g "$group" {pool}
    owner=$(stat -c %U:%G {pool})
    for wheel in $send; do  # new wheels join the pool (a rename each: never half a wheel)
        chown "$owner" "$stage/$wheel"
        mv -f "$stage/$wheel" "{pool}/$wheel"
    done
fi
mv "$target/RELEASE.new" "$target/RELEASE"
finished=yes
echo "$installed"
"""

# Switch current to a release, restart the units, wait until healthy; then remove releases
# (prune) or, unhealthy, switch back (when given a release to go back to). Runs to its end
# even if the deployer's connection drops (see _switch); the switching marker names a switch
# whose health is not confirmed yet.
_SWITCH = r"""
{health}
set -u -o pipefail
to=$1 from=$2 back=$3 timeout=$4 settle=$5 url=$6 prune=$7
shift 7
exec 9>>{switch_lock}
flock 9
point() {{ ln -sfn "releases/$1" {current}.new && mv -T {current}.new {current}; }}
restart() {{ if [ $# -gt 0 ]; then systemctl restart "$@" || true; fi; }}
discard() {{  # moved away at once (hidden names are no releases), deleted at low priority
    [ $# -gt 0 ] || return 0
    local trash release
    trash=$(mktemp -d {releases}/.gone.XXXXXX) || return 1
    for release in "$@"; do mv "{releases}/$release" "$trash/"; done
    (setsid nice -n 19 ionice -c 3 rm -rf "$trash" </dev/null >/dev/null 2>&1 9>&- &)
}}
report() {{
    [ -z "$from" ] || rm -f {switching}
    printf 'BBQ-RESULT\t%s\t%s\t%s\n' "$1" "${{2//$'\n'/ }}" "${{3//$'\n'/ }}"
    exit 0
}}
if [ -n "$from" ]; then
    echo "$from $to" > {switching}.new && mv -f {switching}.new {switching}
fi
if ! point "$to"; then
    [ -z "$from" ] || rm -f {switching}
    echo "cannot point {current} at $to" >&2
    exit 1
fi
echo "switched to $to; restarting ${{*:--}}"
restart "$@"
if why=$(wait_healthy "$timeout" "$settle" "$url" "$@"); then
    removed=""
    # shellcheck disable=SC2086
    if [ -n "$prune" ] && discard $prune; then removed=$prune; fi
    report healthy "" "$removed"
fi
[ -n "$back" ] || report unhealthy "$why" ""
echo "UNHEALTHY: $why; switching back to $back"
point "$back"
restart "$@"
again=$(wait_healthy "$timeout" "$settle" "$url" "$@") || true
discard "$to" || true
report rolled-back "$why" "$again"
"""


@dataclasses.dataclass(frozen=True)
class Switched:
    """How a switch ended: ``healthy``, ``unhealthy`` or ``rolled-back`` (with why, and the
    old release's health after going back), and the releases removed."""

    outcome: str
    why: str
    again: str
    removed: tuple[str, ...]


def _switch(
    c,
    state: HostState,
    to: str,
    from_: str,
    back: str,
    prune: Sequence[str],
    health_timeout: float,
    label: str,
) -> Switched:
    """Run _SWITCH on the host. Its output goes to a file there first, and hangups and
    broken pipes are ignored, so a dropped connection does not stop it half-way."""
    args = [to, from_, back, str(health_timeout), str(HEALTH_SETTLE), state.health_url or ""]
    args += [" ".join(prune), *state.units]
    quoted = " ".join(shlex.quote(a) for a in args)
    log = f"{ROOT}/.switch.log"
    command = (
        "trap '' HUP PIPE\n"
        f"bash -s -- {quoted} >{log} 2>&1 <<'BBQ_SCRIPT'\n{_fmt(_SWITCH)}\nBBQ_SCRIPT\n"
        f"rc=$?; cat {log}; exit $rc"
    )
    try:
        out = _check(c, command, "switching", 3 * health_timeout + 120)
    except DeployError:
        raise
    except Exception as exc:
        raise DeployError(
            f"connection lost while switching to {to} ({_reason(exc)}): the host completes the "
            "switch on its own (health-checked, switched back if unhealthy); see fab status"
        ) from None
    result = None
    for line in out.splitlines():
        if line.startswith("BBQ-RESULT\t"):
            result = line.split("\t")[1:]
        elif line.strip():
            say(label, line)
    if result is None:
        raise DeployError(f"switching to {to}: no result from the host")
    outcome, why, extra = (result + ["", ""])[:3]
    if outcome == "healthy":
        return Switched(outcome, "", "", tuple(extra.split()))
    return Switched(outcome, why, extra, ())


def _attempt(label: str, work: Callable[[HostResult], None]) -> HostResult:
    """Run ``work`` on a new HostResult, timed; an exception makes it ``failed`` (one line)."""
    start = time.monotonic()
    result = HostResult(label)
    try:
        work(result)
    except Exception as exc:
        result.result, result.message = FAILED, _reason(exc)
        say(label, f"FAILED: {result.message}")
    result.seconds = round(time.monotonic() - start, 1)
    return result


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if isinstance(exc, DeployError) else f"{type(exc).__name__}: {text}"


# ---------------------------------------------------------------------------------------------
# One host


def _install(c, build: Build, state: HostState, mode: str, result: HostResult, label: str):
    """Send what the host lacks and build the release there (checked); before the switch."""
    reuse = build.release in state.releases
    steps = Plan((), (), (), (), False) if reuse else plan(build, state, mode)
    say(label, f"{state.current} -> {build.release}: sending {len(steps.send)} wheel(s)")
    if steps.send:
        sftp = c.sftp()
        for wheel in steps.send:
            sftp.put(str(build.house.path / wheel), posixpath.join(STAGE, wheel))
            result.bytes_sent += build.sizes[wheel]
    if reuse:
        say(label, f"{build.release} is already installed: reusing it")
    else:
        extras = f"[{','.join(build.extras)}]" if build.extras else ""
        say(label, f"installing {APP}{extras} {build.release} ({mode}) offline")
    args = [
        build.release,
        state.current or "",
        "reuse" if reuse else mode,
        STAGE,
        build.manifest(),
        build.house.requirement,
        build.house.version,
        " ".join(steps.link),
        " ".join(steps.send),
        " ".join(steps.install),
        " ".join(steps.remove),
        "yes" if steps.dependencies_changed else "no",
        *state.units,
    ]
    out = _script(c, _INSTALL, args, "offline install and pre-switch check")
    installed = out.strip().splitlines()[-1] if out.strip() else ""
    if installed != build.house.version:
        raise DeployError(f"{APP} {installed!r} installed, {build.house.version} expected")


def deploy_host(
    c,
    houses: Callable[[Sequence[str]], Build],
    keep: int = DEFAULT_KEEP,
    mode: str = "clone",
    health_timeout: float = HEALTH_TIMEOUT,
    label: str | None = None,
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
        with locked_state(c, release) as state:
            result.from_release = state.current or ""
            if state.current is None:
                raise DeployError(f"no {CURRENT} on the host: not a bbq instance")
            if state.switch_busy:
                raise DeployError("a switch of an earlier deploy is still running on the host")
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
                    _install(c, houses(state.extras), state, mode, result, label)
                except Exception as exc:
                    raise DeployError(
                        f"before the switch, still on {state.current}: {_reason(exc)}"
                    ) from None
            order = [r for r in state.releases if r != release] + [release]
            kept = set(order[-keep:]) | {release, back}
            prune = [r for r in order if r not in kept]
            switched = _switch(c, state, release, back, back, prune, health_timeout, label)
            result.restarted = True
            if switched.outcome == "healthy":
                result.result = DEPLOYED
                removed = ", ".join(switched.removed)
                say(label, "healthy" + (f"; removed {removed}" if removed else ""))
            else:
                result.result, result.message = ROLLED_BACK, switched.why
                if switched.again:
                    result.message += f"; old release unhealthy too: {switched.again}"
                unhealthy = f", unhealthy: {switched.again}" if switched.again else ""
                say(label, f"back on {back}{unhealthy}")

    return _attempt(label, work)


def rollback_host(c, health_timeout: float = HEALTH_TIMEOUT, label: str | None = None):
    """Switch the host back to the release installed before its current one (or to the one
    an unconfirmed switch came from); health-checked. The release left is removed."""
    label = label or c.host

    def work(result: HostResult) -> None:
        with locked_state(c) as state:
            result.from_release = state.current or ""
            target = state.previous()
            if state.switching and state.switching[0] != state.current:
                target = state.switching[0]
            if target is None:
                raise DeployError(f"no release older than {state.current} to roll back to")
            result.to_release = target
            left = state.current or ""
            switched = _switch(c, state, target, left, "", [left], health_timeout, label)
            result.restarted = True
            result.result, result.message = (OK, "") if not switched.why else (FAILED, switched.why)
            why = f": {switched.why}" if switched.why else ""
            say(label, f"rolled back {state.current} -> {target}{why}")

    return _attempt(label, work)


def restart_host(c, health_timeout: float = HEALTH_TIMEOUT, label: str | None = None):
    """Restart the host's bbq units and check health."""
    label = label or c.host

    def work(result: HostResult) -> None:
        with locked_state(c) as state:
            result.from_release = result.to_release = state.current or ""
            switched = _switch(c, state, state.current or "", "", "", [], health_timeout, label)
            result.restarted = True
            result.result, result.message = (OK, "") if not switched.why else (FAILED, switched.why)
            say(label, f"restarted {', '.join(state.units)}: " + (switched.why or "healthy"))

    return _attempt(label, work)


def status_host(c, label: str | None = None) -> HostResult:
    """Report the current release, the units' state and health (changes nothing); a switch
    whose health was never confirmed counts as a failure."""
    label = label or c.host

    def work(result: HostResult) -> None:
        state = host_state(c)
        result.from_release = result.to_release = state.current or ""
        why = _script(c, _STATUS, [state.health_url or "", *state.units], "health").strip()
        if state.switch_busy:
            why = f"a switch to {state.current} is still running"
        elif state.switching:
            why = (
                f"switch {state.switching[0]} -> {state.switching[1]} not confirmed healthy "
                f"(units: {why or 'healthy'}): deploy again or roll back"
            )
        result.result, result.message = (FAILED, why) if why else (OK, "")
        say(
            label,
            f"current {state.current}; releases {', '.join(state.releases)}; "
            + (f"UNHEALTHY: {why}" if why else "healthy"),
        )

    return _attempt(label, work)


def releases_host(c, label: str | None = None) -> list[str]:
    """The host's complete releases, oldest first; the current one marked with ``*``."""
    label = label or c.host
    state = host_state(c)
    marked = [f"{r}{' *' if r == state.current else ''}" for r in state.releases]
    for line in marked:
        say(label, line)
    return marked


# ---------------------------------------------------------------------------------------------
# Many hosts


def rollout(
    targets: Sequence[Target],
    action: Callable[[Target], HostResult],
    batch: int = 1,
    max_fail: int = 0,
) -> list[HostResult]:
    """Run ``action`` on ``targets`` ``batch`` at a time (threads); stop before the next batch
    once more than ``max_fail`` hosts failed or rolled back. Hosts not reached are ``skipped``.
    """
    if batch < 1:
        raise DeployError(f"--batch must be at least 1, not {batch}")
    if max_fail < 0:
        raise DeployError(f"--max-fail must be 0 or more, not {max_fail}")
    if not targets:
        raise DeployError("no hosts to deploy to")
    results: list[HostResult] = []
    failures = 0
    for first in range(0, len(targets), batch):
        group = targets[first : first + batch]
        if failures > max_fail:
            for target in group:
                results.append(HostResult(target.label, result=SKIPPED, message="rollout stopped"))
            continue
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(group)) as pool:
            done = list(pool.map(_guarded(action), group))
        results += done
        failures += sum(r.result in (FAILED, ROLLED_BACK) for r in done)
        if failures > max_fail and first + batch < len(targets):
            say("rollout", f"stopping: {failures} host(s) failed (--max-fail {max_fail})")
    return results


def _guarded(action: Callable[[Target], HostResult]) -> Callable[[Target], HostResult]:
    def run(target: Target) -> HostResult:
        try:
            return action(target)
        except Exception as exc:  # connection refused, host key rejected, ...
            say(target.label, f"FAILED: {_reason(exc)}")
            return HostResult(target.label, result=FAILED, message=_reason(exc))

    return run


def failed(results: Iterable[HostResult]) -> list[HostResult]:
    """The results that count as failures (failed, rolled back, or skipped)."""
    return [r for r in results if r.result in (FAILED, ROLLED_BACK, SKIPPED)]


# ---------------------------------------------------------------------------------------------
# Behind fabfile.py: one entry point per task, and the executor that hands a task all hosts


ACTIONS = ("deploy", "rollback", "status", "restart", "releases")


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
) -> list[HostResult]:
    """Run one fab task over its hosts (``-H`` list, else Nova by role/image); print the table.

    Raises DeployError for bad input (before any host is touched) and for failed hosts
    (after the table), so that ``fab`` exits non-zero with one line.
    """
    from bake import inventory

    if action not in ACTIONS:
        raise DeployError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    if mode not in MODES:
        raise DeployError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    if keep < 2:
        raise DeployError(f"--keep must be at least 2 (current and its rollback), not {keep}")
    if batch < 1 or max_fail < 0:
        raise DeployError(f"--batch must be >= 1 and --max-fail >= 0 (got {batch}, {max_fail})")
    if health_timeout <= 0:
        raise DeployError(f"--health-timeout must be positive, not {health_timeout}")
    keys = tuple(Path(k).expanduser() for k in key)
    for path in keys:
        if not path.is_file():
            raise DeployError(f"--key {path}: no such file")
    ssh = SshOptions(Path(known_hosts), keys, accept_new_host_keys)
    if hosts:
        targets = inventory.parse_hosts(hosts, user)
    else:
        from bake import auth

        try:
            cloud = auth.connect(cloud=os_cloud)
        except auth.AuthError as exc:
            raise DeployError(str(exc)) from None
        targets = inventory.from_nova(cloud, role=role, image=image, network=network, user=user)
    houses = Wheelhouses(Path(app)) if action == "deploy" else None

    def act(target: Target) -> HostResult:
        with connect(target, ssh) as c:
            if houses is not None:
                return deploy_host(c, houses, keep, mode, health_timeout, target.label)
            if action == "rollback":
                return rollback_host(c, health_timeout, target.label)
            if action == "restart":
                return restart_host(c, health_timeout, target.label)
            if action == "status":
                return status_host(c, target.label)
            start = time.monotonic()
            marked = releases_host(c, target.label)
            current = next((r[:-2] for r in marked if r.endswith(" *")), "")
            seconds = round(time.monotonic() - start, 1)
            return HostResult(target.label, current, current, OK, seconds)

    if action == "deploy":
        say("rollout", f"{houses.release} to {len(targets)} host(s), batch {batch}")
    results = rollout(targets, act, batch=batch, max_fail=max_fail)
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
