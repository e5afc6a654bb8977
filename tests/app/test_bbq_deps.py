"""bbq-stream waits for its dependencies at start-up (issue 12): it logs what it waits
for, retries with a bounded back-off, goes on once a late dependency answers, and gives up
in one line when [stream] dependency_timeout passes."""

import logging
import subprocess
import threading
import time

import pytest
from bbq import config, deps, testing
from bbq.store import Store

from tests.app.helpers import send_args
from tests.fixtures.mongo import MongoServer
from tests.fixtures.rest import RestServer, bbq_command
from tests.fixtures.spark import job_args, spark_env, start_job_process


def test_waits_for_a_rest_service_that_comes_up_late(tmp_path, caplog):
    port = testing.free_port()
    conf = config.load(["--config-file", "/dev/null", "--rest-url", f"http://127.0.0.1:{port}"])
    (rest_dep,) = [d for d in deps.dependencies(conf) if d.name == "the REST service"]
    done = threading.Event()
    caplog.set_level(logging.INFO, logger="bbq.deps")

    def wait():
        deps.wait_for([rest_dep], timeout=60, max_delay=1, first_delay=0.2)
        done.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    time.sleep(2)
    assert not done.is_set()
    server = RestServer(tmp_path, port=port)
    try:
        assert done.wait(30), "wait_for did not return once the REST service answered"
    finally:
        server.stop()
    waits = [r.message for r in caplog.records if r.message.startswith("waiting for")]
    assert waits and f"the REST service at http://127.0.0.1:{port}/healthz" in waits[0]
    assert any("answers" in r.message for r in caplog.records)


def test_dependencies_from_the_configuration():
    conf = config.load(
        [
            "--config-file",
            "/dev/null",
            "--mongodb-url",
            "mongodb://bbq:secret@db.example:27017/bbq",
            "--stream-spark_master",
            "spark://m1:7077,m2:7078",
            "--zaqar-url",
            "http://zaqar.example:8888/",
        ]
    )
    found = {d.name: d.where for d in deps.dependencies(conf)}
    assert found == {
        "MongoDB": "mongodb://db.example:27017/bbq",  # no credentials in logs
        "the Spark master": "spark://m1:7077,m2:7078",
        "Zaqar": "http://zaqar.example:8888/v2/ping",
        "the REST service": "http://127.0.0.1:8780/healthz",
    }
    assert deps.spark_master_hosts("spark://m1:7077,m2:7078") == [("m1", 7077), ("m2", 7078)]
    assert deps.spark_master_hosts("local[2]") == []


def test_bbq_stream_gives_up_in_one_line_after_dependency_timeout():
    port = testing.free_port()
    started = time.monotonic()
    out = subprocess.run(
        [
            bbq_command("bbq-stream"),
            "--config-file",
            "/dev/null",
            "--mongodb-url",
            f"mongodb://127.0.0.1:{port}",
            "--stream-dependency_timeout",
            "6",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=spark_env(),
    )
    assert time.monotonic() - started < 60
    assert out.returncode == 1
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"bbq-stream: MongoDB at mongodb://127.0.0.1:{port} did not answer")
    assert "within 6s: 127.0.0.1:" in last and "Connection refused" in last
    assert "Traceback" not in out.stderr
    assert "waiting for MongoDB" in out.stderr


@pytest.mark.slow
def test_bbq_stream_starts_once_a_late_mongodb_answers(zaqar_server, rest_server, tmp_path):
    mongo = MongoServer(tmp_path / "late-mongo", start=False)
    queue = zaqar_server.new_queue()
    db = "late"
    args = job_args(mongo, rest_server, db, zaqar=zaqar_server, queue=queue)
    job = start_job_process(args, tmp_path / "job.log")
    try:
        testing.wait_until(
            lambda: "waiting for MongoDB" in testing.log_tail(job),
            60,
            what="the job waiting for MongoDB\n" + testing.log_tail(job),
        )
        time.sleep(3)
        assert job.poll() is None, testing.log_tail(job)
        mongo.start_server()
        subprocess.run(
            [
                bbq_command("bbq-send"),
                *send_args(args),
                "post",
                "--generate",
                "300",
                "--id-prefix",
                "late",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        store = Store(mongo.url, db)
        testing.wait_until(
            lambda: job.poll() is None and store.packets.count_documents({}) >= 300,
            240,
            interval=0.5,
            what="300 packets after MongoDB came up\n" + testing.log_tail(job),
        )
        assert store.packets.count_documents({}) == 300
        assert "MongoDB at mongodb://127.0.0.1" in testing.log_tail(job, 100000)
    finally:
        testing.stop(job)
        mongo.stop()
