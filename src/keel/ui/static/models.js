// keel dashboard: the Models pages. Moves an alias through the form (the server runs the
// gates); a refusal lists the rules that failed; after a move the alias and history tables
// are drawn again from /api/models/<name>/aliases. Text reaches the DOM through textContent.
"use strict";
(function () {
  const { el } = keel;

  function when(ts) {
    if (ts === null || ts === undefined) return "";
    return new Date(ts * 1000).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  function versionLink(model, v) {
    if (v === null || v === undefined) return el("span", { class: "muted", text: "none" });
    return el("a", { href: "/models/" + encodeURIComponent(model) + "/" + v, text: String(v) });
  }

  // the same words as keel.ui._models_html.gate_text
  function gateText(g) {
    if (g.status === "passed") {
      const n = (g.checks || []).length;
      return "passed (" + n + " rule" + (n !== 1 ? "s" : "") + ", evidence " + g.evidence_id + ")";
    }
    if (g.status === "overridden") {
      const o = g.override || {};
      return "overridden by " + o.who + ": " + o.reason + " — failed: " +
        ((o.failed || []).join("; ") || "none");
    }
    return { not_gated: "not gated", unrecorded: "gated; not recorded", removed: "alias removed" }[g.status] ||
      String(g.status);
  }

  function redraw(model, body, gated) {
    const last = {};
    for (const m of body.history) last[m.alias] = m;
    const aliases = document.querySelector("#aliases-table tbody");
    if (aliases) {
      aliases.replaceChildren(...Object.entries(body.aliases).sort().map(([alias, v]) => {
        const m = last[alias] || {};
        const head = el("th", { scope: "row" }, [alias]);
        if (gated.includes(alias)) head.append(" ", el("span", { class: "badge", text: "gated" }));
        return el("tr", { "data-alias": alias }, [
          head, el("td", null, [versionLink(model, v)]), el("td", { text: when(m.at) }),
          el("td", { text: m.who || "" }), el("td", { text: m.why || "" }),
        ]);
      }));
      const none = document.getElementById("no-aliases");
      if (none) none.remove();
    }
    const history = document.querySelector("#history-table tbody");
    if (history) {
      history.replaceChildren(...body.history.slice().reverse().map((m) => el("tr", {
        "data-testid": "history-row", "data-alias": m.alias, "data-gate": m.gate.status,
      }, [
        el("td", { text: when(m.at) }), el("th", { scope: "row", text: m.alias }),
        el("td", null, [versionLink(model, m.from_version), " → ", versionLink(model, m.to_version)]),
        el("td", { text: m.who }), el("td", { text: m.why }),
        el("td", { class: "gate-" + m.gate.status, text: gateText(m.gate) }),
      ])));
      const none = document.getElementById("no-history");
      if (none) none.remove();
    }
  }

  function setup(form) {
    const data = keel.data() || {};
    const model = data.model;
    const gated = data.gated_aliases || [];
    const out = document.querySelector("[data-testid=alias-result]");
    const button = form.querySelector("[type=submit]");
    const details = form.querySelector("details.override");

    function show(kind, nodes) {
      out.hidden = false;
      out.className = "alias-result " + kind;
      out.replaceChildren(...nodes);
    }

    async function refused(err, body) {
      const nodes = [el("p", { class: "refusal", text: err.message })];
      try {
        const gates = await keel.getJSON("/api/models/" + encodeURIComponent(model) + "/" +
          body.version + "/gates");
        const failed = ((gates.result && gates.result.checks) || []).filter((c) => !c.passed);
        if (failed.length) {
          nodes.push(el("p", { text: "Rules that failed:" }));
          nodes.push(el("ul", { class: "failed-rules", "data-testid": "failed-rules" }, failed.map((c) =>
            el("li", null, [el("code", { text: c.rule }),
              " — got " + (c.value === null || c.value === undefined ? "nothing" : keel.fmt(c.value)) +
              (c.missing ? " (" + c.missing + ")" : "")]))));
        }
      } catch (e) { /* the message above names the rules already */ }
      nodes.push(el("p", { class: "muted", text: "Nothing moved. To ship it anyway, give the reason under " +
        "\u201cOverride failed gates\u201d and move it again." }));
      if (details) details.open = true;
      show("error", nodes);
    }

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const fd = new FormData(form);
      const body = {
        alias: String(fd.get("alias") || "").trim(),
        version: Number(fd.get("version")),
        why: String(fd.get("why") || ""),
      };
      const override = String(fd.get("override") || "");
      if ((details && details.open) || override.trim()) body.override = override;
      button.disabled = true;
      show("pending", [el("p", { text: "Moving " + body.alias + " to version " + body.version + "…" })]);
      try {
        const res = await keel.postJSON(form.action, body);
        const gate = (res.move && res.move.gate) || {};
        show("ok", [
          el("p", { text: model + "@" + res.alias + " → version " + res.version + ": gates " +
            gateText(gate) + "." }),
          el("p", null, [el("a", { href: location.pathname, text: "Reload the page" }),
            " to see the versions and evidence as they are now."]),
        ]);
        const fresh = await keel.getJSON("/api/models/" + encodeURIComponent(model) + "/aliases");
        redraw(model, fresh, gated);
      } catch (err) {
        if (err.code === "gates_failed") await refused(err, body);
        else show("error", [el("p", { class: "refusal", text: err.message })]);
      } finally {
        button.disabled = false;
      }
    });
  }

  const form = document.querySelector("[data-testid=alias-form]");
  if (form) setup(form);
})();
