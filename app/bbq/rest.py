"""The REST display service: takes the job's batch signals, keeps recent summaries, and
serves them as JSON and as a live web page (a chart of counts per service over time).

API (JSON)::

    POST /api/v1/batches   one batch summary from the streaming job (validated, 400 if bad)
    GET  /api/v1/summary   latest totals per service + recent summaries (?since=SEQ: newer only)
    GET  /healthz          liveness
    GET  /                 the dashboard page (its script and style are served from /static)

A batch summary::

    {"run": "4f2c...", "batch_id": 12, "time": 1764030000.5, "records": 500,
     "counts": {"web": 120, "db": 380}, "totals": {"web": 5120, "db": 9380},
     "dead": 2, "dead_total": 7}

``counts`` are the documents this batch added, ``totals`` what the store holds after it.

>>> app = create_app(history=100)
>>> app.test_client().get("/healthz").json
{'status': 'ok'}
"""

from __future__ import annotations

import collections
import sys
import threading
import time

from flask import Flask, jsonify, render_template, request

MAX_BODY_BYTES = 1 << 20
MAX_SERVICES = 1000


class Invalid(ValueError):
    pass


def _int(payload: dict, key: str, required: bool = True) -> int:
    if key not in payload:
        if required:
            raise Invalid(f"missing field '{key}'")
        return 0
    value = payload[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"field '{key}' must be an integer, not {type(value).__name__}")
    if value < 0:
        raise Invalid(f"field '{key}' must not be negative")
    return value


def _counts(payload: dict, key: str) -> dict[str, int]:
    if key not in payload:
        raise Invalid(f"missing field '{key}'")
    value = payload[key]
    if not isinstance(value, dict):
        raise Invalid(f"field '{key}' must be an object of service: count")
    if len(value) > MAX_SERVICES:
        raise Invalid(f"field '{key}' has more than {MAX_SERVICES} services")
    for service, count in value.items():
        if not service:
            raise Invalid(f"field '{key}' has an empty service name")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise Invalid(f"field '{key}': count of '{service}' must be a non-negative integer")
    return dict(value)


def validate(payload) -> dict:
    """The summary to keep, or Invalid naming what is wrong."""
    if not isinstance(payload, dict):
        raise Invalid("body must be a JSON object")
    run = payload.get("run", "")
    if not isinstance(run, str) or len(run) > 100:
        raise Invalid("field 'run' must be a string of at most 100 characters")
    when = payload.get("time")
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise Invalid("field 'time' must be epoch seconds (a number)")
    return {
        "run": run,
        "batch_id": _int(payload, "batch_id"),
        "time": float(when),
        "records": _int(payload, "records", required=False),
        "counts": _counts(payload, "counts"),
        "totals": _counts(payload, "totals"),
        "dead": _int(payload, "dead", required=False),
        "dead_total": _int(payload, "dead_total", required=False),
    }


class Summaries:
    """Recent batch summaries and the latest totals; safe across request threads."""

    def __init__(self, history: int) -> None:
        self._lock = threading.Lock()
        self._recent: collections.deque = collections.deque(maxlen=history)
        self._seen: collections.OrderedDict = collections.OrderedDict()
        self._seq = 0
        self.totals: dict[str, int] = {}
        self.dead_total = 0
        self.updated: float | None = None

    def add(self, summary: dict) -> tuple[bool, int]:
        """Keep one summary; (False, seq) when the same run's batch was already kept."""
        key = (summary["run"], summary["batch_id"])
        with self._lock:
            if key in self._seen:
                return False, self._seen[key]
            self._seq += 1
            summary = dict(summary, seq=self._seq)
            self._recent.append(summary)
            self._seen[key] = self._seq
            while len(self._seen) > (self._recent.maxlen or 1) * 2:
                self._seen.popitem(last=False)
            self.totals = dict(summary["totals"])
            self.dead_total = summary["dead_total"]
            self.updated = time.time()
            return True, self._seq

    def view(self, since: int = 0) -> dict:
        with self._lock:
            return {
                "totals": dict(self.totals),
                "total": sum(self.totals.values()),
                "dead_total": self.dead_total,
                "updated": self.updated,
                "seq": self._seq,
                "history": [s for s in self._recent if s["seq"] > since],
            }


def create_app(history: int = 600) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    summaries = Summaries(history)
    app.extensions["bbq_summaries"] = summaries

    def error(status: int, message: str):
        return jsonify({"error": message}), status

    @app.post("/api/v1/batches")
    def post_batch():
        if not request.is_json:
            return error(415, "body must be JSON (Content-Type: application/json)")
        payload = request.get_json(silent=True)
        if payload is None:
            return error(400, "body is not valid JSON")
        try:
            summary = validate(payload)
        except Invalid as exc:
            return error(400, str(exc))
        added, seq = summaries.add(summary)
        return jsonify({"accepted": added, "seq": seq}), 201 if added else 200

    @app.get("/api/v1/summary")
    def get_summary():
        since = request.args.get("since", "0")
        if not since.isdigit():
            return error(400, "query 'since' must be a non-negative integer")
        return jsonify(summaries.view(int(since)))

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.get("/")
    def page():
        return render_template("dashboard.html")

    @app.errorhandler(404)
    def not_found(_exc):
        return error(404, f"no such resource: {request.path}")

    @app.errorhandler(405)
    def not_allowed(_exc):
        return error(405, f"method {request.method} not allowed on {request.path}")

    @app.errorhandler(413)
    def too_large(_exc):
        return error(413, f"body larger than {MAX_BODY_BYTES} bytes")

    return app


def main(argv: list[str] | None = None) -> int:
    """``bbq-rest``: serve the display service on [rest] host:port (waitress)."""
    import waitress

    from bbq import config

    conf = config.load(argv if argv is not None else sys.argv[1:], prog="bbq-rest")
    app = create_app(history=conf.rest.history)
    print(f"bbq-rest: serving on http://{conf.rest.host}:{conf.rest.port}/", flush=True)
    waitress.serve(app, host=conf.rest.host, port=conf.rest.port, threads=8, _quiet=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
