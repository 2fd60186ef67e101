"""The compliance table of a model card: each point of the EU AI Act's Annex IV (technical
documentation, Regulation (EU) 2024/1689) and each relevant NIST AI RMF 1.0 MEASURE
subcategory, the card sections that evidence it, and whether that evidence is there.

A point is ``present`` when every item it needs was found, ``partial`` when some were, and
``missing`` when none were. Nothing is filled in for a missing item: the row names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ANNEX_IV", "ITEMS", "NIST_MEASURE", "assess"]

Sections = Mapping[str, Any]


def _get(s: Sections, *path: str) -> Any:
    cur: Any = s
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _metrics(s: Sections) -> list[Mapping[str, Any]]:
    perf = s.get("performance") or {}
    return [v for v in perf.values() if isinstance(v, Mapping) and "value" in v]


def _fairness(s: Sections) -> bool:
    fair = s.get("fairness") or {}
    return any(k != "about" and isinstance(v, Mapping) for k, v in fair.items())


def _energy(s: Sections) -> bool:
    metrics = _get(s, "training", "metrics") or {}
    return any(w in k.lower() for k in metrics for w in ("energy", "co2", "emission"))


#: Each evidence item: its label and how to tell from the card's sections that it is there.
ITEMS: dict[str, tuple[str, Callable[[Sections], bool]]] = {
    "intended_use": ("intended use", lambda s: bool(_get(s, "intended_use", "intended_use"))),
    "users": ("users and affected persons", lambda s: bool(_get(s, "intended_use", "users"))),
    "limitations": ("known limitations", lambda s: bool(_get(s, "intended_use", "limitations"))),
    "human_oversight": (
        "human-oversight measures",
        lambda s: bool(_get(s, "intended_use", "human_oversight")),
    ),
    "model_identity": ("model name, version and artifact hash", lambda s: bool(s.get("model"))),
    "software_versions": (
        "software versions",
        lambda s: bool(_get(s, "reproducibility", "libraries") or _get(s, "training", "env")),
    ),
    "input_spec": ("input data specification", lambda s: bool(_get(s, "model", "inputs"))),
    "data_lineage": (
        "datasets by content hash",
        lambda s: any(d.get("sha") for d in _get(s, "data", "datasets") or []),
    ),
    "data_profile": (
        "dataset profiles",
        lambda s: any(d.get("profile") for d in _get(s, "data", "datasets") or []),
    ),
    "sensitive_features": (
        "declared sensitive features",
        lambda s: bool(_get(s, "data", "sensitive")),
    ),
    "training_spec": ("training run (spec, parameters)", lambda s: bool(s.get("training"))),
    "seed": ("training seed", lambda s: _get(s, "training", "seed") is not None),
    "performance": ("hold-out performance", lambda s: bool(_metrics(s))),
    "intervals": (
        "confidence intervals",
        lambda s: any(m.get("ci_low") is not None for m in _metrics(s)),
    ),
    "calibration": ("calibration", lambda s: bool(_get(s, "performance", "calibration"))),
    "slices": (
        "per-slice performance",
        lambda s: bool(_get(s, "performance", "slices", "worst")),
    ),
    "fairness": ("fairness evidence", _fairness),
    "explanations": ("explanations", lambda s: bool(s.get("explanations"))),
    "robustness": ("robustness evidence", lambda s: bool(s.get("robustness"))),
    "privacy": ("privacy evidence", lambda s: bool(s.get("privacy"))),
    "policy": ("gate policy (thresholds)", lambda s: bool(_get(s, "gates", "rules"))),
    "gate_record": (
        "gate results and overrides",
        lambda s: _get(s, "gates", "checks") is not None,
    ),
    "versions": ("version and alias history", lambda s: bool(_get(s, "lifecycle", "versions"))),
    "monitoring_plan": ("monitoring plan", lambda s: bool(_get(s, "monitoring", "plan"))),
    "monitoring_results": (
        "monitoring results from deployment",
        lambda s: bool(_get(s, "monitoring", "results")),
    ),
    "feedback": ("feedback and appeal channel", lambda s: bool(_get(s, "monitoring", "feedback"))),
    "standards": ("standards applied", lambda s: bool(_get(s, "conformity", "standards"))),
    "declaration_of_conformity": (
        "EU declaration of conformity",
        lambda s: bool(_get(s, "conformity", "declaration_of_conformity")),
    ),
    "reproducibility": (
        "seeds, sample sizes and library versions of the audit",
        lambda s: bool(_get(s, "reproducibility", "settings")),
    ),
    "energy": ("energy or emissions measured", _energy),
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
        ("monitoring_plan",),
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
        ("monitoring_plan", "monitoring_results"),
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
        ("monitoring_plan", "monitoring_results"),
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
        ("monitoring_results",),
    ),
)


def assess(sections: Sections) -> dict[str, list[dict[str, Any]]]:
    """Each point of both frameworks with its card sections, its items found and missing,
    and its status (present, partial or missing)."""
    found = {key: bool(check(sections)) for key, (_, check) in ITEMS.items()}

    def rows(framework: str, points: tuple[Point, ...]) -> list[dict[str, Any]]:
        out = []
        for point, title, where, items in points:
            have = [ITEMS[i][0] for i in items if found[i]]
            lack = [ITEMS[i][0] for i in items if not found[i]]
            status = "present" if not lack else ("missing" if not have else "partial")
            out.append(
                {
                    "framework": framework,
                    "point": point,
                    "title": title,
                    "sections": list(where),
                    "items": list(items),
                    "present": have,
                    "missing": lack,
                    "status": status,
                }
            )
        return out

    return {
        "annex_iv": rows("EU AI Act Annex IV", ANNEX_IV),
        "nist_measure": rows("NIST AI RMF", NIST_MEASURE),
    }
