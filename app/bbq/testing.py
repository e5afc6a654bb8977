"""Helpers for tests and benchmarks that run real servers on 127.0.0.1.

>>> port = free_port()
>>> proc = start(["python3", "-m", "http.server", str(port)], log_path="/tmp/http.log")
>>> wait_for_port(port, proc=proc)
>>> stop(proc)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"

# Servers started here and not stopped yet: stopped (whole process group) when this
# process exits normally; PR_SET_PDEATHSIG covers the abnormal exits.
_running: set = set()
_running_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _die_with_parent(argv: list[str]) -> list[str]:
    """``argv`` run so that it gets SIGKILL when this process (the thread starting it) dies:
    util-linux ``setpriv --pdeathsig`` sets PR_SET_PDEATHSIG and execs ``argv`` (same pid),
    without Python code between fork and exec. Unchanged where setpriv is missing."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *argv] if setpriv else list(argv)


def start(argv: list[str], log_path: str | Path, env: dict | None = None, **kw):
    """Start a server in its own process group, its output appended to ``log_path``.

    Its lifetime is tied to this process: SIGKILLed if this process dies (parent-death
    signal), its group stopped at exit if nobody called ``stop``. Start servers from a
    thread that outlives them (the parent-death signal fires when the starting thread ends).
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # closed by stop()
    proc = subprocess.Popen(
        _die_with_parent(argv),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        **kw,
    )
    proc.log_path = str(log_path)
    proc.log_file = log
    proc.command = argv[0]
    with _running_lock:
        _running.add(proc)
    return proc


@atexit.register
def _stop_leftovers() -> None:
    """Stop what an interrupted run (test failure in setup, Ctrl-C) left running."""
    with _running_lock:
        left = list(_running)
    for proc in left:
        with contextlib.suppress(Exception):
            stop(proc, timeout=5)


def log_tail(proc, chars: int = 3000) -> str:
    path = getattr(proc, "log_path", None)
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        data = f.read()
    return data[-chars:].decode("utf-8", "replace")


def wait_for_port(port: int, proc=None, timeout: float = 60.0, host: str = HOST) -> None:
    """Wait until something accepts TCP connections on ``port``; fail early if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            name = getattr(proc, "command", proc.args[0])
            raise RuntimeError(
                f"{name} exited with {proc.returncode} before listening on {port}:\n"
                + log_tail(proc)
            )
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
        time.sleep(0.1)


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate()`` until it returns a true value (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout}s (last: {value!r})")
        time.sleep(interval)


def stop(proc, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Stop a process started by ``start`` and its whole process group."""
    if proc is None:
        return
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    else:
        # The leader is gone; children of its group may still run.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    log = getattr(proc, "log_file", None)
    if log is not None:
        log.close()
    with _running_lock:
        _running.discard(proc)
