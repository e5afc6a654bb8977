"""The streaming job end to end on Spark local[2] (one shared session), with real servers:
SecantusDB, Zaqar on Redis, the REST service over HTTP, and the page in Chromium."""

import json

import pytest
from bbq import testing
from bbq.store import Store

from tests.app.helpers import send, send_args, wait_stored
from tests.fixtures.rest import bbq_command
from tests.fixtures.spark import job_args, streaming_query

SERVICES = ["web", "db", "cache"]


def expected_counts(n, services=SERVICES):
    counts = {}
    for i in range(n):
        counts[services[i % len(services)]] = counts.get(services[i % len(services)], 0) + 1
    return counts


def test_socket_source_end_to_end(spark, mongo_server, rest_server, tmp_path):
    n = 3000
    port = testing.free_port()
    db = mongo_server.new_database()
    args = job_args(mongo_server, rest_server, db, stream__socket_port=port)
    sender = testing.start(
        [
            bbq_command("bbq-send"),
            *send_args(args),
            "post",
            "--target",
            "socket",
            "--generate",
            str(n),
            "--linger",
            "5",
        ],
        tmp_path / "send.log",
    )
    try:
        testing.wait_until(
            lambda: "waiting for the job" in testing.log_tail(sender), 30, what="sender ready"
        )
        with streaming_query(spark, args) as (query, _):
            store = Store(mongo_server.url, db)
            assert wait_stored(store, n) == n
            assert sender.wait(60) == 0, testing.log_tail(sender)
            assert store.counts() == expected_counts(n)
            assert store.dead_letter_count() == 0
            view = testing.wait_until(
                lambda: (v := rest_server.summary())["total"] == n and v, 30, what="REST total"
            )
            assert view["totals"] == store.counts()
            assert sum(sum(h["counts"].values()) for h in view["history"]) == n
            assert query.exception() is None
    finally:
        testing.stop(sender)


def test_zaqar_source_end_to_end_with_bad_input_and_dashboard(
    spark, mongo_server, rest_server, zaqar_server, browser, tmp_path
):
    n = 2400
    queue = zaqar_server.new_queue()
    db = mongo_server.new_database()
    args = job_args(
        mongo_server,
        rest_server,
        db,
        zaqar=zaqar_server,
        queue=queue,
        stream__max_message_bytes=4096,
    )
    out = send(args, "post", "--generate", str(n), "--id-prefix", "good")
    assert f"sent {n} messages" in out.stderr
    bad = [
        "this is not json",
        '{"id": "b1", "service": "web"}',
        '{"id": "b2", "service": "web", "value": "high"}',
        '{"id": "b3", "service": 42, "value": 1}',
        "[1, 2, 3]",
        json.dumps({"id": "b4", "service": "web", "value": 1, "pad": "x" * 5000}),
    ]
    send(args, "post", input="\n".join(bad) + "\n")
    assert zaqar_server.queue_depth(queue)["total"] == n + len(bad)

    with streaming_query(spark, args) as (query, _):
        store = Store(mongo_server.url, db)
        assert wait_stored(store, n) == n
        testing.wait_until(lambda: store.dead_letter_count() == len(bad), 30, what="dead letters")
        reasons = sorted(d["reason"] for d in store.dead_letters.find())
        assert reasons == sorted(
            [
                "not JSON: Expecting value at line 1 column 1",
                "missing field 'value'",
                "field 'value' must be a number, not str",
                "field 'service' must be a string, not int",
                "not a JSON object but list",
                f"oversized: {len(bad[-1])} bytes > 4096",
            ]
        )
        assert store.counts() == expected_counts(n)
        # Every message was deleted from the queue once its batch was committed.
        testing.wait_until(
            lambda: zaqar_server.queue_depth(queue)["total"] == 0, 30, what="queue drained"
        )
        # The job keeps going after bad input: more good messages are still stored.
        send(args, "post", "--generate", "300", "--id-prefix", "more")
        assert wait_stored(store, n + 300) == n + 300
        view = testing.wait_until(
            lambda: (v := rest_server.summary())["total"] == n + 300 and v, 30, what="REST"
        )
        assert view["dead_total"] == len(bad)
        assert query.exception() is None

        # The dashboard in Chromium shows what MongoDB holds.
        browser.open(rest_server.url + "/")
        rows = (
            "return Object.fromEntries([...document.querySelectorAll('#totals tbody tr')]"
            ".map(r => [r.dataset.service, Number(r.querySelector('.count').dataset.value)]))"
        )
        browser.wait_for(f"const t = (() => {{ {rows} }})(); return Object.keys(t).length > 0")
        assert browser.run(rows) == store.counts()
        # The numbers as shown ("2,700") and as values (data-value) both match MongoDB's.
        shown = "const e = document.getElementById('{}'); return [e.dataset.value, e.textContent]"
        assert browser.run(shown.format("total")) == [str(n + 300), f"{n + 300:,}"]
        assert browser.run(shown.format("dead-total")) == [str(len(bad)), f"{len(bad):,}"]
        browser.screenshot(tmp_path / "dashboard-live.png")


def test_send_reports_bad_usage(zaqar_server, tmp_path):
    args = ["--config-file", "/dev/null", "--zaqar-url", zaqar_server.url]
    missing = send(args, "post", "--file", str(tmp_path / "nope.jsonl"), check=False)
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr and "nope.jsonl" in missing.stderr
    big = tmp_path / "big.jsonl"
    big.write_text('{"id": 1, "service": "web", "value": 1}\n' + "x" * 300000 + "\n")
    queue = zaqar_server.new_queue()
    out = send(
        args,
        "--zaqar-queue",
        queue,
        "--zaqar-project_id",
        "bbq-tests",
        "post",
        "--file",
        str(big),
        check=False,
    )
    assert out.returncode == 1
    assert f"{big} line 2:" in out.stderr and "not sent" in out.stderr
    assert zaqar_server.queue_depth(queue)["total"] == 1


@pytest.mark.parametrize("op", ["pop", "claim"])
def test_send_pop_and_claim(zaqar_server, op):
    queue = zaqar_server.new_queue()
    args = [
        "--config-file",
        "/dev/null",
        "--zaqar-url",
        zaqar_server.url,
        "--zaqar-queue",
        queue,
        "--zaqar-project_id",
        "bbq-tests",
    ]
    send(args, "post", "--generate", "5", "--id-prefix", "p")
    out = send(args, op, "--count", "3")
    taken = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(taken) == 3
    assert all(json.loads(t["body"])["id"].startswith("p-") for t in taken)
    depth = zaqar_server.queue_depth(queue)
    if op == "pop":
        assert depth["total"] == 2
    else:
        assert {t["claim_id"] for t in taken} != {None}
        assert (depth["claimed"], depth["free"]) == (3, 2)
