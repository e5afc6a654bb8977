"""The Spark Structured Streaming job (``bbq-stream``).

For each micro-batch: every executor normalises its share of the raw messages, stores the
good ones in MongoDB (idempotent ``insert_many`` keyed by packet id) and the bad ones in the
dead-letter collection with the reason, and returns small per-service counts; the driver adds
them up and signals the REST display service (POST with bounded retries, on a helper thread
so the next micro-batch does not wait for it). Nothing is collected to the driver but those
counts, so the same job runs on ``local[N]`` and on a standalone cluster (``spark://HOST:7077``).

>>> conf = config.load(["--config-file", "/etc/bbq/bbq.conf"])
>>> spark = build_spark(conf)
>>> query, writer = start(spark, conf)
>>> query.awaitTermination()
"""

from __future__ import annotations

import collections
import concurrent.futures
import datetime as dt
import importlib
import itertools
import json
import logging
import signal
import sys
import threading
import time
import uuid

import requests
import tenacity

from bbq import records
from bbq.metrics import JobMetrics
from bbq.store import Store

LOG = logging.getLogger("bbq.job")


# -- executor side ------------------------------------------------------------------------
# While the store's writer is idle, a partition hands it what it has normalised once it holds
# this many packets (checked every IDLE_CHECK_ROWS rows) instead of a whole write batch.
IDLE_FLUSH_ROWS = 500
IDLE_CHECK_ROWS = 100


def normalise_row(value, received, msgid, now: dt.datetime, max_bytes: int, position: str):
    """(packet, None) or (None, dead letter) for one source row; never raises."""
    if value is not None:  # the common case inline: normalise without dead-letter work
        try:
            doc = records.parse(value, max_bytes)
        except records.Rejected:
            doc = None
        if doc is not None:
            if received is None:
                received = now
            elif received.tzinfo is None:
                received = received.replace(tzinfo=dt.UTC)
            doc["received"] = received
            if msgid:
                doc["source_id"] = msgid
            return doc, None
    return records.normalise(
        value, max_bytes=max_bytes, received=received or now, source_id=msgid, position=position
    )


def store_rows(settings: dict, max_bytes: int, batch_id: int, index: int, rows) -> dict:
    """Normalise and store an iterable of (value, timestamp, msgid); returns small counts.

    Every row ends stored, already stored, or dead-lettered with its reason (the database's
    or its encoder's refusal of one document included): only a failure that is not the
    rows' (MongoDB away beyond the store's retry time) fails the task, and so the batch,
    which the driver then runs again. Parsing and storing overlap: a chunk is written by a
    helper thread (pymongo releases the GIL while it waits for the server) while the next
    one is being normalised.
    """
    started = time.monotonic()
    started_at = time.time()
    first_row = first_write = None
    store = Store(**settings)
    chunk_size = store.write_batch_size
    new: collections.Counter = collections.Counter()
    pending: collections.deque = collections.deque()
    waited = 0.0
    good: list[dict] = []
    dead: list[dict] = []

    def drain(keep: int) -> None:
        nonlocal waited
        while len(pending) > keep:
            t = time.monotonic()
            counts, refused = pending.popleft().result()
            new.update(counts)
            dead.extend(refused)
            waited += time.monotonic() - t

    n = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        now = dt.datetime.now(dt.UTC)  # for sources without a per-message receive time
        for n, (value, received, msgid) in enumerate(rows, 1):
            if first_row is None:
                first_row = time.monotonic() - started
            doc, bad = normalise_row(
                value, received, msgid, now, max_bytes, f"{batch_id}:{index}:{n}"
            )
            if bad is not None:
                dead.append(bad)
                continue
            good.append(doc)
            # A full chunk goes to the writer; so does a smaller one when the writer is idle
            # (the batch's start): the store starts at once instead of after a whole chunk
            # is normalised, and the chunks grow to full size while it writes.
            if len(good) >= chunk_size or (
                not n % IDLE_CHECK_ROWS
                and len(good) >= IDLE_FLUSH_ROWS
                and (not pending or pending[-1].done())
            ):
                if first_write is None:
                    first_write = time.monotonic() - started
                pending.append(pool.submit(store.insert_packets, good))
                good = []
                drain(keep=1)
        if good:
            if first_write is None:
                first_write = time.monotonic() - started
            pending.append(pool.submit(store.insert_packets, good))
        drain(keep=0)
    dead_new = store.write_dead_letters(dead) if dead else 0
    reasons = collections.Counter(records.reason_code(d["reason"]) for d in dead)
    return {
        "records": n,
        "counts": dict(new),
        "dead": dead_new,
        "rejected": len(dead),
        "reasons": dict(reasons),
        "recount": store.retried,
        "seconds": time.monotonic() - started,
        "waited_for_store": waited,
        # The partition's timeline, for the driver's per-batch log: when it started (epoch
        # seconds), and how long after that its first row came and its first write went.
        "started_at": started_at,
        "first_row": first_row or 0.0,
        "first_write": first_write or 0.0,
    }


def store_arrow(settings: dict, max_bytes: int, batch_id: int):
    """The ``mapInArrow`` function: Arrow record batches in, one summary row (JSON) out."""

    def run(batches):
        import pyarrow as pa
        from pyspark import TaskContext

        context = TaskContext.get()
        index = context.partitionId() if context is not None else 0

        def rows():
            for rb in batches:
                yield from zip(
                    rb.column(0).to_pylist(),
                    rb.column(1).to_pylist(),
                    rb.column(2).to_pylist(),
                    strict=True,
                )

        summary = store_rows(settings, max_bytes, batch_id, index, rows())
        yield pa.RecordBatch.from_pydict({"summary": [json.dumps(summary)]})

    return run


# -- driver side --------------------------------------------------------------------------
class RestUnavailable(Exception):
    """The REST service did not take a signal for its own reasons (unreachable, 5xx)."""


class Signaller:
    """POSTs batch summaries to the REST service: bounded retries (tenacity) with a
    doubling delay on the service's failures, none on a refusal (4xx); never raises."""

    def __init__(self, url: str, retries: int, delay: float, timeout: float) -> None:
        self.endpoint = url.rstrip("/") + "/api/v1/batches"
        self.retries = retries
        self.delay = delay
        self.timeout = timeout
        self.http = requests.Session()
        self.failures = 0

    def _post(self, summary: dict) -> bool:
        """True when taken, False when refused; RestUnavailable to try again."""
        try:
            reply = self.http.post(self.endpoint, json=summary, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RestUnavailable(f"unreachable: {exc}") from None
        if reply.status_code < 300:
            return True
        if 400 <= reply.status_code < 500:  # our payload is wrong: retrying won't help
            LOG.error(
                "REST service refused batch %s: %s %s",
                summary.get("batch_id"),
                reply.status_code,
                records.printable(reply.text, 300),
            )
            return False
        raise RestUnavailable(f"answered {reply.status_code}")

    def _retrying(self) -> tenacity.Retrying:
        def log_retry(state: tenacity.RetryCallState) -> None:
            LOG.warning(
                "REST service %s (attempt %d); next try in %.2fs",
                state.outcome.exception(),
                state.attempt_number,
                state.next_action.sleep if state.next_action else 0,
            )

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RestUnavailable),
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential(multiplier=self.delay, min=self.delay, max=60),
            before_sleep=log_retry,
            reraise=True,
        )

    def send(self, summary: dict) -> bool:
        try:
            taken = self._retrying()(self._post, summary)
        except RestUnavailable as exc:
            LOG.warning("REST service %s: batch %s not signalled", exc, summary.get("batch_id"))
            taken = False
        if not taken:
            self.failures += 1
        return taken


def bounded(counts: dict[str, int], limit: int = records.MAX_SIGNAL_SERVICES) -> dict[str, int]:
    """``counts`` with at most ``limit`` services: the largest, the rest summed as
    ``OTHER_SERVICES`` (the REST service refuses more; hostile input can make any number)."""
    if len(counts) <= limit:
        return dict(counts)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[: limit - 1])
    kept[OTHER_SERVICES] = kept.get(OTHER_SERVICES, 0) + sum(n for _, n in ranked[limit - 1 :])
    return kept


OTHER_SERVICES = "(other services)"


class BatchWriter:
    """The ``foreachBatch`` function: store the batch, keep totals, signal REST.

    A batch whose storing fails (every record has its own outcome, so this is MongoDB or
    Spark away, not the records) is run again, with a growing delay up to
    ``[stream] batch_retry_max_delay``, until it succeeds or the job is stopped: it is
    never skipped. The writes are idempotent, so a rerun adds only what the failed run did
    not; the totals are then recounted from the store."""

    def __init__(
        self,
        conf,
        store: Store | None = None,
        signaller: Signaller | None = None,
        metrics: JobMetrics | None = None,
    ):
        self.store = store or Store.from_conf(conf)
        self.metrics = metrics or JobMetrics()
        self.interval = conf.stream.batch_interval
        self.settings = self.store.settings()
        self.max_bytes = conf.stream.max_message_bytes
        self.partitions = conf.stream.partitions
        self.retry_max_delay = conf.stream.batch_retry_max_delay
        self.source_partitions = (
            conf.stream.socket_partitions if conf.stream.source == "socket" else 1
        )
        self.signaller = signaller or Signaller(
            conf.rest.url, conf.rest.retries, conf.rest.retry_delay, conf.rest.timeout
        )
        # Signals go out in order on one helper thread: the next micro-batch does not wait
        # for the REST service (nor for its retries when it is away).
        self.signals = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="bbq-signal"
        )
        self.run = uuid.uuid4().hex
        self.stopping = threading.Event()
        self.store.ensure_indexes()
        # Totals start from what the store holds, so a restarted job keeps counting right.
        self.totals = collections.Counter(self.store.counts())
        self.dead_total = self.store.dead_letter_count()
        self.batches = 0
        self.records = 0
        self.retried_batches = 0
        self.lock = threading.Lock()

    def stop(self) -> None:
        """Make a batch that is waiting to be retried give up (the job is stopping)."""
        self.stopping.set()

    def _run_batch(self, df, batch_id: int) -> list[dict]:
        want = self.partitions or df.sparkSession.sparkContext.defaultParallelism
        # The sources' partitioning is known (socket: socket_partitions slices; zaqar: one
        # partition), so no df.rdd planning pass per batch is needed to ask for it.
        if self.source_partitions >= want:
            df = df.coalesce(want)  # no shuffle: merges the socket source's slices
        else:
            df = df.repartition(want)  # spreads a single-partition source over executors
        result = df.mapInArrow(
            store_arrow(self.settings, self.max_bytes, batch_id), "summary string"
        )
        return [json.loads(row.summary) for row in result.collect()]

    def _store_batch(self, df, batch_id: int) -> tuple[list[dict], bool]:
        """The batch's partition summaries, and whether it took more than one run."""
        delay = 1.0
        for attempt in itertools.count(1):
            try:
                return self._run_batch(df, batch_id), attempt > 1
            except Exception as exc:  # records never fail a batch: this is a dependency
                if self.stopping.is_set():
                    raise
                why = str(exc).strip().splitlines()
                LOG.error(
                    "batch %d failed (run %d), running it again in %.0fs: %s",
                    batch_id,
                    attempt,
                    delay,
                    records.printable(why[-1] if why else type(exc).__name__),
                )
                self.retried_batches += 1
                self.metrics.retries.inc()
                if self.stopping.wait(delay):
                    raise
                delay = min(delay * 2, self.retry_max_delay)
        raise AssertionError("unreachable")

    def _signal(self, summary: dict) -> None:
        self.metrics.signalled(self.signaller.send(summary))

    def __call__(self, df, batch_id: int) -> None:
        started = time.monotonic()
        started_at = time.time()
        parts, retried = self._store_batch(df, batch_id)
        n = sum(p["records"] for p in parts)
        if n == 0:
            LOG.debug("batch %d: no messages", batch_id)
            return
        counts: collections.Counter = collections.Counter()
        reasons: collections.Counter = collections.Counter()
        dead = 0
        slowest = max(parts, key=lambda p: p["seconds"])
        for p in parts:
            counts.update(p["counts"])
            reasons.update(p["reasons"])
            dead += p["dead"]
        recount = retried or any(p.get("recount") for p in parts)
        with self.lock:
            if recount:  # part of the batch may have landed in a failed run: ask the store
                self.totals = collections.Counter(self.store.counts())
                self.dead_total = self.store.dead_letter_count()
            else:
                self.totals.update(counts)
                self.dead_total += dead
            self.batches += 1
            self.records += n
            summary = {
                "run": self.run,
                "batch_id": batch_id,
                "time": time.time(),
                "records": n,
                "counts": bounded(counts),
                "totals": bounded(self.totals),
                "dead": dead,
                "dead_total": self.dead_total,
            }
        self.signals.submit(self._signal, summary)
        seconds = time.monotonic() - started
        stored, rejected = sum(counts.values()), sum(reasons.values())
        self.metrics.batch(n, stored, dict(reasons), seconds, self.interval)
        LOG.info(
            "batch %d: %d rows in, %d stored, %d duplicates, %d dead letters%s, %.2f s",
            batch_id,
            n,
            stored,
            max(0, n - stored - rejected),
            rejected,
            f" ({', '.join(f'{k}: {v}' for k, v in sorted(reasons.items()))})" if reasons else "",
            seconds,
        )
        first = min(p.get("started_at", started_at) for p in parts)
        last = max(p.get("started_at", started_at) + p["seconds"] for p in parts)
        LOG.debug(
            "batch %d: partitions started %.2f s into the batch; slowest of %d partitions "
            "%.2f s (first row after %.2f s, first write after %.2f s, %.2f s waiting for "
            "the store); %.2f s after the last one ended",
            batch_id,
            first - started_at,
            len(parts),
            slowest["seconds"],
            slowest.get("first_row", 0.0),
            slowest.get("first_write", 0.0),
            slowest["waited_for_store"],
            started_at + seconds - last,
        )


def spark_settings(conf) -> dict[str, str]:
    settings = {
        "spark.sql.shuffle.partitions": "4",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.streaming.forceDeleteTempCheckpointLocation": "true",
    }
    for item in filter(None, (s.strip() for s in conf.stream.spark_conf.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"[stream] spark_conf: '{item}' is not KEY=VALUE")
        settings[key.strip()] = value.strip()
    return settings


def build_spark(conf):
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(conf.stream.spark_master).appName(conf.stream.app_name)
    for key, value in spark_settings(conf).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def start(spark, conf, writer: BatchWriter | None = None, query_name: str | None = None):
    """Start the streaming query; returns (query, writer)."""
    from bbq import sources

    writer = writer or BatchWriter(conf)
    stream = sources.read_stream(spark, conf).writeStream.foreachBatch(writer)
    stream = stream.trigger(processingTime=f"{conf.stream.batch_interval} seconds")
    if conf.stream.checkpoint_dir:
        stream = stream.option("checkpointLocation", conf.stream.checkpoint_dir)
    if query_name:
        stream = stream.queryName(query_name)
    return stream.start(), writer


def _metrics(conf) -> JobMetrics:
    """The job's metrics, with the Zaqar queue's state when it reads one."""
    metrics = JobMetrics()
    if conf.stream.source == "zaqar":
        from bbq import config
        from bbq.metrics import ZaqarQueueCollector
        from bbq.zaqar import zaqar_client

        client = zaqar_client(
            conf.zaqar.url,
            conf.zaqar.project_id,
            session=config.keystone_session(conf),
            timeout=min(conf.zaqar.timeout, 10.0),  # a scrape must not wait long
        )
        queue = client.queue(conf.zaqar.queue)
        metrics.registry.register(ZaqarQueueCollector(queue, conf.zaqar.queue))
    return metrics


def _check(conf) -> str | None:
    """What makes the configuration unusable before anything starts, or None."""
    try:
        spark_settings(conf)
    except ValueError as exc:
        return str(exc)
    try:  # the engine first: waiting for dependencies is pointless without it
        for engine in ("pyspark", "pyarrow"):
            importlib.import_module(engine)
    except ImportError as exc:
        return f"{exc} (install bbq[spark,stream])"
    return None


def _serve_metrics(conf, metrics: JobMetrics) -> bool:
    if not conf.stream.metrics_port:
        return True
    from bbq.metrics import serve

    try:
        serve(metrics.registry, conf.stream.metrics_host, conf.stream.metrics_port)
    except OSError as exc:
        where = f"{conf.stream.metrics_host}:{conf.stream.metrics_port}"
        print(
            f"bbq-stream: [stream] metrics_port: cannot listen on {where}: {exc.strerror}",
            file=sys.stderr,
        )
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    from bbq import config, logs

    conf = config.load(argv, program=config.JOB)
    logs.setup_or_exit(conf, config.JOB)
    problem = _check(conf)
    if problem:
        print(f"bbq-stream: {problem}", file=sys.stderr)
        return 2
    from bbq import deps

    try:
        deps.wait_for(deps.dependencies(conf), timeout=conf.stream.dependency_timeout)
    except deps.DependencyTimeout as exc:
        print(f"bbq-stream: {exc}", file=sys.stderr)
        return 1
    metrics = _metrics(conf)
    if not _serve_metrics(conf, metrics):
        return 1
    spark = build_spark(conf)
    spark.sparkContext.setLogLevel(logs.spark_level(conf))
    query, writer = start(spark, conf, writer=BatchWriter(conf, metrics=metrics))
    LOG.info(
        "streaming from %s into %s/%s (run %s)",
        conf.stream.source,
        conf.mongodb.database,
        conf.mongodb.collection,
        writer.run,
    )

    def stop(signum, _frame):
        LOG.info("signal %d: stopping the query", signum)
        writer.stop()
        threading.Thread(target=query.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        query.awaitTermination()
    except Exception as exc:  # the query failed: say why, exit non-zero
        print(f"bbq-stream: streaming query failed: {exc}", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
