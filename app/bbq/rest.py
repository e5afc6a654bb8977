"""The REST display service: takes the job's batch signals, keeps recent summaries, and
serves them as JSON and as a live web page (a chart of counts per service over time).

API (JSON; strict both ways: no NaN or Infinity, UTF-8 only, no duplicate keys)::

    POST /api/v1/batches   one batch summary from the streaming job (validated, 4xx if bad)
    GET  /api/v1/summary   latest totals per service + recent summaries (?since=SEQ: newer only)
                           (also: batches accepted, epoch, oldest seq kept, whether stored)
    GET  /healthz          {"status": "ok", "version": ...}; 503 with the reason while the
                           [rest] unhealthy_file exists (an operator's drain switch)
    GET  /                 the dashboard page (its script and style are served from /static)

A batch summary::

    {"run": "4f2c...", "batch_id": 12, "time": 1764030000.5, "records": 500,
     "counts": {"web": 120, "db": 380}, "totals": {"web": 5120, "db": 9380},
     "dead": 2, "dead_total": 7}

``counts`` are the documents this batch added, ``totals`` what the store holds after it.
Every field is bounded (strings, integers up to 2**53 - 1, at most 1000 services of at most
128 characters, ``time`` within 1970..5138), and so is what is kept: ``history`` summaries
and at most 32 MiB of them, in memory and in MongoDB (collection ``rest_history`` beside the
packets, pruned to the same bound: a restarted service keeps its history; ``bbq.history``).
Every bad request gets a 4xx and ``{"error": "..."}``.

>>> app = create_app(history=100)
>>> app.test_client().get("/healthz").json["status"]
'ok'
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib
import re
import stat
import sys

import jsonschema
from flask import Flask, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from bbq import config, metrics, records
from bbq.history import MAX_HISTORY_BYTES, History, Summaries  # noqa: F401

LOG = logging.getLogger(__name__)

MAX_BODY_BYTES = 1 << 20
MAX_SERVICES = records.MAX_SIGNAL_SERVICES
MAX_SERVICE_CHARS = records.MAX_SERVICE_CHARS
MAX_RUN_CHARS = 100
MAX_INT = 2**53 - 1  # what a browser's JSON.parse keeps exactly
MAX_TIME = 1e11  # epoch seconds: year 5138
SINCE = re.compile(r"\A[0-9]{1,15}\Z")


def version() -> str:
    """The installed ``bbq`` distribution's version."""
    return config.version()


class Invalid(ValueError):
    """A refused body; ``reason``: its metric label (json, schema)."""

    def __init__(self, message: str, reason: str = "json") -> None:
        super().__init__(message)
        self.reason = reason


class StrictJSON(DefaultJSONProvider):
    """Flask's JSON, refusing NaN and Infinity on the way out (they are not JSON)."""

    def dumps(self, obj, **kwargs):
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


def _no_constant(name: str):
    raise Invalid(f"body is not valid JSON: {name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Invalid(f"body is not valid JSON: number {text[:40]} is out of range")
    return value


def _unique_keys(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise Invalid(f"body is not valid JSON: duplicate key '{records.printable(dup, 60)}'")
    return obj


def loads_strict(body: bytes):
    """The JSON value of ``body``, or Invalid naming what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"body is not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise Invalid(f"body is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise Invalid("body is not valid JSON: nested too deeply") from None
    except Invalid:
        raise
    except ValueError as exc:  # an integer of more than 4300 digits
        raise Invalid(f"body is not valid JSON: {str(exc).split(':')[0]}") from None


# The one schema of a batch summary (the API reference points at it); its errorMessage
# words each refusal. Integers are Python ints (jsonschema would take 1.0 and so on).
SCHEMA_FILE = pathlib.Path(__file__).with_name("schemas") / "batch-summary.json"
SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)
VALIDATOR = _Validator(SCHEMA)


def _where(path) -> str:
    """``field 'counts': count of 'web'`` for the path ``counts/web``; ``body`` for none."""
    path = [records.printable(str(p), 60) for p in path]
    if not path:
        return "body"
    if len(path) == 2 and path[0] in ("counts", "totals"):
        return f"field '{path[0]}': count of '{path[1]}'"
    return "field '" + "/".join(path) + "'"


def problem(error: jsonschema.ValidationError) -> str:
    """One line for a schema violation, in the schema's own words (its errorMessage)."""
    words = error.schema.get("errorMessage", {}) if isinstance(error.schema, dict) else {}
    if error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        return words.get("required", {}).get(missing) or f"missing field '{missing}'"
    message = words.get(error.validator) or words.get("*")
    if message is None:
        return f"{_where(error.absolute_path)}: {records.printable(error.message, 200)}"
    message = message.replace("{type}", type(error.instance).__name__)
    where = _where(error.absolute_path)
    return message if where == "body" and message.startswith("body") else f"{where} {message}"


def validate(payload) -> dict:
    """The summary to keep, or Invalid naming what is wrong (checked against SCHEMA)."""
    error = jsonschema.exceptions.best_match(VALIDATOR.iter_errors(payload))
    if error is not None:
        raise Invalid(problem(error), reason="schema")
    return {
        "run": payload.get("run", ""),
        "batch_id": payload["batch_id"],
        "time": float(payload["time"]),
        "records": payload.get("records", 0),
        "counts": dict(payload["counts"]),
        "totals": dict(payload["totals"]),
        "dead": payload.get("dead", 0),
        "dead_total": payload.get("dead_total", 0),
    }


def _error(status: int, message: str):
    return jsonify({"error": message}), status


def unhealthy_reason(path: str) -> str | None:
    """Why the service reports itself unhealthy: None unless ``path`` exists. Its first
    line is the reason when it is a small regular file (never opened otherwise: a FIFO
    would block)."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    reason = ""
    if stat.S_ISREG(st.st_mode):
        try:
            with open(path, "rb") as f:
                reason = f.read(200).decode("utf-8", "replace").split("\n")[0].strip()
        except OSError:
            pass
    return reason or f"{path} exists"


def _add_api(app: Flask, summaries: Summaries) -> None:
    @app.post("/api/v1/batches")
    def post_batch():
        counters = app.extensions["bbq_metrics"]
        if not request.is_json:
            counters.refused("media_type")
            return _error(415, "body must be JSON (Content-Type: application/json)")
        try:
            summary = validate(loads_strict(request.get_data(cache=False)))
        except Invalid as exc:
            counters.refused(exc.reason)
            return _error(400, str(exc))
        added, seq = summaries.add(summary)
        counters.signal(added, summary)
        return jsonify({"accepted": added, "seq": seq}), 201 if added else 200

    @app.get("/api/v1/summary")
    def get_summary():
        since = request.args.get("since", "0")
        if not SINCE.match(since):
            return _error(400, "query 'since' must be a non-negative integer of 1 to 15 digits")
        return jsonify(summaries.view(int(since)))


def _add_pages(app: Flask, unhealthy_file: str) -> None:
    running = version()

    @app.get("/healthz")
    def healthz():
        reason = unhealthy_reason(unhealthy_file)
        if reason is not None:
            return jsonify({"status": "unhealthy", "reason": reason, "version": running}), 503
        return jsonify({"status": "ok", "version": running})

    @app.get("/")
    def page():
        return render_template("dashboard.html")


def _add_errors(app: Flask) -> None:
    @app.errorhandler(404)
    def not_found(_exc):
        return _error(404, f"no such resource: {records.printable(request.path, 200)}")

    @app.errorhandler(405)
    def not_allowed(_exc):
        return _error(405, f"method {request.method} not allowed on {request.path}")

    @app.errorhandler(413)
    def too_large(_exc):
        if request.endpoint == "post_batch":
            app.extensions["bbq_metrics"].refused("too_large")
        return _error(413, f"body larger than {MAX_BODY_BYTES} bytes")

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return _error(exc.code or 400, exc.description or exc.name)

    @app.errorhandler(Exception)
    def internal(exc):  # a bug: logged, answered as JSON
        LOG.exception("error on %s %s", request.method, request.path)
        return _error(500, f"internal error: {type(exc).__name__}")


def create_app(history: int = 600, unhealthy_file: str = "", store=None) -> Flask:
    """``store``: a :class:`bbq.store.HistoryStore` keeping the history across restarts
    (None: in memory only)."""
    app = Flask(__name__)
    app.json = StrictJSON(app)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    summaries = History(history, store) if store is not None else Summaries(history)
    app.extensions["bbq_summaries"] = summaries
    metrics.instrument(app)  # GET /metrics, request durations, the access log
    _add_api(app, summaries)
    _add_pages(app, unhealthy_file)
    _add_errors(app)
    return app


def _open_files_for(connections: int) -> int:
    """Raise the open-files limit to fit ``connections`` (plus some); the connections that
    fit under the limit there is."""
    import resource

    want = connections + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < want:
        return max(10, soft - 64)
    return connections


def main(argv: list[str] | None = None) -> int:
    """``bbq-rest``: serve the display service on [rest] host:port (waitress)."""
    import waitress

    from bbq import config, logs

    conf = config.load(argv, program=config.REST)
    logs.setup_or_exit(conf, config.REST)
    from bbq import history

    app = create_app(conf.rest.history, conf.rest.unhealthy_file, history.store_for(conf))
    limit = _open_files_for(conf.rest.connection_limit)
    if limit < conf.rest.connection_limit:
        print(
            f"bbq-rest: [rest] connection_limit {conf.rest.connection_limit} lowered to "
            f"{limit}: the open-files limit allows no more",
            file=sys.stderr,
        )
    LOG.info("bbq-rest %s: serving on http://%s:%s/", version(), conf.rest.host, conf.rest.port)
    waitress.serve(
        app,
        host=conf.rest.host,
        port=conf.rest.port,
        threads=conf.rest.threads,
        connection_limit=limit,
        channel_timeout=conf.rest.channel_timeout,
        cleanup_interval=max(1, min(30, conf.rest.channel_timeout // 2)),
        max_request_body_size=2 * MAX_BODY_BYTES,  # beyond MAX_BODY_BYTES Flask says 413
        max_request_header_size=65536,
        asyncore_use_poll=True,  # select() cannot watch descriptors above 1023
        ident="bbq-rest",
        _quiet=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
