"""The dashboard (issue 15) in headless Chromium against the real bbq-rest and SecantusDB.

With 0, 1 and 500 signals (12 services, one batch arriving late with an older time) the
rendered page is checked: every point of every series inside the plot area and painted in
its series' colour on the canvas, distinct colours, the cards and table equal to what MongoDB
holds, the batch count the server's, a reload showing the same. bbq-rest keeps its history
in MongoDB: restarted mid-run, it serves the same history, and the open page shows it again.

Screenshots are test artefacts: written under ``$BBQ_TEST_ARTEFACTS/dashboard/`` when that
is set, else under pytest's temporary directory (``.../dashboard-artefacts0/``); each test
prints where.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests
from bbq import records, testing
from bbq.store import Store

from tests.fixtures.rest import bbq_command

REPO = Path(__file__).resolve().parents[2]
SERVICES = [f"svc-{k:02d}" for k in range(12)]

# Everything the assertions need, read from the rendered page: per chart its plot area,
# each series' colour, how many of its points fall outside the plot area, and how close
# the canvas pixels around its last point come to its colour; the cards and the table.
PROBE = """
const d = window.bbqDashboard;
if (!d || !d.state.view) return null;
const probe = document.createElement("canvas").getContext("2d", {willReadFrequently: true});
function rgb(colour) {
  probe.clearRect(0, 0, 1, 1); probe.fillStyle = colour; probe.fillRect(0, 0, 1, 1);
  return Array.from(probe.getImageData(0, 0, 1, 1).data.slice(0, 3));
}
const out = {charts: {}, cards: {}, table: {}, notes: {}, points: d.state.points.size,
             epoch: d.state.epoch};
for (const kind of ["rate", "total"]) {
  const u = d.state.charts[kind];
  const note = document.getElementById(kind + "-empty");
  out.notes[kind] = note.hidden ? "" : note.textContent;
  if (!u) { out.charts[kind] = null; continue; }
  const b = u.bbox, series = [];
  for (let k = 1; k < u.series.length; k++) {
    const s = u.series[k], target = rgb(s._colour);
    let drawn = 0, outside = 0, last = null;
    for (let i = 0; i < u.data[0].length; i++) {
      const v = u.data[k][i];
      if (v == null) continue;
      const x = u.valToPos(u.data[0][i], "x", true), y = u.valToPos(v, "y", true);
      drawn++;
      if (!(x >= b.left && x <= b.left + b.width && y >= b.top && y <= b.top + b.height)) outside++;
      last = [x, y];
    }
    let pixel = null;
    if (last) {
      const r = Math.max(2, Math.round(2 * devicePixelRatio));
      const img = u.ctx.getImageData(Math.round(last[0]) - r, Math.round(last[1]) - r,
                                     2 * r + 1, 2 * r + 1).data;
      for (let p = 0; p < img.length; p += 4) {
        if (img[p + 3] < 200) continue;
        const dist = Math.hypot(img[p] - target[0], img[p + 1] - target[1], img[p + 2] - target[2]);
        pixel = pixel == null ? dist : Math.min(pixel, dist);
      }
    }
    series.push({label: s.label, colour: s._colour, rgb: target, drawn, outside, pixel, last});
  }
  out.charts[kind] = {bbox: [b.left, b.top, b.width, b.height], series,
                      xs: Array.from(u.data[0]), axes: u.axes.map(a => a.label)};
}
for (const id of ["total", "dead-total", "batches", "services"]) {
  const el = document.getElementById(id);
  out.cards[id] = {value: Number(el.dataset.value), text: el.textContent};
}
for (const row of document.querySelectorAll("#totals tbody tr")) {
  const cell = row.querySelector(".count");
  out.table[row.dataset.service] = {value: Number(cell.dataset.value), text: cell.textContent};
}
const ticks = [...document.querySelectorAll(".u-legend .u-value")].map(e => e.textContent);
out.legend = ticks;
return out;
"""


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    root = os.environ.get("BBQ_TEST_ARTEFACTS")
    if root:
        path = Path(root) / "dashboard"
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = tmp_path_factory.mktemp("dashboard-artefacts")
    return path


class KeptRest:
    """bbq-rest configured by a file, its history in a MongoDB database; restartable on
    the same port (a restart mid-run)."""

    def __init__(self, workdir: Path, mongo_url: str, database: str, history: int = 600):
        self.workdir = workdir
        self.port = testing.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = workdir / "bbq.conf"
        self.conf.write_text(
            f"[mongodb]\nurl = {mongo_url}\ndatabase = {database}\n\n"
            f"[rest]\nhost = 127.0.0.1\nport = {self.port}\nhistory = {history}\n"
        )
        self.proc = None
        self.start()

    def start(self) -> None:
        argv = [bbq_command("bbq-rest"), "--config-file", str(self.conf)]
        self.proc = testing.start(argv, self.workdir / "bbq-rest.log")
        testing.wait_for_port(self.port, proc=self.proc, timeout=30)
        # Serving from MongoDB's history once it is loaded.
        testing.wait_until(lambda: self.summary()["stored"], 30, what="history loaded")

    def stop(self) -> None:
        testing.stop(self.proc)

    def summary(self, since: int = 0) -> dict:
        reply = requests.get(f"{self.url}/api/v1/summary", params={"since": since}, timeout=10)
        reply.raise_for_status()
        return reply.json()

    def post(self, payload: dict) -> requests.Response:
        return requests.post(f"{self.url}/api/v1/batches", json=payload, timeout=10)


class Feed:
    """Stores packets in MongoDB and signals each batch as the streaming job does: the
    batch's new packets per service and the totals the store holds after it."""

    def __init__(self, store: Store, run: str = "run-1") -> None:
        self.store = store
        self.run = run
        self.totals: collections.Counter = collections.Counter()
        self.ids = itertools.count()

    def store_batch(self, per_service: dict[str, int]) -> dict[str, int]:
        docs = []
        for service, n in per_service.items():
            for _ in range(n):
                line = json.dumps({"id": f"p{next(self.ids)}", "service": service, "value": 1})
                doc, _ = records.normalise(line, max_bytes=1024)
                docs.append(doc)
        new = self.store.write_packets(docs)
        self.totals.update(new)
        return new

    def summary(self, batch_id: int, new: dict[str, int], when: float) -> dict:
        return {
            "run": self.run,
            "batch_id": batch_id,
            "time": when,
            "records": sum(new.values()),
            "counts": new,
            "totals": dict(self.totals),
            "dead": 0,
            "dead_total": 0,
        }

    def batch(self, server: KeptRest, batch_id: int, per_service: dict[str, int], when: float):
        reply = server.post(self.summary(batch_id, self.store_batch(per_service), when))
        assert reply.status_code == 201, reply.text


def page(browser, server: KeptRest, seq: int) -> dict:
    browser.wait_for(f"return document.body.dataset.seq === '{seq}'", what=f"page at seq {seq}")
    return browser.run(PROBE)


def shoot(browser, artefacts: Path, name: str) -> Path:
    shot = browser.screenshot(artefacts / name)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10000
    return shot


def assert_totals_are_mongodb(shown: dict, store: Store, batches: int) -> None:
    counts = store.counts()
    total = sum(counts.values())
    assert shown["cards"]["total"] == {"value": total, "text": f"{total:,}"}
    assert {s: r["value"] for s, r in shown["table"].items()} == counts
    assert all(r["text"] == f"{counts[s]:,}" for s, r in shown["table"].items())
    assert shown["cards"]["batches"] == {"value": batches, "text": f"{batches:,}"}
    assert shown["cards"]["services"]["value"] == len(counts)


def assert_drawn_inside(chart: dict, points: int) -> None:
    for s in chart["series"]:
        assert s["drawn"] <= points
        assert s["outside"] == 0, f"{s['label']}: {s['outside']} points outside the plot area"


def assert_painted(chart: dict) -> None:
    """Around each series' last point, the canvas holds its colour (a marker or its line)."""
    for s in chart["series"]:
        assert s["pixel"] is not None and s["pixel"] < 60, (s["label"], s["pixel"], s["rgb"])


@pytest.fixture
def kept(mongo_server, tmp_path):
    database = mongo_server.new_database()
    server = KeptRest(tmp_path, mongo_server.url, database)
    server.store = Store(mongo_server.url, database)
    yield server
    server.stop()


def test_no_signal_yet(kept, browser, artefacts):
    browser.resize(1100, 1400)
    browser.open(kept.url + "/")
    shown = page(browser, kept, 0)
    assert shown["charts"] == {"rate": None, "total": None}
    assert shown["notes"]["total"].startswith("No batch signalled yet")
    assert shown["cards"]["total"] == {"value": 0, "text": "0"}
    assert shown["cards"]["batches"] == {"value": 0, "text": "0"}
    assert shown["table"] == {}
    shoot(browser, artefacts, "dashboard-0-signals.png")


def test_one_signal_draws_markers(kept, browser, artefacts):
    feed = Feed(kept.store)
    feed.batch(kept, 0, {"web": 3, "db": 5, "cache": 8}, time.time())
    browser.resize(1100, 1400)
    browser.open(kept.url + "/")
    shown = page(browser, kept, 1)
    total = shown["charts"]["total"]
    assert [s["label"] for s in total["series"]] == ["all services", "cache", "db", "web"]
    assert_drawn_inside(total, 1)
    assert all(s["drawn"] == 1 for s in total["series"])
    assert_painted(total)  # a single point is a visible marker
    # A rate needs an interval: the chart is there, empty, and says why.
    assert all(s["drawn"] == 0 for s in shown["charts"]["rate"]["series"])
    assert shown["notes"]["rate"].startswith("A rate needs two batches")
    assert total["axes"] == ["time (local)", "packets stored"]
    assert shown["charts"]["rate"]["axes"] == ["time (local)", "packets per second"]
    assert_totals_are_mongodb(shown, kept.store, 1)
    shoot(browser, artefacts, "dashboard-1-signal.png")


def test_500_signals_of_12_services(kept, browser, artefacts):
    feed = Feed(kept.store)
    start = time.time() - 600
    # A batch stored first whose signal arrives last, older than every other point.
    late = feed.store_batch({"svc-00": 2})
    late_summary = feed.summary(10_000, late, start - 120)
    for i in range(500):
        feed.batch(kept, i, {s: k + 1 for k, s in enumerate(SERVICES) if i % 4 == k % 4}, start + i)
    assert kept.post(late_summary).status_code == 201

    browser.resize(1100, 1700)
    browser.open(kept.url + "/")
    shown = page(browser, kept, 501)
    assert shown["points"] == 501
    assert_totals_are_mongodb(shown, kept.store, 501)
    assert shown["cards"]["total"]["text"] == "9,752"

    for kind in ("rate", "total"):
        chart = shown["charts"][kind]
        assert [s["label"] for s in chart["series"]] == ["all services", *SERVICES]
        assert chart["xs"] == sorted(chart["xs"]) and chart["xs"][0] == start - 120
        assert_drawn_inside(chart, 501)
    total = shown["charts"]["total"]
    assert all(s["drawn"] == 501 for s in total["series"][:2])  # the late batch included
    assert_painted(total)
    # The cumulative view ends where the cards are: all services = the total stored.
    last_y = {s["label"]: s["last"][1] for s in total["series"]}
    assert last_y["all services"] < min(v for k, v in last_y.items() if k != "all services")

    # Twelve distinct colours, far apart (plus the dark one of all services).
    rgbs = [tuple(s["rgb"]) for s in total["series"]]
    assert len(set(rgbs)) == 13
    closest = min(
        sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) ** 0.5
        for a, b in itertools.combinations(rgbs, 2)
    )
    assert closest > 40, closest
    shoot(browser, artefacts, "dashboard-500-signals-12-services.png")

    # Hovering shows a tooltip with the values, in the cards' format.
    browser.run(
        "const o = document.querySelector('#total-chart .u-over');"
        "const r = o.getBoundingClientRect();"
        "o.dispatchEvent(new MouseEvent('mousemove', {clientX: r.right - 3, clientY: r.top + 40,"
        " bubbles: true}));"
    )
    tip = browser.wait_for(
        "const t = document.querySelector('#total-chart .tip');return t && !t.hidden && t.innerText"
    )
    assert "all services: 9,752" in tip
    assert "svc-11: 1,500" in tip
    shoot(browser, artefacts, "dashboard-500-signals-tooltip.png")

    # A reload shows the same: the server's totals and history, not what a page received.
    browser.open(kept.url + "/")
    again = page(browser, kept, 501)
    assert again["cards"] == shown["cards"] and again["table"] == shown["table"]
    assert again["points"] == 501


def test_restart_keeps_the_history(mongo_server, browser, artefacts, tmp_path):
    database = mongo_server.new_database()
    server = KeptRest(tmp_path, mongo_server.url, database, history=20)
    store = Store(mongo_server.url, database)
    kept = store.packets.database["rest_history"]
    try:
        feed = Feed(store)
        start = time.time() - 100
        for i in range(30):
            feed.batch(server, i, {SERVICES[i % 3]: i + 1}, start + i)
        before = server.summary()
        assert before["batches"] == 30 and len(before["history"]) == 20
        assert before["history"][0]["seq"] == 11
        # MongoDB holds what the service keeps, no more (pruned to [rest] history).
        testing.wait_until(lambda: kept.count_documents({}) == 20, 10, what="history pruned")

        browser.resize(1100, 1400)
        browser.open(server.url + "/")
        shown = page(browser, server, 30)
        assert shown["points"] == 20
        assert_totals_are_mongodb(shown, store, 30)
        shoot(browser, artefacts, "dashboard-restart-before.png")

        server.stop()
        server.start()
        after = server.summary()
        assert after["epoch"] != before["epoch"]
        for key in ("history", "totals", "total", "batches", "seq", "oldest", "dead_total"):
            assert after[key] == before[key], key
        # The open page notices the new process and shows the same again.
        browser.wait_for(f"return window.bbqDashboard.state.epoch === '{after['epoch']}'")
        again = page(browser, server, 30)
        assert again["points"] == 20 and again["cards"] == shown["cards"]
        assert_totals_are_mongodb(again, store, 30)
        shoot(browser, artefacts, "dashboard-restart-after.png")

        # The same batch signalled again (the job retried across the restart): kept once.
        assert server.post(before["history"][-1] | {"seq": 0}).json() == {
            "accepted": False,
            "seq": 30,
        }
        for i in range(30, 35):
            feed.batch(server, i, {SERVICES[i % 3]: 1}, start + i)
        view = server.summary()
        assert view["batches"] == 35 and view["history"][-1]["seq"] == 35
        testing.wait_until(lambda: kept.count_documents({}) == 20, 10, what="history pruned")
        assert page(browser, server, 35)["points"] == 20
    finally:
        server.stop()


def test_vendored_uplot_is_the_recorded_release(tmp_path):
    record = json.loads((REPO / "app/bbq/static/uPlot.json").read_text())
    assert record["package"] == "uplot" and record["integrity"].startswith("sha512-")
    tool = [sys.executable, str(REPO / "tools/vendor_uplot.py")]
    done = subprocess.run([*tool, "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"ok: uplot@{record['version']}" in done.stdout
    licence = (REPO / "app/bbq/static/uPlot.LICENSE").read_text()
    assert licence.startswith("The MIT License")
    assert hashlib.sha256(licence.encode()).hexdigest() == record["files"]["uPlot.LICENSE"]


def test_vendor_tool_refuses_a_tarball_of_another_sha512(tmp_path):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import vendor_uplot
    finally:
        sys.path.remove(str(REPO / "tools"))
    package = tmp_path / "package"
    (package / "dist").mkdir(parents=True)
    (package / "package.json").write_text('{"name": "uplot", "version": "9.9.9"}')
    for member in vendor_uplot.FILES:
        (tmp_path / member).write_text(f"contents of {member}\n")
    tgz = tmp_path / "uplot.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(package, arcname="package")
    data = tgz.read_bytes()
    good = vendor_uplot.integrity_of(data)
    files = vendor_uplot.checked_members(data, good, "9.9.9")
    assert files["uPlot.LICENSE"] == b"contents of package/LICENSE\n"
    with pytest.raises(vendor_uplot.Failed, match="sha512 .* is not sha512-AAAA"):
        vendor_uplot.checked_members(data, "sha512-AAAA", "9.9.9")
    with pytest.raises(vendor_uplot.Failed, match="holds version '9.9.9', not 1.0.0"):
        vendor_uplot.checked_members(data, good, "1.0.0")
