"""The job's pieces that need no Spark: signalling REST with bounded retries, settings."""

import subprocess
import time

from bbq import config, job, testing

from tests.fixtures.rest import bbq_command


def summary(batch_id=0):
    return {
        "run": "t",
        "batch_id": batch_id,
        "time": time.time(),
        "counts": {"web": 1},
        "totals": {"web": 1},
    }


def test_signal_reaches_the_rest_service(rest_server):
    signaller = job.Signaller(rest_server.url, retries=2, delay=0.05, timeout=5)
    assert signaller.send(summary(7)) is True
    assert rest_server.summary()["history"][0]["batch_id"] == 7


def test_signal_gives_up_after_bounded_retries_when_rest_is_down():
    port = testing.free_port()  # nothing listens here
    signaller = job.Signaller(f"http://127.0.0.1:{port}", retries=3, delay=0.05, timeout=1)
    started = time.monotonic()
    assert signaller.send(summary()) is False
    took = time.monotonic() - started
    assert 0.05 + 0.1 + 0.2 <= took < 10  # three retries with doubling delays, then gives up
    assert signaller.failures == 1


def test_signal_is_not_retried_when_rest_refuses_the_payload(rest_server):
    signaller = job.Signaller(rest_server.url, retries=3, delay=2, timeout=5)
    started = time.monotonic()
    assert signaller.send({"batch_id": "bad"}) is False
    assert time.monotonic() - started < 2  # a 400 is final: no retry delay spent
    assert rest_server.summary()["seq"] == 0


def test_spark_settings_from_config():
    conf = config.load(
        ["--config-file", "/dev/null", "--stream-spark_conf", "spark.a=1, spark.b = x=y"]
    )
    settings = job.spark_settings(conf)
    assert settings["spark.a"] == "1"
    assert settings["spark.b"] == "x=y"


def test_bbq_stream_rejects_bad_settings_before_starting_spark():
    out = subprocess.run(
        [
            bbq_command("bbq-stream"),
            "--config-file",
            "/dev/null",
            "--stream-spark_conf",
            "spark.ok=1,nonsense",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "spark_conf: 'nonsense' is not KEY=VALUE" in out.stderr
    out = subprocess.run(
        [
            bbq_command("bbq-stream"),
            "--config-file",
            "/dev/null",
            "--stream-batch_interval",
            "soon",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "batch_interval" in out.stderr
