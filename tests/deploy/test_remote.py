"""The host scripts of bake/fleet/remote/, run here on a temporary tree laid out like a host
(HostLayout.under(tmp_path)), the way diskimage-builder tests the scripts its elements ship.

The command lines are the ones bake.fleet sends over SSH (scripts.command,
hoststate.locked_command), run by a local bash. No units here (this machine has no systemd):
health is the health URL alone, answered by a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import fcntl
import getpass
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bake.fleet import scripts
from bake.fleet.host import parse_phases
from bake.fleet.hoststate import LOCKED_EXIT, locked_command, parse_state, state_args
from bake.fleet.layout import HostLayout
from bake.fleet.shipment import INSTALLER, installer_wheel

USER = getpass.getuser()


def sh(command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def host(tmp_path) -> HostLayout:
    """A host tree: releases r1 and r2 (r2 current, with one installed distribution), an
    incomplete release, a pool wheel, app extras and a conf file naming the REST port."""
    layout = HostLayout.under(str(tmp_path))
    for name in ("r1", "r2", "half"):
        Path(layout.release(name)).mkdir(parents=True)
    for name in ("r1", "r2"):
        Path(layout.release(name), "RELEASE").write_text(f"{name}\n")
        time.sleep(0.01)  # releases are ordered by their RELEASE file's time
    dist = Path(layout.release("r2"), "lib/python3.11/site-packages/Flask-3.1.3.dist-info")
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: Flask\nVersion: 3.1.3\n\nBody\n")
    os.symlink("releases/r2", layout.current)
    Path(layout.pool).mkdir()
    Path(layout.pool, "bbq-0.1.0-py3-none-any.whl").write_bytes(b"wheel")
    Path(layout.extras_file).parent.mkdir(parents=True)
    Path(layout.extras_file).write_text("stream\n")
    Path(layout.conf_dir).mkdir(parents=True)
    Path(layout.conf_dir, "90-port.conf").write_text("[rest]\nport = 9999\n")
    return layout


def read_state(
    layout: HostLayout, release: str = "", wait: float = 1.0, cache: bool = True
) -> dict:
    run = sh(scripts.command("state.py", state_args(USER, release, wait, cache), layout))
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_state_reads_the_tree(host):
    data = read_state(host)
    assert data["current"] == "r2"
    assert [name for name, _ in data["releases"]] == ["r1", "r2"]  # "half" has no RELEASE
    assert data["installed"] == {"Flask": "3.1.3"}
    assert data["extras"] == "stream\n"
    assert data["health_url"] == "http://127.0.0.1:9999/healthz"
    assert data["switching"] is None and data["switch_busy"] is False
    state = parse_state(json.dumps(data), host)
    assert state.extras == ("stream",) and state.previous() == "r1"
    assert not Path(host.stage).exists()  # no release given: nothing staged


def test_state_hashes_the_pool_once_per_change(host):
    wheel = Path(host.pool, "bbq-0.1.0-py3-none-any.whl")
    first = read_state(host)["pool"]
    assert first == {wheel.name: hashlib.sha256(b"wheel").hexdigest()}
    cache = json.loads(Path(host.pool, ".sha256.json").read_text())
    assert cache[wheel.name][2] == first[wheel.name]
    wheel.write_bytes(b"other wheel")
    assert read_state(host)["pool"][wheel.name] != first[wheel.name]


def tree(root: Path) -> dict[str, tuple]:
    """Every path below ``root``: its kind, content or link target, mode and mtime."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            found[str(path)] = ("link", os.readlink(path), st.st_mtime_ns)
        elif path.is_file():
            found[str(path)] = ("file", path.read_bytes(), st.st_mode, st.st_mtime_ns)
        else:
            found[str(path)] = ("dir", st.st_mode, st.st_mtime_ns)
    return found


def test_state_without_the_cache_writes_nothing(host, tmp_path):
    # status and --check read the state this way (no deploy lock held): the tree stays as it
    # was, even the pool's hash cache, and the hashes are the same.
    before = tree(tmp_path)
    hashed = read_state(host, cache=False)["pool"]
    assert tree(tmp_path) == before
    assert read_state(host)["pool"] == hashed and Path(host.pool, ".sha256.json").exists()


def test_state_stages_another_release_and_names_a_pending_switch(host):
    Path(host.stage).mkdir()
    Path(host.stage, "left-over.whl").write_text("x")
    Path(host.switching).write_text("r1 r2\n")
    data = read_state(host, release="r3")
    assert data["switching"] == ["r1", "r2"]
    assert os.listdir(host.stage) == []  # emptied for the new release
    assert read_state(host, release="r2") and os.listdir(host.stage) == []


def test_state_waits_for_a_running_switch(host):
    with open(host.switch_lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        start = time.monotonic()
        assert read_state(host, wait=0.5)["switch_busy"] is True
        assert time.monotonic() - start >= 0.5
    assert read_state(host, wait=0.5)["switch_busy"] is False


def test_without_health_conf_there_is_no_health_url(host):
    Path(host.conf_dir, "90-port.conf").write_text("[other]\nx = 1\n")
    assert read_state(host)["health_url"] is None
    Path(host.conf_dir, "80-url.conf").write_text("[rest]\nurl = http://10.0.0.5:81/\n")
    assert read_state(host)["health_url"] == "http://10.0.0.5:81/healthz"
    Path(host.conf_dir, "90-port.conf").write_text("[rest]\n")
    Path(host.conf_dir, "80-url.conf").unlink()
    assert read_state(host)["health_url"] == f"http://127.0.0.1:{host.rest_port}/healthz"


def test_the_deploy_lock_is_held_while_stdin_is_open(host):
    first = subprocess.Popen(
        ["bash", "-c", locked_command(USER, "r3", host)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        state = parse_state(first.stdout.readline(), host)
        assert state.current == "r2" and os.path.isdir(host.stage)
        second = sh(locked_command(USER, "", host))
        assert second.returncode == LOCKED_EXIT and second.stdout == ""
        assert f"another deploy holds this host's lock {host.lock} ({USER}@" in second.stderr
    finally:
        first.stdin.close()
        assert first.wait(10) == 0
    third = sh(locked_command(USER, "", host))
    assert third.returncode == 0 and json.loads(third.stdout)["current"] == "r2"


class Health:
    """A real HTTP health endpoint on 127.0.0.1: answers ``status`` (settable)."""

    def __init__(self):
        self.status = 200
        health = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 (http.server's naming)
                self.send_response(health.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        if self.server.socket.fileno() != -1:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def health():
    server = Health()
    yield server
    server.close()


def switch(layout, to, from_, back, url, prune="", timeout="3", settle="0.2"):
    """Run switch.sh as host.switch does (no units); (exit status, output, result fields)."""
    args = [to, from_, back, timeout, settle, url, prune]
    run = sh(scripts.command("switch.sh", args, layout))
    results = [line.split("\t")[1:] for line in run.stdout.splitlines() if "BBQ-RESULT" in line]
    return run.returncode, run.stdout + run.stderr, results[-1] if results else None


def current(layout: HostLayout) -> str:
    return os.readlink(layout.current)


def test_switch_healthy_prunes(host, health):
    code, out, result = switch(host, "r1", "r2", "r2", health.url, prune="half")
    assert code == 0 and result == ["healthy", "", "half"], out
    assert current(host) == "releases/r1"
    assert "switched to r1; restarting -" in out
    assert not Path(host.release("half")).exists()
    assert not Path(host.switching).exists()  # confirmed healthy: no marker left


def phases_of(out: str) -> dict[str, float]:
    lines = [line for line in out.splitlines() if line.startswith("BBQ-PHASES\t")]
    assert len(lines) == 1, out
    return parse_phases(lines[0].split("\t", 1)[1])


def test_switch_reports_its_phases(host, health):
    code, out, result = switch(host, "r1", "r2", "r2", health.url, prune="half")
    assert code == 0 and result[0] == "healthy", out
    phases = phases_of(out)
    assert list(phases) == ["switch-lock", "restart", "health", "prune"], out
    assert phases["health"] >= 0.2  # the settle time, at least
    assert all(0 <= seconds < 30 for seconds in phases.values()), phases


def test_settle_counts_from_the_restart_not_from_the_first_good_answer(host, health):
    """Health answers only after 2 s; with a 2 s settle the switch waits ~2 s, not ~4 s (the
    processes were up 2 s when the answer came: no second wait)."""
    health.status = 503
    timer = threading.Timer(2.0, lambda: setattr(health, "status", 200))
    timer.start()
    try:
        code, out, result = switch(host, "r1", "r2", "r2", health.url, timeout="20", settle="2")
    finally:
        timer.cancel()
    assert code == 0 and result[0] == "healthy", out
    assert 1.9 <= phases_of(out)["health"] < 3.5, out


def test_settle_waits_when_the_first_good_answer_comes_early(host, health):
    code, out, result = switch(host, "r1", "r2", "r2", health.url, settle="1.5")
    assert code == 0 and result[0] == "healthy", out
    assert phases_of(out)["health"] >= 1.5, out


def test_switch_unhealthy_goes_back_and_removes_the_release(host, health):
    health.status = 500
    code, out, result = switch(host, "r1", "r2", "r2", health.url, timeout="1")
    assert code == 0, out
    assert result[0] == "rolled-back" and result[1] == f"{health.url} answered 500", result
    assert result[2] == f"{health.url} answered 500"  # the old release: unhealthy too
    assert current(host) == "releases/r2"
    assert not Path(host.release("r1")).exists()
    assert not Path(host.switching).exists()
    assert sorted(p for p in os.listdir(host.releases) if not p.startswith(".")) == ["half", "r2"]


def test_switch_unhealthy_without_a_way_back_stays_and_leaves_no_marker(host, health):
    health.status = 503
    code, out, result = switch(host, "r2", "", "", health.url, timeout="1")
    assert code == 0 and result[0] == "unhealthy", out
    assert current(host) == "releases/r2" and not Path(host.switching).exists()


def test_switch_to_a_missing_release_fails(host, health):
    Path(host.current).unlink()
    Path(host.current).mkdir()  # a directory: the new link cannot be renamed over it
    code, out, result = switch(host, "r1", "r2", "r2", health.url)
    assert code == 1 and result is None
    assert f"cannot point {host.current} at r1" in out
    assert not Path(host.switching).exists()


def test_status_reports_why_unhealthy(health):
    run = sh(scripts.command("status.sh", [health.url]))
    assert run.returncode == 0 and run.stdout == ""
    health.status = 500
    assert sh(scripts.command("status.sh", [health.url])).stdout == f"{health.url} answered 500\n"
    health.close()
    gone = sh(scripts.command("status.sh", [health.url])).stdout
    assert gone.startswith(f"{health.url} answered ") and "connect" in gone, gone


def test_scripts_are_package_data_and_end_their_here_document():
    for name in (
        "state.py",
        "locked.sh",
        "timing.sh",
        "health.sh",
        "status.sh",
        "install.sh",
        "switch.sh",
    ):
        assert scripts.text(name).endswith("\n")
    line = scripts.command("switch.sh", ["a b", ""])
    assert line.startswith("BBQ_ROOT=/opt/bbq ") and " bash -s -- 'a b' '' <<'BBQ_SCRIPT'\n" in line
    assert line.endswith("\nBBQ_SCRIPT") and "why_unhealthy() {" in line


def wheel(directory: Path, version: str, requires: str = "", extra: dict | None = None) -> str:
    """A small real wheel of the app (``bbq``) at ``version`` (``extra``: more files in it);
    its file name."""
    name = f"bbq-{version}-py3-none-any.whl"
    info = f"bbq-{version}.dist-info"
    files = {
        "bbq/__init__.py": f"VERSION = {version!r}\n",
        **{path.format(info=info): text for path, text in (extra or {}).items()},
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: bbq\nVersion: {version}\n{requires}",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(directory / name, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return name


def install(layout, release, base, mode, send, link="", requires_changed="no"):
    """Run install.sh as host.install does (no units); the CompletedProcess."""
    stage = Path(layout.stage)
    manifest = "\n".join(f"sha  {w}" for w in send.split() + link.split())
    install_ = " ".join(send.split() + link.split())
    version = release.split("-")[0]
    args = [release, base, mode, str(stage), manifest, "bbq", version, link, send, install_]
    args += ["", requires_changed, INSTALLER]
    return sh(scripts.command("install.sh", args, layout), timeout=300)


@pytest.mark.slow  # real venvs and pip: 10-30 s each
def test_install_fresh_then_clone(host):
    stage = Path(host.stage)
    stage.mkdir()
    first = wheel(stage, "0.2.0")
    run = install(host, "0.2.0-a", "r2", "fresh", first)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().splitlines()[-1] == "0.2.0"  # the installed app's version
    release = Path(host.release("0.2.0-a"))
    assert (release / "RELEASE").read_text() == "0.2.0-a\n"
    assert (release / "WHEELS").read_text() == f"sha  {first}\n"
    assert Path(host.pool, first).is_file() and not stage.exists()  # sent: now in the pool
    # A clone of it with the next app wheel: the venv's own paths name the new release;
    # reinstall.py's pypa/installer from the pool.
    stage.mkdir()
    second = wheel(stage, "0.3.0")
    shutil.copy(installer_wheel(), host.pool)
    os.remove(host.current)
    os.symlink("releases/0.2.0-a", host.current)
    run = install(host, "0.3.0-b", "0.2.0-a", "clone", second)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().splitlines()[-1] == "0.3.0"
    clone = Path(host.release("0.3.0-b"))
    assert (
        f"{host.releases}/0.3.0-b"
        in (clone / "pyvenv.cfg").read_text() + (clone / "bin" / "activate").read_text()
    )
    assert f"{host.releases}/0.2.0-a/" not in (clone / "bin" / "activate").read_text()
    assert "0.2.0-a" not in (clone / "bin" / "pip").read_text().splitlines()[0]
    assert (release / "RELEASE").exists()  # the base is untouched
    assert subprocess.run([clone / "bin" / "python", "-c", "import bbq"]).returncode == 0


@pytest.mark.slow  # real venvs and pip: 10-30 s each
def test_a_failed_install_leaves_nothing(host):
    stage = Path(host.stage)
    stage.mkdir()
    broken = wheel(stage, "0.2.0", requires="Requires-Dist: not-in-the-wheelhouse\n")
    run = install(host, "0.2.0-a", "r2", "fresh", broken)
    assert run.returncode != 0
    assert "not-in-the-wheelhouse" in run.stderr
    assert not Path(host.release("0.2.0-a")).exists() and not stage.exists()
    assert not Path(host.pool, broken).exists()  # the pool only gains wheels of a good release


def files_of(root: Path) -> dict[str, bytes]:
    """{relative path: bytes} of the files under ``root`` (symlinks as their target; a
    byte-compiled file as b"pyc": its header holds its source's time of writing)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = os.readlink(path).encode()
        elif path.suffix == ".pyc":
            found[str(path.relative_to(root))] = b"pyc"
        elif path.is_file():
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


@pytest.mark.slow  # a real venv and pip
def test_reinstall_py_installs_a_clone_as_pip_does(tmp_path):
    """remote/reinstall.py (install.sh's pip-less path: pypa/installer) in a hard-linked
    clone: the same files and bytes as pip's --force-reinstall --no-deps in another clone
    (RECORD, INSTALLER and pip's direct_url.json aside; the console script installer's own
    text, naming the clone's Python and running), and the base release untouched."""
    extra = {
        "bbq/rest.py": "def main():\n    print('rest main')\n    return 0\n",
        "bbq/static/app.js": "// v\n",
        "{info}/entry_points.txt": "[console_scripts]\nbbq-rest = bbq.rest:main\n",
    }
    old, new = wheel(tmp_path, "0.2.0", extra=extra), wheel(tmp_path, "0.3.0", extra=extra)
    base = tmp_path / "base"
    assert sh(f"python3 -m venv {base}").returncode == 0
    pip = "-m pip install -q --no-index --no-deps --disable-pip-version-check"
    assert sh(f"{base}/bin/python {pip} {tmp_path / old}").returncode == 0
    before = files_of(base)
    (tmp_path / "pool").mkdir()
    helper = Path(shutil.copy(installer_wheel(), tmp_path / "pool"))
    clones, scripts_run = {}, {}
    for how in ("pip", "reinstall"):
        clone = tmp_path / how
        assert (
            sh(f"cp -al {base} {clone} && sed -i 's|{base}|{clone}|g' {clone}/bin/*").returncode
            == 0
        )
        if how == "pip":
            command = f"{clone}/bin/python {pip} --force-reinstall {tmp_path / new}"
        else:
            program = scripts.text("reinstall.py")
            command = f"{clone}/bin/python -c {shlex.quote(program)} {helper} bbq {tmp_path / new}"
        run = sh(command)
        assert run.returncode == 0, run.stdout + run.stderr
        if how == "reinstall":
            assert run.stdout == "0.3.0\n"  # the app imported, its installed version
        script = (clone / "bin" / "bbq-rest").read_text()
        assert script.startswith(f"#!{clone}/bin/python"), script
        scripts_run[how] = sh(str(clone / "bin" / "bbq-rest")).stdout
        clones[how] = {
            path: data.replace(str(clone).encode(), b"VENV")
            for path, data in files_of(clone).items()
            if not path.endswith(("/RECORD", "/INSTALLER", "/direct_url.json", "bin/bbq-rest"))
        }
    assert clones["reinstall"] == clones["pip"]
    assert scripts_run == {"pip": "rest main\n", "reinstall": "rest main\n"}
    assert "0.3.0" in str(clones["reinstall"].keys())
    assert files_of(base) == before  # no file of the base written through a hard link
    site = next((tmp_path / "reinstall").glob("lib/python3*/site-packages"))
    record = site / "bbq-0.3.0.dist-info"
    listed = {line.split(",")[0] for line in (record / "RECORD").read_text().splitlines()}
    assert "../../../bin/bbq-rest" in listed and "bbq/rest.py" in listed
    assert (record / "INSTALLER").read_text() == "bbq-fab\n"
    assert not list(site.glob("bbq-0.2.0.dist-info"))
    assert not list(site.glob("installer*"))  # imported from its wheel, not installed
    unpacked = tmp_path / "pool" / f".{INSTALLER[: -len('.whl')]}"
    assert list(unpacked.glob("installer/__pycache__/*.pyc"))  # unpacked once, byte-compiled
