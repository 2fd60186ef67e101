"""The compliance table of a model card: each point of the EU AI Act's Annex IV (technical
documentation, Regulation (EU) 2024/1689) and each relevant NIST AI RMF 1.0 MEASURE
subcategory, the card sections that evidence it, and whether that evidence is there.

Each item a point needs is found in one of three ways, and the row names where:

- a **record**: something the store holds for this version (its registry entry, its lineage,
  its run, its audit evidence, its rows in the prediction log, the monitoring passes and
  alert checks over its traffic, a file the project keeps);
- a **declaration**: the project's own statement of a fact only it can give (intended use,
  users, limitations, standards applied), quoted from ``keel.yaml``;
- a **plan**: the project's statement of what will be done in operation (the monitoring plan,
  the feedback channel, human oversight, where the declaration of conformity will be), quoted
  from ``keel.yaml``, with no record that it is done.

A point is ``present`` when every item it needs is a record or a declaration, ``partial``
when some item is missing or only planned, and ``missing`` when no item was found. A plan
alone never makes a point present: a monitoring plan counts once monitoring passes or alert
checks over the version's traffic show it carried out (:data:`CARRIED_OUT_BY`). Nothing is
filled in for a missing item: the row names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ANNEX_IV", "CARRIED_OUT_BY", "ITEMS", "NIST_MEASURE", "assess"]

Sections = Mapping[str, Any]
#: What a check returns: None (not found), or (how it was found, where): ``record``,
#: ``declared`` or ``plan``, and a short text naming the stored evidence or the statement.
Found = tuple[str, str] | None


def _get(s: Sections, *path: str) -> Any:
    cur: Any = s
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _ev(s: Sections) -> str:
    return f"evidence {_get(s, 'reproducibility', 'evidence_id')}"


def _metrics(s: Sections) -> list[Mapping[str, Any]]:
    perf = s.get("performance") or {}
    return [v for v in perf.values() if isinstance(v, Mapping) and "value" in v]


def _measured(doc: Any, skip: tuple[str, ...] = ("about", "settings", "libraries")) -> bool:
    """Whether a section holds at least one measured figure (a finite number outside its
    set-up): an attack marked unsupported, with only its reason, measured nothing."""
    if isinstance(doc, Mapping):
        if doc.get("supported") is False:
            return False
        return any(_measured(v, skip) for k, v in doc.items() if k not in skip)
    if isinstance(doc, list):
        return any(_measured(v, skip) for v in doc)
    return isinstance(doc, int | float) and not isinstance(doc, bool) and doc == doc


def _said(s: Sections, section: str, key: str, where: str, kind: str = "declared") -> Found:
    value = _get(s, section, key)
    if not value:
        return None
    return kind, f"keel.yaml {where}.{key}"


def _record(text: str | None) -> Found:
    return None if text is None else ("record", text)


def _lineage_data(s: Sections) -> Found:
    refs = [str(d.get("ref") or d["sha"][:12]) for d in _get(s, "data", "datasets") or []]
    return _record(f"lineage: dataset {', '.join(refs)} by content hash" if refs else None)


def _profiles(s: Sections) -> Found:
    refs = [
        str(d.get("ref") or d["sha"][:12])
        for d in _get(s, "data", "datasets") or []
        if d.get("profile")
    ]
    return _record(f"stored profile of {', '.join(refs)}" if refs else None)


def _seed(s: Sections) -> Found:
    t = s.get("training") or {}
    if t.get("seed") is None:
        return None
    via = (t.get("inherited") or {}).get("seed")
    return _record(
        f"run {str(t['run_id'])[:12]}: seed {t['seed']}"
        + (f" (inherited from {via})" if via else "")
    )


def _section(name: str, test: Callable[[Any], bool] = bool) -> Callable[[Sections], Found]:
    def check(s: Sections) -> Found:
        return _record(f"{_ev(s)}: {name} section" if test(s.get(name)) else None)

    return check


def _fairness(s: Sections) -> Found:
    fair = s.get("fairness") or {}
    keys = [k for k, v in fair.items() if k != "about" and isinstance(v, Mapping)]
    return _record(f"{_ev(s)}: fairness by {', '.join(keys)}" if keys else None)


def _energy(s: Sections) -> Found:
    metrics = _get(s, "training", "metrics") or {}
    hits = [k for k in metrics for w in ("energy", "co2", "emission") if w in k.lower()]
    return _record(f"run metrics {', '.join(hits)}" if hits else None)


def _monitoring_plan(s: Sections) -> Found:
    where = []
    if _get(s, "monitoring", "plan"):
        where.append("card.monitoring")
    if _get(s, "monitoring", "alert_rules"):
        where.append(f"monitor.alerts ({len(_get(s, 'monitoring', 'alert_rules'))} rules)")
    return ("plan", f"keel.yaml {' and '.join(where)}") if where else None


def _prediction_log(s: Sections) -> Found:
    log = _get(s, "monitoring", "prediction_log")
    if not log:
        return None
    return _record(
        f"prediction log: {log['rows']:,} rows answered by this version "
        f"in {log['segments']} segment(s)"
    )


def _passes(s: Sections) -> Found:
    passes = _get(s, "monitoring", "passes") or []
    ids = ", ".join(str(p["id"]) for p in passes[-5:])
    return _record(
        f"{len(passes)} monitoring pass(es) over its traffic (events {ids})" if passes else None
    )


def _alert_checks(s: Sections) -> Found:
    checks = _get(s, "monitoring", "alert_checks") or []
    fired = _get(s, "monitoring", "alerts") or []
    return _record(
        f"alert rules checked on {len(checks)} window(s) of its traffic, {len(fired)} fired"
        if checks
        else None
    )


def _deployed_performance(s: Sections) -> Found:
    done = _get(s, "monitoring", "deployed_performance") or []
    return _record(
        f"performance on delayed labels in {len(done)} monitoring pass(es)" if done else None
    )


def _declaration(s: Sections) -> Found:
    doc = _get(s, "conformity", "declaration_file")
    if doc:
        return _record(f"file {doc['path']} (sha256 {doc['sha256'][:12]}…)")
    return _said(s, "conformity", "declaration_of_conformity", "card", "plan")


def _gates(s: Sections) -> Found:
    checks = _get(s, "gates", "checks")
    if checks is None:
        return None
    recorded = [o for o in _get(s, "gates", "overrides") or []]
    return _record(
        f"{_ev(s)} checked against {len(checks)} rule(s); {len(recorded)} override(s) recorded"
    )


def _libraries(s: Sections) -> Found:
    if _get(s, "reproducibility", "libraries"):
        return _record(f"{_ev(s)}: library versions")
    if _get(s, "training", "env"):
        return _record(f"run {str(_get(s, 'training', 'run_id'))[:12]}: environment")
    return None


#: Each evidence item: its label and how to find, in the card's sections, what backs it.
ITEMS: dict[str, tuple[str, Callable[[Sections], Found]]] = {
    "intended_use": (
        "intended use",
        lambda s: _said(s, "intended_use", "intended_use", "card"),
    ),
    "users": ("users and affected persons", lambda s: _said(s, "intended_use", "users", "card")),
    "limitations": (
        "known limitations",
        lambda s: _said(s, "intended_use", "limitations", "card"),
    ),
    "human_oversight": (
        "human-oversight measures",
        lambda s: _said(s, "intended_use", "human_oversight", "card", "plan"),
    ),
    "model_identity": (
        "model name, version and artifact hash",
        lambda s: _record(
            f"registry: {_get(s, 'model', 'ref')}, artifact sha256 "
            f"{str(_get(s, 'model', 'artifact_sha'))[:12]}…"
            if _get(s, "model", "artifact_sha")
            else None
        ),
    ),
    "software_versions": ("software versions", _libraries),
    "input_spec": (
        "input data specification",
        lambda s: _record(
            f"registry: input schema of {len(_get(s, 'model', 'inputs'))} column(s)"
            if _get(s, "model", "inputs")
            else None
        ),
    ),
    "data_lineage": ("datasets by content hash", _lineage_data),
    "data_profile": ("dataset profiles", _profiles),
    "sensitive_features": (
        "declared sensitive features",
        lambda s: _record(
            f"{_ev(s)}: audited with sensitive {', '.join(_get(s, 'data', 'sensitive'))}"
            if _get(s, "data", "sensitive")
            else None
        ),
    ),
    "training_spec": (
        "training run (spec, parameters)",
        lambda s: _record(
            f"run {str(_get(s, 'training', 'run_id'))[:12]}" if s.get("training") else None
        ),
    ),
    "seed": ("training seed", _seed),
    "performance": (
        "hold-out performance",
        lambda s: _record(
            f"{_ev(s)}: {len(_metrics(s))} hold-out metrics" if _metrics(s) else None
        ),
    ),
    "intervals": (
        "confidence intervals",
        lambda s: _record(
            f"{_ev(s)}: bootstrap intervals"
            if any(m.get("ci_low") is not None for m in _metrics(s))
            else None
        ),
    ),
    "calibration": (
        "calibration",
        lambda s: _record(
            f"{_ev(s)}: calibration" if _get(s, "performance", "calibration") else None
        ),
    ),
    "slices": (
        "per-slice performance",
        lambda s: _record(
            f"{_ev(s)}: worst slices" if _get(s, "performance", "slices", "worst") else None
        ),
    ),
    "fairness": ("fairness evidence", _fairness),
    "explanations": ("explanations", _section("explanations")),
    "robustness": ("robustness evidence", _section("robustness", _measured)),
    "privacy": ("privacy evidence", _section("privacy", _measured)),
    "policy": (
        "gate policy (thresholds)",
        lambda s: ("declared", "keel.yaml audit.policy") if _get(s, "gates", "rules") else None,
    ),
    "gate_record": ("gate results and overrides", _gates),
    "versions": (
        "version and alias history",
        lambda s: _record(
            f"registry: {len(_get(s, 'lifecycle', 'versions'))} version(s) and alias moves"
            if _get(s, "lifecycle", "versions")
            else None
        ),
    ),
    "monitoring_plan": ("monitoring plan", _monitoring_plan),
    "prediction_log": ("predictions logged in deployment", _prediction_log),
    "monitoring_results": ("monitoring results from deployment", _passes),
    "alert_checks": ("alert rules checked on deployed traffic", _alert_checks),
    "deployed_performance": ("performance measured in deployment", _deployed_performance),
    "feedback": (
        "feedback and appeal channel",
        lambda s: _said(s, "monitoring", "feedback", "card", "plan"),
    ),
    "standards": ("standards applied", lambda s: _said(s, "conformity", "standards", "card")),
    "declaration_of_conformity": ("EU declaration of conformity", _declaration),
    "reproducibility": (
        "seeds, sample sizes and library versions of the audit",
        lambda s: _record(
            f"{_ev(s)}: audit settings" if _get(s, "reproducibility", "settings") else None
        ),
    ),
    "energy": ("energy or emissions measured", _energy),
}

#: Plans that records can show carried out: the plan counts as backed when any of these
#: records is there (a monitoring plan, by monitoring passes or alert checks over the
#: version's traffic). The other plans (feedback, human oversight) have no such record.
CARRIED_OUT_BY: dict[str, tuple[str, ...]] = {
    "monitoring_plan": ("monitoring_results", "alert_checks"),
}

Point = tuple[str, str, tuple[str, ...], tuple[str, ...]]

#: Annex IV of Regulation (EU) 2024/1689, points 1–9 in short form.
ANNEX_IV: tuple[Point, ...] = (
    (
        "1",
        "General description: intended purpose, provider, version, software versions, "
        "instructions for use",
        ("Model details", "Intended use and limits"),
        ("intended_use", "users", "model_identity", "software_versions"),
    ),
    (
        "2",
        "Elements and development process: methods, design choices, data and its provenance, "
        "validation and testing (accuracy, robustness, discriminatory impact)",
        ("Data", "Training", "Evaluation", "Fairness", "Robustness"),
        (
            "data_lineage",
            "data_profile",
            "training_spec",
            "seed",
            "performance",
            "fairness",
            "robustness",
        ),
    ),
    (
        "3",
        "Monitoring, functioning and control: capabilities and limitations, accuracy for "
        "groups of persons, foreseeable risks incl. discrimination, human oversight, input "
        "specifications",
        ("Intended use and limits", "Evaluation", "Fairness", "Model details"),
        ("limitations", "slices", "fairness", "human_oversight", "input_spec"),
    ),
    (
        "4",
        "Appropriateness of the performance metrics for the system",
        ("Evaluation", "Gates and overrides"),
        ("performance", "intervals", "calibration", "policy"),
    ),
    (
        "5",
        "Risk management system (Art. 9)",
        ("Gates and overrides", "Fairness", "Robustness", "Privacy"),
        ("policy", "gate_record", "fairness", "robustness", "privacy"),
    ),
    (
        "6",
        "Relevant changes made through the lifecycle",
        ("Lifecycle",),
        ("versions",),
    ),
    (
        "7",
        "Harmonised standards applied, or the other solutions adopted",
        ("Conformity",),
        ("standards",),
    ),
    (
        "8",
        "Copy of the EU declaration of conformity (Art. 47)",
        ("Conformity",),
        ("declaration_of_conformity",),
    ),
    (
        "9",
        "Post-market performance evaluation and monitoring plan (Art. 72)",
        ("Monitoring plan",),
        ("monitoring_plan", "prediction_log", "monitoring_results"),
    ),
)

#: NIST AI RMF 1.0 MEASURE subcategories that a model's evidence can speak to.
NIST_MEASURE: tuple[Point, ...] = (
    (
        "MEASURE 1.1",
        "Approaches and metrics for the most significant risks selected; risks not measured "
        "documented",
        ("Evaluation", "Fairness", "Gates and overrides", "Compliance"),
        ("performance", "sensitive_features", "policy"),
    ),
    (
        "MEASURE 2.1",
        "Test sets, metrics and details of the TEVV tools documented",
        ("Data", "Evaluation", "Reproducibility"),
        ("data_lineage", "performance", "reproducibility"),
    ),
    (
        "MEASURE 2.3",
        "Performance measured for conditions like the deployment setting",
        ("Evaluation",),
        ("performance", "intervals", "slices"),
    ),
    (
        "MEASURE 2.4",
        "Functionality and behaviour monitored in production",
        ("Monitoring plan",),
        ("monitoring_plan", "prediction_log", "monitoring_results"),
    ),
    (
        "MEASURE 2.5",
        "Shown valid and reliable; limits of generalisability documented",
        ("Evaluation", "Intended use and limits"),
        ("performance", "intervals", "calibration", "limitations"),
    ),
    (
        "MEASURE 2.6",
        "Safety risks evaluated; residual risk within tolerance; fails safely",
        ("Robustness", "Gates and overrides"),
        ("robustness", "policy"),
    ),
    (
        "MEASURE 2.7",
        "Security and resilience evaluated",
        ("Robustness",),
        ("robustness",),
    ),
    (
        "MEASURE 2.8",
        "Transparency and accountability risks examined",
        ("Data", "Training", "Gates and overrides", "Lifecycle"),
        ("data_lineage", "training_spec", "gate_record", "versions"),
    ),
    (
        "MEASURE 2.9",
        "Model explained and validated; output interpreted in context",
        ("Explanations",),
        ("explanations",),
    ),
    (
        "MEASURE 2.10",
        "Privacy risk examined",
        ("Privacy",),
        ("privacy",),
    ),
    (
        "MEASURE 2.11",
        "Fairness and bias evaluated",
        ("Fairness",),
        ("sensitive_features", "fairness"),
    ),
    (
        "MEASURE 2.12",
        "Environmental impact and sustainability assessed",
        ("Training",),
        ("energy",),
    ),
    (
        "MEASURE 2.13",
        "Effectiveness of the TEVV metrics and processes evaluated",
        ("Evaluation", "Reproducibility"),
        ("intervals", "reproducibility"),
    ),
    (
        "MEASURE 3.1",
        "Existing and emergent risks tracked over time in deployment",
        ("Monitoring plan",),
        ("monitoring_plan", "monitoring_results", "alert_checks"),
    ),
    (
        "MEASURE 3.3",
        "Feedback from end users and affected communities; appeal of outcomes",
        ("Monitoring plan",),
        ("feedback",),
    ),
    (
        "MEASURE 4.2",
        "Trustworthiness measured in deployment and validated as performing as intended",
        ("Monitoring plan",),
        ("deployed_performance",),
    ),
)


def assess(sections: Sections) -> dict[str, list[dict[str, Any]]]:
    """Each point of both frameworks with its card sections, its items found (``present``),
    found only as a plan (``stated_only``) and not found (``missing``), what backs each item
    found (``backed_by``), and its status (present, partial or missing)."""
    found = {key: check(sections) for key, (_, check) in ITEMS.items()}
    for key, records in CARRIED_OUT_BY.items():
        plan, done = found[key], [ITEMS[r][0] for r in records if found[r] is not None]
        if plan is not None and plan[0] == "plan" and done:
            found[key] = ("record", f"{plan[1]}, carried out: {', '.join(done)}")

    def rows(framework: str, points: tuple[Point, ...]) -> list[dict[str, Any]]:
        out = []
        for point, title, where, items in points:
            hits = {i: found[i] for i in items if found[i] is not None}
            planned = [ITEMS[i][0] for i, f in hits.items() if f is not None and f[0] == "plan"]
            lack = [ITEMS[i][0] for i in items if i not in hits]
            if not hits:
                status = "missing"
            elif lack or planned:
                status = "partial"
            else:
                status = "present"
            out.append(
                {
                    "framework": framework,
                    "point": point,
                    "title": title,
                    "sections": list(where),
                    "items": list(items),
                    "present": [ITEMS[i][0] for i, f in hits.items() if f and f[0] != "plan"],
                    "stated_only": planned,
                    "missing": lack,
                    "backed_by": [
                        {"item": ITEMS[i][0], "found": f[0], "where": f[1]}
                        for i, f in hits.items()
                        if f is not None
                    ],
                    "status": status,
                }
            )
        return out

    return {
        "annex_iv": rows("EU AI Act Annex IV", ANNEX_IV),
        "nist_measure": rows("NIST AI RMF", NIST_MEASURE),
    }
