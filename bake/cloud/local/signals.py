"""The local stack's wait-condition endpoint: what Heat's ``OS::Heat::WaitConditionHandle``
is to a cloud stack. Each server's role file ends by running its ``curl_cli`` with a JSON
body (``{"status": "SUCCESS"|"FAILURE", "id": ..., "reason": ...}``); here that line posts
to an HTTP server on 127.0.0.1 in the ``bake stack create --local`` process, which the
instances reach since they share the host's network. Each handle has its own path and the
stack a random token (Heat's ``X-Auth-Token``); a signal without it is refused (401).

Example::

    with Endpoint() as endpoint:
        line = endpoint.curl_cli("master")   # the role file's __SIGNAL__
        ...                                  # the instance runs: line --data-binary '{...}'
        endpoint.signal("master")            # Signal('SUCCESS', 'spark master up', ...)
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import secrets
import threading
import time

HOST = "127.0.0.1"
MAX_BODY = 64 * 1024
STATUSES = ("SUCCESS", "FAILURE")


@dataclasses.dataclass(frozen=True)
class Signal:
    status: str
    reason: str
    id: str
    received: float  # time.monotonic()


class Endpoint:
    """An HTTP server (a thread) receiving wait-condition signals for a stack's handles."""

    def __init__(self, host: str = HOST) -> None:
        self.token = secrets.token_urlsafe(24)
        self.signals: dict[str, Signal] = {}
        self.refused = 0
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer((host, 0), _handler_for(self))
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Endpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()

    def url(self, handle: str) -> str:
        return f"http://{self.host}:{self.port}/v1/signal/{handle}"

    def curl_cli(self, handle: str) -> str:
        """The command line a role file runs to signal ``handle``, shaped like Heat's
        ``curl_cli`` (the caller appends ``--data-binary BODY``)."""
        return (
            f"curl -i -X POST -H 'X-Auth-Token: {self.token}' "
            "-H 'Content-Type: application/json' -H 'Accept: application/json' "
            f"{self.url(handle)}"
        )

    def signal(self, handle: str) -> Signal | None:
        with self._lock:
            return self.signals.get(handle)

    def _record(self, handle: str, body: dict) -> None:
        status = str(body.get("status", "SUCCESS")).upper()
        signal = Signal(
            status=status if status in STATUSES else "FAILURE",
            reason=" ".join(str(body.get("reason", "")).split())[:500],
            id=str(body.get("id", handle)),
            received=time.monotonic(),
        )
        with self._lock:
            # The first answer counts, as with a wait condition of count 1.
            self.signals.setdefault(handle, signal)


def _handler_for(endpoint: Endpoint) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            prefix = "/v1/signal/"
            handle = self.path[len(prefix) :] if self.path.startswith(prefix) else ""
            if not handle or "/" in handle:
                return self._answer(404, {"error": "no such handle"})
            if not secrets.compare_digest(self.headers.get("X-Auth-Token", ""), endpoint.token):
                endpoint.refused += 1
                return self._answer(401, {"error": "bad or missing X-Auth-Token"})
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 <= length <= MAX_BODY:
                return self._answer(413, {"error": "body too large"})
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return self._answer(400, {"error": "body is not JSON"})
            if not isinstance(body, dict):
                return self._answer(400, {"error": "body is not a JSON object"})
            endpoint._record(handle, body)
            return self._answer(200, None)

        def _answer(self, code: int, document: object) -> None:
            data = json.dumps(document).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

    return Handler
