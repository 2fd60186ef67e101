// The Monitoring page of one model: drift per feature and window as an SVG heat map (our
// own code), the share of drifted features, performance and fairness over the windows
// (uPlot). Every label goes in with textContent.
"use strict";
(function () {
  const { el, svg, fmt, timeChart, cut, when } = window.keel;
  const data = window.keel.data();
  if (!data) return;
  const tl = data.timeline;
  const wins = tl.windows;
  const t = wins.map((w) => w.since);

  // -- drift heat map -----------------------------------------------------------------------
  function cellColor(d) {
    if (!d) return "#eeeeee";
    if (!d.drift) return "#e6f4ea";
    // drifted: the smaller the p-value (or the larger the statistic past its threshold),
    // the darker
    let s = 0.5;
    if (d.p_value !== null && d.p_value !== undefined) {
      s = Math.min(1, -Math.log10(Math.max(d.p_value, 1e-300)) / 20);
    } else if (d.threshold) {
      s = Math.min(1, d.statistic / d.threshold / 10);
    }
    return "hsl(4, 75%, " + (82 - 40 * s).toFixed(0) + "%)";
  }

  function heatmap(box) {
    const feats = tl.features;
    if (!feats.length || !wins.length) {
      box.append(el("p", { class: "muted", text: "no logged traffic to compare in this window" }));
      return;
    }
    const labelW = Math.min(170, 12 + 7 * Math.max(...feats.map((f) => Math.min(f.length, 24))));
    const avail = Math.max(300, (box.clientWidth || 900) - labelW - 20);
    const cw = Math.max(22, Math.min(70, Math.floor(avail / wins.length)));
    const ch = 20, top = 64; // room for the window labels, slanted above the columns
    const width = labelW + cw * wins.length + 70, height = top + ch * feats.length + 6;
    const root = svg("svg", {
      viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img",
      id: "drift-heatmap-svg",
      "aria-label": "drift per feature (rows) and time window (columns); darker red: stronger drift",
    });
    // a window's label: to the second when windows are short, to the minute otherwise
    const short = wins.length && wins[0].until - wins[0].since < 120;
    const label = (w) => (short ? when(w.since).slice(11, 19) : when(w.since).slice(5, 16));
    const every = Math.max(1, Math.ceil(60 / cw));
    wins.forEach((w, j) => {
      if (j % every) return;
      const x = labelW + j * cw + cw / 2;
      root.append(svg("text", {
        x: x, y: top - 6, "text-anchor": "start", transform: "rotate(-35 " + x + " " + (top - 6) + ")",
        text: label(w),
      }));
    });
    feats.forEach((f, i) => {
      const y = top + i * ch;
      root.append(svg("text", { x: labelW - 6, y: y + ch * 0.7, "text-anchor": "end", text: cut(f, 24) }));
      wins.forEach((w, j) => {
        const d = w.drift ? w.drift.features[f] : null;
        const g = svg("g", { class: "cell", "data-feature": f, "data-window": j, "data-drift": d ? String(d.drift) : "none" });
        g.append(svg("title", {
          text: f + " · " + when(w.since) + " – " + when(w.until) + ": " + (d
            ? d.test + " statistic " + fmt(d.statistic) + (d.p_value !== null && d.p_value !== undefined ? ", p " + fmt(d.p_value) : "") + (d.drift ? " — drift" : " — no drift")
            : (w.rows ? "not measured" : "no traffic")),
        }));
        g.append(svg("rect", { x: labelW + j * cw + 1, y: y + 1, width: cw - 2, height: ch - 2, rx: 2, fill: cellColor(d) }));
        if (d && d.drift) {
          g.append(svg("text", { x: labelW + j * cw + cw / 2, y: y + ch * 0.72, "text-anchor": "middle", fill: "#fff", text: "!" }));
        }
        root.append(g);
      });
    });
    box.append(root);
    const swatch = (c) => { const s = el("span", { class: "swatch", "aria-hidden": "true" }); s.style.background = c; return s; };
    box.append(el("p", { class: "heat-legend" }, [
      el("span", {}, [swatch("#e6f4ea"), "no drift"]),
      el("span", {}, [swatch("hsl(4, 75%, 72%)"), "drift (!)"]),
      el("span", {}, [swatch("hsl(4, 75%, 42%)"), "strong drift"]),
      el("span", {}, [swatch("#eeeeee"), "no traffic"]),
    ]));
    box.setAttribute("data-ready", "1");
  }

  heatmap(document.getElementById("drift-heatmap"));
  const share = document.getElementById("drift-share");
  if (wins.length && tl.features.length) {
    timeChart(share, "share of features drifted", t, [{
      label: "share", values: wins.map((w) => (w.drift ? w.drift.share : null)),
    }], { id: "chart-drift-share" });
  }

  // -- performance ----------------------------------------------------------------------------
  const perfBox = document.getElementById("performance-charts");
  const metricNames = [...new Set(wins.flatMap((w) => Object.keys(w.performance || {})
    .filter((k) => w.performance[k] && typeof w.performance[k] === "object" && "value" in w.performance[k])))].sort();
  const perfValues = (m) => wins.map((w) => (w.performance && w.performance[m] ? w.performance[m].value : null));
  // scores within [-1, 1] (accuracy, AUC, r2...) apart from errors in the target's units
  const bounded = (m) => perfValues(m).every((v) => v === null || Math.abs(v) <= 1);
  const groups = [
    ["performance on labelled rows, per window", "chart-performance", metricNames.filter(bounded)],
    ["errors on labelled rows, per window", "chart-errors", metricNames.filter((m) => !bounded(m))],
  ];
  for (const [title, id, names] of groups) {
    if (!names.length) continue;
    timeChart(perfBox, title, t, names.map((m) => ({ label: m, values: perfValues(m) })), { id: id });
  }
  if (!metricNames.length && wins.length) {
    perfBox.append(el("p", { class: "muted", id: "performance-none", text: "no window has enough labelled rows yet" }));
  }

  // -- fairness -------------------------------------------------------------------------------
  const fairBox = document.getElementById("fairness-charts");
  for (const col of tl.sensitive) {
    const names = data.disparities.filter((d) => wins.some((w) => w.fairness && w.fairness[col] && w.fairness[col][d]));
    if (!names.length) continue;
    timeChart(fairBox, "fairness by " + col + ", per window", t, names.map((d) => ({
      label: d.replace(/_/g, " "),
      values: wins.map((w) => (w.fairness && w.fairness[col] && w.fairness[col][d] ? w.fairness[col][d].value : null)),
    })), { "data-column": col, class: "chart fairness-chart" });
  }
})();
