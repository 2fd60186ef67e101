// The Releases page of one model: traffic per version over time (from the prediction log),
// and, given ?server=URL, the running server's counters, polled to show the request rate.
"use strict";
(function () {
  const { el, getJSON, fmt, timeChart } = window.keel;
  const data = window.keel.data();
  if (!data) return;

  function named(v, aliases) {
    return aliases && aliases.length ? "v" + v + " (" + aliases.join(", ") + ")" : "v" + v;
  }

  // -- traffic from the log ---------------------------------------------------------------
  const tr = data.traffic;
  const charts = document.getElementById("traffic-charts");
  const versions = Object.keys(tr.versions);
  if (charts && versions.length) {
    const series = (key) => versions.map((v) => ({
      label: named(v, tr.versions[v].aliases), values: tr.versions[v][key],
    }));
    const every = tr.bucket_s ? " (per " + window.keel.duration(tr.bucket_s) + ")" : "";
    timeChart(charts, "requests per second" + every, tr.t, series("req_per_s"), { id: "chart-rps" });
    timeChart(charts, "p50 latency, ms" + every, tr.t, series("p50_ms"), { id: "chart-p50" });
    timeChart(charts, "p99 latency, ms" + every, tr.t, series("p99_ms"), { id: "chart-p99" });
    charts.setAttribute("data-ready", "1");
  }

  // -- a running server ---------------------------------------------------------------------
  if (!data.server) return;
  const box = document.getElementById("server-live");
  const errorBox = document.getElementById("server-error");
  const url = "/api/releases/" + encodeURIComponent(data.model) + "/server?server=" +
    encodeURIComponent(data.server);
  let previous = null;
  const history = { t: [], rates: new Map() }; // version -> [req/s per read]
  let liveChart = null;

  function table(snapshot, rates) {
    const model = (snapshot.models || {})[data.model] || { versions: {}, variants: {}, shadow: {} };
    const head = ["version", "loaded", "requests", "req/s now", "errors", "error codes",
      "p50 ms", "p99 ms"];
    const rows = Object.keys(model.versions).sort().map((v) => {
      const e = model.versions[v];
      const codes = Object.entries(e.errors_by_code).map(([c, n]) => c + ": " + n).join(", ");
      return el("tr", { "data-version": v }, [
        el("th", { scope: "row", text: v || "(none)" }),
        el("td", { text: e.loaded ? "yes" : "no" }),
        el("td", { class: "num", text: fmt(e.requests) }),
        el("td", { class: "num", text: rates.has(v) ? fmt(rates.get(v)) : "…" }),
        el("td", { class: "num" + (e.errors ? " bad" : ""), text: fmt(e.errors) }),
        el("td", { text: codes }),
        el("td", { class: "num", text: fmt(e.p50_ms) }),
        el("td", { class: "num", text: fmt(e.p99_ms) }),
      ]);
    });
    const out = [el("table", { class: "kv", id: "server-table" }, [
      el("thead", {}, [el("tr", {}, head.map((h) => el("th", { scope: "col", text: h })))]),
      el("tbody", {}, rows),
    ])];
    const split = Object.entries(model.variants).map(([variant, byVersion]) =>
      el("li", { text: (variant || "(default)") + ": " +
        Object.entries(byVersion).map(([v, n]) => "v" + v + " " + fmt(n)).join(", ") }));
    if (split.length) {
      out.push(el("h3", { text: "Release split (requests by variant)" }));
      out.push(el("ul", { id: "server-variants" }, split));
    }
    const shadow = Object.entries(model.shadow).map(([v, outcomes]) =>
      el("li", { text: "v" + (v || "?") + ": " +
        Object.entries(outcomes).map(([o, n]) => o + " " + fmt(n)).join(", ") }));
    if (shadow.length) {
      out.push(el("h3", { text: "Shadow copies by outcome" }));
      out.push(el("ul", { id: "server-shadow" }, shadow));
    }
    return out;
  }

  function show(snapshot) {
    if (!snapshot.ok) {
      errorBox.hidden = false;
      errorBox.textContent = snapshot.error || "the server could not be read";
      return;
    }
    errorBox.hidden = true;
    const model = (snapshot.models || {})[data.model] || { versions: {} };
    const rates = new Map();
    if (previous && previous.ok) {
      const dt = snapshot.at - previous.at;
      const before = ((previous.models || {})[data.model] || { versions: {} }).versions;
      for (const [v, e] of Object.entries(model.versions)) {
        const was = before[v] ? before[v].requests : 0;
        if (dt > 0) rates.set(v, Math.max(0, e.requests - was) / dt);
      }
      history.t.push(snapshot.at);
      for (const v of new Set([...history.rates.keys(), ...rates.keys()])) {
        if (!history.rates.has(v)) history.rates.set(v, new Array(history.t.length - 1).fill(null));
        history.rates.get(v).push(rates.has(v) ? rates.get(v) : null);
      }
    }
    previous = snapshot;
    box.replaceChildren(...table(snapshot, rates));
    box.setAttribute("data-read", String(Number(box.getAttribute("data-read") || 0) + 1));
    if (history.t.length >= 2) {
      const keys = [...history.rates.keys()].sort();
      const series = keys.map((v) => ({ label: "v" + (v || "?"), values: history.rates.get(v) }));
      const holder = el("div");
      box.append(holder);
      if (liveChart && liveChart.plot) liveChart.plot.destroy();
      liveChart = timeChart(holder, "requests per second, live", history.t, series, { id: "chart-live" });
    }
  }

  async function poll() {
    if (document.visibilityState !== "hidden") {
      try {
        show(await getJSON(url));
      } catch (err) {
        errorBox.hidden = false;
        errorBox.textContent = err.message;
      }
    }
    setTimeout(poll, (data.poll_s || 5) * 1000);
  }

  if (data.live) show(data.live);
  setTimeout(poll, (data.poll_s || 5) * 1000);
})();
