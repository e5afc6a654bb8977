"""Fault tolerance: kill the streaming job (SIGKILL, mid-run) and restart it with the same
checkpoint; every message sent must be in MongoDB exactly once."""

import signal

import pytest
from bbq import testing
from bbq.store import Store

from tests.fixtures.rest import bbq_command
from tests.fixtures.spark import conf_args, spark_env


def start_job(args, log):
    return testing.start([bbq_command("bbq-stream"), *args], log, env=spark_env())


@pytest.mark.slow
def test_kill_and_restart_keeps_every_message_exactly_once(
    mongo_server, zaqar_server, rest_server, tmp_path
):
    n = 12000
    queue = zaqar_server.new_queue()
    db = mongo_server.new_database()
    args = conf_args(
        source="zaqar",
        mongo_url=mongo_server.url,
        database=db,
        rest_url=rest_server.url,
        stream__batch_interval=0.5,
        stream__max_batch_messages=500,
        stream__checkpoint_dir=tmp_path / "checkpoint",
        zaqar__url=zaqar_server.url,
        zaqar__queue=queue,
        zaqar__project_id="bbq-tests",
    )
    store = Store(mongo_server.url, db)
    sender = testing.start(
        [bbq_command("bbq-send"), *args, "post", "--generate", str(n), "--id-prefix", "k"],
        tmp_path / "send.log",
    )
    first = start_job(args, tmp_path / "job1.log")
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

        second = start_job(args, tmp_path / "job2.log")
        testing.wait_until(
            lambda: store.packets.count_documents({}) >= n,
            240,
            interval=0.5,
            what=f"{n} packets after the restart\n" + testing.log_tail(second),
        )
        testing.wait_until(
            lambda: zaqar_server.queue_depth(queue)["total"] == 0, 60, what="queue drained"
        )
        stored = {d["_id"] for d in store.packets.find({}, {"_id": 1})}
        assert stored == {f"k-{i}" for i in range(n)}
        assert store.packets.count_documents({}) == n
        assert store.dead_letter_count() == 0
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
