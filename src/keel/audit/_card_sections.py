"""What a model card says, gathered from the store: the version, its lineage (run, datasets,
sources), the project's statements (``keel.yaml``), the latest evidence, the gates and the
alias trail. Only facts found are kept; what is absent stays ``None`` and the card says so."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keel.audit._card_records import (
    alert_rules,
    declaration_file,
    deployed_performance,
    dp_siblings,
    mitigation_family,
    monitoring_records,
)
from keel.errors import InvalidInput, KeelError, NotFound

__all__ = ["STATEMENT_KEYS", "collect", "statements"]

#: The keys of ``keel.yaml``'s ``card:`` section (each may also sit in ``audit:``), and what
#: each states. All are optional; a missing one is shown as "not stated".
STATEMENT_KEYS: dict[str, str] = {
    "intended_use": "what the model is for, in which decisions, for whom",
    "users": "who operates it and who is affected (deployers, subjects)",
    "limitations": "known limits: populations, conditions or uses it is not fit for",
    "human_oversight": "how people oversee, override or stop its decisions",
    "monitoring": "the post-market monitoring plan: what is watched, how often, who acts",
    "feedback": "how users and affected people report problems or appeal an outcome",
    "standards": "harmonised standards or other specifications applied",
    "declaration_of_conformity": "where the EU declaration of conformity is kept",
}
_EVIDENCE_SECTIONS = (
    "performance",
    "fairness",
    "explanations",
    "robustness",
    "privacy",
    "mitigation",
)


def statements(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The project's statements for the card: ``card.KEY``, else ``audit.KEY``, else None.
    A value must be text, a list of texts, or (``monitoring``) a mapping of texts."""
    settings = settings or {}
    card = settings.get("card")
    if card is None:
        card = {}
    if not isinstance(card, Mapping):
        raise InvalidInput(f"keel.yaml: card: expected a mapping, got {card!r}")
    unknown = sorted(set(map(str, card)) - set(STATEMENT_KEYS))
    if unknown:
        raise InvalidInput(
            f"keel.yaml: card.{unknown[0]}: unknown key; expected some of "
            f"{', '.join(STATEMENT_KEYS)}"
        )
    audit = settings.get("audit")
    audit = audit if isinstance(audit, Mapping) else {}
    out: dict[str, Any] = {}
    for key in STATEMENT_KEYS:
        where = "card" if key in card else "audit"
        value = card.get(key, audit.get(key))
        out[key] = _statement(value, f"keel.yaml: {where}.{key}")
    return out


def _statement(value: Any, where: str) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        texts = [str(v).strip() for v in value if str(v).strip()]
        return texts or None
    if isinstance(value, Mapping):
        parts = {str(k): _statement(v, f"{where}.{k}") for k, v in value.items()}
        return {k: v for k, v in parts.items() if v is not None} or None
    raise InvalidInput(f"{where}: expected text or a list of texts, got {value!r}")


def collect(store: Any, ref: str, evidence_id: int | None = None) -> dict[str, Any]:
    """Every section of the card of version ``ref`` as plain data (see :mod:`keel.audit.card`).
    Raises :class:`NotFound` when the version has no evidence."""
    from keel import registry
    from keel.audit._evidence import get_evidence

    mv = registry.get_version(store, ref)
    ev = get_evidence(store, mv.ref, id=evidence_id, missing_ok=True)
    if ev is None:
        what = f"evidence {evidence_id}" if evidence_id is not None else "audit evidence"
        raise NotFound(
            f"model card of {mv.ref}: the version has no {what}; run 'keel audit {mv.ref}' "
            f"first, then 'keel card {mv.ref}'"
        )
    doc = ev.doc
    settings = getattr(store, "settings", None) or {}
    stated = statements(settings)
    run = _run(store, mv.run_id)
    chain = mitigated_from(store, mv.ref)
    sections: dict[str, Any] = {
        "model": _model(mv, doc),
        "intended_use": {k: stated[k] for k in ("intended_use", "users", "limitations")}
        | {"human_oversight": stated["human_oversight"]},
        "data": _data(store, mv, doc),
        "training": _training(store, run, chain),
    }
    for name in _EVIDENCE_SECTIONS:
        sections[name] = doc.get(name)
    sections["related"] = {  # other versions' stored records the pictures compare with
        "mitigations": mitigation_family(store, mv, chain),
        "dp_versions": dp_siblings(store, mv, doc.get("privacy")),
    }
    sections["gates"] = _gates(store, mv, ev)
    sections["lifecycle"] = _lifecycle(store, mv)
    records = monitoring_records(store, mv)
    sections["monitoring"] = records | {
        "plan": stated["monitoring"],
        "feedback": stated["feedback"],
        "alert_rules": alert_rules(settings),
        "results": records["passes"],
        "deployed_performance": deployed_performance(records["passes"]),
    }
    sections["conformity"] = {
        "standards": stated["standards"],
        "declaration_of_conformity": stated["declaration_of_conformity"],
        "declaration_file": declaration_file(store, stated["declaration_of_conformity"]),
    }
    sections["reproducibility"] = {
        "evidence_id": ev.id,
        "evidence_sha": ev.sha,
        "evidence_format": doc.get("format"),
        "audited_at": doc.get("created_at"),
        "audited_by": doc.get("created_by"),
        "settings": doc.get("settings") or {},
        "libraries": doc.get("libraries") or {},
        "timings_s": doc.get("timings_s") or {},
    }
    return sections


def _is(event: Mapping[str, Any], mv: Any) -> bool:
    return event.get("subject") == mv.ref


def _model(mv: Any, doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ref": mv.ref,
        "name": mv.name,
        "version": mv.version,
        "flavor": mv.flavor,
        "task": mv.task,
        "artifact_sha": mv.artifact_sha,
        "created_at": mv.created_at,
        "created_by": mv.created_by,
        "description": mv.description or None,
        "aliases": list(mv.aliases),
        "tags": dict(mv.tags),
        "inputs": [dict(c) for c in mv.input_schema],
        "classes": list(mv.output_schema.get("classes") or []),
        "positive_class": (doc.get("data") or {}).get("positive_class"),
        "registry_metrics": dict(mv.metrics),
    }


def _data(store: Any, mv: Any, doc: Mapping[str, Any]) -> dict[str, Any]:
    from keel import store as st
    from keel.data import get_dataset, load_profile

    root = st.lineage(store, "model", mv.ref)
    datasets: list[dict[str, Any]] = []
    seen: set[str] = set()
    for node in root.walk():
        if node.kind != "dataset" or node.id in seen:
            continue
        seen.add(node.id)
        entry: dict[str, Any] = {"sha": node.id, "role": node.role}
        try:
            ds = get_dataset(store, node.id)
        except KeelError:
            ds = None
        if ds is not None:
            entry.update(ref=ds.ref, rows=ds.n_rows, columns=ds.n_cols, created_at=ds.created_at)
            try:
                entry["profile"] = load_profile(store, ds)
                entry["profile_sha"] = ds.profile_sha
            except NotFound:
                entry["profile"] = None
        entry["sources"] = [
            {"sha": p.id, **st.describe(store, p)} for p in node.parents if p.kind == "source"
        ]
        datasets.append(entry)
    data = dict(doc.get("data") or {})
    sensitive = list((doc.get("settings") or {}).get("sensitive") or [])
    groups: dict[str, dict[str, int]] = {}
    for d in datasets:
        cols = ((d.get("profile") or {}).get("columns")) or {}
        for col in sensitive:
            top = (cols.get(col) or {}).get("top")
            if isinstance(top, Mapping) and col not in groups:
                groups[col] = {str(k): int(v) for k, v in top.items()}
    return {
        "datasets": datasets,
        "target": data.get("target"),
        "train_rows": data.get("train_rows"),
        "holdout_rows": data.get("holdout_rows"),
        "sensitive": sensitive,
        "sensitive_groups": groups,
    }


def _run(store: Any, run_id: str | None) -> dict[str, Any] | None:
    from keel.train import get_run

    if not run_id:
        return None
    try:
        return get_run(store, run_id)
    except NotFound:
        return None


def _parent_run(store: Any, ref: str) -> dict[str, Any] | None:
    from keel import registry

    try:
        return _run(store, registry.get_version(store, ref).run_id)
    except NotFound:
        return None


def mitigated_from(store: Any, ref: str) -> list[dict[str, Any]]:
    """The versions ``ref`` was mitigated from, nearest first, by the ``mitigated_from`` lineage
    edges: ``{"ref", "method"}`` each, ``method`` being the mitigation that made the child."""
    from keel import registry
    from keel import store as st

    chain: list[dict[str, Any]] = []
    seen, cur = {ref}, ref
    while True:
        parents = st.lineage(store, "model", cur, max_depth=1).parents
        up = next((p.id for p in parents if p.kind == "model" and p.role == "mitigated_from"), None)
        if up is None or up in seen:
            return chain
        try:
            method = registry.get_version(store, cur).tags.get("mitigation")
        except NotFound:
            method = None
        chain.append({"ref": up, "method": method})
        seen.add(up)
        cur = up


def _search(store: Any, run: dict[str, Any], chain: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The hyper-parameter search that chose the parameters: the run's own, else the nearest
    one up the mitigation lineage (``inherited_from`` names the version it made)."""
    search_id = (run.get("tags") or {}).get("search_run")
    source = None
    for link in chain if search_id is None else ():
        sid = ((_parent_run(store, link["ref"]) or {}).get("tags") or {}).get("search_run")
        if sid:
            search_id, source = sid, link["ref"]
            break
    parent = _run(store, search_id) if search_id else None
    if parent is None:
        return None
    p = parent.get("params") or {}
    history = parent.get("metric_history") or {}
    metric = next((k for k in history if k.startswith("val_")), None)
    values = [v for _, v in history.get(metric, [])] if metric else []
    return {
        "run_id": parent["id"],
        "n_trials": p.get("n_trials"),
        "executor": p.get("executor"),
        "metric": metric,
        "best": max(values) if values else None,
        "trials": values,
        "best_params": {k[5:]: v for k, v in p.items() if k.startswith("best.")},
        "sampler": "Optuna TPE",
        "seed": parent.get("seed"),
        "inherited_from": source,
    }


def _training(
    store: Any, run: dict[str, Any] | None, chain: list[dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    """The training facts of a version: its run's, and for a mitigated version (``chain``, see
    :func:`mitigated_from`) the facts its mitigation took over from the version it started from
    (model kind and parameters, split, seed, search), each named in ``inherited``."""
    if run is None:
        return None
    chain = chain or []
    params = dict(run.get("params") or {})
    seed = run.get("seed")
    inherited: dict[str, str] = {}
    base = chain[-1]["ref"] if chain else None
    if base is not None:
        base_run = _parent_run(store, base)
        seed = (base_run or {}).get("seed", params.get("seed"))
        for fact in ("seed", "model", "model_params", "split", "feature_spec"):
            inherited[fact] = base
    search = _search(store, run, chain)
    if search is not None and search["inherited_from"]:
        inherited["search"] = search["inherited_from"]
    return {
        "run_id": run["id"],
        "experiment": run.get("experiment"),
        "model": params.get("model"),
        "task": params.get("task"),
        "seed": seed,
        "split": params.get("split"),
        "test_size": params.get("test_size"),
        "n_train": params.get("n_train"),
        "n_test": params.get("n_test"),
        "feature_spec_sha": params.get("feature_spec_sha"),
        "model_params": {k[6:]: v for k, v in params.items() if k.startswith("model.")},
        "params": params,
        "metrics": dict(run.get("metrics") or {}),
        "wall_time_s": run.get("wall_time"),
        "git_commit": run.get("git_commit"),
        "created_by": run.get("created_by"),
        "env": run.get("env") or {},
        "search": search,
        "mitigated_from": chain,
        "mitigation_seed": params.get("mitigation.seed") if chain else None,
        "inherited": inherited,
    }


def _gates(store: Any, mv: Any, ev: Any) -> dict[str, Any]:
    from keel import registry
    from keel.audit.gates import Policy, evidence_values

    out: dict[str, Any] = {"rules": [], "gated_aliases": [], "checks": None, "error": None}
    try:
        policy = Policy.from_settings(getattr(store, "settings", None))
        out["rules"] = [str(r) for r in policy.rules]
        out["gated_aliases"] = list(policy.gated_aliases)
        if policy.rules:
            values = evidence_values(ev.doc)
            policy.check_paths(values)
            out["checks"] = [
                {
                    "rule": str(r),
                    "path": r.path,
                    "threshold": r.value,
                    "value": values[r.path],
                    "passed": _passes(values[r.path], r.op, r.value),
                }
                for r in policy.rules
            ]
    except InvalidInput as exc:
        out["error"] = str(exc)
    out["overrides"] = [
        {"at": e["at"], **e["payload"]} for e in store.events("gate_override") if _is(e, mv)
    ]
    out["alias_moves"] = [
        h
        for h in registry.alias_history(store, mv.name)
        if mv.version in (h.get("to_version"), h.get("from_version"))
    ]
    return out


def _passes(value: float, op: str, threshold: float) -> bool:
    import operator

    ops = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
    return bool(ops.get(op, operator.eq)(value, threshold))


def _lifecycle(store: Any, mv: Any) -> dict[str, Any]:
    from keel import registry
    from keel.audit._evidence import list_evidence

    versions = [
        {
            "version": v.version,
            "created_at": v.created_at,
            "created_by": v.created_by,
            "flavor": v.flavor,
            "run_id": v.run_id,
            "aliases": list(v.aliases),
            "description": v.description or None,
        }
        for v in registry.list_versions(store, mv.name)
    ]
    audits = [e for e in list_evidence(store, mv.name) if e["ref"] == mv.ref]
    return {"versions": versions, "audits": audits}
