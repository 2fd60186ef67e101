// keel dashboard: shared helpers. Text reaches the DOM through textContent only.
"use strict";
(function () {
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "text") node.textContent = String(v);
        else if (k === "class") node.className = v;
        else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (const c of children || []) {
      if (c === null || c === undefined) continue;
      node.append(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = String(v);
      else node.setAttribute(k, String(v));
    }
    return node;
  }

  class ApiError extends Error {
    constructor(status, body) {
      const err = (body && body.error) || {};
      super(err.message || ("request failed with status " + status));
      this.status = status;
      this.code = err.code;
      this.position = err.position;
      this.token = err.token;
    }
  }

  async function getJSON(url, options) {
    const res = await fetch(url, Object.assign({ headers: { accept: "application/json" } }, options || {}));
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (!res.ok) throw new ApiError(res.status, body);
    return body;
  }

  async function postJSON(url, payload) {
    return getJSON(url, {
      method: "POST",
      headers: { "content-type": "application/json", "x-keel-csrf": "1", accept: "application/json" },
      body: JSON.stringify(payload || {}),
    });
  }

  let cached;
  function data() {
    if (cached === undefined) {
      const node = document.getElementById("keel-data");
      cached = node ? JSON.parse(node.textContent) : null;
    }
    return cached;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") {
      if (Number.isInteger(v)) return String(v);
      const a = Math.abs(v);
      return (a !== 0 && (a < 1e-4 || a >= 1e7)) ? v.toExponential(4) : String(+v.toPrecision(6));
    }
    if (typeof v === "string") return v;
    return JSON.stringify(v);
  }

  function when(ts) {
    if (ts === null || ts === undefined) return "";
    const d = new Date(ts * 1000);
    const p = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
      p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  function duration(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return (s / 60).toFixed(1) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  function color(i) {
    if (i < PALETTE.length) return PALETTE[i];
    return "hsl(" + ((i * 137.508) % 360).toFixed(0) + ", 60%, 45%)";
  }

  window.keel = { el, svg, getJSON, postJSON, data, fmt, when, duration, color, ApiError };
})();
