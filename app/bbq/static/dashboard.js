// Big Data BBQ dashboard: polls the summary API and draws, per service, packets per second
// and packets stored over time with uPlot (vendored beside this file: uPlot.iife.min.js).
//
// Every number shown is the server's: the totals of the latest batch it was signalled (what
// MongoDB holds), its count of batches, its recent history (kept in MongoDB, so a reload or
// a restart of bbq-rest shows the same). Points are placed by their batch time, whatever
// order they arrived in. One number format everywhere (cards, table, axes, tooltips).
"use strict";

(function () {
  const POLL_MS = 1000;
  const HEIGHT = 280;
  const MAX_LEGEND = 40; // more services: the table is the legend (with its colours)
  const MAX_MARKERS = 120; // up to this many points a series draws a marker at each
  const TOTAL_COLOUR = "#3b2418";
  const FORMATS = [0, 1, 2, 3].map(
    (d) => new Intl.NumberFormat("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }),
  );

  // A count: whole, with thousands separators ("1,496,871").
  function fmt(v) {
    return v == null ? "—" : FORMATS[0].format(v);
  }

  // A rate: the same grouping, up to two decimals below 100 (none written when zero).
  const RATE = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
  function fmtRate(v) {
    if (v == null) return "—";
    return Math.abs(v) >= 100 ? FORMATS[0].format(v) : RATE.format(v);
  }

  // Axis ticks: the same format as the cards, as many decimals as the tick step needs.
  function fmtTicks(ticks, step) {
    const digits = step >= 1 || !step ? 0 : Math.min(3, Math.ceil(-Math.log10(step) - 1e-9));
    return ticks.map((t) => FORMATS[digits].format(t));
  }

  function clock(t) {
    return t == null ? "—" : new Date(t * 1000).toLocaleTimeString("en-GB");
  }

  // n distinct colours: evenly spaced hues; past 16, lightness alternates too.
  function palette(n) {
    const out = [];
    for (let i = 0; i < n; i++) {
      const hue = Math.round((15 + (i * 360) / n) % 360);
      const light = n > 16 ? (i % 2 ? 34 : 52) : 44;
      out.push(`hsl(${hue}, 72%, ${light}%)`);
    }
    return out;
  }

  const state = {
    epoch: null, seq: 0, points: new Map(), view: null,
    services: [], colours: {}, charts: { rate: null, total: null }, shape: "",
  };

  // Summaries sorted by batch time; batches with the same time are one point.
  function timeline() {
    const sorted = [...state.points.values()].sort((a, b) => a.time - b.time || a.seq - b.seq);
    const merged = [];
    for (const p of sorted) {
      const last = merged[merged.length - 1];
      if (last && last.time === p.time) {
        for (const s in p.counts) last.counts[s] = (last.counts[s] || 0) + p.counts[s];
        last.totals = Object.assign({}, last.totals, p.totals);
      } else {
        merged.push({ time: p.time, counts: Object.assign({}, p.counts), totals: p.totals });
      }
    }
    return merged;
  }

  // uPlot's columns: [times, all services, each service] for the rate and the total views.
  function columns(line, services) {
    const xs = line.map((p) => p.time);
    const rate = [xs, []], total = [xs, []];
    for (const s of services) { rate.push([]); total.push([]); }
    line.forEach((p, i) => {
      const dt = i > 0 ? p.time - line[i - 1].time : 0;
      let sumCounts = 0, sumTotals = 0, anyTotal = false;
      services.forEach((s, k) => {
        const c = p.counts[s] || 0;
        sumCounts += c;
        rate[k + 2].push(dt > 0 ? c / dt : null);
        const t = p.totals[s];
        total[k + 2].push(t === undefined ? null : t);
        if (t !== undefined) { sumTotals += t; anyTotal = true; }
      });
      rate[1].push(dt > 0 ? sumCounts / dt : null);
      total[1].push(anyTotal ? sumTotals : null);
    });
    return { rate, total };
  }

  function tooltip(valueFmt) {
    let tip;
    return {
      hooks: {
        init: (u) => {
          tip = document.createElement("div");
          tip.className = "tip";
          tip.hidden = true;
          u.over.appendChild(tip);
        },
        setCursor: (u) => {
          const i = u.cursor.idx;
          if (i == null || u.cursor.left < 0) {
            tip.hidden = true;
            showLatest(u);
            return;
          }
          const rows = [];
          for (let k = 1; k < u.series.length; k++) {
            const v = u.data[k][i];
            if (v != null && u.series[k].show) rows.push([u.series[k], v]);
          }
          rows.sort((a, b) => (a[0].label === "all services" ? -1 : b[1] - a[1]));
          tip.textContent = "";
          const head = document.createElement("div");
          head.className = "tip-time";
          head.textContent = clock(u.data[0][i]);
          tip.appendChild(head);
          for (const [s, v] of rows.slice(0, 9)) {
            const row = document.createElement("div");
            row.style.setProperty("--c", s._colour);
            row.textContent = `${s.label}: ${valueFmt(v)}`;
            tip.appendChild(row);
          }
          if (rows.length > 9) {
            const more = document.createElement("div");
            more.textContent = `and ${rows.length - 9} more`;
            tip.appendChild(more);
          }
          tip.hidden = false;
          const left = u.cursor.left + 14;
          tip.style.left = (left + tip.offsetWidth > u.over.clientWidth
            ? Math.max(0, u.cursor.left - tip.offsetWidth - 14) : left) + "px";
          tip.style.top = Math.max(0, Math.min(u.cursor.top, u.over.clientHeight - tip.offsetHeight)) + "px";
        },
      },
    };
  }

  // Off the chart, the legend shows the latest values (not dashes).
  function showLatest(u) {
    const n = u.data[0].length;
    if (n > 0 && u.cursor.idx == null) u.setLegend({ idx: n - 1 });
  }

  function seriesFor(label, colour, valueFmt, markers, dash) {
    const s = {
      label, stroke: colour, width: dash ? 1.5 : 2, spanGaps: false,
      value: (u, v) => valueFmt(v),
      points: { show: markers, size: 8, width: 1, stroke: colour, fill: colour },
    };
    if (dash) s.dash = [6, 4];
    s._colour = colour;
    return s;
  }

  function makeChart(el, kind, data) {
    const rate = kind === "rate";
    const valueFmt = rate ? fmtRate : fmt;
    const markers = data[0].length <= MAX_MARKERS;
    const series = [{ label: "time", value: (u, v) => clock(v) }];
    series.push(seriesFor("all services", TOTAL_COLOUR, valueFmt, markers, true));
    for (const s of state.services) {
      series.push(seriesFor(s, state.colours[s], valueFmt, markers, false));
    }
    const opts = {
      width: Math.max(300, el.clientWidth),
      height: HEIGHT,
      series,
      scales: {
        x: {
          time: true,
          range: (u, min, max) => {
            if (min == null) return [Date.now() / 1000 - 60, Date.now() / 1000];
            // One point: uPlot would span a day of milliseconds; two minutes around it.
            if (u.data[0].length === 1) return [u.data[0][0] - 60, u.data[0][0] + 60];
            const pad = Math.max(1, (max - min) * 0.02);
            return [min - pad, max + pad];
          },
        },
        y: { range: (u, min, max) => uPlot.rangeNum(0, max > 0 ? max : 1, 0.1, true) },
      },
      axes: [
        { label: "time (local)", labelSize: 20 },
        {
          label: rate ? "packets per second" : "packets stored",
          labelSize: 20,
          size: 86,
          values: (u, ticks, ax, space, step) => fmtTicks(ticks, step),
        },
      ],
      legend: { show: state.services.length <= MAX_LEGEND, live: true },
      cursor: { sync: { key: "bbq" }, points: { size: 9 } },
      plugins: [tooltip(valueFmt), { hooks: { ready: showLatest, setData: showLatest } }],
    };
    return new uPlot(opts, data, el);
  }

  function showEmpty(id, text) {
    const note = document.getElementById(id);
    note.hidden = !text;
    note.textContent = text || "";
  }

  function drawCharts() {
    const line = timeline();
    const services = state.services;
    const shape = services.join("\u0000") + "|" + (line.length <= MAX_MARKERS);
    const data = columns(line, services);
    for (const kind of ["rate", "total"]) {
      const el = document.getElementById(kind + "-chart");
      let chart = state.charts[kind];
      if (line.length === 0) {
        if (chart) { chart.destroy(); state.charts[kind] = null; }
        showEmpty(kind + "-empty", "No batch signalled yet: the chart starts with the first one.");
        continue;
      }
      if (chart && shape !== state.shape) { chart.destroy(); chart = null; }
      if (chart) chart.setData(data[kind]);
      else state.charts[kind] = makeChart(el, kind, data[kind]);
      showEmpty(kind + "-empty", kind === "rate" && line.length < 2
        ? "A rate needs two batches: it is drawn from the second one on." : "");
    }
    state.shape = shape;
  }

  function setNumber(id, value, text) {
    const el = document.getElementById(id);
    el.dataset.value = String(value);
    el.textContent = text;
  }

  function drawTable() {
    const view = state.view;
    const line = timeline();
    const latest = line[line.length - 1];
    const prev = line[line.length - 2];
    const dt = latest && prev ? latest.time - prev.time : 0;
    const body = document.querySelector("#totals tbody");
    body.textContent = "";
    for (const s of Object.keys(view.totals).sort()) {
      const row = document.createElement("tr");
      row.dataset.service = s;
      const name = document.createElement("td");
      name.className = "service";
      name.style.setProperty("--c", state.colours[s] || TOTAL_COLOUR);
      name.textContent = s;
      const cells = [
        ["num count", view.totals[s], fmt(view.totals[s])],
        ["num last", latest ? latest.counts[s] || 0 : 0, fmt(latest ? latest.counts[s] || 0 : 0)],
      ];
      const r = dt > 0 ? (latest.counts[s] || 0) / dt : null;
      cells.push(["num rate", r == null ? "" : r, fmtRate(r)]);
      row.appendChild(name);
      for (const [cls, value, text] of cells) {
        const td = document.createElement("td");
        td.className = cls;
        td.dataset.value = String(value);
        td.textContent = text;
        row.appendChild(td);
      }
      body.appendChild(row);
    }
  }

  function drawCards() {
    const view = state.view;
    setNumber("total", view.total, fmt(view.total));
    setNumber("dead-total", view.dead_total, fmt(view.dead_total));
    setNumber("batches", view.batches, fmt(view.batches));
    setNumber("services", Object.keys(view.totals).length, fmt(Object.keys(view.totals).length));
    document.getElementById("updated").textContent = clock(view.updated);
    document.getElementById("state").textContent = view.updated ? "live" : "waiting for the first batch…";
    document.getElementById("kept").textContent = view.stored === false
      ? "· history in memory only (MongoDB not answering)"
      : view.stored ? "· history kept in MongoDB" : "";
  }

  function apply(view) {
    if (view.epoch !== state.epoch) { // a restarted service, or its history reloaded
      state.epoch = view.epoch; state.points.clear();
      if (state.seq !== 0) { state.seq = 0; return false; } // fetch everything again
    }
    for (const h of view.history) state.points.set(h.seq, h);
    for (const seq of state.points.keys()) if (seq < view.oldest) state.points.delete(seq);
    state.seq = view.seq;
    state.view = view;
    const services = Object.keys(view.totals);
    for (const p of state.points.values()) for (const s in p.totals) services.push(s);
    state.services = [...new Set(services)].sort();
    const colours = palette(state.services.length);
    state.colours = Object.fromEntries(state.services.map((s, i) => [s, colours[i]]));
    drawCards();
    drawTable();
    drawCharts();
    document.body.dataset.seq = String(view.seq);
    document.body.dataset.points = String(state.points.size);
    return true;
  }

  async function poll() {
    let again = POLL_MS;
    try {
      const reply = await fetch("api/v1/summary?since=" + state.seq, { cache: "no-store" });
      if (reply.ok) { if (!apply(await reply.json())) again = 0; }
      else document.getElementById("state").textContent = "server said " + reply.status;
    } catch (err) {
      document.getElementById("state").textContent = "disconnected, retrying…";
    }
    setTimeout(poll, again);
  }

  window.addEventListener("resize", () => {
    for (const kind of ["rate", "total"]) {
      const chart = state.charts[kind];
      if (chart) chart.setSize({ width: Math.max(300, chart.root.parentNode.clientWidth), height: HEIGHT });
    }
  });

  // For tests and the curious: the charts, the colours and the formats in use.
  window.bbqDashboard = { state, fmt, fmtRate, palette };
  poll();
})();
