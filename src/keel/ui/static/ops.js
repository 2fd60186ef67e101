// Shared by the Releases, Monitoring and Pipelines pages: time-series charts on uPlot
// (vendored) and small SVG helpers. Text reaches the DOM through textContent only.
"use strict";
(function () {
  const { el, fmt, color } = window.keel;

  function size(box) {
    return { width: Math.max(280, Math.floor(box.clientWidth || 440) - 20), height: 200 };
  }

  // One point (or all at one time): a minute around it, not the years uPlot would show.
  function xScale(t) {
    const lo = Math.min(...t), hi = Math.max(...t);
    if (hi - lo >= 1) return { time: true };
    return { time: true, auto: false, range: () => [lo - 30, hi + 30] };
  }

  // One figure: a title and a uPlot chart of series [{label, values}] over t (epoch s).
  function timeChart(parent, title, t, series, attrs) {
    const fig = el("figure", Object.assign({ class: "chart", "aria-label": title }, attrs || {}), [
      el("h3", { text: title }),
    ]);
    parent.append(fig);
    if (!t.length || !series.length || !window.uPlot) {
      fig.append(el("p", { class: "muted", text: "nothing to draw" }));
      return { fig, plot: null };
    }
    const opts = Object.assign(size(fig), {
      scales: { x: xScale(t) },
      legend: { show: series.length <= 12 },
      cursor: { drag: { x: true, y: false } },
      axes: [{}, { values: (u, vals) => vals.map(fmt) }],
      series: [{}].concat(series.map((s, i) => ({
        label: s.label,
        stroke: s.color || color(i),
        width: 1,
        spanGaps: false,
        points: { show: t.length < 80 },
        value: (u, v) => (v === null || v === undefined ? "—" : fmt(v)),
      }))),
    });
    const plot = new window.uPlot(opts, [t].concat(series.map((s) => s.values)), fig);
    fig.setAttribute("data-drawn", "1");
    if (window.ResizeObserver) new ResizeObserver(() => plot.setSize(size(fig))).observe(fig);
    return { fig, plot };
  }

  // A cell or box's text, cut to n characters with an ellipsis.
  function cut(text, n) {
    text = String(text);
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }

  window.keel.timeChart = timeChart;
  window.keel.cut = cut;
})();
