"""Prometheus metrics of bbq-rest (served at its ``/metrics``) and of the streaming job (its
own endpoint, ``[stream] metrics_port``). Names follow Prometheus' conventions: the ``bbq_``
namespace, the program as subsystem, ``_total`` for counters, base units (``_seconds``);
labels take only bounded values (reason codes, routes, methods, status codes).

bbq-rest::

    bbq_rest_signals_received_total{result="new|duplicate"}   batch signals taken
    bbq_rest_signals_rejected_total{reason}                   refused: media_type, too_large,
                                                              json, schema
    bbq_rest_request_duration_seconds{method,route,code}      histogram
    bbq_rest_reported_packets / _dead_letters                 totals the last signal reported

bbq-stream::

    bbq_stream_input_rows_total, bbq_stream_packets_stored_total,
    bbq_stream_duplicates_ignored_total, bbq_stream_dead_letters_total{reason}
    bbq_stream_batches_total, bbq_stream_batch_duration_seconds (histogram),
    bbq_stream_input_rows_per_second, bbq_stream_batch_retries_total,
    bbq_stream_signals_total{result="sent|failed"}
    bbq_zaqar_up, bbq_zaqar_messages_in_flight, bbq_zaqar_messages_waiting,
    bbq_zaqar_claim_lag_seconds                               (zaqar source: queue stats,
                                                               read when scraped)

>>> metrics = JobMetrics()
>>> serve(metrics.registry, "127.0.0.1", 8781)
"""

from __future__ import annotations

import logging
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily

LOG = logging.getLogger(__name__)

# No ``*_created`` series beside each counter: nobody graphs when a counter was created.
disable_created_metrics()

METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
UNMATCHED = "(unmatched)"


def _info(registry: CollectorRegistry, program: str) -> None:
    from bbq import config

    build = Gauge(
        f"bbq_{program}_build_info",
        f"bbq-{program}'s version (always 1)",
        ["version"],
        registry=registry,
    )
    build.labels(version=config.version()).set(1)


# -- bbq-rest -----------------------------------------------------------------------------
class RestMetrics:
    """bbq-rest's metrics, in a registry of their own (one per app)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        _info(r, "rest")
        self.received = Counter(
            "bbq_rest_signals_received",
            "Batch signals taken from the streaming job (duplicate: the same run's batch again)",
            ["result"],
            registry=r,
        )
        self.rejected = Counter(
            "bbq_rest_signals_rejected",
            "Batch signals refused with a 4xx, by reason",
            ["reason"],
            registry=r,
        )
        self.requests = Histogram(
            "bbq_rest_request_duration_seconds",
            "Seconds from a request's arrival to the end of its response",
            ["method", "route", "code"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.packets = Gauge(
            "bbq_rest_reported_packets",
            "Packets the store holds, as the last signal reported",
            registry=r,
        )
        self.dead_letters = Gauge(
            "bbq_rest_reported_dead_letters",
            "Dead letters the store holds, as the last signal reported",
            registry=r,
        )
        for result in ("new", "duplicate"):
            self.received.labels(result=result)
        for reason in ("media_type", "too_large", "json", "schema"):
            self.rejected.labels(reason=reason)

    def observe(self, environ: dict, status: int, seconds: float) -> None:
        """One request done (called by the access log middleware)."""
        method = environ.get("REQUEST_METHOD", "")
        self.requests.labels(
            method=method if method in METHODS else "other",
            route=environ.get("bbq.route") or UNMATCHED,
            code=str(status),
        ).observe(seconds)

    def signal(self, added: bool, summary: dict) -> None:
        self.received.labels(result="new" if added else "duplicate").inc()
        if added:
            self.packets.set(sum(summary["totals"].values()))
            self.dead_letters.set(summary["dead_total"])

    def refused(self, reason: str) -> None:
        self.rejected.labels(reason=reason).inc()


def instrument(app, metrics: RestMetrics | None = None) -> RestMetrics:
    """Give a Flask app ``GET /metrics``, request durations and the access log."""
    from flask import Response, request

    from bbq import logs

    metrics = metrics or RestMetrics()
    app.extensions["bbq_metrics"] = metrics

    @app.before_request
    def remember_route():
        rule = request.url_rule
        request.environ["bbq.route"] = rule.rule if rule is not None else UNMATCHED

    @app.get("/metrics")
    def prometheus_metrics():
        return Response(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST)

    app.wsgi_app = logs.AccessLog(app.wsgi_app, observe=metrics.observe)
    return metrics


# -- bbq-stream ---------------------------------------------------------------------------
class JobMetrics:
    """The streaming job's metrics, in a registry of their own (one per job)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        _info(r, "stream")
        self.rows = Counter("bbq_stream_input_rows", "Messages read from the source", registry=r)
        self.stored = Counter(
            "bbq_stream_packets_stored", "Packets stored (new documents)", registry=r
        )
        self.duplicates = Counter(
            "bbq_stream_duplicates_ignored",
            "Packets already stored (a redelivered message or a reused id): not stored again",
            registry=r,
        )
        self.dead = Counter(
            "bbq_stream_dead_letters",
            "Messages dead-lettered, by reason code (bbq.records.REASON_CODES)",
            ["reason"],
            registry=r,
        )
        self.batches = Counter(
            "bbq_stream_batches", "Micro-batches with messages, stored", registry=r
        )
        self.retries = Counter(
            "bbq_stream_batch_retries",
            "Runs of a micro-batch again after a failure that was not its records'",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "bbq_stream_batch_duration_seconds",
            "Seconds to store a micro-batch (runs again included) and hand its signal over",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.input_rate = Gauge(
            "bbq_stream_input_rows_per_second",
            "Messages of the last micro-batch per second since the micro-batch before it",
            registry=r,
        )
        self.signals = Counter(
            "bbq_stream_signals",
            "Batch signals to the REST service, by result",
            ["result"],
            registry=r,
        )
        for result in ("sent", "failed"):
            self.signals.labels(result=result)
        self._last_batch: float | None = None

    def batch(
        self, rows: int, stored: int, dead: dict[str, int], seconds: float, interval: float
    ) -> None:
        """One micro-batch of ``rows`` messages done: ``stored`` new packets, ``dead`` dead
        letters by reason code, the rest duplicates; ``interval``: the trigger's, for the
        input rate of a first batch."""
        now = time.monotonic()
        since = now - self._last_batch if self._last_batch is not None else interval
        self._last_batch = now
        rejected = sum(dead.values())
        self.rows.inc(rows)
        self.stored.inc(stored)
        self.duplicates.inc(max(0, rows - stored - rejected))
        for reason, n in dead.items():
            self.dead.labels(reason=reason).inc(n)
        self.batches.inc()
        self.batch_seconds.observe(seconds)
        self.input_rate.set(rows / max(since, 1e-3))

    def signalled(self, ok: bool) -> None:
        self.signals.labels(result="sent" if ok else "failed").inc()


class ZaqarQueueCollector:
    """The Zaqar queue's state, read from its stats when scraped: messages claimed and not
    yet deleted (in flight), waiting to be claimed, and the age of the oldest message still
    in the queue (claim lag: how far the job is behind; 0 when the queue is empty).
    ``bbq_zaqar_up`` is 0 when the stats could not be read (the others are then absent)."""

    def __init__(self, queue, name: str) -> None:
        self.queue = queue  # a python-zaqarclient queue, its requests with a timeout
        self.name = name

    def describe(self):
        return []  # collected only when scraped (no request at registration)

    def collect(self):
        up = GaugeMetricFamily("bbq_zaqar_up", "1 if the queue's stats could be read")
        try:
            messages = self.queue.stats["messages"]
            claimed, free = int(messages["claimed"]), int(messages["free"])
            oldest = messages.get("oldest") or {}
            lag = float(oldest.get("age", 0)) if claimed + free else 0.0
        except Exception as exc:  # Zaqar away or answering garbage: say so, not fail
            LOG.debug("reading the stats of queue %s failed: %s", self.name, exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, text, value in (
            ("bbq_zaqar_messages_in_flight", "Messages claimed and not yet deleted", claimed),
            ("bbq_zaqar_messages_waiting", "Messages waiting to be claimed", free),
            (
                "bbq_zaqar_claim_lag_seconds",
                "Age of the oldest message still in the queue (0: empty)",
                lag,
            ),
        ):
            family = GaugeMetricFamily(name, text)
            family.add_metric([], value)
            yield family


def serve(registry: CollectorRegistry, host: str, port: int):
    """Serve ``registry`` on http://HOST:PORT/metrics (a daemon thread); the server."""
    server, _thread = start_http_server(port, addr=host, registry=registry)
    LOG.info("metrics on http://%s:%d/metrics", host, port)
    return server
