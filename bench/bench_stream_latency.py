#!/usr/bin/env python3
"""Benchmark: the streaming job against its queue and its dashboard, side by side in one run.

  (1) Zaqar: ``bbq-stream`` draining a Zaqar queue (claim, store, delete) vs Zaqar's own
      claim+delete ceiling, a bare python-zaqarclient loop (claim ``claim_limit`` messages,
      bulk-delete them by id, ``delete_ids_per_request`` at a time) on the same server, the
      same number of messages and the same request sizes. Rounds alternate the two; each
      rate counts from the end of its first claim batch (the job's query start-up, the
      client's first connection excluded). Goal: job >= 0.9x the ceiling.
  (2) Latency: the time from an event's send to its appearance in bbq-rest's summary
      (GET /api/v1/summary's ``total``), for every event of a sustained run through the
      socket source at a fraction (default 80%) of the store's raw insert ceiling measured
      just before in the same run (as in bench_app.py), with the job's default trigger
      interval unless ``--batch-interval`` is given. Goal: p99 <= 2 s.

Everything runs here on 127.0.0.1: SecantusDB, Zaqar on Redis (gunicorn, 2 workers),
bbq-rest, Spark local[2]. Needs the test venvs (``tools/bootstrap --tests``). Usage::

    .venv/bin/python bench/bench_stream_latency.py [--zaqar-events 20000] [--rounds 3]
        [--seconds 30] [--load 0.8]

The sender paces lines in 10 ms ticks and notes each tick's send time; a poller reads the
summary every ``--poll`` seconds, so a latency is late by at most that much (it is printed).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bbq import config, job, send, testing  # noqa: E402
from bench_app import SERVICES, ceiling, messages, sustained_rate  # noqa: E402

from tests.fixtures.mongo import MongoServer  # noqa: E402
from tests.fixtures.rest import RestServer  # noqa: E402
from tests.fixtures.spark import LOOPBACK_SPARK_CONF, conf_args, spark_env  # noqa: E402
from tests.fixtures.zaqar import ZaqarServer  # noqa: E402


# -- (1) Zaqar ----------------------------------------------------------------------------
def fill(zaqar: ZaqarServer, n: int, prefix: str) -> str:
    queue = zaqar.new_queue()
    sent, errors = send.post_to_zaqar(
        zaqar.client().queue(queue), messages(n, prefix), 262144, 3600, 1000
    )
    assert sent == n and not errors, (sent, errors)
    return queue


def zaqar_ceiling(zaqar: ZaqarServer, n: int, claim_limit: int, delete_ids: int) -> float:
    """A bare client's claim + bulk delete loop over a queue of ``n`` messages."""
    queue = zaqar.client().queue(fill(zaqar, n, "zc"))
    done, started, first = 0, None, 0
    while done < n:
        claim = queue.claim(ttl=300, grace=60, limit=claim_limit)
        ids = [m.id for m in claim]
        if not ids:
            continue  # a claim that found nothing yet: ask again
        for i in range(0, len(ids), delete_ids):
            queue.delete_messages(*ids[i : i + delete_ids])
        done += len(ids)
        if started is None:  # from the end of the first claim batch, as for the job
            started, first = time.monotonic(), done
    took = time.monotonic() - started
    assert queue.stats["messages"]["total"] == 0
    return (n - first) / took


def zaqar_job(spark, mongo, rest, zaqar, n: int, conf_extra: dict) -> tuple[float, dict]:
    """The job draining a queue of ``n`` messages: events/s after its first batch."""
    queue = fill(zaqar, n, "zj")
    conf = config.load(
        conf_args(
            source="zaqar",
            mongo_url=mongo.url,
            database=mongo.new_database(),
            rest_url=rest.url,
            zaqar__url=zaqar.url,
            zaqar__queue=queue,
            zaqar__project_id="bbq-tests",
            **conf_extra,
        )
    )
    writer = job.BatchWriter(conf)
    query, _ = job.start(spark, conf, writer=writer)
    try:
        rate = sustained_rate(writer, query, n)
        testing.wait_until(lambda: zaqar.queue_depth(queue)["total"] == 0, 60, what="deleted")
    finally:
        writer.stop()
        query.stop()
    stored = writer.store.packets.count_documents({})
    assert stored == n, f"{stored} stored of {n}"
    assert writer.store.counts() == {s: n // len(SERVICES) for s in SERVICES}
    return rate, {"batches": writer.batches, "conf": conf}


# -- (2) latency ----------------------------------------------------------------------------
WARM = 2000  # lines the query stores before the clock runs


def paced_sender(port: int, lines: list[str], rate: float, sent_at: list[float], go) -> None:
    """Serve WARM lines at once (the query's start-up), then ``lines`` to the socket source
    at ``rate`` lines/s (10 ms ticks) once ``go`` is set; ``sent_at[i]`` is when line i went
    out."""
    with socket.create_server(("127.0.0.1", port)) as server:
        server.settimeout(120)
        conn, _ = server.accept()
        with conn:
            conn.sendall("".join(line + "\n" for line in messages(WARM, "lat-warm")).encode())
            go.wait()
            start, i = time.monotonic(), 0
            while i < len(lines):
                due = min(len(lines), int((time.monotonic() - start) * rate) + 1)
                if due > i:
                    now = time.monotonic()
                    conn.sendall("".join(line + "\n" for line in lines[i:due]).encode())
                    sent_at.extend([now] * (due - i))
                    i = due
                time.sleep(0.01)
            time.sleep(5)


def latency_run(spark, mongo, workdir: Path, conf_extra: dict, rate, seconds, poll):
    """Latencies (s) of every event of a ``seconds`` run at ``rate`` events/s, and the
    number of batches. A bbq-rest of its own: its summary's total is this run's."""
    workdir.mkdir(parents=True)
    rest = RestServer(workdir)
    try:
        return _latency_run(spark, mongo, rest, conf_extra, rate, seconds, poll)
    finally:
        rest.stop()


def _latency_run(spark, mongo, rest, conf_extra: dict, rate, seconds, poll):
    n = int(rate * seconds)
    lines = messages(n, f"lat{int(time.time())}")
    port = testing.free_port()
    conf = config.load(
        conf_args(
            source="socket",
            mongo_url=mongo.url,
            database=mongo.new_database(),
            rest_url=rest.url,
            stream__socket_port=port,
            **conf_extra,
        )
    )
    sent_at: list[float] = []
    go = threading.Event()
    sender = threading.Thread(
        target=paced_sender, args=(port, lines, rate, sent_at, go), daemon=True
    )
    sender.start()
    time.sleep(0.3)
    writer = job.BatchWriter(conf)
    query, _ = job.start(spark, conf, writer=writer)
    seen: list[tuple[float, int]] = []  # (time, total in the summary)
    try:
        testing.wait_until(
            lambda: rest.summary()["total"] >= WARM, 300, interval=0.1, what="warm-up stored"
        )
        time.sleep(1)
        base = rest.summary()["total"]
        go.set()
        deadline = time.monotonic() + seconds + 120
        while time.monotonic() < deadline:
            total = rest.summary()["total"] - base
            seen.append((time.monotonic(), total))
            if total >= n or not query.isActive:
                break
            time.sleep(poll)
        if query.exception() is not None:
            raise RuntimeError(query.exception())
        progress = [p for p in query.recentProgress if p["numInputRows"]][1:]  # not warm-up
    finally:
        writer.stop()
        query.stop()
        sender.join(10)
    # Where each batch's time went, by Spark's own account (ms): storing (addBatch, our
    # foreachBatch) and the rest (offsets, planning, the checkpoint's write-ahead log).
    for p in progress:
        d = p["durationMs"]
        print(
            f"  batch {p['batchId']}: {p['numInputRows']} rows, "
            f"trigger {d.get('triggerExecution', 0)} ms = addBatch {d.get('addBatch', 0)} + "
            + " + ".join(
                f"{k} {v}"
                for k, v in sorted(d.items())
                if k not in ("triggerExecution", "addBatch") and v
            ),
            flush=True,
        )
    assert seen and seen[-1][1] == n, f"the summary shows {seen[-1][1] if seen else 0} of {n}"
    assert writer.store.packets.count_documents({}) == n + WARM
    latencies, j = [], 0
    for i, t_sent in enumerate(sent_at):
        while seen[j][1] < i + 1:
            j += 1
        latencies.append(seen[j][0] - t_sent)
    return latencies, writer.batches


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zaqar-events", type=int, default=20000, help="0: skip part (1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--zaqar-batch", type=int, default=5000, help="the job's [stream] max_batch_messages"
    )
    parser.add_argument("--seconds", type=float, default=30, help="0: skip part (2)")
    parser.add_argument("--load", type=float, default=0.8, help="fraction of the ceiling")
    parser.add_argument(
        "--ceiling-events", type=int, default=100000, help="events of the store ceiling"
    )
    parser.add_argument("--batch-interval", type=float, default=0.0, help="0: the default")
    parser.add_argument("--poll", type=float, default=0.02)
    args = parser.parse_args()
    if os.environ.get("BBQ_BENCH_LOG"):
        import logging

        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
        logging.getLogger("bbq.job").setLevel(logging.DEBUG)

    os.environ.update(spark_env())
    work = Path(tempfile.mkdtemp(prefix="bbq-bench-lat-"))
    mongo = MongoServer(work / "mongo")
    rest = RestServer(work)
    zaqar = ZaqarServer(work / "zaqar") if args.zaqar_events else None
    spark = None
    out: list[str] = []
    try:
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.master("local[2]").appName("bbq-bench-latency")
        for item in LOOPBACK_SPARK_CONF.split(","):
            key, _, value = item.partition("=")
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
        extra = {"stream__partitions": 1}
        if args.batch_interval:
            extra["stream__batch_interval"] = args.batch_interval
        defaults = config.load(
            conf_args(source="socket", mongo_url=mongo.url, database="x", rest_url=rest.url)
        )
        interval = args.batch_interval or defaults.stream.batch_interval

        if zaqar is not None:
            claim_limit = defaults.zaqar.claim_limit
            delete_ids = defaults.zaqar.delete_ids_per_request
            # Batches of at most --zaqar-batch messages, so the rate after the first batch
            # (the query's start-up) is measured over several.
            zextra = dict(extra, stream__max_batch_messages=args.zaqar_batch)
            zaqar_job(spark, mongo, rest, zaqar, min(args.zaqar_events, 5000), zextra)  # warm
            zaqar_ceiling(zaqar, min(args.zaqar_events, 5000), claim_limit, delete_ids)
            rates: dict[str, list[float]] = {"ceiling": [], "job": []}
            for r in range(args.rounds):
                rates["ceiling"].append(
                    zaqar_ceiling(zaqar, args.zaqar_events, claim_limit, delete_ids)
                )
                rate, info = zaqar_job(spark, mongo, rest, zaqar, args.zaqar_events, zextra)
                rates["job"].append(rate)
                print(
                    f"zaqar round {r + 1}: ceiling {rates['ceiling'][-1]:.0f}/s, job "
                    f"{rate:.0f}/s ({info['batches']} batches) = "
                    f"{rate / rates['ceiling'][-1]:.2f}x",
                    flush=True,
                )
            c, j = statistics.median(rates["ceiling"]), statistics.median(rates["job"])
            out.append(
                f"Zaqar ({args.zaqar_events} events a round, batches of {args.zaqar_batch}, "
                f"claim {claim_limit}, delete "
                f"{delete_ids} ids a request, {args.rounds} rounds, medians): bare client "
                f"claim+delete {c:.0f}/s, bbq-stream {j:.0f}/s = {j / c:.2f}x (goal >= 0.9: "
                f"{'met' if j / c >= 0.9 else 'NOT met'}); rounds "
                + ", ".join(
                    f"{b / a:.2f}" for a, b in zip(rates["ceiling"], rates["job"], strict=True)
                )
            )

        if args.seconds:
            write_batch = defaults.mongodb.write_batch_size
            lines = messages(args.ceiling_events, "lat-ceiling")
            ceiling(mongo, lines, 1, write_batch)  # warm-up
            top = ceiling(mongo, messages(args.ceiling_events, "lat-ceiling2"), 1, write_batch)
            rate = args.load * top
            print(f"store ceiling {top:.0f}/s: sending at {rate:.0f}/s", flush=True)
            results = []
            for r in range(args.rounds):
                latencies, batches = latency_run(
                    spark, mongo, work / f"latency{r}", extra, rate, args.seconds, args.poll
                )
                p50, p99 = pct(latencies, 50), pct(latencies, 99)
                results.append((p50, p99, max(latencies), batches))
                print(
                    f"latency round {r + 1}: {len(latencies)} events, {batches} batches, "
                    f"p50 {p50:.2f} s, p99 {p99:.2f} s, max {max(latencies):.2f} s",
                    flush=True,
                )
            p50 = statistics.median(x[0] for x in results)
            p99 = statistics.median(x[1] for x in results)
            out.append(
                f"latency send -> REST summary at {args.load:.0%} of the store ceiling "
                f"({top:.0f}/s -> {rate:.0f}/s, {args.seconds:g} s runs, trigger interval "
                f"{interval:g} s, poll {args.poll:g} s): p50 {p50:.2f} s, p99 {p99:.2f} s "
                f"(medians of {args.rounds} rounds; p99 goal <= 2 s: "
                f"{'met' if p99 <= 2 else 'NOT met'}); rounds p99 "
                + ", ".join(f"{x[1]:.2f}" for x in results)
            )
        print(
            f"\ncores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}\n  "
            + "\n  ".join(out)
        )
        return 0
    finally:
        if spark is not None:
            spark.stop()
        if zaqar is not None:
            zaqar.stop()
        rest.stop()
        mongo.stop()


if __name__ == "__main__":
    sys.exit(main())
