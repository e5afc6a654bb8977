"""The REST service against hostile clients (issue 13), over real HTTP: generated bodies
and query values never get a 5xx, the JSON it serves stays strict (no NaN/Infinity) and
bounded, /healthz reports the version and an operator's drain switch, and ~100 slow or idle
connections do not stop it answering /healthz.

Cases run here: 36 hand-made bodies, hypothesis examples (fixed seed): 300 JSON bodies of
hostile values, 150 raw byte bodies, 150 query values; 100 slow and 100 idle connections."""

import importlib.metadata
import json
import os
import socket
import threading
import time

import pytest
import requests
from bbq import rest, testing
from hypothesis import given
from hypothesis import strategies as st

from tests.app.hostile import bounded
from tests.app.test_bbq_hostile_records import hostile_values
from tests.fixtures.rest import RestServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = RestServer(tmp_path_factory.mktemp("rest-hostile"), history=50)
    yield srv
    srv.stop()


def strict(text: str):
    """Parse as strict JSON: NaN and Infinity are not JSON."""

    def refuse(name):
        raise AssertionError(f"not strict JSON: {name} in {text[:200]}")

    return json.loads(text, parse_constant=refuse)


def post_raw(server, body: bytes, content_type="application/json"):
    return requests.post(
        f"{server.url}/api/v1/batches",
        data=body,
        headers={"Content-Type": content_type},
        timeout=10,
    )


def assert_no_5xx(reply):
    assert reply.status_code < 500, (reply.status_code, reply.text[:300])
    payload = strict(reply.text)
    if reply.status_code >= 400:
        assert set(payload) == {"error"} and payload["error"]
    return payload


def good(**more):
    body = {"run": "h", "batch_id": 1, "time": 1764000000.5, "counts": {}, "totals": {}}
    body.update(more)
    return json.dumps(body)


HAND_MADE = [
    (good().replace("1764000000.5", "NaN"), "NaN is not a JSON value"),
    (good().replace("1764000000.5", "Infinity"), "Infinity is not a JSON value"),
    (good().replace("1764000000.5", "-Infinity"), "-Infinity is not a JSON value"),
    (good().replace("1764000000.5", "1e999"), "out of range"),
    (good(records=1).replace('"records": 1', '"records": NaN'), "NaN"),
    (good().replace('"batch_id": 1', '"batch_id": ' + "9" * 5000), "Exceeds the limit"),
    (good(batch_id=2**53), "at most"),
    (good(time=1e12), "between 0 and"),
    (good(time=-1), "between 0 and"),
    (good(time="now"), "epoch seconds"),
    (good(time=True), "epoch seconds"),
    (good(counts={"\ud800": 1}), "not valid Unicode"),
    (good(run="\udfff"), "not valid Unicode"),
    (good(counts={"s" * 129: 1}), "at most 128"),
    (good(counts={"web": 2**60}), "at most"),
    (good(counts={"web": 1.5}), "non-negative integer"),
    (good(counts={"web": None}), "non-negative integer"),
    (good(counts={"": 1}), "empty service name"),
    (good(counts={f"s{i}": 1 for i in range(1001)}), "more than 1000"),
    (good(run="r" * 101), "at most 100"),
    (good(run=["r"]), "at most 100"),
    (good(dead=-1), "must not be negative"),
    (good(dead_total="1"), "must be an integer"),
    ('{"batch_id": 1, "batch_id": 2, "time": 1, "counts": {}, "totals": {}}', "duplicate key"),
    ("[" * 200000 + "]" * 200000, "nested too deeply"),
    ('{"a": ' * 50000 + "1" + "}" * 50000, "nested too deeply"),
    ("", "Expecting value"),
    ("\ufeff" + good(), "Unexpected UTF-8 BOM"),
    ("null", "JSON object"),
    ("12", "JSON object"),
    ('"text"', "JSON object"),
    ("[]", "JSON object"),
]


@pytest.mark.parametrize("body, message", HAND_MADE)
def test_hand_made_bad_bodies_get_400_naming_the_problem(server, body, message):
    reply = post_raw(server, body.encode("utf-8", "surrogatepass"))
    payload = assert_no_5xx(reply)
    assert reply.status_code == 400
    assert message in payload["error"]


@pytest.mark.parametrize(
    "body, content_type, status",
    [
        (b'{"a": "\xff\xfe"}', "application/json", 400),
        (good().encode("utf-16"), "application/json", 400),
        (good().encode(), "text/plain", 415),
        (b"x" * ((1 << 20) + 1), "application/json", 413),
    ],
)
def test_bad_encodings_types_and_sizes(server, body, content_type, status):
    reply = post_raw(server, body, content_type)
    assert_no_5xx(reply)
    assert reply.status_code == status


def test_body_beyond_the_server_limit_is_refused_before_the_app(server):
    reply = post_raw(server, b"[" * (3 << 20))  # waitress's own limit: a plain-text 413
    assert reply.status_code == 413 and "exceeds max_body" in reply.text


@bounded(300)
@given(hostile_values)
def test_generated_json_bodies_never_get_a_5xx(server, value):
    try:
        body = json.dumps(value)
    except ValueError:  # an integer of 4300+ digits: covered by the hand-made cases
        return
    assert_no_5xx(post_raw(server, body.encode("utf-8", "surrogatepass")))
    # Mixed into a summary too, field by field.
    for key in ("run", "batch_id", "time", "records", "counts", "totals", "dead"):
        assert_no_5xx(post_raw(server, good(**{key: value}).encode("utf-8", "surrogatepass")))
    assert_no_5xx(requests.get(f"{server.url}/api/v1/summary", timeout=10))


@bounded(150)
@given(st.binary(max_size=2000))
def test_generated_raw_bodies_never_get_a_5xx(server, body):
    assert_no_5xx(post_raw(server, body))


@bounded(150)
@given(
    st.one_of(
        st.text(max_size=30),
        st.sampled_from(["²", "٣", "9" * 5000, "-1", "1e3", " 1", "0x10", "1_000", "\x00"]),
    )
)
def test_generated_query_values_never_get_a_5xx(server, since):
    reply = requests.get(f"{server.url}/api/v1/summary", params={"since": since}, timeout=10)
    assert_no_5xx(reply)
    ok = since.isascii() and since.isdigit() and len(since) <= 15
    assert reply.status_code == (200 if ok else 400), since


def test_odd_methods_and_paths_get_4xx(server):
    for method, path in [
        ("PUT", "/api/v1/batches"),
        ("PATCH", "/healthz"),
        ("DELETE", "/api/v1/summary"),
        ("GET", "/api/v1/batches"),
        ("GET", "/%ff%fe"),
        ("GET", "/api/v1/summary/../../etc/passwd"),
        ("GET", "/static/../rest.py"),
        ("POST", "/healthz"),
    ]:
        reply = requests.request(method, server.url + path, timeout=10)
        assert 400 <= reply.status_code < 500, (method, path, reply.status_code)
        assert "error" in strict(reply.text)


def test_history_is_bounded_and_served_strict(server):
    for i in range(80):  # history=50
        assert post_raw(server, good(run="bounded", batch_id=i).encode()).status_code == 201
    view = strict(requests.get(f"{server.url}/api/v1/summary", timeout=10).text)
    assert len(view["history"]) == 50
    assert view["history"][-1]["batch_id"] == 79


def test_kept_history_is_bounded_in_bytes():
    summaries = rest.Summaries(history=1000, max_bytes=20000)
    big = {f"service-{i}": i for i in range(100)}
    for i in range(100):
        summaries.add(
            rest.validate(
                {"run": "b", "batch_id": i, "time": 1, "counts": big, "totals": big, "dead": 0}
            )
        )
    history = summaries.view()["history"]
    assert 1 <= len(history) < 100
    assert sum(len(json.dumps(h)) for h in history) <= 20000 + len(json.dumps(history[-1]))
    assert history[-1]["batch_id"] == 99


def test_healthz_reports_the_version_and_the_drain_switch(tmp_path):
    flag = tmp_path / "unhealthy"
    srv = RestServer(tmp_path, unhealthy_file=flag)
    try:
        health = requests.get(f"{srv.url}/healthz", timeout=10)
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "version": importlib.metadata.version("bbq")}
        flag.write_text("draining for maintenance\nmore\n")
        health = requests.get(f"{srv.url}/healthz", timeout=10)
        assert health.status_code == 503
        assert health.json()["reason"] == "draining for maintenance"
        flag.unlink()
        os.mkfifo(flag)  # never opened: reading a FIFO would block the request
        health = requests.get(f"{srv.url}/healthz", timeout=5)
        assert health.status_code == 503 and health.json()["reason"] == f"{flag} exists"
        flag.unlink()
        assert requests.get(f"{srv.url}/healthz", timeout=10).status_code == 200
    finally:
        srv.stop()


def slow_clients(port: int, count: int, seconds: float, stop: threading.Event) -> list:
    """``count`` connections that send a request's headers one byte every half second."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        socks.append(s)

    def trickle():
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            for s in socks:
                try:
                    s.send(b"X")
                except OSError:
                    pass
            stop.wait(0.5)

    threading.Thread(target=trickle, daemon=True).start()
    return socks


def healthz_answers(url: str, tries: int = 5) -> int:
    answered = 0
    for _ in range(tries):
        try:
            if requests.get(f"{url}/healthz", timeout=3).status_code == 200:
                answered += 1
        except requests.RequestException:
            pass
        time.sleep(0.3)
    return answered


@pytest.mark.parametrize("limit, serves", [(None, True), (100, False)])
def test_slow_clients_do_not_starve_healthz(tmp_path, limit, serves):
    """100 connections trickling their headers: /healthz still answers. With waitress's
    old default limit of 100 connections it does not (the test can tell)."""
    options = {"channel_timeout": 30}
    if limit:
        options["connection_limit"] = limit
    srv = RestServer(tmp_path, **options)
    stop = threading.Event()
    socks = []
    try:
        socks = slow_clients(srv.port, 100, 10, stop)
        time.sleep(0.5)
        answered = healthz_answers(srv.url)
        assert (answered == 5) if serves else (answered == 0), answered
    finally:
        stop.set()
        for s in socks:
            s.close()
        srv.stop()


def test_idle_connections_are_closed_after_the_channel_timeout(tmp_path):
    srv = RestServer(tmp_path, channel_timeout=2)
    socks = []
    try:
        socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(100)]
        assert healthz_answers(srv.url, tries=2) == 2
        started = time.monotonic()
        for s in socks:
            assert s.recv(1) == b""  # closed by the server
        assert time.monotonic() - started < 8
    finally:
        for s in socks:
            s.close()
        srv.stop()
    assert "Traceback" not in testing.log_tail(srv.proc)
