#!/usr/bin/env python3
"""Benchmark: the streaming job's sustained events/s end to end, side by side in one run with

  (a) the store's ceiling: raw ``insert_many`` of the same documents, no Spark at all, and
  (b) a seed-style job: per batch count, cache, collect to the driver, one insert per record.

Goals: bbq-stream >= 0.95x the store ceiling (issue 17; was 0.8x) and >= 3x the seed-style
job. The Zaqar ceiling and the latency to the dashboard are in bench_stream_latency.py.

Everything runs here on 127.0.0.1 (SecantusDB, bbq-rest, Spark local[2]); messages come
through Spark's socket source from bbq-send's socket server. The ceiling and the job use the
same number of writers and the same insert_many size; one full-size run of each warms up
first (not counted), then rounds alternate them and each figure is the median. For
information, it also times the job draining a Zaqar queue (claim, store, delete) filled
beforehand. Needs the test venvs (``tools/bootstrap --tests``). Usage::

    .venv/bin/python bench/bench_app.py [--events 200000] [--seed-events 3000]

The job's clock runs from the first event sent to the last one stored, so it includes
filling and draining the micro-batch pipeline once (up to a trigger interval plus a batch).
Rounds of 200,000 events (~10 s) keep that under a few percent of the window; at 60,000
(~3 s) it was about a tenth of it (seen: 0.80-0.81x the ceiling at 60k, 0.88x at 200k on
the same machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bbq import config, job, records, send, testing  # noqa: E402
from bbq.store import Store  # noqa: E402

from tests.fixtures.mongo import MongoServer  # noqa: E402
from tests.fixtures.rest import RestServer  # noqa: E402
from tests.fixtures.spark import LOOPBACK_SPARK_CONF, conf_args, spark_env  # noqa: E402
from tests.fixtures.zaqar import ZaqarServer  # noqa: E402

SERVICES = ["web", "db", "cache", "queue", "auth"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used by ``root`` and every live descendant (the JVM, Python workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
        todo += children.get(pid, [])
    return total


def messages(n: int, prefix: str) -> list[str]:
    return list(send.generate(n, SERVICES, prefix))


def ceiling(mongo: MongoServer, lines: list[str], threads: int, batch: int) -> float:
    """Raw insert_many of the normalised documents (normalised beforehand, not timed), by
    ``threads`` writers (as many as the job's) in requests of ``batch`` (the job's too)."""
    store = Store(mongo.url, mongo.new_database(), write_batch_size=batch)
    docs = [records.normalise(line, max_bytes=65536)[0] for line in lines]
    chunks = [docs[i : i + batch] for i in range(0, len(docs), batch)]
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                if not chunks:
                    return
                chunk = chunks.pop()
            store.packets.insert_many(chunk, ordered=False)

    started = time.monotonic()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    took = time.monotonic() - started
    assert store.packets.count_documents({}) == len(docs)
    return len(docs) / took


class SeedStyle:
    """The seed's way: count, cache, collect, then one insert per record on the driver."""

    def __init__(self, store: Store, rest_url: str) -> None:
        self.store = store
        self.rest_url = rest_url
        self.records = 0

    def __call__(self, df, batch_id: int) -> None:
        import requests

        n = df.count()
        if n == 0:
            return
        df.cache()
        rows = df.collect()
        counts: dict[str, int] = {}
        for row in rows:
            try:
                obj = json.loads(row.value)
                doc = {"_id": str(obj["id"]), "service": obj["service"], "value": obj["value"]}
                self.store.packets.insert_one(doc)
                counts[doc["service"]] = counts.get(doc["service"], 0) + 1
            except Exception:  # the seed skipped what it could not store
                continue
        df.unpersist()
        self.records += n
        with contextlib.suppress(requests.RequestException):
            requests.post(
                self.rest_url + "/api/v1/batches",
                json={
                    "batch_id": batch_id,
                    "time": time.time(),
                    "counts": counts,
                    "totals": counts,
                },
                timeout=5,
            )


def stream_rate(
    spark, conf, lines: list[str], make_writer, warm: int = 2000
) -> tuple[float, object]:
    """Sustained events/s through the socket source: the query first stores ``warm`` lines
    (start-up: connection, planning, code generation, Python workers), then the clock runs
    from the first measured line sent to the last one stored. (``warm`` must be a multiple
    of 1000: bbq-send's socket server writes lines in chunks of 1000.)"""
    writer = make_writer(conf)
    sent_at: dict[str, float] = {}
    warm_lines = messages(warm, f"warm-{uuid.uuid4().hex[:6]}") if warm else []

    def serve():
        def timed():
            yield from warm_lines
            testing.wait_until(lambda: writer.records >= warm, 300, interval=0.01, what="warm")
            sent_at["first"] = time.monotonic()
            yield from lines

        send.serve_socket(conf.stream.socket_host, conf.stream.socket_port, timed(), 120, 2)

    sender = threading.Thread(target=serve, daemon=True)
    sender.start()
    time.sleep(0.3)
    query, _ = job.start(spark, conf, writer=writer)
    try:
        testing.wait_until(
            lambda: writer.records >= warm + len(lines) or not query.isActive,
            600,
            interval=0.02,
            what="all events stored",
        )
        done = time.monotonic()
        if query.exception() is not None:
            raise RuntimeError(query.exception())
    finally:
        query.stop()
        sender.join(10)
    return len(lines) / (done - sent_at["first"]), writer


def zaqar_rate(spark, mongo, rest, zaqar, n: int) -> float:
    """Events/s of the job draining a Zaqar queue filled beforehand (claim, store, delete)."""
    queue = zaqar.new_queue()
    client_queue = zaqar.client().queue(queue)
    sent, errors = send.post_to_zaqar(client_queue, messages(n, "zq"), 262144, 3600, 1000)
    assert sent == n and not errors
    db = mongo.new_database()
    conf = config.load(
        conf_args(
            source="zaqar",
            mongo_url=mongo.url,
            database=db,
            rest_url=rest.url,
            stream__batch_interval=0.5,
            stream__max_batch_messages=5000,
            zaqar__delete_ids_per_request=500,
            zaqar__url=zaqar.url,
            zaqar__queue=queue,
            zaqar__project_id="bbq-tests",
        )
    )
    writer = job.BatchWriter(conf)
    query, _ = job.start(spark, conf, writer=writer)
    try:
        rate = sustained_rate(writer, query, n, interval=0.02)
        testing.wait_until(
            lambda: client_queue.stats["messages"]["total"] == 0, 60, what="queue drained"
        )
    finally:
        query.stop()
    assert writer.store.packets.count_documents({}) == n
    return rate


def sustained_rate(writer, query, n: int, interval: float = 0.01) -> float:
    """Events/s the running ``query`` stores through ``writer`` from the end of its first
    batch (query start-up excluded) until ``n`` are stored; raises the query's error."""
    testing.wait_until(
        lambda: writer.records > 0 or not query.isActive, 300, interval=0.01, what="batch"
    )
    first, started = writer.records, time.monotonic()
    testing.wait_until(
        lambda: writer.records >= n or not query.isActive, 600, interval=interval, what="drained"
    )
    took = time.monotonic() - started
    if query.exception() is not None:
        raise RuntimeError(query.exception())
    return (n - first) / took


def main() -> int:
    import logging

    if os.environ.get("BBQ_BENCH_LOG"):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200000)
    parser.add_argument("--seed-events", type=int, default=3000)
    parser.add_argument("--batch-interval", type=float, default=0.5)
    parser.add_argument(
        "--partitions",
        type=int,
        default=1,
        help="the job's parallel writers; the store ceiling uses as many writer threads "
        "(1: the store server here, SecantusDB, serves its connections under one GIL)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--zaqar-events", type=int, default=30000, help="0: skip the Zaqar source figure"
    )
    args = parser.parse_args()

    os.environ.update(spark_env())
    work = Path(tempfile.mkdtemp(prefix="bbq-bench-"))
    mongo = MongoServer(work / "mongo")
    rest = RestServer(work)
    spark = None
    try:
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.master("local[2]").appName("bbq-bench")
        for item in LOOPBACK_SPARK_CONF.split(",") + ["spark.ui.showConsoleProgress=false"]:
            key, _, value = item.partition("=")
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")

        def conf_for(db: str):
            return config.load(
                conf_args(
                    source="socket",
                    mongo_url=mongo.url,
                    database=db,
                    rest_url=rest.url,
                    stream__socket_port=testing.free_port(),
                    stream__batch_interval=args.batch_interval,
                    stream__partitions=args.partitions,
                )
            )

        # Warm-up, not counted: one full-size run of each, so that the rounds measure the
        # sustained rate (the JVM's JIT compiles the hot paths over the first ~20000 events).
        write_batch = conf_for(mongo.new_database()).mongodb.write_batch_size
        writers = args.partitions or spark.sparkContext.defaultParallelism
        warm_lines = messages(args.events, "warm")
        ceiling(mongo, warm_lines, writers, write_batch)
        stream_rate(spark, conf_for(mongo.new_database()), warm_lines, job.BatchWriter)

        # Rounds alternate the store ceiling and the job, so that load from elsewhere on the
        # machine hits both alike; each figure is the median over the rounds.
        server = mongo.proc.pid

        def client_cpu_seconds() -> float:
            """This process and its descendants (Spark), less the two servers it started."""
            return tree_cpu_seconds(os.getpid()) - cpu_seconds(server) - cpu_seconds(rest.proc.pid)

        rates: dict[str, list[float]] = {"ceiling": [], "e2e": [], "seed": []}
        server_cpu: dict[str, list[float]] = {"ceiling": [], "e2e": []}
        client_cpu: dict[str, list[float]] = {"ceiling": [], "e2e": []}
        for r in range(args.rounds):
            lines = messages(args.events, f"e2e{r}")
            before, mine = cpu_seconds(server), client_cpu_seconds()
            rates["ceiling"].append(ceiling(mongo, lines, writers, write_batch))
            server_cpu["ceiling"].append((cpu_seconds(server) - before) / len(lines) * 1e6)
            client_cpu["ceiling"].append((client_cpu_seconds() - mine) / len(lines) * 1e6)
            before, mine = cpu_seconds(server), client_cpu_seconds()
            e2e, writer = stream_rate(spark, conf_for(mongo.new_database()), lines, job.BatchWriter)
            server_cpu["e2e"].append((cpu_seconds(server) - before) / len(lines) * 1e6)
            client_cpu["e2e"].append((client_cpu_seconds() - mine) / len(lines) * 1e6)
            stored = 2000 + len(lines)  # the warm-up lines, then the measured ones
            assert writer.store.packets.count_documents({}) == stored
            assert writer.store.counts() == {s: stored // len(SERVICES) for s in SERVICES}, (
                "wrong counts"
            )
            rates["e2e"].append(e2e)
            seed_db = mongo.new_database()
            seed_lines = messages(args.seed_events, f"seed{r}")
            seed, seed_writer = stream_rate(
                spark,
                conf_for(seed_db),
                seed_lines,
                lambda conf, db=seed_db: SeedStyle(Store(mongo.url, db), rest.url),
                warm=1000,
            )
            assert seed_writer.store.packets.count_documents({}) == 1000 + len(seed_lines)
            rates["seed"].append(seed)
            print(
                f"round {r + 1}: store ceiling {rates['ceiling'][-1]:.0f}/s, bbq-stream "
                f"{e2e:.0f}/s = {e2e / rates['ceiling'][-1]:.2f}x, seed-style {seed:.0f}/s",
                flush=True,
            )

        zq = None
        if args.zaqar_events:
            zaqar = ZaqarServer(work / "zaqar")
            try:
                zq = zaqar_rate(spark, mongo, rest, zaqar, args.zaqar_events)
            finally:
                zaqar.stop()

        med = {k: statistics.median(v) for k, v in rates.items()}
        names = {
            "ceiling": "(a) store ceiling: raw insert_many, same documents",
            "e2e": "bbq-stream end to end (socket source, local[2])",
            "seed": "(b) seed-style job (count, cache, collect, insert_one)",
        }
        width = max(len(n) for n in names.values())
        print(
            f"\nevents per round: {args.events} (seed-style: {args.seed_events}), "
            f"rounds: {args.rounds}, batch interval {args.batch_interval}s, "
            f"writers {writers} x insert_many of {write_batch}, "
            f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}"
        )
        for key, name in names.items():
            each = ", ".join(f"{v:.0f}" for v in rates[key])
            print(f"  {name:<{width}}  {med[key]:>8.0f} events/s  (rounds: {each})")
        if zq is not None:
            label = f"bbq-stream draining a Zaqar queue ({args.zaqar_events} events)"
            print(f"  {label:<{width}}  {zq:>8.0f} events/s  (after its first batch; one run)")
        for key in ("ceiling", "e2e"):
            cpu = statistics.median(server_cpu[key])
            other = statistics.median(client_cpu[key])
            print(
                f"  CPU per event during {key}: store server {cpu:.0f} us, "
                f"client side (bench + Spark JVM + Python workers) {other:.0f} us"
            )
        ratios = ", ".join(
            f"{e / c:.2f}" for c, e in zip(rates["ceiling"], rates["e2e"], strict=True)
        )
        print(f"  bbq-stream / store ceiling in each round: {ratios}")
        r_store = med["e2e"] / med["ceiling"]
        r_seed = med["e2e"] / med["seed"]
        print(
            f"  bbq-stream / store ceiling = {r_store:.2f}  (goal >= 0.95: "
            f"{'met' if r_store >= 0.95 else 'NOT met'})"
        )
        print(
            f"  bbq-stream / seed-style    = {r_seed:.1f}  (goal >= 3: "
            f"{'met' if r_seed >= 3 else 'NOT met'})"
        )
        return 0
    finally:
        if spark is not None:
            spark.stop()
        rest.stop()
        mongo.stop()


if __name__ == "__main__":
    sys.exit(main())
