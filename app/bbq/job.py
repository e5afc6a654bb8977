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

from bbq import records
from bbq.store import Store

LOG = logging.getLogger("bbq.job")


# -- executor side ------------------------------------------------------------------------
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
            doc, bad = normalise_row(
                value, received, msgid, now, max_bytes, f"{batch_id}:{index}:{n}"
            )
            if bad is not None:
                dead.append(bad)
                continue
            good.append(doc)
            if len(good) >= chunk_size:
                pending.append(pool.submit(store.insert_packets, good))
                good = []
                drain(keep=1)
        if good:
            pending.append(pool.submit(store.insert_packets, good))
        drain(keep=0)
    dead_new = store.write_dead_letters(dead) if dead else 0
    reasons = collections.Counter(d["reason"].split(":")[0] for d in dead)
    return {
        "records": n,
        "counts": dict(new),
        "dead": dead_new,
        "rejected": len(dead),
        "reasons": dict(reasons),
        "recount": store.retried,
        "seconds": time.monotonic() - started,
        "waited_for_store": waited,
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
class Signaller:
    """POSTs batch summaries to the REST service: bounded retries, never raises."""

    def __init__(self, url: str, retries: int, delay: float, timeout: float) -> None:
        self.endpoint = url.rstrip("/") + "/api/v1/batches"
        self.retries = retries
        self.delay = delay
        self.timeout = timeout
        self.http = requests.Session()
        self.failures = 0

    def send(self, summary: dict) -> bool:
        delay = self.delay
        for attempt in range(self.retries + 1):
            try:
                reply = self.http.post(self.endpoint, json=summary, timeout=self.timeout)
                if reply.status_code < 300:
                    return True
                if 400 <= reply.status_code < 500:  # our payload is wrong: retrying won't help
                    LOG.error(
                        "REST service refused batch %s: %s %s",
                        summary["batch_id"],
                        reply.status_code,
                        reply.text[:300],
                    )
                    break
                LOG.warning("REST service answered %s (attempt %d)", reply.status_code, attempt + 1)
            except requests.RequestException as exc:
                LOG.warning("REST service unreachable (attempt %d): %s", attempt + 1, exc)
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        self.failures += 1
        return False


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

    def __init__(self, conf, store: Store | None = None, signaller: Signaller | None = None):
        self.store = store or Store.from_conf(conf)
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
                if self.stopping.wait(delay):
                    raise
                delay = min(delay * 2, self.retry_max_delay)
        raise AssertionError("unreachable")

    def __call__(self, df, batch_id: int) -> None:
        started = time.monotonic()
        parts, retried = self._store_batch(df, batch_id)
        n = sum(p["records"] for p in parts)
        if n == 0:
            return
        counts: collections.Counter = collections.Counter()
        reasons: collections.Counter = collections.Counter()
        dead = rejected = 0
        slowest = max(parts, key=lambda p: p["seconds"])
        for p in parts:
            counts.update(p["counts"])
            reasons.update(p["reasons"])
            dead += p["dead"]
            rejected += p["rejected"]
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
        self.signals.submit(self.signaller.send, summary)
        LOG.info(
            "batch %d: %d records, %d new packets, %d rejected %s, %.2fs "
            "(slowest of %d partitions: %.2fs, %.2fs of it waiting for the store)",
            batch_id,
            n,
            sum(counts.values()),
            rejected,
            dict(reasons) or "",
            time.monotonic() - started,
            len(parts),
            slowest["seconds"],
            slowest["waited_for_store"],
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


def main(argv: list[str] | None = None) -> int:
    from bbq import config

    conf = config.load(argv if argv is not None else sys.argv[1:], prog="bbq-stream")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        spark_settings(conf)
    except ValueError as exc:
        print(f"bbq-stream: {exc}", file=sys.stderr)
        return 2
    try:  # the engine first: waiting for dependencies is pointless without it
        for engine in ("pyspark", "pyarrow"):
            importlib.import_module(engine)
    except ImportError as exc:
        print(f"bbq-stream: {exc} (install bbq[spark,stream])", file=sys.stderr)
        return 2
    from bbq import deps

    try:
        deps.wait_for(deps.dependencies(conf), timeout=conf.stream.dependency_timeout)
    except deps.DependencyTimeout as exc:
        print(f"bbq-stream: {exc}", file=sys.stderr)
        return 1
    spark = build_spark(conf)
    spark.sparkContext.setLogLevel("WARN")
    query, writer = start(spark, conf)
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
