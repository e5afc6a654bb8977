"""Helpers for tests and benchmarks that run real servers on 127.0.0.1.

>>> port = free_port()
>>> proc = start(["python3", "-m", "http.server", str(port)], log_path="/tmp/http.log")
>>> wait_for_port(port, proc=proc)
>>> stop(proc)
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start(argv: list[str], log_path: str | Path, env: dict | None = None, **kw):
    """Start a server in its own process group, its output appended to ``log_path``."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # closed by stop()
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        **kw,
    )
    proc.log_path = str(log_path)
    proc.log_file = log
    return proc


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
            raise RuntimeError(
                f"{proc.args[0]} exited with {proc.returncode} before listening on {port}:\n"
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
