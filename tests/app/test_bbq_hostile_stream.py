"""Hostile records end to end on both sources (issue 13): generated bad records mixed with
good ones. Every good record is stored exactly once, every bad one dead-lettered once, no
Zaqar message stays claimed, the job keeps running; and a batch that fails because MongoDB
is down is run again once it is back, never skipped.

Cases run here: per source, the 69-line hostile corpus twice (two seeds) and 240 awkward
good records; the socket source also gets 6 lines of raw invalid UTF-8 and control bytes."""

import random
import socket
import threading

import pytest
from bbq import send, testing
from bbq.store import Store

from tests.app.hostile import bad_records, good_ids, good_records
from tests.fixtures.mongo import MongoServer
from tests.fixtures.spark import job_args, streaming_query

N_GOOD = 240


def mixed(tag: str) -> tuple[list[str], int, dict[str, int]]:
    """Good and bad lines shuffled together: (lines, number of bad ones, good counts)."""
    rng = random.Random(f"hostile-{tag}")
    bad = bad_records(tag, random.Random(1)) + bad_records(tag + "x", random.Random(2))
    good, counts = good_records(tag, N_GOOD, rng)
    lines = bad + good
    rng.shuffle(lines)
    return lines, len(bad), counts


def assert_outcomes(store, tag, n_bad, counts):
    stored = {d["_id"] for d in store.packets.find({}, {"_id": 1})}
    assert stored == good_ids(tag, N_GOOD)
    assert store.packets.count_documents({}) == N_GOOD
    assert store.counts() == counts
    assert store.dead_letter_count() == n_bad
    reasons = [d["reason"] for d in store.dead_letters.find({}, {"reason": 1})]
    assert all(reasons) and not any("Traceback" in r for r in reasons)


@pytest.mark.slow
def test_hostile_records_through_zaqar(spark, mongo_server, rest_server, zaqar_server):
    tag = "zq"
    lines, n_bad, counts = mixed(tag)
    queue = zaqar_server.new_queue()
    db = mongo_server.new_database()
    args = job_args(
        mongo_server,
        rest_server,
        db,
        zaqar=zaqar_server,
        queue=queue,
        stream__max_batch_messages=97,
    )
    sent, errors = send.post_to_zaqar(zaqar_server.client().queue(queue), lines, 262144, 3600, 1000)
    assert (sent, errors) == (len(lines), [])
    store = Store(mongo_server.url, db)
    with streaming_query(spark, args) as (query, writer):
        testing.wait_until(
            lambda: (store.packets.count_documents({}) >= N_GOOD
                     and store.dead_letter_count() >= n_bad) or not query.isActive,
            240,
            interval=0.5,
            what="every record stored or dead-lettered",
        )  # fmt: skip
        # Nothing stays claimed: every message's batch was committed and deleted.
        testing.wait_until(
            lambda: zaqar_server.queue_depth(queue)["total"] == 0, 60, what="queue drained"
        )
        assert_outcomes(store, tag, n_bad, counts)
        # The job is still running and takes more.
        more = [f'{{"id": "after-{i}", "service": "web", "value": {i}}}' for i in range(50)]
        send.post_to_zaqar(zaqar_server.client().queue(queue), more, 262144, 3600, 1000)
        testing.wait_until(
            lambda: store.packets.count_documents({}) == N_GOOD + 50, 120, what="after"
        )
        assert query.isActive and query.exception() is None
        assert writer.retried_batches == 0
        view = testing.wait_until(
            lambda: (v := rest_server.summary())["total"] == N_GOOD + 50 and v, 60, what="REST"
        )
        assert view["dead_total"] == n_bad


class LineServer:
    """Serves raw byte lines to the first client (Spark's socket source), like nc -l."""

    def __init__(self, lines: list[bytes]):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lines = lines
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()
        self.conn = None

    def serve(self):
        self.sock.settimeout(120)
        self.conn, _ = self.sock.accept()
        self.conn.sendall(b"".join(line + b"\n" for line in self.lines))

    def send(self, lines: list[bytes]):
        self.conn.sendall(b"".join(line + b"\n" for line in lines))

    def close(self):
        if self.conn:
            self.conn.close()
        self.sock.close()


RAW_BAD = [b"\xff\xfe\xfd", b"caf\xe9", b"\xed\xa0\x80", b"\x00\x01\x02\x03", b"\xc0\xaf", b"\x80"]


@pytest.mark.slow
def test_hostile_records_through_the_socket(spark, mongo_server, rest_server):
    tag = "sk"
    lines, n_bad, counts = mixed(tag)
    data = [line.encode() for line in lines]
    for k, raw in enumerate(RAW_BAD):
        data.insert(37 * (k + 1), raw)
    server = LineServer(data)
    db = mongo_server.new_database()
    args = job_args(mongo_server, rest_server, db, stream__socket_port=server.port)
    store = Store(mongo_server.url, db)
    try:
        with streaming_query(spark, args) as (query, writer):
            n_bad += len(RAW_BAD)
            testing.wait_until(
                lambda: (store.packets.count_documents({}) >= N_GOOD
                         and store.dead_letter_count() >= n_bad) or not query.isActive,
                240,
                interval=0.5,
                what="every record stored or dead-lettered",
            )  # fmt: skip
            assert_outcomes(store, tag, n_bad, counts)
            server.send(
                [f'{{"id": "after-{i}", "service": "web", "value": 1}}'.encode() for i in range(50)]
            )
            testing.wait_until(
                lambda: store.packets.count_documents({}) == N_GOOD + 50, 120, what="after"
            )
            assert query.isActive and query.exception() is None
            assert writer.retried_batches == 0
    finally:
        server.close()


@pytest.fixture
def own_mongo(tmp_path):
    """A SecantusDB of this test's own: the test takes it down."""
    server = MongoServer(tmp_path / "mongo")
    yield server
    server.stop()


@pytest.mark.slow
def test_a_batch_failing_while_mongodb_is_down_is_run_again_not_skipped(
    spark, own_mongo, rest_server, zaqar_server, tmp_path
):
    n = 3000
    queue = zaqar_server.new_queue()
    db = "outage"
    args = job_args(
        own_mongo,
        rest_server,
        db,
        zaqar=zaqar_server,
        queue=queue,
        stream__max_batch_messages=200,
        stream__batch_retry_max_delay=2,
        mongodb__retry_seconds=2,
    )
    zq = zaqar_server.client().queue(queue)
    messages = list(send.generate(n, ["web", "db", "cache"], "out"))
    send.post_to_zaqar(zq, messages[:1000], 262144, 3600, 1000)
    store = Store(own_mongo.url, db)
    with streaming_query(spark, args) as (query, writer):
        testing.wait_until(
            lambda: store.packets.count_documents({}) >= 1000, 120, what="first 1000 stored"
        )
        own_mongo.stop_server()
        send.post_to_zaqar(zq, messages[1000:], 262144, 3600, 1000)
        testing.wait_until(
            lambda: writer.retried_batches >= 2 or not query.isActive, 60, what="batch reruns"
        )
        assert query.isActive, query.exception()
        own_mongo.start_server()
        testing.wait_until(
            lambda: store.packets.count_documents({}) >= n or not query.isActive,
            240,
            interval=0.5,
            what=f"{n} packets after the outage",
        )
        testing.wait_until(
            lambda: zaqar_server.queue_depth(queue)["total"] == 0, 120, what="queue drained"
        )
        assert query.isActive and query.exception() is None
        stored = {d["_id"] for d in store.packets.find({}, {"_id": 1})}
        assert stored == {f"out-{i}" for i in range(n)}
        assert store.dead_letter_count() == 0
        # Totals were recounted after the reruns: the dashboard shows n, not less.
        testing.wait_until(lambda: rest_server.summary()["total"] == n, 60, what="REST total")
