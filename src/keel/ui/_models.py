"""The Models pages and their API: registered models with their versions and aliases
(``/models``); one model's aliases, versions with their gates, and the history of every alias
move with what the gates said (``/models/<name>``); one version's gates per rule, its
evidence as pictures and its model card, rendered in place and downloadable
(``/models/<name>/<version>``); and the one action, moving an alias (``POST
/api/models/<name>/aliases``: the registry runs the gates; an override needs a reason).

Everything is read through keel's API (:mod:`keel.registry`, :mod:`keel.audit`); the move is
:func:`keel.registry.set_alias`, so the dashboard and ``keel alias`` refuse the same moves.
"""

from __future__ import annotations

import asyncio
from typing import Any

from keel.errors import InvalidInput, NotFound, ValidationFailed
from keel.ui._app import Route
from keel.ui._http import Request, Response, UiError, esc, html_response, json_response
from keel.ui._layout import page
from keel.ui._models_card import card_download, card_fragment
from keel.ui._models_figures import evidence_figures, figure_html
from keel.ui._models_html import (
    alias_form,
    aliases_table,
    gates_table,
    history_table,
    version_meta,
    versions_table,
)
from keel.ui._run import when

__all__ = ["ROUTES"]

#: Versions whose gates the model page runs (newest first); older ones link to their page.
GATED_VERSIONS = 50
#: The largest body an action accepts.
MAX_BODY = 64 * 1024
_TEXT_MAX = 2000
_FIELDS = ("alias", "version", "why", "override")


# -- reading, through keel's API ---------------------------------------------------------------


def policy_of(store: Any) -> dict[str, Any]:
    """The project's audit policy as plain data (``error`` when keel.yaml's is malformed)."""
    from keel.audit import Policy

    try:
        p = Policy.from_settings(getattr(store, "settings", None))
    except InvalidInput as exc:
        return {"rules": [], "gated_aliases": [], "allow_empty": False, "error": str(exc)}
    return {
        "rules": [str(r) for r in p.rules],
        "gated_aliases": list(p.gated_aliases),
        "allow_empty": p.allow_empty,
        "declared": p.declared,
        "error": None,
    }


def _name(request: Request) -> str:
    from keel.registry import check_name

    name = request.params["name"]
    try:
        return check_name(name)
    except InvalidInput:
        raise NotFound(f"there is no model named {name[:200]!r}") from None


def _version(store: Any, name: str, raw: Any) -> Any:
    """The registered version ``raw`` of ``name``; 404 naming both when there is none."""
    from keel import registry

    text = str(raw)
    if isinstance(raw, bool) or not text.isdigit() or int(text) < 1:
        registry.list_versions(store, name)  # an unknown model is named as such first
        raise NotFound(f"model {name!r} has no version {text[:40]!r}; versions are 1, 2, ...")
    return registry.get_version(store, f"{name}/{int(text)}")


def gates_of(store: Any, ref: str) -> dict[str, Any]:
    """:func:`keel.audit.gate` on the version's latest evidence as data; ``error`` says why
    there is no result (no evidence yet, a rule naming an unknown path)."""
    from keel.audit import gate

    try:
        return {**gate(store, ref).to_dict(), "error": None}
    except (ValidationFailed, InvalidInput) as exc:
        return {"model": ref, "passed": None, "checks": [], "error": str(exc)}


def _evidence_rows(store: Any, name: str) -> dict[str, list[dict[str, Any]]]:
    from keel.audit import list_evidence

    by_ref: dict[str, list[dict[str, Any]]] = {}
    for e in list_evidence(store, name):
        by_ref.setdefault(e["ref"], []).append(e)
    return by_ref


def model_data(store: Any, name: str, *, with_gates: bool = True) -> dict[str, Any]:
    """A model's versions (newest first, with their evidence and, unless ``with_gates`` is
    false, the newest :data:`GATED_VERSIONS` with their gates), its aliases and their history
    (:func:`keel.audit.alias_trail`)."""
    from keel import registry
    from keel.audit import alias_trail

    versions = registry.list_versions(store, name)
    evidence = _evidence_rows(store, name)
    rows = []
    for i, mv in enumerate(reversed(versions)):
        row = mv.to_dict()
        row["evidence"] = evidence.get(mv.ref, [])
        gated = with_gates and i < GATED_VERSIONS and row["evidence"]
        row["gates"] = gates_of(store, mv.ref) if gated else None
        rows.append(row)
    aliases = {a: mv.version for mv in versions for a in mv.aliases}
    return {
        "name": name,
        "versions": rows,
        "aliases": dict(sorted(aliases.items())),
        "history": alias_trail(store, name),
        "policy": policy_of(store),
    }


def evidence_data(store: Any, ref: str, evidence_id: int | None) -> dict[str, Any] | None:
    """The version's evidence (the latest, or ``evidence_id``) with its figures; None when it
    has none."""
    from keel.audit import get_evidence

    ev = get_evidence(store, ref, id=evidence_id, missing_ok=evidence_id is None)
    if ev is None:
        return None
    return {
        "id": ev.id,
        "ref": ev.ref,
        "sha": ev.sha,
        "sections": ev.sections,
        "skipped": ev.doc.get("skipped") or {},
        "created_at": ev.doc.get("created_at"),
        "created_by": ev.doc.get("created_by"),
        "figures": evidence_figures(ev.doc),
        "doc": ev.doc,
    }


def _evidence_id(request: Request) -> int | None:
    raw = request.query.get("evidence")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise UiError("invalid_input", f"evidence: expected an evidence id, got {raw[:40]!r}")
    return int(raw)


# -- the JSON API ------------------------------------------------------------------------------


def api_models(request: Request) -> Response:
    """``GET /api/models``: ``{"models": [{name, latest, versions, aliases}], "policy"}``."""
    from keel import registry

    store = request.app.store
    return json_response({"models": registry.list_models(store), "policy": policy_of(store)})


def api_model(request: Request) -> Response:
    """``GET /api/models/<name>``: see :func:`model_data`."""
    return json_response(model_data(request.app.store, _name(request)))


def api_history(request: Request) -> Response:
    """``GET /api/models/<name>/aliases``: ``{"aliases", "history"}`` (the alias trail)."""
    from keel import registry
    from keel.audit import alias_trail

    store, name = request.app.store, _name(request)
    versions = registry.list_versions(store, name)
    aliases = {a: mv.version for mv in versions for a in mv.aliases}
    return json_response({"aliases": aliases, "history": alias_trail(store, name)})


def api_version(request: Request) -> Response:
    """``GET /api/models/<name>/<version>``: ``{"version", "gates", "evidence": [..]}``."""
    from keel.audit import list_evidence

    store, name = request.app.store, _name(request)
    mv = _version(store, name, request.params["version"])
    evidence = [e for e in list_evidence(store, name) if e["ref"] == mv.ref]
    return json_response(
        {"version": mv.to_dict(), "gates": gates_of(store, mv.ref), "evidence": evidence}
    )


def api_gates(request: Request) -> Response:
    """``GET /api/models/<name>/<version>/gates``: ``{"policy", "result"}``."""
    store, name = request.app.store, _name(request)
    mv = _version(store, name, request.params["version"])
    return json_response({"policy": policy_of(store), "result": gates_of(store, mv.ref)})


def api_evidence(request: Request) -> Response:
    """``GET /api/models/<name>/<version>/evidence?evidence=ID``: the evidence document
    (``doc``) with its ``figures`` (see :mod:`keel.ui._models_figures`); 404 when the version
    has none."""
    store, name = request.app.store, _name(request)
    mv = _version(store, name, request.params["version"])
    data = evidence_data(store, mv.ref, _evidence_id(request))
    if data is None:
        raise NotFound(f"{mv.ref} has no evidence yet; run 'keel audit {mv.ref}'")
    return json_response(data)


def api_card(request: Request) -> Response:
    """``GET /api/models/<name>/<version>/card``: the card's sections as data."""
    from keel.audit import model_card

    store, name = request.app.store, _name(request)
    mv = _version(store, name, request.params["version"])
    return json_response(model_card(store, mv.ref, evidence_id=_evidence_id(request)).to_dict())


# -- the action --------------------------------------------------------------------------------


async def _read_json(request: Request) -> Any:
    from keel.serve._http import parse_json

    chunks, size = [], 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise UiError("invalid_input", "the request ended before its body did")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise UiError("invalid_input", f"the request body is over {MAX_BODY:,} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return parse_json(b"".join(chunks))


def _text_field(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise UiError("invalid_input", f"{key}: expected text, got {type(value).__name__}")
    if len(value) > _TEXT_MAX:
        raise UiError("invalid_input", f"{key}: at most {_TEXT_MAX} characters, got {len(value)}")
    return value


def parse_move(body: Any) -> tuple[str, int, str, str | None]:
    """``(alias, version, why, override)`` from an action's body, or a 400 naming the field."""
    if not isinstance(body, dict):
        raise UiError("invalid_input", "expected a JSON object {alias, version, why, override}")
    unknown = sorted(set(body) - set(_FIELDS))
    if unknown:
        raise UiError(
            "invalid_input", f"{unknown[0][:40]}: unknown field; expected {', '.join(_FIELDS)}"
        )
    alias = _text_field(body, "alias")
    if not alias or not alias.strip():
        raise UiError("invalid_input", "alias: give the alias to move, e.g. production")
    raw = body.get("version")
    if raw is None or raw == "":
        raise UiError("invalid_input", "version: give the version the alias should point at")
    text = str(raw)
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not text.isdigit():
        raise UiError(
            "invalid_input", f"version: expected a version number such as 3, got {text[:40]!r}"
        )
    why = _text_field(body, "why") or ""
    override = _text_field(body, "override")
    if override is not None and not override.strip():
        raise UiError(
            "invalid_input",
            "override: give the reason the version ships although its gates fail "
            "(it is recorded with the move); leave it out to move only when the gates pass",
        )
    return alias.strip(), int(text), why.strip(), override.strip() if override else None


def _move(request: Request, name: str, body: Any) -> Response:
    from keel import registry
    from keel.audit import alias_trail

    store = request.app.store
    alias, raw_version, why, override = parse_move(body)
    mv = _version(store, name, raw_version)
    who = request.state.get("key")  # the API key's name when the dashboard has keys
    try:
        moved = registry.set_alias(store, mv.ref, alias, why=why, who=who, override=override)
    except ValidationFailed as exc:
        gates = gates_of(store, mv.ref)
        failed = [c for c in gates["checks"] if not c["passed"]]
        detail = str(exc).split(". Fix the model", 1)[0]
        error = {
            "code": "gates_failed",
            "message": f"{detail}. Nothing moved: fix the model, or give an override reason "
            "to record why it ships anyway",
            "alias": alias,
            "version": mv.version,
            "failed": failed,
            "request_id": request.state["request_id"],
        }
        return json_response({"error": error}, 409)
    trail = alias_trail(store, name)
    move = next((m for m in reversed(trail) if m["alias"] == alias), None)
    return json_response(
        {"model": moved.ref, "alias": alias, "version": moved.version, "move": move}
    )


async def api_move(request: Request) -> Response:
    """``POST /api/models/<name>/aliases`` with ``{"alias", "version", "why", "override"}``
    (admin scope, CSRF-checked): point the alias at the version through
    :func:`keel.registry.set_alias`, which runs the gates on a gated alias. Answers the move
    (``move``: its entry in the alias trail); 409 ``gates_failed`` with the ``failed`` checks
    when the gates refuse it and no override reason is given; 400/404 naming what is wrong.
    A refused or malformed request changes nothing."""
    name = _name(request)
    body = await _read_json(request)
    return await asyncio.to_thread(_move, request, name, body)


# -- the pages ---------------------------------------------------------------------------------


def _policy_html(policy: dict[str, Any]) -> str:
    if policy["error"]:
        return f'<p class="gate-error">The audit policy is malformed: {esc(policy["error"])}</p>'
    rules = "".join(f"<li><code>{esc(r)}</code></li>" for r in policy["rules"])
    gated = ", ".join(policy["gated_aliases"]) or "none"
    body = f'<ul class="rules">{rules}</ul>' if rules else '<p class="muted">no rules</p>'
    return (
        f'<div class="policy" data-testid="policy"><p>Gated aliases: <strong>{esc(gated)}'
        f"</strong>. A version takes a gated alias only when its latest evidence passes "
        f"every rule, or with an override reason, which is recorded.</p>{body}</div>"
    )


def models_view(request: Request) -> Response:
    from keel import registry

    store = request.app.store
    models = registry.list_models(store)
    rows = []
    for m in models:
        name = esc(m["name"])
        aliases = " ".join(
            f'<a class="alias-chip" href="/models/{name}/{int(v)}">{esc(a)} → {int(v)}</a>'
            for a, v in m["aliases"].items()
        )
        latest, count = int(m["latest"]), int(m["versions"])
        # versions are numbered 1, 2, ... and never deleted: the newest few, then a count
        shown = range(latest, max(latest - 8, 0), -1) if count == latest else [latest]
        links = " ".join(f'<a href="/models/{name}/{v}">{v}</a>' for v in shown)
        more = f' <span class="muted">… {count} in all</span>' if count > len(shown) else ""
        rows.append(
            f'<tr data-testid="models-row" data-model="{name}">'
            f'<th scope="row"><a href="/models/{name}">{name}</a></th>'
            f'<td class="num">{count}</td><td class="versions">{links}{more}</td>'
            f"<td>{aliases or '<span class=muted>none</span>'}</td></tr>"
        )
    table = (
        '<table class="kv models-table" id="models-table"><thead><tr><th scope="col">model</th>'
        '<th scope="col">versions</th><th scope="col">newest first</th>'
        '<th scope="col">aliases</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        if rows
        else '<p class="muted" id="models-table">No model is registered yet: train one and '
        "register it (keel train ... --register NAME).</p>"
    )
    body = (
        f'<section class="models-page"><h1>Models</h1>{table}'
        f"<h2>Audit policy</h2>{_policy_html(policy_of(store))}</section>"
    )
    return html_response(
        page(request.app, "Models", body, active="/models", styles=("models.css",))
    )


def _focus(data: dict[str, Any], asked: str | None) -> dict[str, Any]:
    """The version the model page shows the evidence of: ``?version=N`` (how the lineage
    graph and the Releases page link to a version), else the one the first gated alias
    points at, else the newest."""
    by_version = {v["version"]: v for v in data["versions"]}
    if asked is not None:
        if not asked.isdigit() or int(asked) not in by_version:
            raise NotFound(
                f"model {data['name']!r} has no version {asked[:40]!r} "
                f"(newest is {data['versions'][0]['version']})"
            )
        return by_version[int(asked)]
    for alias in data["policy"]["gated_aliases"]:
        if alias in data["aliases"]:
            return by_version[data["aliases"][alias]]
    return data["versions"][0]


def _evidence_html(store: Any, mv: Any, evidence_id: int | None) -> str:
    data = evidence_data(store, mv.ref, evidence_id)
    if data is None:
        return (
            f'<p class="muted" data-testid="no-evidence">{esc(mv.ref)} has no evidence yet: '
            f"run <code>keel audit {esc(mv.ref)}</code>.</p>"
        )
    parts = [
        f'<p class="muted">Evidence {int(data["id"])} of {esc(mv.ref)}, audited '
        f"{esc(when(data['created_at']))} by {esc(data['created_by'])}; sections: "
        f"{esc(', '.join(data['sections']) or 'none')}.</p>"
    ]
    for section, why in data["skipped"].items():
        parts.append(f'<p class="skipped">{esc(section)}: skipped ({esc(why)})</p>')
    current = None
    for fig in data["figures"]:
        if fig["section"] != current:
            if current is not None:
                parts.append("</div>")
            current = fig["section"]
            parts.append(
                f'<h3 class="evidence-section">{esc(current.capitalize())}</h3>'
                f'<div class="figures" data-section="{esc(current)}">'
            )
        parts.append(figure_html(fig))
    if current is not None:
        parts.append("</div>")
    return "".join(parts)


def _evidence_picker(store: Any, mv: Any, chosen: int | None, base: str) -> str:
    from keel.audit import list_evidence

    rows = [e for e in list_evidence(store, mv.name) if e["ref"] == mv.ref]
    if len(rows) < 2:
        return ""
    latest = rows[-1]["id"]
    links = []
    for e in reversed(rows):
        here = (chosen or latest) == e["id"]
        href = base if e["id"] == latest else f"{base}?evidence={int(e['id'])}"
        links.append(
            f'<li><a href="{esc(href)}"{" aria-current=true" if here else ""}>evidence '
            f'{int(e["id"])}</a> <span class="muted">{esc(when(e["created_at"]))}</span></li>'
        )
    items = "".join(links)
    return (
        f'<nav aria-label="evidence of this version"><ul class="evidence-list">{items}</ul></nav>'
    )


def model_view(request: Request) -> Response:
    store, name = request.app.store, _name(request)
    data = model_data(store, name)
    focus = _focus(data, request.query.get("version"))
    from keel import registry

    mv = registry.get_version(store, focus["ref"])
    base = f"/models/{esc(name)}"
    body = f"""
<article class="model-page" id="model" data-model="{esc(name)}">
  <h1>Model <span class="model-name">{esc(name)}</span></h1>
  <p class="muted">{len(data["versions"])} version(s), newest {int(data["versions"][0]["version"])}.
    <a href="/models">All models</a></p>
  <section><h2>Aliases</h2>{aliases_table(name, data)}</section>
  <section><h2>Move an alias</h2>{alias_form(request.app, name, data, None)}</section>
  <section><h2>Versions</h2>{versions_table(name, data, GATED_VERSIONS)}</section>
  <section><h2>Alias history</h2>{history_table(name, data["history"])}</section>
  <section><h2>Audit policy</h2>{_policy_html(data["policy"])}</section>
  <section class="focus" data-version="{int(mv.version)}">
    <h2>Version {int(mv.version)}: gates and evidence</h2>
    <p><a href="{base}/{int(mv.version)}">Version {int(mv.version)}'s page</a>, with its model
      card ({_downloads(mv)}).</p>
    {gates_table(focus["gates"] or gates_of(store, mv.ref))}
    {_evidence_html(store, mv, None)}
  </section>
</article>"""
    return html_response(
        page(
            request.app,
            f"Model {name}",
            body,
            active="/models",
            scripts=("models.js",),
            styles=("models.css",),
            data=_page_data(name, data),
        )
    )


def _page_data(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": name,
        "gated_aliases": data["policy"]["gated_aliases"],
        "versions": [v["version"] for v in data["versions"]],
    }


def _downloads(mv: Any) -> str:
    base = f"/models/{esc(mv.name)}/{int(mv.version)}"
    return (
        f'<a href="{base}/card.md" download data-testid="card-md">Markdown</a>, '
        f'<a href="{base}/card.html" download data-testid="card-html">HTML</a>'
    )


def version_view(request: Request) -> Response:
    store, name = request.app.store, _name(request)
    mv = _version(store, name, request.params["version"])
    evidence_id = _evidence_id(request)
    data = model_data(store, name, with_gates=False)
    base = f"/models/{esc(name)}/{int(mv.version)}"
    chips = " ".join(f'<span class="alias-chip">{esc(a)}</span>' for a in mv.aliases)
    body = f"""
<article class="version-page" id="version" data-model="{esc(name)}" data-version="{mv.version}">
  <p class="crumbs"><a href="/models">Models</a> › <a href="/models/{esc(name)}">{esc(name)}</a></p>
  <h1><span class="model-name">{esc(name)}</span> version {int(mv.version)} {chips}</h1>
  {version_meta(mv)}
  <section><h2>Gates</h2>{gates_table(gates_of(store, mv.ref))}</section>
  <section><h2>Evidence</h2>{_evidence_picker(store, mv, evidence_id, base)}
    {_evidence_html(store, mv, evidence_id)}</section>
  <section><h2>Move an alias</h2>{alias_form(request.app, name, data, mv.version)}</section>
  <section id="card"><h2>Model card</h2>
    <p>Download: {_downloads(mv)}</p>
    {card_fragment(store, mv.ref, evidence_id)}
  </section>
</article>"""
    return html_response(
        page(
            request.app,
            f"{mv.ref}",
            body,
            active="/models",
            scripts=("models.js",),
            styles=("models.css",),
            data=_page_data(name, data),
        )
    )


def card_md(request: Request) -> Response:
    store, name = request.app.store, _name(request)
    return card_download(request, _version(store, name, request.params["version"]).ref, "md")


def card_html(request: Request) -> Response:
    store, name = request.app.store, _name(request)
    return card_download(request, _version(store, name, request.params["version"]).ref, "html")


ROUTES = (
    Route("GET", "/models", models_view),
    Route("GET", "/models/{name}", model_view),
    Route("GET", "/models/{name}/{version}", version_view),
    Route("GET", "/models/{name}/{version}/card.md", card_md),
    Route("GET", "/models/{name}/{version}/card.html", card_html),
    Route("GET", "/api/models", api_models),
    Route("GET", "/api/models/{name}", api_model),
    # before /api/models/{name}/{version}, which would claim the path
    Route("GET", "/api/models/{name}/aliases", api_history),
    Route("POST", "/api/models/{name}/aliases", api_move, scope="admin"),
    Route("GET", "/api/models/{name}/{version}", api_version),
    Route("GET", "/api/models/{name}/{version}/gates", api_gates),
    Route("GET", "/api/models/{name}/{version}/evidence", api_evidence),
    Route("GET", "/api/models/{name}/{version}/card", api_card),
)
