// The run page: a curve per metric with a history (drawn when scrolled into view), the
// lineage graph, and live updates over server-sent events while the run is running.
"use strict";
(function () {
  const { el, svg, getJSON, fmt } = window.keel;
  const data = window.keel.data();
  const runId = data.run.id;
  const curves = document.getElementById("curves");
  const charts = new Map(); // key -> {box, plot, steps, values}
  const lastCells = new Map(); // key -> the "last" cell of the metrics table

  for (const tr of document.querySelectorAll("#metrics-table tbody tr")) {
    const key = tr.querySelector("th").textContent;
    lastCells.set(key, tr.querySelectorAll("td"));
  }

  // -- curves ---------------------------------------------------------------------------
  const pending = new Set();
  let flushTimer = 0;

  async function flush() {
    flushTimer = 0;
    const keys = [...pending];
    pending.clear();
    if (!keys.length) return;
    const q = "keys=" + keys.map(encodeURIComponent).join(",");
    try {
      const res = await getJSON("/api/runs/" + encodeURIComponent(runId) + "/metrics?" + q);
      for (const key of keys) {
        const h = res.metrics[key];
        if (h) draw(key, h.steps, h.values);
      }
    } catch (err) {
      for (const key of keys) {
        const c = charts.get(key);
        if (c) c.box.append(el("p", { class: "filter-error", text: err.message }));
      }
    }
  }

  function draw(key, steps, values) {
    const c = charts.get(key);
    c.steps = steps;
    c.values = values;
    c.box.replaceChildren(el("h3", { text: key + " (" + steps.length.toLocaleString() + " points)" }));
    c.plot = window.keel.lineChart(c.box, "", [{ label: key, steps: steps, values: values }]);
    c.box.setAttribute("data-drawn", "1");
  }

  const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      observer.unobserve(e.target);
      pending.add(e.target.dataset.key);
      if (!flushTimer) flushTimer = setTimeout(flush, 30);
    }
  }, { rootMargin: "300px" }) : null;

  function addPanel(key) {
    const box = el("figure", { class: "curve", "data-key": key, "aria-label": "curve of " + key }, [
      el("h3", { text: key }), el("p", { class: "loading", text: "loading…" }),
    ]);
    curves.append(box);
    charts.set(key, { box, plot: null, steps: null, values: null });
    if (observer) observer.observe(box);
    else { pending.add(key); if (!flushTimer) flushTimer = setTimeout(flush, 0); }
  }

  const counts = data.metric_counts || {};
  const withHistory = Object.keys(counts).filter((k) => counts[k] > 1).sort();
  for (const key of withHistory) addPanel(key);
  if (!withHistory.length) {
    curves.append(el("p", { class: "muted", id: "no-curves", text: "no metric has more than one point" }));
  }

  // -- lineage --------------------------------------------------------------------------
  function drawLineage(graph) {
    const box = document.getElementById("lineage");
    if (!graph || graph.nodes.length <= 1) {
      box.append(el("p", { class: "muted", text: "no data sets or model versions recorded for this run" }));
      return;
    }
    const W = 200, H = 40, GX = 90, GY = 18, PAD = 10;
    const depths = [...new Set(graph.nodes.map((n) => n.depth))].sort((a, b) => a - b);
    const col = new Map(depths.map((d, i) => [d, i]));
    const perCol = new Map();
    const pos = new Map();
    for (const n of graph.nodes) {
      const c = col.get(n.depth);
      const r = perCol.get(c) || 0;
      perCol.set(c, r + 1);
      pos.set(n.id, { x: PAD + c * (W + GX), y: PAD + r * (H + GY) });
    }
    const rows = Math.max(...perCol.values());
    const width = PAD * 2 + depths.length * W + (depths.length - 1) * GX;
    const height = PAD * 2 + rows * H + (rows - 1) * GY;
    const root = svg("svg", { viewBox: "0 0 " + width + " " + height, width: width, height: height,
      role: "group", "aria-label": "lineage: data sets, this run and the model versions made from it" });
    for (const e of graph.edges) {
      const a = pos.get(e.from), b = pos.get(e.to);
      if (!a || !b) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      root.append(svg("path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
      root.append(svg("text", { class: "role", x: mx, y: (y1 + y2) / 2 - 4, "text-anchor": "middle", text: e.role }));
    }
    for (const n of graph.nodes) {
      const p = pos.get(n.id);
      const g = svg("g", { class: "node " + n.kind, transform: `translate(${p.x},${p.y})` });
      g.append(svg("title", { text: n.kind + ": " + n.label }));
      g.append(svg("rect", { width: W, height: H, rx: 6 }));
      const label = n.label.length > 26 ? n.label.slice(0, 25) + "…" : n.label;
      g.append(svg("text", { x: 8, y: 15, class: "kind", text: n.kind }));
      g.append(svg("text", { x: 8, y: 31, text: label }));
      if (n.href && n.href.startsWith("/")) {
        const a = svg("a", { href: n.href });
        a.append(g);
        root.append(a);
      } else {
        root.append(g);
      }
    }
    box.append(root);
  }
  drawLineage(data.lineage);

  // -- live updates ---------------------------------------------------------------------
  const badge = document.getElementById("run-status");
  function setStatus(status) {
    badge.textContent = status;
    badge.className = "badge status-" + status.replace(/[^a-z_]/g, "");
  }

  function onMetrics(payload) {
    for (const [key, h] of Object.entries(payload.metrics)) {
      const cells = lastCells.get(key);
      if (cells) {
        cells[0].textContent = fmt(h.values[h.values.length - 1]);
        const n = (parseInt(cells[1].textContent.replace(/,/g, ""), 10) || 0) + h.values.length;
        cells[1].textContent = n.toLocaleString();
      }
      counts[key] = (counts[key] || 0) + h.values.length;
      let c = charts.get(key);
      if (!c && counts[key] > 1) {
        const none = document.getElementById("no-curves");
        if (none) none.remove();
        addPanel(key);
        continue; // drawn from the API when it comes into view, with every point
      }
      if (c && c.plot) {
        // the chart may already hold points logged after the page was made: add only newer
        const lastStep = c.steps.length ? c.steps[c.steps.length - 1] : -Infinity;
        const from = h.steps.findIndex((s) => s > lastStep);
        if (from < 0) continue;
        c.steps = c.steps.concat(h.steps.slice(from));
        c.values = c.values.concat(h.values.slice(from));
        c.plot.setData([c.steps, c.values]);
        c.box.querySelector("h3").textContent = key + " (" + c.steps.length.toLocaleString() + " points)";
      }
    }
  }

  if (data.run.status === "running" && window.EventSource) {
    const live = el("span", { class: "live", id: "live", text: "● live" });
    badge.after(live);
    const es = new EventSource("/api/runs/" + encodeURIComponent(runId) + "/events?after=" + data.last_metric_id);
    es.addEventListener("metrics", (e) => onMetrics(JSON.parse(e.data)));
    es.addEventListener("status", (e) => setStatus(JSON.parse(e.data).status));
    es.addEventListener("end", () => { es.close(); live.remove(); });
  }
})();
