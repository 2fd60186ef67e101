// The comparison: parallel coordinates (our own canvas code) of the runs' params against
// a chosen metric, the metric's curves overlaid (uPlot), and the params diff table.
"use strict";
(function () {
  const { el, getJSON, fmt, color } = window.keel;
  const data = window.keel.data();
  const runs = data.runs;
  const main = document.getElementById("main");
  const metricSelect = document.getElementById("metric");
  const onlyDiff = document.getElementById("only-differing");
  const parallel = document.getElementById("parallel");
  const curves = document.getElementById("compare-curves");
  let metric = data.metric;
  const runColor = new Map(runs.map((r, i) => [r.id, color(i)]));
  const label = (r) => r.name || r.id.slice(0, 12);

  // -- legend: one entry per run, in its color -------------------------------------------
  const legend = el("ul", { class: "run-legend", "aria-label": "runs compared" });
  for (const r of runs) {
    const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.background = runColor.get(r.id);
    legend.append(el("li", { "data-run-id": r.id }, [
      swatch, el("a", { href: "/runs/" + encodeURIComponent(r.id), text: label(r) }),
    ]));
  }
  parallel.before(legend);

  // -- parallel coordinates -------------------------------------------------------------
  function axisOf(name, values) {
    const present = values.filter((v) => v !== null && v !== undefined);
    const missing = present.length < values.length;
    const numeric = present.length > 0 && present.every((v) => typeof v === "number" && isFinite(v));
    if (numeric) {
      let lo = Math.min(...present), hi = Math.max(...present);
      if (lo === hi) { lo -= 0.5; hi += 0.5; }
      return { name, missing, numeric: true, lo, hi, pos: (v) => (typeof v === "number" ? (v - lo) / (hi - lo) : null) };
    }
    const cats = [...new Set(present.map((v) => (typeof v === "string" ? v : JSON.stringify(v))))].sort();
    const index = new Map(cats.map((c, i) => [c, i]));
    const key = (v) => (typeof v === "string" ? v : JSON.stringify(v));
    return {
      name, missing, numeric: false, cats,
      pos: (v) => (v === null || v === undefined ? null : (cats.length === 1 ? 0.5 : index.get(key(v)) / (cats.length - 1))),
    };
  }

  function ramp(t) { // low metric: blue, high: orange-red
    const h = 220 - 200 * t;
    return "hsl(" + h.toFixed(0) + ", 70%, 45%)";
  }

  function drawParallel() {
    // params most runs have first: their lines say the most
    const have = (k) => runs.filter((r) => r.params[k] !== undefined && r.params[k] !== null).length;
    const keys = (onlyDiff.checked ? data.differing : data.param_keys)
      .map((k) => [k, have(k)]).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
      .map((x) => x[0]).slice(0, 40);
    const axes = keys.map((k) => axisOf(k, runs.map((r) => r.params[k])));
    const metricAxis = metric ? axisOf(metric, runs.map((r) => r.metrics[metric])) : null;
    if (metricAxis) axes.push(Object.assign(metricAxis, { metric: true }));
    const width = Math.max(parallel.clientWidth - 2, 140 * Math.max(axes.length, 2));
    const height = 360, top = 40, bottom = 46, left = 70, right = 70;
    const ratio = window.devicePixelRatio || 1;
    const canvas = el("canvas", {
      role: "img",
      "aria-label": "parallel coordinates of " + runs.length + " runs: " + axes.map((a) => a.name).join(", "),
    });
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.font = "12px system-ui, sans-serif";
    const span = axes.length > 1 ? (width - left - right) / (axes.length - 1) : 0;
    const xOf = (i) => left + i * span;
    const yOf = (p) => (p === null ? height - bottom + 26 : top + (1 - p) * (height - top - bottom));
    if (!axes.length) {
      ctx.fillStyle = "#5a6370";
      ctx.fillText("no params or metrics to compare", 12, 24);
    }
    // lines: in each run's own color for a few runs, else colored by the metric
    const byRun = runs.length <= 10 || !metricAxis;
    document.getElementById("parallel-note").textContent = byRun
      ? "One line per run, in its color above."
      : "One line per run, colored by " + metric + ": blue lowest, red highest; grey: no value.";
    runs.forEach((r) => {
      const m = metricAxis ? metricAxis.pos(r.metrics[metric]) : null;
      ctx.strokeStyle = byRun ? runColor.get(r.id) : (m === null ? "#9aa4ae" : ramp(m));
      ctx.lineWidth = runs.length > 30 ? 1 : 2;
      ctx.globalAlpha = runs.length > 30 ? 0.6 : 0.9;
      ctx.beginPath();
      axes.forEach((a, i) => {
        const v = a.metric ? r.metrics[a.name] : r.params[a.name];
        let p = a.pos(v);
        if (p === undefined) p = null; // no value: the "none" slot under the axis
        if (i) ctx.lineTo(xOf(i), yOf(p)); else ctx.moveTo(xOf(i), yOf(p));
      });
      ctx.stroke();
    });
    ctx.globalAlpha = 1;
    // axes with their ticks
    axes.forEach((a, i) => {
      const x = xOf(i);
      ctx.strokeStyle = "#1b1f24";
      ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, height - bottom); ctx.stroke();
      ctx.fillStyle = a.metric ? "#0b5cad" : "#1b1f24";
      ctx.textAlign = "center";
      const name = a.name.length > 20 ? a.name.slice(0, 19) + "…" : a.name;
      ctx.fillText(name, x, top - 22);
      ctx.fillStyle = "#5a6370";
      ctx.textAlign = i === axes.length - 1 && axes.length > 1 ? "right" : "left";
      const dx = ctx.textAlign === "right" ? -4 : 4;
      if (a.missing) ctx.fillText("none", x + dx, yOf(null) + 4);
      if (a.numeric) {
        ctx.fillText(fmt(a.hi), x + dx, top - 6);
        ctx.fillText(fmt(a.lo), x + dx, height - bottom + 12);
      } else {
        const every = Math.ceil(a.cats.length / 8);
        a.cats.forEach((c, j) => {
          if (j % every) return;
          const t = c.length > 14 ? c.slice(0, 13) + "…" : c;
          ctx.fillText(t, x + dx, yOf(a.pos(c)) + 4);
        });
      }
    });
    parallel.replaceChildren(canvas);
  }

  // -- curves ---------------------------------------------------------------------------
  let plot = null;
  async function drawCurves() {
    if (plot) { plot.destroy(); plot = null; }
    curves.replaceChildren();
    if (!metric) {
      curves.append(el("p", { class: "muted", text: "these runs have no metrics" }));
      return;
    }
    const q = new URLSearchParams({ runs: runs.map((r) => r.id).join(","), key: metric });
    const res = await getJSON("/api/compare/curves?" + q.toString());
    const byId = new Map(runs.map((r) => [r.id, r]));
    const series = res.runs.map((s) => ({
      label: label(byId.get(s.id)), steps: s.steps, values: s.values, color: runColor.get(s.id),
    }));
    const box = el("figure", { class: "curve", "aria-label": "curves of " + metric });
    box.append(el("h3", { text: metric + " — " + series.length + " runs" }));
    curves.append(box);
    if (!series.length) {
      box.append(el("p", { class: "muted", text: "no run has this metric" }));
      return;
    }
    plot = window.keel.lineChart(box, "", series);
  }

  // -- the diff table: only differing rows when asked -----------------------------------
  function filterTable() {
    for (const tr of document.querySelectorAll("#diff-table tbody tr")) {
      tr.classList.toggle("same-hidden", onlyDiff.checked && !tr.classList.contains("differs"));
    }
  }

  let ready = null;
  async function drawAll() {
    if (ready) ready.remove();
    document.getElementById("metric-name").textContent = metric;
    drawParallel();
    filterTable();
    try {
      await drawCurves();
    } catch (err) {
      curves.replaceChildren(el("p", { class: "filter-error", text: err.message }));
    }
    // present once the plots are painted, not just built
    await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
    ready = el("span", { "data-testid": "compare-ready", hidden: true });
    main.append(ready);
  }

  metricSelect.addEventListener("change", () => {
    metric = metricSelect.value;
    const q = new URLSearchParams(location.search);
    q.set("metric", metric);
    history.replaceState(null, "", "/compare?" + q.toString());
    drawAll();
  });
  onlyDiff.addEventListener("change", () => { drawParallel(); filterTable(); });
  document.getElementById("compare-form").addEventListener("submit", (e) => {
    e.preventDefault();
    metricSelect.dispatchEvent(new Event("change"));
  });
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(drawParallel, 150);
  });
  drawAll();
})();
