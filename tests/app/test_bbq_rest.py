"""The REST display service over real HTTP, and its page in headless Chromium."""

import re
import time

import pytest
import requests
from bbq import records
from bbq.store import Store


def summary(batch_id, counts, totals, dead=0, dead_total=0, run="r1"):
    return {
        "run": run,
        "batch_id": batch_id,
        "time": time.time(),
        "records": sum(counts.values()) + dead,
        "counts": counts,
        "totals": totals,
        "dead": dead,
        "dead_total": dead_total,
    }


def post(rest, payload, **kw):
    return requests.post(f"{rest.url}/api/v1/batches", json=payload, timeout=10, **kw)


def test_signals_are_kept_and_served(rest_server):
    assert post(rest_server, summary(0, {"web": 2}, {"web": 2})).status_code == 201
    reply = post(rest_server, summary(1, {"db": 3}, {"web": 2, "db": 3}, dead=1, dead_total=1))
    assert reply.status_code == 201
    assert reply.json() == {"accepted": True, "seq": 2}
    # The job retries a signal it is unsure of: the same run's batch is kept once.
    again = post(rest_server, summary(1, {"db": 3}, {"web": 2, "db": 3}, dead=1, dead_total=1))
    assert again.status_code == 200 and again.json() == {"accepted": False, "seq": 2}
    view = rest_server.summary()
    assert view["totals"] == {"web": 2, "db": 3}
    assert view["total"] == 5
    assert view["dead_total"] == 1
    assert [h["batch_id"] for h in view["history"]] == [0, 1]
    assert [h["batch_id"] for h in rest_server.summary(since=1)["history"]] == [1]


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"time": 1, "counts": {}, "totals": {}}, 400, "missing field 'batch_id'"),
        (
            {"batch_id": "1", "time": 1, "counts": {}, "totals": {}},
            400,
            "field 'batch_id' must be an integer, not str",
        ),
        (
            {"batch_id": -1, "time": 1, "counts": {}, "totals": {}},
            400,
            "field 'batch_id' must not be negative",
        ),
        (
            {"batch_id": 1, "counts": {}, "totals": {}},
            400,
            "field 'time' must be epoch seconds (a number)",
        ),
        ({"batch_id": 1, "time": 1, "totals": {}}, 400, "missing field 'counts'"),
        (
            {"batch_id": 1, "time": 1, "counts": [], "totals": {}},
            400,
            "field 'counts' must be an object of service: count",
        ),
        (
            {"batch_id": 1, "time": 1, "counts": {"web": -2}, "totals": {}},
            400,
            "field 'counts': count of 'web' must be a non-negative integer",
        ),
        (
            {"batch_id": 1, "time": 1, "counts": {}, "totals": {"web": 1.5}},
            400,
            "field 'totals': count of 'web' must be a non-negative integer",
        ),
        ([1, 2], 400, "body must be a JSON object"),
    ],
)
def test_bad_signals_get_400_with_a_clear_message(rest_server, body, status, message):
    reply = post(rest_server, body)
    assert reply.status_code == status
    assert reply.json() == {"error": message}
    assert rest_server.summary()["seq"] == 0


def test_not_json_and_wrong_routes(rest_server):
    reply = requests.post(
        f"{rest_server.url}/api/v1/batches",
        data="{nope",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("body is not valid JSON: Expecting property name")
    reply = requests.post(f"{rest_server.url}/api/v1/batches", data="x=1", timeout=10)
    assert reply.status_code == 415
    reply = requests.post(
        f"{rest_server.url}/api/v1/batches",
        data=b"[" + b"0," * 600000 + b"0]",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert reply.status_code == 413
    reply = requests.get(f"{rest_server.url}/api/v1/summary", params={"since": "x"}, timeout=10)
    assert reply.status_code == 400
    assert requests.get(f"{rest_server.url}/nope", timeout=10).json() == {
        "error": "no such resource: /nope"
    }
    reply = requests.delete(f"{rest_server.url}/api/v1/batches", timeout=10)
    assert reply.status_code == 405


def test_page_assets_are_all_served_locally(rest_server):
    page = requests.get(rest_server.url + "/", timeout=10)
    assert page.status_code == 200
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs, "the page loads no script or style"
    for ref in refs:
        assert not re.match(r"^(https?:)?//", ref), f"external asset {ref}"
        asset = requests.get(rest_server.url + ref, timeout=10)
        assert asset.status_code == 200, ref
        text = asset.text.replace("http://www.w3.org/2000/svg", "")  # a namespace, not a fetch
        text = re.sub(r"\A/\*!.*?\*/", "", text)  # a vendored library's banner, not a fetch
        assert "http://" not in text and "https://" not in text, ref


def test_dashboard_shows_mongodb_counts_and_updates_live(
    rest_server, mongo_server, browser, tmp_path
):
    store = Store(mongo_server.url, mongo_server.new_database())
    docs = []
    for i in range(57):
        doc, _ = records.normalise(
            f'{{"id": {i}, "service": "{["web", "db", "cache"][i % 3]}", "value": {i}}}',
            max_bytes=1024,
        )
        docs.append(doc)
    new = store.write_packets(docs[:30])
    assert post(rest_server, summary(0, new, store.counts())).status_code == 201

    browser.open(rest_server.url + "/")
    table = (
        "return Object.fromEntries([...document.querySelectorAll('#totals tbody tr')]"
        ".map(r => [r.dataset.service, Number(r.querySelector('.count').textContent)]))"
    )
    shown = browser.wait_for(
        f"const t = (() => {{ {table} }})(); return Object.keys(t).length ? t : null"
    )
    assert shown == store.counts() == {"web": 10, "db": 10, "cache": 10}

    # A second batch reaches the open page without a reload.
    new = store.write_packets(docs)  # the first 30 again (redelivered) + 27 new ones
    assert sum(new.values()) == 27
    assert post(rest_server, summary(1, new, store.counts())).status_code == 201
    browser.wait_for("return document.body.dataset.seq === '2'")
    assert browser.run(table) == store.counts() == {"web": 19, "db": 19, "cache": 19}
    assert browser.run("return document.getElementById('total').textContent") == "57"
    lines = browser.run(
        "return window.bbqDashboard.state.charts.total.series.slice(2).map(s => s.label)"
    )
    assert sorted(lines) == ["cache", "db", "web"]
    shot = browser.screenshot(tmp_path / "dashboard.png")
    assert shot.stat().st_size > 10000
