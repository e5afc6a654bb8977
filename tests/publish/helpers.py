"""Helpers for the publish tests' own checks (plain functions, no fixtures)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BAKE = Path(sys.executable).parent / "bake"


def bake(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the installed ``bake`` program from the repository with ``env`` added to ours
    (without our OS_* and DIB_* variables), with no terminal on stdin."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "DIB_"))}
    return subprocess.run(
        [str(BAKE), *args],
        cwd=REPO,
        env={**base, **env},
        stdin=subprocess.DEVNULL,  # no terminal: as in CI
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def images_with(glance_client, fingerprint: str) -> list[dict]:
    """Every image (any status) whose bake_fingerprint is ``fingerprint``."""
    return list(glance_client.images.list(filters={"bake_fingerprint": fingerprint}))


def sha256_of_download(glance_client, image_id: str) -> str:
    digest = hashlib.sha256()
    for chunk in glance_client.images.data(image_id):
        digest.update(chunk)
    return digest.hexdigest()


class CorruptingProxy:
    """A TCP relay to ``target_port`` on 127.0.0.1 that flips one byte of what the client
    sends once a connection has carried ``at`` bytes: a faulty network between bake and Glance
    (requests smaller than ``at`` pass untouched)."""

    def __init__(self, target_port: int, at: int):
        import socket
        import threading

        self.target_port, self.at = target_port, at
        self.corrupted = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._threading = threading
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink, flip in ((client, server, True), (server, client, False)):
                self._threading.Thread(
                    target=self._pump, args=(source, sink, flip), daemon=True
                ).start()

    def _pump(self, source, sink, flip: bool) -> None:
        seen = 0
        try:
            while data := source.recv(65536):
                if flip and seen <= self.at < seen + len(data):
                    i = self.at - seen
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                    self.corrupted += 1
                seen += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(2)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


def make_qcow2(path: Path, mib: int) -> Path:
    """A real qcow2 file holding ``mib`` MiB of random data (so it does not compress away)."""
    raw = path.with_suffix(".raw")
    with open(raw, "wb") as handle:
        for _ in range(mib):
            handle.write(os.urandom(1024 * 1024))
    subprocess.run(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)], check=True
    )
    raw.unlink()
    return path


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers (a hung
    endpoint: the connection succeeds, no byte ever comes back); connections are held open
    until :meth:`close`."""

    def __init__(self) -> None:
        import socket
        import threading

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
