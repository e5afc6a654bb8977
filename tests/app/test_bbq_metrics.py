"""Prometheus metrics (issue 15): bbq-stream's endpoint and bbq-rest's /metrics, scraped
over HTTP and read with prometheus_client's own text parser, match what MongoDB holds after
a run through Zaqar with duplicates and dead letters; the Zaqar collector reads a real
queue's claimed and waiting messages."""

import collections
import json
import types

import pytest
import requests
from bbq import config, metrics, records, testing
from bbq.store import Store
from bbq.zaqar import zaqar_client
from prometheus_client.parser import text_string_to_metric_families

from tests.app.helpers import send
from tests.app.test_bbq_logs import start_rest
from tests.fixtures.spark import job_args, start_job_process

BAD = [
    "this is not json",
    '{"id": "b1", "service": "web"}',
    '{"id": "b2", "service": "web", "value": "high"}',
    "[1, 2, 3]",
    json.dumps({"id": "b4", "service": "web", "value": 1, "pad": "x" * 5000}),
]


def scrape(url: str) -> dict:
    """{(sample name, frozenset of labels): value} of a metrics endpoint."""
    reply = requests.get(url, timeout=10)
    reply.raise_for_status()
    assert reply.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float | None:
    """The sample's value; None when the endpoint did not report it (e.g. the Zaqar gauges
    while Zaqar answered its queue stats with a 503)."""
    return samples.get((name, frozenset(labels.items())))


def labelled(samples: dict, name: str, label: str) -> dict:
    return {dict(k)[label]: v for (n, k), v in samples.items() if n == name and v}


@pytest.mark.slow
def test_metrics_of_both_programs_match_mongodb(mongo_server, zaqar_server, tmp_path):
    n, dup = 900, 60
    rest, rest_url, _rest_log = start_rest(mongo_server, tmp_path)
    queue = zaqar_server.new_queue()
    db = mongo_server.new_database()
    port = testing.free_port()
    args = job_args(
        mongo_server,
        types.SimpleNamespace(url=rest_url),
        db,
        zaqar=zaqar_server,
        queue=queue,
        stream__max_message_bytes=4096,
        stream__metrics_port=port,
    )
    send(args, "post", "--generate", str(n), "--id-prefix", "m")
    send(args, "post", "--generate", str(dup), "--id-prefix", "m")  # the same ids again
    send(args, "post", input="\n".join(BAD) + "\n")
    job_log = tmp_path / "job.log"
    job = start_job_process([*args, "--log-file", str(job_log)], tmp_path / "job.out")
    store = Store(mongo_server.url, db)
    job_url = f"http://127.0.0.1:{port}/metrics"
    try:
        testing.wait_until(
            lambda: (
                store.packets.count_documents({}) >= n
                and store.dead_letter_count() >= len(BAD)
                or job.poll() is not None
            ),
            240,
            interval=0.5,
            what="every message stored or dead-lettered",
        )
        assert job.poll() is None, testing.log_tail(job)

        def settled():
            samples = scrape(job_url)
            done = value(samples, "bbq_stream_input_rows_total") == n + dup + len(BAD)
            drained = value(samples, "bbq_zaqar_messages_in_flight") == 0
            waiting = value(samples, "bbq_zaqar_messages_waiting") == 0
            sent = value(samples, "bbq_stream_signals_total", result="sent")
            return (
                done
                and drained
                and waiting
                and sent == value(samples, "bbq_stream_batches_total")
                and samples
            )

        job_samples = testing.wait_until(settled, 60, interval=1, what="job metrics settled")
        rest_samples = scrape(rest_url + "/metrics")
    finally:
        testing.stop(job)
        testing.stop(rest)

    # The job's numbers are MongoDB's.
    stored = store.packets.count_documents({})
    assert stored == n
    assert value(job_samples, "bbq_stream_packets_stored_total") == stored
    assert value(job_samples, "bbq_stream_duplicates_ignored_total") == dup
    reasons = collections.Counter(
        records.reason_code(d["reason"]) for d in store.dead_letters.find({}, {"reason": 1})
    )
    assert sum(reasons.values()) == len(BAD)
    assert labelled(job_samples, "bbq_stream_dead_letters_total", "reason") == reasons
    assert reasons == {"not_json": 1, "missing_field": 1, "wrong_type": 1, "not_object": 1,
                       "oversized": 1}  # fmt: skip
    batches = value(job_samples, "bbq_stream_batches_total")
    assert batches >= 1
    assert value(job_samples, "bbq_stream_batch_duration_seconds_count") == batches
    assert value(job_samples, "bbq_stream_batch_duration_seconds_sum") > 0
    assert value(job_samples, "bbq_stream_input_rows_per_second") > 0
    assert value(job_samples, "bbq_zaqar_up") == 1
    assert value(job_samples, "bbq_zaqar_claim_lag_seconds") == 0  # the queue is empty
    assert value(job_samples, "bbq_stream_signals_total", result="failed") == 0

    # bbq-rest took every signal, and its last one reports what MongoDB holds.
    assert value(rest_samples, "bbq_rest_signals_received_total", result="new") == batches
    assert value(rest_samples, "bbq_rest_reported_packets") == stored
    assert value(rest_samples, "bbq_rest_reported_dead_letters") == store.dead_letter_count()
    posted = ("bbq_rest_request_duration_seconds_count", "POST", "/api/v1/batches", "201")
    name, method, route, code = posted
    assert value(rest_samples, name, method=method, route=route, code=code) == batches
    assert labelled(rest_samples, "bbq_rest_signals_rejected_total", "reason") == {}

    # One INFO line per micro-batch, adding up to the same numbers.
    lines = [line for line in job_log.read_text().splitlines() if " rows in, " in line]
    assert len(lines) == batches
    assert sum(int(line.split(" stored, ")[0].rsplit(" ", 1)[1]) for line in lines) == stored


def test_rest_metrics_count_refusals_by_reason(mongo_server, tmp_path):
    rest, url, _log = start_rest(mongo_server, tmp_path)
    post = url + "/api/v1/batches"
    try:
        requests.post(post, data=b"{}", headers={"Content-Type": "text/plain"}, timeout=10)
        requests.post(post, data=b"{nope", headers={"Content-Type": "application/json"}, timeout=10)
        requests.post(post, json={"batch_id": -1}, timeout=10)
        requests.post(post, json={"batch_id": "x"}, timeout=10)
        big = b"[" + b"1," * (600 * 1024) + b"1]"
        requests.post(post, data=big, headers={"Content-Type": "application/json"}, timeout=10)
        requests.get(url + "/healthz", timeout=10)
        requests.request("BREW", url + "/healthz", timeout=10)
        samples = scrape(url + "/metrics")
    finally:
        testing.stop(rest)
    assert labelled(samples, "bbq_rest_signals_rejected_total", "reason") == {
        "media_type": 1,
        "json": 1,
        "schema": 2,
        "too_large": 1,
    }
    assert value(samples, "bbq_rest_signals_received_total", result="new") == 0
    health = "bbq_rest_request_duration_seconds_count"
    assert value(samples, health, method="GET", route="/healthz", code="200") == 1
    # An odd method is one bounded label value, not a new series per method.
    assert value(samples, health, method="other", route=metrics.UNMATCHED, code="405") == 1
    assert value(samples, "bbq_rest_build_info", version=config.version()) == 1


def test_zaqar_collector_reads_a_real_queue(zaqar_server):
    name = zaqar_server.new_queue()
    client = zaqar_client(zaqar_server.url, "bbq-tests", timeout=10)
    queue = client.queue(name)
    queue.post([{"body": f"m{i}", "ttl": 600} for i in range(5)])
    claim = queue.claim(ttl=60, grace=60, limit=3)
    assert len(list(claim)) == 3
    registry = metrics.JobMetrics().registry
    registry.register(metrics.ZaqarQueueCollector(queue, name))
    got = testing.wait_until(
        lambda: (
            registry.get_sample_value("bbq_zaqar_up") == 1
            and {
                n: registry.get_sample_value(n)
                for n in ("bbq_zaqar_messages_in_flight", "bbq_zaqar_messages_waiting")
            }
        ),
        30,
        what="queue stats",
    )
    assert got == {"bbq_zaqar_messages_in_flight": 3, "bbq_zaqar_messages_waiting": 2}
    assert registry.get_sample_value("bbq_zaqar_claim_lag_seconds") >= 0

    # A Zaqar that does not answer: up is 0, the scrape still works.
    port = testing.free_port()
    away = zaqar_client(f"http://127.0.0.1:{port}", "bbq-tests", timeout=2).queue(name)
    registry = metrics.JobMetrics().registry
    registry.register(metrics.ZaqarQueueCollector(away, name))
    assert registry.get_sample_value("bbq_zaqar_up") == 0
    assert registry.get_sample_value("bbq_zaqar_messages_in_flight") is None
