"""What a booted server's cloud-init would do at the end of its role file, done by the test:
run the wait-condition signal (Heat's ``curl_cli``) that the role's ``bbq-role-ready`` script
sends once its service answers. Nova's fake driver boots nothing, so nothing else would.
"""

from __future__ import annotations

import base64
import subprocess
import threading

import yaml

READY_SCRIPT = "/usr/local/sbin/bbq-role-ready"


def user_data(nova, server_id: str) -> str:
    """The server's user data as Nova returns it to an admin (compute API 2.3 or newer)."""
    resp, body = nova.client.get(f"/servers/{server_id}")
    encoded = body["server"].get("OS-EXT-SRV-ATTR:user_data")
    return base64.b64decode(encoded).decode() if encoded else ""


def success_signal(cloud_config: str) -> str:
    """The command line of the role's ready script that reports success to Heat."""
    document = yaml.safe_load(cloud_config)
    scripts = [f["content"] for f in document.get("write_files", []) if f["path"] == READY_SCRIPT]
    assert scripts, f"no {READY_SCRIPT} in the user data"
    lines = [line.strip() for line in scripts[0].splitlines() if '"status": "SUCCESS"' in line]
    assert len(lines) == 1, f"expected one success signal line, got {lines}"
    assert lines[0].startswith("curl "), lines[0]
    return lines[0]


def send(command: str) -> str:
    """Run the signal line with sh, as the instance would; its HTTP status line."""
    result = subprocess.run(
        ["sh", "-c", command + " --max-time 30 -sS"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"signal failed: {result.stderr}"
    return result.stdout.splitlines()[0] if result.stdout else ""


class Signaller:
    """A thread that answers for every server of a stack: once Nova lists it ACTIVE, it
    reads its user data and sends its success signal (once per server)."""

    def __init__(self, nova, stack_name: str, interval: float = 1.0):
        self.nova, self.stack_name, self.interval = nova, stack_name, interval
        self.signalled: dict[str, str] = {}  # server name -> HTTP status line
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Signaller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception as exc:  # reported by the test through .errors
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def poll(self) -> None:
        for server in self.nova.servers.list(detailed=True):
            meta = server.metadata or {}
            if meta.get("bbq_stack") != self.stack_name or server.name in self.signalled:
                continue
            if server.status != "ACTIVE":
                continue
            self.signalled[server.name] = send(success_signal(user_data(self.nova, server.id)))
