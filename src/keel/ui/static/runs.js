// The runs table: virtualised (only the rows in view are in the DOM), fetched from
// /api/runs a page at a time as the view scrolls; filter, sort and columns live in the URL.
"use strict";
(function () {
  const { el, getJSON, fmt, when, duration } = window.keel;
  const data = window.keel.data();
  const ROW_H = 28;
  const PAGE = data.page_size || 100;
  const OVERSCAN = 10;
  const MAX_COMPARE = 100;

  const grid = document.getElementById("runs-grid");
  const form = document.getElementById("runs-form");
  const filterInput = document.getElementById("filter");
  const filterError = document.getElementById("filter-error");
  const experiment = document.getElementById("experiment");
  const summary = document.getElementById("runs-summary");
  const compareBtn = document.getElementById("compare-selected");
  const chooser = document.getElementById("col-chooser");
  const chooseBtn = document.getElementById("choose-cols");

  const state = Object.assign({ experiment: "", filter: "", sort: "-created_at", cols: "" }, data.state);
  let columns = [];        // [{name, kind, key}]
  let total = 0;
  let pages = new Map();   // page index -> rows
  let loading = new Set(); // page indexes in flight
  let generation = 0;      // bumps when the query changes; stale answers are dropped
  const selected = new Set();
  const rendered = new Map(); // row index -> element

  const head = el("div", { class: "grid-head", role: "row", "aria-rowindex": 1 });
  const body = el("div", { class: "grid-body", role: "rowgroup" });
  grid.append(head, body);

  function width(col) {
    if (col.kind === "attribute" && col.key === "name") return 220;
    if (col.kind === "attribute" && col.key === "created_at") return 160;
    return 130;
  }

  function isNumeric(col) {
    return col.kind === "metrics" || ["created_at", "ended_at", "wall_time", "seed"].includes(col.key);
  }

  function show(col, value) {
    if (col.kind === "attribute" && (col.key === "created_at" || col.key === "ended_at")) return when(value);
    if (col.kind === "attribute" && col.key === "wall_time") return duration(value);
    return fmt(value);
  }

  function sortField() { return state.sort.replace(/^[-+]/, ""); }
  function sortDesc() { return state.sort.startsWith("-"); }

  function query(offset) {
    const q = new URLSearchParams();
    if (state.experiment) q.set("experiment", state.experiment);
    if (state.filter) q.set("filter", state.filter);
    q.set("sort", state.sort);
    q.set("cols", state.cols || columns.map((c) => c.name).join(","));
    q.set("offset", String(offset));
    q.set("limit", String(PAGE));
    return "/api/runs?" + q.toString();
  }

  function pageUrl() {
    const q = new URLSearchParams();
    if (state.experiment) q.set("experiment", state.experiment);
    if (state.filter) q.set("filter", state.filter);
    if (state.sort !== "-created_at") q.set("sort", state.sort);
    if (state.cols) q.set("cols", state.cols);
    const s = q.toString();
    return "/runs" + (s ? "?" + s : "");
  }

  function showError(err) {
    if (!err) {
      filterError.hidden = true;
      filterError.textContent = "";
      return;
    }
    let text = err.message;
    if (err.position && err.token !== undefined && state.filter) {
      // point at the position under the expression
      text += "\n" + state.filter + "\n" + " ".repeat(Math.max(0, err.position - 1)) + "^";
    }
    filterError.textContent = text;
    filterError.hidden = false;
  }

  function drawHead() {
    head.replaceChildren();
    head.append(el("div", { class: "cell pick", role: "columnheader" }, [
      el("span", { class: "visually-hidden", text: "select" }),
    ]));
    let total_w = 34;
    for (const col of columns) {
      const w = width(col);
      total_w += w;
      const active = sortField() === col.name;
      const arrow = active ? (sortDesc() ? " ▼" : " ▲") : "";
      const button = el("button", {
        class: "sort", type: "button", "data-testid": "sort-" + col.name, title: col.name,
        text: col.name + arrow,
        onclick: () => setSort(col.name),
      });
      const cell = el("div", {
        class: "cell" + (isNumeric(col) ? " num" : ""), role: "columnheader",
        "aria-sort": active ? (sortDesc() ? "descending" : "ascending") : null,
      }, [button]);
      cell.style.width = w + "px";
      head.append(cell);
    }
    head.style.width = total_w + "px";
    body.style.width = total_w + "px";
  }

  function drawRow(i) {
    const page = pages.get(Math.floor(i / PAGE));
    const row = page && page[i % PAGE];
    let node;
    if (!row) {
      node = el("div", { class: "grid-row loading", role: "row", "aria-rowindex": i + 2 }, [
        el("div", { class: "cell", role: "gridcell", text: "loading…" }),
      ]);
    } else {
      const label = row.name || row.id.slice(0, 12);
      const box = el("input", {
        type: "checkbox", "aria-label": "select run " + label,
        onchange: (e) => toggle(row.id, e.target.checked),
      });
      box.checked = selected.has(row.id);
      node = el("div", {
        class: "grid-row" + (selected.has(row.id) ? " selected" : ""), role: "row",
        "data-testid": "runs-row", "data-run-id": row.id, "aria-rowindex": i + 2,
      }, [el("div", { class: "cell pick", role: "gridcell" }, [box])]);
      columns.forEach((col, j) => {
        const value = row.cells[j];
        let content;
        if (col.kind === "attribute" && col.key === "name") {
          content = el("a", { href: "/runs/" + encodeURIComponent(row.id), text: label });
        } else {
          content = show(col, value);
        }
        const cell = el("div", {
          class: "cell" + (isNumeric(col) ? " num" : ""), role: "gridcell",
          title: typeof content === "string" ? content : label,
        }, [content]);
        cell.style.width = width(col) + "px";
        node.append(cell);
      });
    }
    node.style.top = i * ROW_H + "px";
    node.style.width = body.style.width;
    return node;
  }

  let frame = 0;
  function schedule() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; drawRows(); });
  }

  function drawRows() {
    const top = Math.max(0, grid.scrollTop - ROW_H);
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(total - 1, Math.ceil((top + grid.clientHeight) / ROW_H) + OVERSCAN);
    for (const [i, node] of rendered) {
      if (i < first || i > last) { node.remove(); rendered.delete(i); }
    }
    for (let i = first; i <= last; i++) {
      const node = rendered.get(i);
      const ready = pages.has(Math.floor(i / PAGE));
      if (node && !(ready && node.classList.contains("loading"))) continue;
      const fresh = drawRow(i);
      if (node) node.replaceWith(fresh); else body.append(fresh);
      rendered.set(i, fresh);
    }
    if (total > 0) want(first, last);
  }

  // Pages are fetched for what is in view once scrolling pauses, two at a time; a page
  // that left the view before its turn is not fetched at all.
  const MAX_IN_FLIGHT = 2;
  let wanted = [];
  let fetchTimer = 0;

  function want(first, last) {
    wanted = [];
    for (let p = Math.floor(first / PAGE); p <= Math.floor(last / PAGE); p++) {
      if (!pages.has(p)) wanted.push(p);
    }
    clearTimeout(fetchTimer);
    if (wanted.length) fetchTimer = setTimeout(pump, 60);
  }

  function pump() {
    while (loading.size < MAX_IN_FLIGHT && wanted.length) {
      const p = wanted.shift();
      if (!pages.has(p) && !loading.has(p)) fetchPage(p);
    }
  }

  async function fetchPage(p) {
    loading.add(p);
    const gen = generation;
    try {
      const res = await getJSON(query(p * PAGE));
      if (gen !== generation) return;
      pages.set(p, res.rows);
      total = res.total;
      schedule();
    } catch (err) {
      if (gen === generation) showError(err);
    } finally {
      loading.delete(p);
      pump();
    }
  }

  function apply(res) {
    generation += 1;
    pages = new Map([[0, res.rows]]);
    loading = new Set();
    total = res.total;
    columns = res.columns;
    for (const node of rendered.values()) node.remove();
    rendered.clear();
    body.style.height = total * ROW_H + "px";
    grid.setAttribute("aria-rowcount", String(total + 1));
    summary.textContent = total.toLocaleString() + (total === 1 ? " run" : " runs") +
      (state.filter ? " match the filter" : "") + " · sorted by " + res.sort;
    drawHead();
    grid.scrollTop = 0;
    drawRows();
  }

  async function reload(push) {
    const gen = ++generation;
    try {
      const q = new URLSearchParams(query(0).split("?")[1]);
      if (!state.cols) q.delete("cols"); // let the server pick the columns for a new query
      const res = await getJSON("/api/runs?" + q.toString());
      if (gen !== generation) return;
      showError(null);
      const url = pageUrl();
      if (push) history.pushState(Object.assign({}, state), "", url);
      else history.replaceState(Object.assign({}, state), "", url);
      apply(res);
    } catch (err) {
      if (gen === generation) showError(err);
    }
  }

  function setSort(name) {
    state.sort = (sortField() === name && sortDesc()) ? name : "-" + name;
    document.getElementById("sort").value = state.sort;
    reload(false);
  }

  function toggle(id, on) {
    if (on) selected.add(id); else selected.delete(id);
    for (const node of rendered.values()) {
      if (node.dataset.runId === id) node.classList.toggle("selected", on);
    }
    compareBtn.disabled = selected.size < 2 || selected.size > MAX_COMPARE;
    compareBtn.textContent = "Compare selected" + (selected.size ? " (" + selected.size + ")" : "");
  }

  compareBtn.addEventListener("click", () => {
    if (selected.size < 2) return;
    location.href = "/compare?runs=" + [...selected].map(encodeURIComponent).join(",");
  });

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    state.filter = filterInput.value.trim();
    state.experiment = experiment.value;
    reload(true);
  });
  experiment.addEventListener("change", () => {
    state.experiment = experiment.value;
    reload(true);
  });

  window.addEventListener("popstate", (e) => {
    if (!e.state) return;
    Object.assign(state, e.state);
    filterInput.value = state.filter;
    experiment.value = state.experiment;
    reload(false);
  });

  // -- the column chooser ---------------------------------------------------------------
  async function openChooser() {
    if (!chooser.hidden) { chooser.hidden = true; return; }
    chooser.replaceChildren(el("p", { class: "loading", text: "loading the columns…" }));
    chooser.hidden = false;
    let keys;
    try {
      keys = await getJSON("/api/columns" + (state.experiment ? "?experiment=" + encodeURIComponent(state.experiment) : ""));
    } catch (err) {
      chooser.replaceChildren(el("p", { class: "filter-error", text: err.message }));
      return;
    }
    const shown = new Set(columns.map((c) => c.name));
    const groups = [["attributes", ""], ["metrics", "metrics."], ["params", "params."], ["tags", "tags."]];
    const nodes = [];
    for (const [group, prefix] of groups) {
      const boxes = keys[group].map((k) => {
        const name = prefix && !/^[A-Za-z_][A-Za-z0-9_.\-/:]*$/.test(k) ? prefix + "`" + k + "`" : prefix + k;
        const box = el("input", { type: "checkbox", value: name });
        box.checked = shown.has(name);
        return el("label", {}, [box, " " + k]);
      });
      if (boxes.length) nodes.push(el("fieldset", {}, [el("legend", { text: group }), ...boxes]));
    }
    const applyBtn = el("button", { type: "button", text: "Show these columns", onclick: () => {
      const names = [...chooser.querySelectorAll("input[type=checkbox]:checked")].map((b) => b.value);
      state.cols = names.join(",");
      document.getElementById("cols").value = state.cols;
      chooser.hidden = true;
      reload(true);
    } });
    const resetBtn = el("button", { type: "button", text: "Default columns", onclick: () => {
      state.cols = "";
      document.getElementById("cols").value = "";
      chooser.hidden = true;
      reload(true);
    } });
    chooser.replaceChildren(...nodes, applyBtn, " ", resetBtn);
  }
  chooseBtn.addEventListener("click", openChooser);

  grid.addEventListener("scroll", schedule, { passive: true });
  window.addEventListener("resize", schedule);

  if (data.error) {
    showError(data.error);
  } else if (data.first) {
    history.replaceState(Object.assign({}, state), "", location.href);
    apply(data.first);
  }
})();
