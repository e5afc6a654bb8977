"""Fault tolerance, end to end with real servers: every message sent ends in MongoDB exactly
once when the streaming job is killed mid-run and restarted from its checkpoint, and when
the Zaqar API goes away mid-run and comes back while the job keeps running."""

import signal

import pytest
from bbq import testing
from bbq.store import Store

from tests.app.helpers import send_args
from tests.fixtures.rest import bbq_command
from tests.fixtures.spark import job_args, start_job_process, streaming_query
from tests.fixtures.zaqar import ZaqarServer


def assert_exactly_once(store, prefix, n):
    stored = {d["_id"] for d in store.packets.find({}, {"_id": 1})}
    assert stored == {f"{prefix}-{i}" for i in range(n)}
    assert store.packets.count_documents({}) == n
    assert store.dead_letter_count() == 0


@pytest.mark.slow
def test_kill_and_restart_keeps_every_message_exactly_once(
    mongo_server, zaqar_server, rest_server, tmp_path
):
    n = 12000
    queue = zaqar_server.new_queue()
    db = mongo_server.new_database()
    args = job_args(
        mongo_server,
        rest_server,
        db,
        zaqar=zaqar_server,
        queue=queue,
        stream__max_batch_messages=500,
        stream__checkpoint_dir=tmp_path / "checkpoint",
    )
    store = Store(mongo_server.url, db)
    sender = testing.start(
        [
            bbq_command("bbq-send"),
            *send_args(args),
            "post",
            "--generate",
            str(n),
            "--id-prefix",
            "k",
        ],
        tmp_path / "send.log",
    )
    first = start_job_process(args, tmp_path / "job1.log")
    second = None
    try:
        # Kill the job once it has stored part of the stream, in the middle of its run.
        testing.wait_until(
            lambda: first.poll() is None and store.packets.count_documents({}) >= 1500,
            180,
            interval=0.1,
            what="the first run storing 1500 packets\n" + testing.log_tail(first),
        )
        testing.stop(first, sig=signal.SIGKILL)
        at_kill = store.packets.count_documents({})
        assert 0 < at_kill < n
        assert sender.wait(120) == 0, testing.log_tail(sender)
        assert zaqar_server.queue_depth(queue)["total"] > 0  # work left for the restart

        second = start_job_process(args, tmp_path / "job2.log")
        testing.wait_until(
            lambda: store.packets.count_documents({}) >= n,
            240,
            interval=0.5,
            what=f"{n} packets after the restart\n" + testing.log_tail(second),
        )
        testing.wait_until(
            lambda: zaqar_server.queue_depth(queue)["total"] == 0, 60, what="queue drained"
        )
        assert_exactly_once(store, "k", n)
        # The restarted job's totals start from the store: the dashboard shows n, not more.
        view = testing.wait_until(
            lambda: (v := rest_server.summary())["total"] == n and v, 60, what="REST total"
        )
        assert view["totals"] == store.counts()
        assert second.poll() is None, testing.log_tail(second)
    finally:
        testing.stop(sender)
        testing.stop(first)
        testing.stop(second)


@pytest.fixture
def own_zaqar(tmp_path):
    """A Zaqar server of this test's own: the test takes its API down."""
    server = ZaqarServer(tmp_path / "zaqar")
    yield server
    server.stop()


@pytest.mark.slow
def test_zaqar_outage_mid_run_loses_and_duplicates_nothing(
    spark, mongo_server, rest_server, own_zaqar, tmp_path
):
    n = 6000
    queue = own_zaqar.new_queue()
    db = mongo_server.new_database()
    args = job_args(
        mongo_server,
        rest_server,
        db,
        zaqar=own_zaqar,
        queue=queue,
        stream__max_batch_messages=300,
        stream__checkpoint_dir=tmp_path / "checkpoint",
    )
    sent = testing.start(
        [
            bbq_command("bbq-send"),
            *send_args(args),
            "post",
            "--generate",
            str(n),
            "--id-prefix",
            "z",
        ],
        tmp_path / "send.log",
    )
    assert sent.wait(120) == 0, testing.log_tail(sent)
    store = Store(mongo_server.url, db)
    with streaming_query(spark, args) as (query, writer):
        testing.wait_until(
            lambda: store.packets.count_documents({}) >= 1000,
            120,
            interval=0.1,
            what="1000 packets before the outage",
        )
        own_zaqar.stop_api()
        # The job keeps running while Zaqar is away: claims and deletes fail, and are
        # tried again.
        batches = writer.batches
        testing.wait_until(
            lambda: store.packets.count_documents({}) == writer.records or not query.isActive,
            60,
            what="the batches in flight stored",
        )
        assert query.isActive and query.exception() is None
        assert store.packets.count_documents({}) < n
        own_zaqar.start_api()
        testing.wait_until(
            lambda: store.packets.count_documents({}) >= n or not query.isActive,
            240,
            interval=0.5,
            what=f"{n} packets after the outage",
        )
        testing.wait_until(
            lambda: own_zaqar.queue_depth(queue)["total"] == 0, 120, what="queue drained"
        )
        assert query.exception() is None
        assert writer.batches > batches
    assert_exactly_once(store, "z", n)
