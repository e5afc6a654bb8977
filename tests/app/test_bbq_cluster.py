"""The same job, unchanged, on a real Spark standalone cluster on loopback: one master and
two workers, with executors on both."""

import pytest
from bbq import testing
from bbq.store import Store

from tests.app.helpers import send_args
from tests.fixtures.rest import bbq_command
from tests.fixtures.spark import LOOPBACK_SPARK_CONF, SparkCluster, job_args, start_job_process


@pytest.mark.slow
def test_job_on_a_standalone_cluster(mongo_server, zaqar_server, rest_server, tmp_path):
    cluster = SparkCluster(tmp_path / "cluster", workers=2)
    job = sender = None
    try:
        n = 6000
        queue = zaqar_server.new_queue()
        db = mongo_server.new_database()
        args = job_args(
            mongo_server,
            rest_server,
            db,
            zaqar=zaqar_server,
            queue=queue,
            stream__spark_master=cluster.url,
            stream__max_batch_messages=1000,
            stream__partitions=4,
            stream__checkpoint_dir=tmp_path / "checkpoint",
        )
        # job_args sets the loopback settings; the cluster needs smaller executors.
        i = args.index("--stream-spark_conf")
        args[i + 1] = LOOPBACK_SPARK_CONF + (
            ",spark.executor.memory=512m,spark.executor.cores=1,spark.cores.max=2"
        )
        job = start_job_process(args, tmp_path / "job.log")
        sender = testing.start(
            [
                bbq_command("bbq-send"),
                *send_args(args),
                "post",
                "--generate",
                str(n),
                "--id-prefix",
                "c",
            ],
            tmp_path / "send.log",
        )
        store = Store(mongo_server.url, db)
        testing.wait_until(
            lambda: job.poll() is None and store.packets.count_documents({}) >= n,
            240,
            interval=0.5,
            what=f"{n} packets from the cluster\n" + testing.log_tail(job),
        )
        assert sender.wait(60) == 0
        assert store.packets.count_documents({}) == n
        assert store.counts() == {"web": 2000, "db": 2000, "cache": 2000}

        # The application ran with one executor on each worker, and both ran tasks.
        apps = cluster.state()["activeapps"]
        assert len(apps) == 1 and apps[0]["cores"] == 2
        assert all(w["coresused"] == 1 for w in cluster.alive_workers())
        for w in range(2):
            logs = list((tmp_path / "cluster" / f"work{w}").glob("app-*/*/stderr"))
            assert logs, f"no executor on worker {w}"
            text = "".join(p.read_text(errors="replace") for p in logs)
            assert "Finished task" in text, f"executor on worker {w} ran no task"
        view = testing.wait_until(
            lambda: (v := rest_server.summary())["total"] == n and v, 30, what="REST total"
        )
        assert view["totals"] == store.counts()
    finally:
        testing.stop(sender)
        testing.stop(job)
        cluster.stop()
