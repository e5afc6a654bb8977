// Big Data BBQ dashboard: polls the summary API and draws packets per service over time
// as an SVG line chart (no external libraries, nothing loaded from elsewhere).
"use strict";

(function () {
  const POLL_MS = 1000;
  const MAX_POINTS = 600;
  const COLOURS = ["#d9480f", "#1971c2", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599",
                   "#e03131", "#5f3dc4", "#66a80f", "#495057"];
  const SVG = "http://www.w3.org/2000/svg";
  const W = 900, H = 320, L = 70, R = 20, T = 15, B = 35;

  const state = { seq: 0, points: [], totals: {}, last: {}, batches: 0, services: [] };

  function colour(service) {
    let i = state.services.indexOf(service);
    if (i < 0) { state.services.push(service); i = state.services.length - 1; }
    return COLOURS[i % COLOURS.length];
  }

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function fmt(n) { return Number(n).toLocaleString("en-US"); }

  function drawChart() {
    const svg = document.getElementById("chart");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const pts = state.points;
    if (pts.length === 0) {
      svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data yet"));
      return;
    }
    const t0 = pts[0].time, t1 = Math.max(pts[pts.length - 1].time, t0 + 1);
    let ymax = 1;
    for (const p of pts) for (const s in p.totals) ymax = Math.max(ymax, p.totals[s]);
    const x = (t) => L + (W - L - R) * (t - t0) / (t1 - t0);
    const y = (v) => H - B - (H - T - B) * v / ymax;
    for (let i = 0; i <= 4; i++) {
      const v = Math.round(ymax * i / 4);
      svg.appendChild(el("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      svg.appendChild(el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
    }
    svg.appendChild(el("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }));
    svg.appendChild(el("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
    const clock = (t) => new Date(t * 1000).toLocaleTimeString("en-GB");
    svg.appendChild(el("text", { x: L, y: H - 12 }, clock(t0)));
    svg.appendChild(el("text", { x: W - R, y: H - 12, "text-anchor": "end" }, clock(t1)));
    const services = Object.keys(state.totals).sort();
    for (const s of services) {
      const coords = pts.filter((p) => s in p.totals)
        .map((p) => x(p.time).toFixed(1) + "," + y(p.totals[s]).toFixed(1));
      if (coords.length === 1) coords.push(coords[0]);
      const line = el("polyline", { points: coords.join(" "), stroke: colour(s) });
      line.setAttribute("data-service", s);
      svg.appendChild(line);
    }
    const legend = document.getElementById("legend");
    legend.textContent = "";
    for (const s of services) {
      const item = document.createElement("span");
      item.style.setProperty("--c", colour(s));
      item.textContent = s;
      legend.appendChild(item);
    }
  }

  function drawTable() {
    const body = document.querySelector("#totals tbody");
    body.textContent = "";
    for (const s of Object.keys(state.totals).sort()) {
      const row = document.createElement("tr");
      row.setAttribute("data-service", s);
      const name = document.createElement("td");
      name.textContent = s;
      const count = document.createElement("td");
      count.className = "num count";
      count.textContent = String(state.totals[s]);
      const last = document.createElement("td");
      last.className = "num";
      last.textContent = String(state.last[s] || 0);
      row.append(name, count, last);
      body.appendChild(row);
    }
  }

  function apply(data) {
    if (data.seq < state.seq) {  // the service restarted: start over from its history
      state.seq = 0; state.points = []; state.batches = 0;
      return;
    }
    for (const h of data.history) {
      state.points.push({ time: h.time, totals: h.totals });
      state.last = h.counts;
      state.batches += 1;
    }
    if (state.points.length > MAX_POINTS) state.points.splice(0, state.points.length - MAX_POINTS);
    state.seq = data.seq;
    state.totals = data.totals;
    document.getElementById("total").textContent = String(data.total);
    document.getElementById("dead-total").textContent = String(data.dead_total);
    document.getElementById("batches").textContent = String(state.batches);
    document.getElementById("updated").textContent =
      data.updated ? new Date(data.updated * 1000).toLocaleTimeString("en-GB") : "—";
    document.getElementById("state").textContent = data.updated ? "live" : "waiting for the first batch…";
    document.body.setAttribute("data-seq", String(data.seq));
    drawTable();
    drawChart();
  }

  async function poll() {
    try {
      const reply = await fetch("api/v1/summary?since=" + state.seq, { cache: "no-store" });
      if (reply.ok) apply(await reply.json());
      else document.getElementById("state").textContent = "server said " + reply.status;
    } catch (err) {
      document.getElementById("state").textContent = "disconnected, retrying…";
    }
    setTimeout(poll, POLL_MS);
  }

  poll();
})();
