// One pipeline run: its step graph (our own SVG: steps in columns by depth, inputs as
// edges, each step coloured by how it ended) and the steps' durations on a time line.
"use strict";
(function () {
  const { el, svg, fmt, cut } = window.keel;
  const data = window.keel.data();
  if (!data) return;
  const steps = data.steps;
  const byName = new Map(steps.map((s) => [s.name, s]));

  function seconds(s) {
    return s.seconds === null || s.seconds === undefined ? "" : fmt(+s.seconds.toFixed(3)) + " s";
  }

  // -- the graph ------------------------------------------------------------------------------
  function depthOf() {
    const depth = new Map();
    const visit = (name, seen) => {
      if (depth.has(name)) return depth.get(name);
      if (seen.has(name)) return 0; // a cycle cannot be stored, but never loop
      seen.add(name);
      const s = byName.get(name);
      const d = s && s.inputs.length
        ? 1 + Math.max(...s.inputs.filter((i) => byName.has(i)).map((i) => visit(i, seen)), -1)
        : 0;
      depth.set(name, d);
      return d;
    };
    for (const s of steps) visit(s.name, new Set());
    return depth;
  }

  function graph(box) {
    if (!steps.length) return;
    const W = 178, H = 50, GX = 56, GY = 16, PAD = 8;
    const depth = depthOf();
    const perCol = new Map(), pos = new Map();
    for (const s of steps) {
      const c = depth.get(s.name);
      const r = perCol.get(c) || 0;
      perCol.set(c, r + 1);
      pos.set(s.name, { x: PAD + c * (W + GX), y: PAD + r * (H + GY) });
    }
    const cols = Math.max(...depth.values()) + 1, rows = Math.max(...perCol.values());
    const width = PAD * 2 + cols * W + (cols - 1) * GX, height = PAD * 2 + rows * H + (rows - 1) * GY;
    const root = svg("svg", {
      // a group, not an image: its steps are links to their rows in the table
      viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "group",
      id: "step-graph-svg", "aria-label": "the pipeline's steps, each after the steps it takes inputs from",
    });
    for (const e of data.edges) {
      const a = pos.get(e.from), b = pos.get(e.to);
      if (!a || !b) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      root.append(svg("path", { class: "edge", "data-from": e.from, "data-to": e.to,
        d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
    }
    for (const s of steps) {
      const p = pos.get(s.name);
      const g = svg("g", { class: "node " + s.status.replace(/[^a-z]/g, ""), "data-step": s.name,
        "data-status": s.status, transform: `translate(${p.x},${p.y})` });
      const tries = s.attempts > 1 ? ", " + s.attempts + " tries" : "";
      g.append(svg("title", { text: s.name + " (" + s.kind + "): " + s.status + tries +
        (s.error ? " — " + s.error : "") }));
      g.append(svg("rect", { width: W, height: H, rx: 6 }));
      g.append(svg("text", { x: 8, y: 18, text: cut(s.name, 24) }));
      const ran = s.status !== "pending" && s.status !== "cached";
      const line = s.kind + " · " + s.status + (ran && seconds(s) ? " · " + seconds(s) : "") + tries;
      g.append(svg("text", { x: 8, y: 37, class: "sub", text: cut(line, 30) }));
      const a = svg("a", { href: "#step-" + s.name });
      a.append(g);
      root.append(a);
    }
    box.append(root);
    box.setAttribute("data-ready", "1");
  }

  // -- durations --------------------------------------------------------------------------
  function durations(box) {
    const timed = steps.filter((s) => s.started_at !== null && s.started_at !== undefined);
    if (!timed.length) {
      box.append(el("p", { class: "muted", text: "no step has run yet" }));
      return;
    }
    const t0 = Math.min(data.run.created_at, ...timed.map((s) => s.started_at));
    const ends = timed.map((s) => (s.ended_at !== null && s.ended_at !== undefined ? s.ended_at : s.started_at + (s.seconds || 0)));
    const span = Math.max(1e-3, Math.max(...ends) - t0);
    const labelW = 150, barW = Math.max(300, Math.min(760, (box.clientWidth || 900) - labelW - 90)), rowH = 20;
    const width = labelW + barW + 90, height = 24 + rowH * timed.length;
    const root = svg("svg", { viewBox: "0 0 " + width + " " + height, width: width, height: height,
      role: "img", id: "step-durations-svg", "aria-label": "when each step ran, from the start of the run" });
    root.append(svg("line", { class: "axis", x1: labelW, y1: 16, x2: labelW + barW, y2: 16 }));
    root.append(svg("text", { x: labelW, y: 11, text: "0 s" }));
    root.append(svg("text", { x: labelW + barW, y: 11, "text-anchor": "end", text: fmt(+span.toFixed(3)) + " s" }));
    const colors = { ran: "#1a7f37", cached: "#0b5cad", failed: "#b3261e", running: "#9a6700", pending: "#9a6700" };
    timed.forEach((s, i) => {
      const y = 22 + i * rowH;
      const x = labelW + ((s.started_at - t0) / span) * barW;
      const w = Math.max(2, ((ends[i] - s.started_at) / span) * barW);
      const g = svg("g", { "data-step": s.name });
      g.append(svg("title", { text: s.name + ": " + s.status + ", " + (seconds(s) || "0 s") }));
      g.append(svg("text", { x: labelW - 6, y: y + 13, "text-anchor": "end", text: cut(s.name, 20) }));
      g.append(svg("rect", { x: x, y: y + 2, width: w, height: rowH - 6, rx: 2, fill: colors[s.status] || "#57606a" }));
      g.append(svg("text", { x: x + w + 4, y: y + 13, text: s.cached ? "cache" : (seconds(s) || "") }));
      root.append(g);
    });
    box.append(root);
    box.setAttribute("data-ready", "1");
  }

  graph(document.getElementById("step-graph"));
  durations(document.getElementById("step-durations"));
})();
