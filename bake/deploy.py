"""In-place updates of running instances over SSH with Fabric: atomic, health-checked, rolling.

Hosts carry the layout the ``bbq-app`` element bakes: ``/opt/bbq/releases/<release>/`` (a venv
with the app, ``RELEASE`` inside, written last), ``/opt/bbq/current -> releases/<release>``,
``/opt/bbq/wheels/`` (every wheel installed so far), and ``bbq-*.service`` units running from
``/opt/bbq/current``. A deploy of one host:

1. reads the host's state; the release it already runs → ``unchanged`` (nothing sent, nothing
   restarted);
2. sends only the wheels whose name and sha256 the host's pool lacks (into a staging directory);
3. builds ``releases/<release>`` offline from those wheels — a hard-linked clone of the current
   venv with the changed wheels reinstalled (``clone``, the default), or a fresh venv
   (``fresh``) — then runs the pre-switch check (imports, ``pip check``, every unit's program
   present); any failure here leaves the host untouched on its old release;
4. switches ``current`` atomically (a new symlink renamed over the old), restarts the units and
   checks health (systemd state and the HTTP health endpoint); on failure it switches back,
   restarts, and removes the bad release (``rolled-back``);
5. keeps the last ``keep`` releases.

A rollout runs hosts ``batch`` at a time and stops before the next batch once more than
``max_fail`` hosts failed. Output lines are prefixed ``[host]``; :func:`table` renders results.

Example::

    house = build_wheelhouse(Path("app"))
    results = rollout([Target("10.0.0.5")], lambda t: deploy_host(connect(t), house), batch=2)
    print(table(results))
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import posixpath
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import fabric
import invoke

from bake import fingerprint, wheelhouse

ROOT = "/opt/bbq"
RELEASES = f"{ROOT}/releases"
CURRENT = f"{ROOT}/current"
POOL = f"{ROOT}/wheels"
APP = "bbq"
DEFAULT_KEEP = 3
HEALTH_TIMEOUT = 60.0
MODES = ("clone", "fresh")

# Results of one host's deploy (or rollback/restart).
UNCHANGED, DEPLOYED, ROLLED_BACK, FAILED, SKIPPED, OK = (
    "unchanged",
    "deployed",
    "rolled-back",
    "failed",
    "skipped",
    "ok",
)


class DeployError(Exception):
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


_print_lock = threading.Lock()


def say(host: str, message: str, stream=None) -> None:
    """Print ``[host] message`` (whole lines only, safe from many threads)."""
    with _print_lock:
        for line in message.splitlines() or [""]:
            print(f"[{host}] {line}", file=stream or sys.stdout, flush=True)


def table(results: Sequence[HostResult]) -> str:
    """A text table: host, from-version, to-version, result, time (and bytes sent)."""
    rows = [("host", "from", "to", "result", "time", "sent")]
    for r in results:
        rows.append(
            (
                r.host,
                r.from_release or "-",
                r.to_release or "-",
                r.result,
                f"{r.seconds:.1f}s",
                _size(r.bytes_sent),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


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


def _sh(c, command: str, timeout: float | None = 600):
    """Run ``command`` with bash as root (sudo for another user); Fabric's Result."""
    wrapped = f"bash -c {shlex.quote(command)}"
    if c.user == "root":
        return c.run(wrapped, timeout=timeout)
    return c.sudo(wrapped, timeout=timeout)


def _check(c, command: str, what: str, timeout: float | None = 600) -> str:
    result = _sh(c, command, timeout)
    if result.exited != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise DeployError(f"{what} failed (exit {result.exited}): {' | '.join(tail)}")
    return result.stdout


# ---------------------------------------------------------------------------------------------
# Host state (read in one round trip by a small stdlib-only Python script on the host)

_STATE = r"""
import configparser, glob, hashlib, json, os, subprocess, sys
root, want = sys.argv[1], sys.argv[2:]
state = {"current": None, "releases": [], "pool": {}, "units": [], "health_url": None}
if os.path.islink(root + "/current"):
    state["current"] = os.path.basename(os.readlink(root + "/current").rstrip("/"))
for path in sorted(glob.glob(root + "/releases/*/")):
    marker = os.path.join(path, "RELEASE")
    if os.path.exists(marker):
        state["releases"].append([os.path.basename(path.rstrip("/")), os.stat(marker).st_mtime])
state["releases"].sort(key=lambda r: r[1])
# Pool hashes are remembered by (size, mtime): a wheel is hashed again only once changed.
known_path = os.path.join(root, "wheels", ".sha256.json")
try:
    with open(known_path) as f:
        known = json.load(f)
except (OSError, ValueError):
    known = {}
changed = False
for name in want:
    path = os.path.join(root, "wheels", name)
    if os.path.isfile(path):
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
if changed and os.path.isdir(os.path.join(root, "wheels")):
    with open(known_path + ".new", "w") as f:
        json.dump(known, f)
    os.replace(known_path + ".new", known_path)
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
print(json.dumps(state))
"""


@dataclasses.dataclass(frozen=True)
class HostState:
    """What a host runs: current release, complete releases oldest first, pool hashes."""

    current: str | None
    releases: tuple[str, ...]
    pool: dict[str, str]
    units: tuple[str, ...]
    health_url: str | None

    def previous(self) -> str | None:
        """The newest complete release installed before the current one (rollback target)."""
        if self.current not in self.releases:
            return None
        index = self.releases.index(self.current)
        return self.releases[index - 1] if index > 0 else None


def host_state(c, wheels: Iterable[str] = ()) -> HostState:
    """Read the host's release state; hash the pool wheels named in ``wheels``."""
    args = " ".join(shlex.quote(w) for w in [ROOT, *wheels])
    out = _check(c, f"python3 - {args} <<'BBQ_STATE'\n{_STATE}\nBBQ_STATE", "reading host state")
    data = json.loads(out.strip().splitlines()[-1])
    return HostState(
        current=data["current"],
        releases=tuple(name for name, _ in data["releases"]),
        pool=data["pool"],
        units=tuple(data["units"]),
        health_url=data["health_url"],
    )


# ---------------------------------------------------------------------------------------------
# The local side: one wheelhouse, hashed once


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
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def manifest(self) -> str:
        """``sha256sum`` lines of every wheel, sorted by name (a release's WHEELS file)."""
        return "\n".join(f"{self.hashes[w]}  {w}" for w in sorted(self.house.wheels))

    def app_wheels(self) -> list[str]:
        return [w for w in self.house.wheels if w.split("-")[0].lower() == APP]


def build_wheelhouse(app_dir: Path) -> Build:
    """Build (once per app source) and hash the app's wheelhouse; DeployError for a bad dir."""
    app_dir = Path(app_dir)
    if not (app_dir / "setup.cfg").is_file():
        raise DeployError(f"{app_dir}: not an app directory (no setup.cfg)")
    try:
        house = wheelhouse.ensure(app_dir, fingerprint.tree_hash(app_dir))
    except wheelhouse.WheelhouseError as exc:
        raise DeployError(str(exc)) from None
    hashes, sizes = {}, {}
    for name in house.wheels:
        path = house.path / name
        hashes[name] = _sha256(path)
        sizes[name] = path.stat().st_size
    build = Build(house, hashes, sizes)
    if not build.app_wheels():
        raise DeployError(f"{house.path}: no {APP} wheel in the wheelhouse")
    return build


@functools.lru_cache(maxsize=512)
def _sha256_cached(path: str, mtime: float, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    st = path.stat()
    return _sha256_cached(str(path), st.st_mtime, st.st_size)


# ---------------------------------------------------------------------------------------------
# One host


def _switch(c, release: str) -> None:
    """Point current at ``release`` atomically: a new symlink renamed over the old one."""
    link = shlex.quote(f"releases/{release}")
    _check(
        c,
        f"ln -sfn {link} {CURRENT}.new && mv -T {CURRENT}.new {CURRENT}",
        f"switching to {release}",
    )


def _restart(c, units: Sequence[str]) -> None:
    if units:
        _check(c, "systemctl restart " + " ".join(map(shlex.quote, units)), "restarting units")


def check_health(c, units: Sequence[str], url: str | None, timeout: float) -> str:
    """Wait until every unit is active and ``url`` answers 2xx; '' when healthy, else why."""
    deadline = time.monotonic() + timeout
    why = "not checked"
    while True:
        states = _sh(c, "systemctl is-active " + " ".join(map(shlex.quote, units)), 30)
        inactive = [
            f"{u}={s}" for u, s in zip(units, states.stdout.split(), strict=False) if s != "active"
        ]
        if inactive:
            why = "unit not active: " + ", ".join(inactive)
        elif url:
            answer = _sh(c, f"curl -sS -m 5 -o /dev/null -w '%{{http_code}}' {shlex.quote(url)}")
            code = answer.stdout.strip()
            why = "" if code.startswith("2") else f"{url} answered {code or answer.stderr.strip()}"
        else:
            why = ""
        if not why:
            # Still up a moment later: a unit that crashes right after starting is not healthy.
            time.sleep(2)
            again = _sh(c, "systemctl is-active " + " ".join(map(shlex.quote, units)), 30)
            if again.exited == 0:
                return ""
            why = "unit stopped after starting: " + again.stdout.strip().replace("\n", ",")
        if time.monotonic() >= deadline:
            return why
        time.sleep(1)


_INSTALL = r"""
set -eu -o pipefail
release=$1 base=$2 mode=$3 stage=$4 version=$5 manifest=$6; shift 6
target={releases}/$release
# Wheels the host already has join the staging directory as hard links.
for wheel in "$@"; do
    [ -e "$stage/$wheel" ] || ln "{pool}/$wheel" "$stage/$wheel"
done
# WHEELS (the manifest argument, sha256sum lines): what a release is built from, so that a
# clone of it knows what must change.
deps() {{ grep -v "  {app}-" || true; }}
pip=(-m pip install --quiet --no-index --no-cache-dir --disable-pip-version-check)
rm -rf "$target"
if [ "$mode" = clone ] && [ -n "$base" ] && [ -x "{releases}/$base/bin/python" ]; then
    cp -al "{releases}/$base" "$target"
    rm -f "$target/RELEASE"
    # Scripts and activate files name the venv's own path: rewrite them (new files, not the
    # hard-linked originals).
    grep -rlIF "{releases}/$base/" "$target/bin" | while read -r file; do
        sed -i "s|{releases}/$base\b|{releases}/$release|g" "$file"
    done
    sed -i "s|{releases}/$base\b|{releases}/$release|g" "$target/pyvenv.cfg"
    "$target/bin/python" "${{pip[@]}}" --no-deps --force-reinstall "$stage"/{app}-*.whl
    # The other wheels, unless the base was built from exactly these: pip installs those
    # whose version differs and keeps the rest.
    if [ ! -f "$target/WHEELS" ] || [ "$(deps < "$target/WHEELS")" != "$(deps <<< "$manifest")" ]
    then
        "$target/bin/python" "${{pip[@]}}" --find-links "$stage" "$stage"/*.whl
    fi
else
    python3 -m venv "$target"
    "$target/bin/python" "${{pip[@]}}" --find-links "$stage" "{app}==$version"
fi
echo "$manifest" > "$target/WHEELS.new"
mv -f "$target/WHEELS.new" "$target/WHEELS"
"""

_PRECHECK = r"""
set -eu -o pipefail
target={releases}/$1; shift
"$target/bin/python" -m pip check --disable-pip-version-check >/dev/null
"$target/bin/python" -c 'import {app}, importlib.metadata as m; print(m.version("{app}"))'
for unit in "$@"; do
    program=$(systemctl show -P ExecStart "$unit" | sed -n 's/.*path=\([^ ;]*\).*/\1/p')
    case "$program" in
        {current}/*) test -x "$target/${{program#{current}/}}" || {{
            echo "$unit: ${{program#{current}/}} missing in the new release" >&2; exit 1; }} ;;
    esac
done
"""

_FINISH = r"""
set -eu -o pipefail
release=$1 stage=$2; shift 2
target={releases}/$release
echo "$release" > "$target/RELEASE.new"
user=$(stat -c %U {releases}) group=$(stat -c %G {releases})
# Only what is not the owner's yet (a clone's hard links mostly are): fewer inode writes.
find "$target" \( ! -user "$user" -o ! -group "$group" \) -exec chown -h "$user:$group" {{}} +
# New wheels join the pool (a rename each: a reader never sees half a wheel).
for wheel in "$@"; do
    chown "$(stat -c %U:%G {pool})" "$stage/$wheel"
    mv -f "$stage/$wheel" "{pool}/$wheel"
done
rm -rf "$stage"
mv "$target/RELEASE.new" "$target/RELEASE"
"""


def _fmt(script: str) -> str:
    return script.format(releases=RELEASES, pool=POOL, app=APP, current=CURRENT)


def _script(c, script: str, args: Sequence[str], what: str, timeout: float = 900) -> str:
    quoted = " ".join(shlex.quote(a) for a in args)
    command = f"bash -s -- {quoted} <<'BBQ_SCRIPT'\n{_fmt(script)}\nBBQ_SCRIPT"
    return _check(c, command, what, timeout)


def deploy_host(
    c,
    build: Build,
    keep: int = DEFAULT_KEEP,
    mode: str = "clone",
    health_timeout: float = HEALTH_TIMEOUT,
    label: str | None = None,
) -> HostResult:
    """Deploy ``build`` to the host behind Connection ``c``; never leaves it half-deployed.

    Returns a HostResult: ``unchanged`` (already running it: nothing sent or restarted),
    ``deployed``, ``rolled-back`` (unhealthy after the switch: back on the old release) or
    ``failed`` (an error before the switch: the host is untouched on its old release).
    """
    label = label or c.host
    start = time.monotonic()
    result = HostResult(label, to_release=build.release)
    stage = ""
    try:
        state = host_state(c, build.house.wheels)
        result.from_release = state.current or ""
        if state.current is None:
            raise DeployError(f"no {CURRENT} on the host: not a bbq instance")
        if state.current == build.release:
            say(label, f"already on {build.release}: nothing to do")
            result.result = UNCHANGED
            return result
        missing = [w for w in build.house.wheels if state.pool.get(w) != build.hashes[w]]
        present = [w for w in build.house.wheels if w not in missing]
        stage = _check(c, f"mktemp -d {ROOT}/.incoming.XXXXXX", "making a staging directory")
        stage = stage.strip()
        if c.user != "root":
            _check(c, f"chown {shlex.quote(c.user)} {stage}", "staging directory owner")
        say(label, f"{state.current} -> {build.release}: sending {len(missing)} wheel(s)")
        for wheel in missing:
            c.put(str(build.house.path / wheel), posixpath.join(stage, wheel))
            result.bytes_sent += build.sizes[wheel]
        if build.release in state.releases and build.release != state.current:
            say(label, f"{build.release} is already installed: reusing it")
        else:
            say(label, f"installing {build.release} ({mode}) offline")
            _script(
                c,
                _INSTALL,
                [
                    build.release,
                    state.current,
                    mode,
                    stage,
                    build.house.version,
                    build.manifest(),
                    *present,
                ],
                "offline install",
            )
        version = _script(c, _PRECHECK, [build.release, *state.units], "pre-switch check").strip()
        if version.splitlines()[-1] != build.house.version:
            raise DeployError(
                f"pre-switch check: {APP} {version!r} installed, {build.house.version} expected"
            )
        _script(c, _FINISH, [build.release, stage, *missing], "finishing the release")
        stage = ""
    except Exception as exc:
        if stage:
            _sh(c, f"rm -rf {shlex.quote(stage)}")
        if result.from_release and build.release not in _releases_safe(c, result.from_release):
            _sh(c, f"rm -rf {shlex.quote(f'{RELEASES}/{build.release}')}")
        result.result, result.message = FAILED, _reason(exc)
        result.seconds = round(time.monotonic() - start, 1)
        say(label, f"FAILED before the switch, still on {result.from_release}: {result.message}")
        return result

    try:
        _switch(c, build.release)
        say(label, f"switched to {build.release}; restarting {', '.join(state.units) or '-'}")
        _restart(c, state.units)
        result.restarted = True
        why = check_health(c, state.units, state.health_url, health_timeout)
        if not why:
            result.result = DEPLOYED
            try:
                removed = prune(c, keep)
                say(label, "healthy" + (f"; removed {', '.join(removed)}" if removed else ""))
            except Exception as exc:  # deployed and healthy all the same
                result.message = f"old releases kept: {_reason(exc)}"
                say(label, f"healthy; {result.message}")
        else:
            say(label, f"UNHEALTHY: {why}; rolling back to {state.current}")
            _switch(c, state.current)
            _restart(c, state.units)
            again = check_health(c, state.units, state.health_url, health_timeout)
            discard(c, [build.release])
            result.result, result.message = ROLLED_BACK, why
            if again:
                result.message += f"; old release unhealthy too: {again}"
            say(label, f"back on {state.current}" + (f", unhealthy: {again}" if again else ""))
    except Exception as exc:
        result.result, result.message = FAILED, _reason(exc)
        try:  # best effort: back on the release it ran before
            _switch(c, state.current)
            _restart(c, state.units)
            result.message += f"; switched back to {state.current}"
        except Exception:
            result.message += f"; could not switch back to {state.current}"
        say(label, f"FAILED after the switch: {result.message}")
    result.seconds = round(time.monotonic() - start, 1)
    return result


def _releases_safe(c, current: str) -> tuple[str, ...]:
    """Complete releases on the host (never raises; ``current`` at least)."""
    try:
        return host_state(c).releases
    except Exception:
        return (current,)


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0] if isinstance(exc, DeployError) else f"{type(exc).__name__}: {text}"


def discard(c, releases: Sequence[str]) -> None:
    """Remove releases: moved away at once (hidden names are no releases), deleted after."""
    paths = " ".join(shlex.quote(f"{RELEASES}/{r}") for r in releases)
    _check(
        c,
        f'trash=$(mktemp -d {RELEASES}/.gone.XXXXXX) && mv {paths} "$trash/" && '
        '(setsid rm -rf "$trash" </dev/null >/dev/null 2>&1 &)',
        "removing releases",
    )


def prune(c, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` releases (never current or its rollback target)."""
    state = host_state(c)
    protected = {state.current, state.previous()}
    kept = set(state.releases[-keep:]) | protected
    gone = [r for r in state.releases if r not in kept]
    if gone:
        discard(c, gone)
    return gone


def rollback_host(c, health_timeout: float = HEALTH_TIMEOUT, label: str | None = None):
    """Switch the host back to the release installed before its current one; health-checked."""
    label = label or c.host
    start = time.monotonic()
    result = HostResult(label)
    try:
        state = host_state(c)
        result.from_release = state.current or ""
        target = state.previous()
        if target is None:
            raise DeployError(f"no release older than {state.current} to roll back to")
        result.to_release = target
        _switch(c, target)
        _restart(c, state.units)
        result.restarted = True
        # The release rolled back from goes: the next rollback steps further back.
        discard(c, [state.current])
        why = check_health(c, state.units, state.health_url, health_timeout)
        result.result, result.message = (FAILED, why) if why else (OK, "")
        say(label, f"rolled back {state.current} -> {target}" + (f": {why}" if why else ""))
    except Exception as exc:
        result.result, result.message = FAILED, _reason(exc)
        say(label, f"FAILED: {result.message}")
    result.seconds = round(time.monotonic() - start, 1)
    return result


def restart_host(c, health_timeout: float = HEALTH_TIMEOUT, label: str | None = None):
    """Restart the host's bbq units and check health."""
    label = label or c.host
    start = time.monotonic()
    result = HostResult(label)
    try:
        state = host_state(c)
        result.from_release = result.to_release = state.current or ""
        _restart(c, state.units)
        result.restarted = True
        why = check_health(c, state.units, state.health_url, health_timeout)
        result.result, result.message = (FAILED, why) if why else (OK, "")
        say(label, f"restarted {', '.join(state.units)}: " + (why or "healthy"))
    except Exception as exc:
        result.result, result.message = FAILED, _reason(exc)
        say(label, f"FAILED: {result.message}")
    result.seconds = round(time.monotonic() - start, 1)
    return result


def status_host(c, label: str | None = None) -> HostResult:
    """Report the current release, the units' state and health (changes nothing)."""
    label = label or c.host
    start = time.monotonic()
    result = HostResult(label)
    try:
        state = host_state(c)
        result.from_release = result.to_release = state.current or ""
        why = check_health(c, state.units, state.health_url, timeout=0)
        result.result, result.message = (FAILED, why) if why else (OK, "")
        say(
            label,
            f"current {state.current}; releases {', '.join(state.releases)}; "
            + (f"UNHEALTHY: {why}" if why else "healthy"),
        )
    except Exception as exc:
        result.result, result.message = FAILED, _reason(exc)
        say(label, f"FAILED: {result.message}")
    result.seconds = round(time.monotonic() - start, 1)
    return result


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
    build = build_wheelhouse(Path(app)) if action == "deploy" else None

    def act(target: Target) -> HostResult:
        with connect(target, ssh) as c:
            if build is not None:
                return deploy_host(c, build, keep, mode, health_timeout, target.label)
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
        say("rollout", f"{build.release} to {len(targets)} host(s), batch {batch}")
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
