"""HTML pieces of the Models pages: tables of aliases, versions, gate checks and the alias
history, a version's details, and the form that moves an alias. Every value goes through
:func:`esc`; ``models.js`` redraws the alias and history tables after a move with the same
cells (``gate_text`` there and here say the same)."""

from __future__ import annotations

from typing import Any

from keel.ui._http import esc
from keel.ui._run import when

__all__ = [
    "alias_form",
    "aliases_table",
    "gate_text",
    "gates_table",
    "history_table",
    "version_meta",
    "versions_table",
]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _vlink(name: str, version: Any) -> str:
    if version is None:
        return '<span class="muted">none</span>'
    return f'<a href="/models/{esc(name)}/{int(version)}">{int(version)}</a>'


def gate_text(gate: dict[str, Any]) -> str:
    """What the gates said of one move, in words."""
    status = gate.get("status")
    if status == "passed":
        n = len(gate.get("checks") or [])
        return f"passed ({n} rule{'s' if n != 1 else ''}, evidence {gate.get('evidence_id')})"
    if status == "overridden":
        o = gate.get("override") or {}
        failed = "; ".join(o.get("failed") or []) or "none"
        return f"overridden by {o.get('who')}: {o.get('reason')} — failed: {failed}"
    return {
        "not_gated": "not gated",
        "unrecorded": "gated; not recorded",
        "removed": "alias removed",
    }.get(str(status), str(status))


def aliases_table(name: str, data: dict[str, Any]) -> str:
    last: dict[str, dict[str, Any]] = {}
    for move in data["history"]:
        last[move["alias"]] = move
    gated = set(data["policy"]["gated_aliases"])
    rows = []
    for alias, version in data["aliases"].items():
        move = last.get(alias) or {}
        rows.append(
            f'<tr data-alias="{esc(alias)}"><th scope="row">{esc(alias)}'
            f"{' <span class=badge>gated</span>' if alias in gated else ''}</th>"
            f"<td>{_vlink(name, version)}</td><td>{esc(when(move.get('at')))}</td>"
            f"<td>{esc(move.get('who'))}</td><td>{esc(move.get('why'))}</td></tr>"
        )
    return (
        '<table class="kv" id="aliases-table" data-testid="aliases-table"><thead><tr>'
        '<th scope="col">alias</th><th scope="col">version</th><th scope="col">since</th>'
        '<th scope="col">by</th><th scope="col">why</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        + ("" if rows else '<p class="muted" id="no-aliases">no aliases yet</p>')
    )


def _gate_cell(gates: dict[str, Any] | None) -> str:
    if gates is None:
        return '<span class="muted">no evidence</span>'
    if gates.get("error"):
        return f'<span class="gate-error" title="{esc(gates["error"])}">cannot run</span>'
    checks = gates.get("checks") or []
    failed = [c for c in checks if not c["passed"]]
    if gates.get("passed"):
        return f'<span class="pass">passes</span> <span class="muted">{len(checks)} rules</span>'
    if not checks:
        return '<span class="fail">no rules</span>'
    names = ", ".join(c["rule"] for c in failed)
    return (
        f'<span class="fail">fails {len(failed)} of {len(checks)}</span> '
        f'<span class="muted">{esc(names)}</span>'
    )


def versions_table(name: str, data: dict[str, Any], gated_versions: int) -> str:
    rows = []
    for v in data["versions"]:
        metrics = " ".join(f"{k}={_fmt(m)}" for k, m in list(v["metrics"].items())[:3])
        run = (
            f'<a href="/runs/{esc(v["run_id"])}">{esc(v["run_id"][:12])}</a>' if v["run_id"] else ""
        )
        ev = v["evidence"]
        evidence = f"{len(ev)} (latest {int(ev[-1]['id'])})" if ev else "none"
        chips = " ".join(f'<span class="alias-chip">{esc(a)}</span>' for a in v["aliases"])
        rows.append(
            f'<tr data-testid="version-row" data-version="{int(v["version"])}">'
            f'<th scope="row">{_vlink(name, v["version"])}</th><td>{chips}</td>'
            f"<td>{esc(v['flavor'])}</td><td>{esc(v['task'])}</td><td>{run}</td>"
            f"<td>{esc(when(v['created_at']))}</td><td>{esc(v['created_by'])}</td>"
            f"<td>{esc(metrics)}</td><td>{esc(evidence)}</td>"
            f'<td data-testid="version-gates">{_gate_cell(v["gates"])}</td></tr>'
        )
    more = len(data["versions"]) - gated_versions
    note = (
        f'<p class="muted">Gates are shown for the newest {gated_versions} versions; open an '
        f"older version for its own.</p>"
        if more > 0
        else ""
    )
    return (
        '<div class="table-scroll" tabindex="0" role="region" aria-label="versions">'
        '<table class="kv" id="versions-table"><thead><tr><th scope="col">version</th>'
        '<th scope="col">aliases</th><th scope="col">kind</th><th scope="col">task</th>'
        '<th scope="col">run</th><th scope="col">created</th><th scope="col">by</th>'
        '<th scope="col">metrics</th><th scope="col">evidence</th><th scope="col">gates</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{note}"
    )


def history_table(name: str, history: list[dict[str, Any]]) -> str:
    rows = []
    for m in reversed(history):
        status = esc(m["gate"].get("status"))
        rows.append(
            f'<tr data-testid="history-row" data-alias="{esc(m["alias"])}" '
            f'data-gate="{status}"><td>{esc(when(m["at"]))}</td><th scope="row">'
            f"{esc(m['alias'])}</th><td>{_vlink(name, m['from_version'])} → "
            f"{_vlink(name, m['to_version'])}</td><td>{esc(m['who'])}</td>"
            f"<td>{esc(m['why'])}</td>"
            f'<td class="gate-{status}">{esc(gate_text(m["gate"]))}</td></tr>'
        )
    return (
        '<table class="kv" id="history-table" data-testid="history-table"><thead><tr>'
        '<th scope="col">when</th><th scope="col">alias</th><th scope="col">move</th>'
        '<th scope="col">who</th><th scope="col">why</th><th scope="col">gates</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
        + ("" if rows else '<p class="muted" id="no-history">no alias has moved yet</p>')
    )


def gates_table(gates: dict[str, Any]) -> str:
    """The checks of one version's gates: each rule, the value found, pass or fail."""
    if gates.get("error"):
        return f'<p class="gate-error" data-testid="gates-error">{esc(gates["error"])}</p>'
    checks = gates.get("checks") or []
    if not checks:
        return (
            f'<p class="fail" data-testid="gates-empty">{esc(gates.get("note") or "no rules")}</p>'
        )
    rows = "".join(
        f'<tr data-testid="gate-check" data-passed="{str(c["passed"]).lower()}">'
        f'<th scope="row"><code>{esc(c["rule"])}</code></th>'
        f'<td class="num">{esc(_fmt(c.get("value")) or "—")}</td>'
        f'<td class="{"pass" if c["passed"] else "fail"}">{"pass" if c["passed"] else "fail"}'
        f"{esc(' — ' + c['missing']) if c.get('missing') else ''}</td></tr>"
        for c in checks
    )
    verdict = "passes" if gates.get("passed") else "fails"
    return (
        f'<p class="gate-verdict {"pass" if gates.get("passed") else "fail"}" '
        f'data-testid="gate-verdict">{esc(gates.get("model"))} {verdict} the gates '
        f"(evidence {esc(gates.get('evidence_id'))}).</p>"
        '<table class="kv gates" data-testid="gates-table"><thead><tr><th scope="col">rule</th>'
        '<th scope="col">value</th><th scope="col">result</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def version_meta(mv: Any) -> str:
    run = f'<a href="/runs/{esc(mv.run_id)}">{esc(mv.run_id)}</a>' if mv.run_id else "none"
    pairs = [
        ("reference", esc(mv.ref)),
        ("kind", esc(f"{mv.flavor}, {mv.task}")),
        ("run", run),
        ("created", esc(f"{when(mv.created_at)} by {mv.created_by}")),
        ("artifact", f"<code>{esc(mv.artifact_sha)}</code>"),
        ("inputs", esc(", ".join(str(c.get("name")) for c in mv.input_schema[:30]))),
    ]
    if mv.description:
        pairs.append(("description", esc(mv.description)))
    for k, v in mv.tags.items():
        pairs.append((f"tag {esc(k)}", esc(v)))
    for k, v in list(mv.metrics.items())[:12]:
        pairs.append((esc(k), esc(_fmt(v))))
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in pairs)
    return f'<dl class="meta">{items}</dl>'


def alias_form(app: Any, name: str, data: dict[str, Any], version: int | None) -> str:
    """The form that moves an alias (``models.js`` posts it; the server runs the gates)."""
    known = sorted(set(data["aliases"]) | set(data["policy"]["gated_aliases"]))
    options = "".join(f'<option value="{esc(a)}"></option>' for a in known)
    choose = "".join(
        f'<option value="{int(v["version"])}"'
        f"{' selected' if v['version'] == version else ''}>{int(v['version'])}"
        f"{' (' + esc(', '.join(v['aliases'])) + ')' if v['aliases'] else ''}</option>"
        for v in data["versions"]
    )
    keys = (
        '<p class="muted">Needs an API key with the admin scope.</p>'
        if getattr(app, "keys", None) is not None
        else ""
    )
    gated = ", ".join(data["policy"]["gated_aliases"]) or "none"
    return f"""
<form class="alias-form" data-testid="alias-form" method="post"
      action="/api/models/{esc(name)}/aliases">
  <label>Alias <input type="text" name="alias" required list="alias-names" autocomplete="off"
    maxlength="100" pattern="[A-Za-z][A-Za-z0-9_\\-]*"></label>
  <datalist id="alias-names">{options}</datalist>
  <label>Version <select name="version">{choose}</select></label>
  <label class="grow">Why <input type="text" name="why" maxlength="2000"
    placeholder="kept in the history"></label>
  <details class="override"><summary>Override failed gates</summary>
    <label>Reason the version ships although its gates fail (recorded with the move)
      <textarea name="override" rows="2" maxlength="2000"></textarea></label>
  </details>
  <button type="submit">Move alias</button>
</form>
<p class="muted">Gated aliases ({esc(gated)}) move only when the version passes its gates, or
  with an override reason.</p>{keys}
<div class="alias-result" data-testid="alias-result" role="status" aria-live="polite"
     hidden></div>"""
