// Line charts on uPlot (vendored): one metric's history, or several runs' overlaid.
// Data arrive as columns (steps[], values[]) and go to uPlot as they are.
"use strict";
(function () {
  const { el, color, fmt } = window.keel;

  function size(box) {
    return { width: Math.max(280, Math.floor(box.clientWidth || 440) - 4), height: 220 };
  }

  // series: [{label, steps, values, color}] -> one uPlot; x is the step.
  function lineChart(box, title, series) {
    let data;
    if (series.length === 1) {
      data = [series[0].steps, series[0].values];
    } else {
      data = window.uPlot.join(series.map((s) => [s.steps, s.values]));
    }
    const opts = Object.assign(size(box), {
      title: title,
      scales: { x: { time: false } },
      legend: { show: series.length <= 12 },
      cursor: { drag: { x: true, y: false } },
      axes: [{ label: "step" }, { values: (u, vals) => vals.map(fmt) }],
      series: [{ label: "step" }].concat(series.map((s, i) => ({
        label: s.label,
        stroke: s.color || color(i),
        // a fractional width costs ~20x in software rasterizing (headless, no GPU) once
        // there are many lines: hairlines for overlays
        width: series.length > 1 ? 1 : 1.5,
        spanGaps: true,
        points: { show: s.steps.length < 60 },
        value: (u, v) => (v === null || v === undefined ? "" : fmt(v)),
      }))),
    });
    const plot = new window.uPlot(opts, data, box);
    if (window.ResizeObserver) {
      new ResizeObserver(() => plot.setSize(size(box))).observe(box);
    }
    return plot;
  }

  window.keel.lineChart = lineChart;
  window.keel.chartBox = function (title, attrs) {
    return el("figure", Object.assign({ class: "curve" }, attrs || {}), [
      el("figcaption", { class: "visually-hidden", text: title }),
    ]);
  };
})();
