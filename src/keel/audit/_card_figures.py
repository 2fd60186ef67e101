"""The pictures of a model card's robustness, privacy and mitigation sections, as blocks
(``{"kind": "figure", "chart", ..., "caption"}``) the HTML writer draws as inline SVG with
their caption; each caption says what is plotted and from which stored evidence.

A picture is made exactly when its evidence is there, and from nothing else:

- **robustness**: attack success rate against attack budget, per attack, from
  ``robustness.<attack>.curve`` (``[{"budget", "success_rate"}]``) or, for an attack
  without one, its per-budget figures ``robustness.<attack>.by_eps``; attacks whose budgets
  are in the same norm share a picture;
- **privacy**: the membership-inference advantage of each attack (``privacy.mia``); and for
  a differentially private version, hold-out accuracy and membership-inference advantage
  against ε over the versions of the same name, model kind and datasets whose evidence
  records an ε (each point from that version's own evidence);
- **mitigation**: accuracy against disparity for every mitigation of one base version (the
  before/after table stored with each mitigated version), the base model marked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from keel.audit._card_blocks import Block, _missing, _p, generic, num

__all__ = [
    "CONSTRAINT_DISPARITY",
    "mitigation_blocks",
    "privacy_blocks",
    "robustness_blocks",
]

#: The disparity a mitigation constraint narrows (the x axis of its trade-off picture).
CONSTRAINT_DISPARITY = {
    "demographic_parity": "demographic_parity_difference",
    "equalized_odds": "equalized_odds_difference",
    "equal_opportunity": "equal_opportunity_difference",
}


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _ev(s: Mapping[str, Any]) -> str:
    return f"evidence {s['reproducibility']['evidence_id']}"


def _figure(chart: str, caption: str, **data: Any) -> Block:
    return {"kind": "figure", "chart": chart, "caption": caption, **data}


def _curve(records: Any, x: str, y: str) -> list[dict[str, Any]]:
    if not isinstance(records, list):
        return []
    return [
        {"x": float(r[x]), "y": float(r[y]), "tip": f"{x} {num(r[x])}: {y} {num(r[y])}"}
        for r in records
        if isinstance(r, Mapping) and _finite(r.get(x)) and _finite(r.get(y))
    ]


# ------------------------------------------------------------------------------ robustness


def robustness_figures(s: Mapping[str, Any]) -> list[Block]:
    """Attack success rate against budget, one picture per budget norm."""
    rob = s.get("robustness")
    if not isinstance(rob, Mapping):
        return []
    by_norm: dict[str, list[dict[str, Any]]] = {}
    sources: dict[str, list[str]] = {}
    rows: dict[str, set[Any]] = {}
    units: dict[str, str] = {}
    for attack, rep in rob.items():
        if not isinstance(rep, Mapping) or rep.get("supported") is False:
            continue
        pts, key = _curve(rep.get("curve"), "budget", "success_rate"), "curve"
        if not pts:
            pts, key = _curve(rep.get("by_eps"), "eps", "success_rate"), "by_eps"
        if not pts:
            continue
        norm = str(rep.get("norm") or "budget")
        by_norm.setdefault(norm, []).append({"name": str(attack), "points": pts, "line": True})
        sources.setdefault(norm, []).append(f"robustness.{attack}.{key}")
        rows.setdefault(norm, set()).add(rep.get("n_rows"))
        if isinstance(rep.get("budget_unit"), str) and rep["budget_unit"]:
            units.setdefault(norm, rep["budget_unit"])
    out = []
    for norm, series in by_norm.items():
        n = ", ".join(str(r) for r in sorted(rows[norm], key=str) if r is not None) or "the"
        unit = units.get(norm) or (f"{norm.upper()} distance" if norm in ("l2", "linf") else norm)
        out.append(
            _figure(
                "xy",
                f"Attack success rate against attack budget ({unit}): the "
                f"share of {n} correctly classified hold-out rows whose predicted class the "
                f"attack changed within each budget. From {_ev(s)}: "
                f"{', '.join(sources[norm])}.",
                series=series,
                label=f"attack success rate against budget ({norm})",
                x_label=f"attack budget ε ({unit})",
                y_label="attack success rate",
            )
        )
    return out


def robustness_blocks(s: Mapping[str, Any]) -> list[Block]:
    return robustness_figures(s) + generic("robustness", s.get("robustness"))


# ------------------------------------------------------------------------------ privacy


_MIA = (("threshold", "loss-threshold attack"), ("art_black_box", "ART black-box attack"))


def privacy_figures(s: Mapping[str, Any]) -> list[Block]:
    """Membership-inference advantage per attack; accuracy and advantage against ε."""
    priv = s.get("privacy")
    if not isinstance(priv, Mapping):
        return []
    out: list[Block] = []
    mia = priv["mia"] if isinstance(priv.get("mia"), Mapping) else {}
    rows = [
        (label, mia[key]["advantage"])
        for key, label in _MIA
        if isinstance(mia.get(key), Mapping) and _finite(mia[key].get("advantage"))
    ]
    if rows:
        about = mia.get("about") or {}
        out.append(
            _figure(
                "bars",
                "Membership-inference advantage of each attack (the largest true-positive "
                "rate minus false-positive rate over thresholds at telling training rows from "
                f"hold-out rows; 0: no leak, 1: every row told apart), on "
                f"{num(about.get('n_members'))} members and {num(about.get('n_non_members'))} "
                f"non-members. From {_ev(s)}: privacy.mia.threshold.advantage and "
                "privacy.mia.art_black_box.advantage.",
                rows=rows,
                label="membership-inference advantage by attack",
                lo=0.0,
                hi=1.0,
            )
        )
    versions = (s.get("related") or {}).get("dp_versions") or []
    if len(versions) >= 2:
        me = s["model"]["ref"]

        def points(key: str) -> list[dict[str, Any]]:
            return [
                {
                    "x": v["epsilon"],
                    "y": v[key],
                    "tip": f"{v['ref']} (evidence {v['evidence_id']}): ε {num(v['epsilon'])}, "
                    f"{key.replace('_', ' ')} {num(v[key])}"
                    + (
                        f" [{num(v['ci_low'])}, {num(v['ci_high'])}]"
                        if key == "accuracy" and _finite(v.get("ci_low"))
                        else ""
                    ),
                    **({"mark": "this version"} if v["ref"] == me else {}),
                }
                for v in versions
                if _finite(v.get(key))
            ]

        listed = "; ".join(
            f"{v['ref']} ε {num(v['epsilon'])} (evidence {v['evidence_id']})" for v in versions
        )
        out.append(
            _figure(
                "xy",
                "Hold-out accuracy and membership-inference advantage against the privacy "
                f"budget ε of the {len(versions)} differentially private versions of "
                f"{s['model']['name']} of the same model kind, trained from the same datasets, "
                "whose latest evidence records ε; each point comes from that version's own "
                "evidence (performance.accuracy, privacy.mia.advantage, privacy.dp.epsilon), "
                "this version drawn as a square. The versions may differ in more than ε (seed, "
                f"parameters): see each one's card. Versions: {listed}.",
                series=[
                    {"name": "hold-out accuracy", "points": points("accuracy"), "line": True},
                    {
                        "name": "membership-inference advantage",
                        "points": points("mia_advantage"),
                        "line": True,
                    },
                ],
                label="accuracy and membership-inference advantage against ε",
                x_label="privacy budget ε (log scale)",
                y_label="accuracy / advantage",
                x_log=True,
            )
        )
    return out


def privacy_blocks(s: Mapping[str, Any]) -> list[Block]:
    return privacy_figures(s) + generic("privacy", s.get("privacy"))


# ------------------------------------------------------------------------------ mitigation


def mitigation_figures(s: Mapping[str, Any]) -> list[Block]:
    """Accuracy against the targeted disparity for each mitigation of one base version."""
    fam = (s.get("related") or {}).get("mitigations")
    if not fam or not fam.get("members"):
        return []
    members = fam["members"]
    me, base = s["model"]["ref"], fam["base"]
    first = members[0]["table"]
    disparities = list(
        dict.fromkeys(
            CONSTRAINT_DISPARITY.get(str(m.get("constraint")), "demographic_parity_difference")
            for m in members
        )
    )
    keys = [
        k for k in first.get("fairness") or {} if all(k in m["table"]["fairness"] for m in members)
    ]
    out: list[Block] = []
    for key in keys:
        for dname in disparities:
            before = first["fairness"][key].get(dname) or {}
            acc0 = (first.get("accuracy") or {}).get("before")
            series = [
                {
                    "name": f"{base} (base, before mitigation)",
                    "points": [
                        {
                            "x": before.get("before"),
                            "y": acc0,
                            "mark": "base",
                            "tip": f"{base}: {dname} {num(before.get('before'))}, "
                            f"accuracy {num(acc0)}",
                        }
                    ],
                }
            ]
            for m in members:
                d = m["table"]["fairness"][key].get(dname) or {}
                acc = (m["table"].get("accuracy") or {}).get("after")
                mark = {"mark": "this version"} if m["ref"] == me else {}
                series.append(
                    {
                        "name": f"{m['ref']}: {m['method']} ({m.get('constraint') or '—'})"
                        + (" — this version" if mark else ""),
                        "points": [
                            {
                                "x": d.get("after"),
                                "y": acc,
                                "tip": f"{m['ref']} {m['method']}: {dname} "
                                f"{num(d.get('after'))}, accuracy {num(acc)}",
                                **mark,
                            }
                        ],
                    }
                )
            out.append(
                _figure(
                    "xy",
                    f"Fairness–accuracy trade-off of each mitigation of {base}: "
                    f"{dname.replace('_', ' ')} by {key} (x; lower is fairer) against accuracy "
                    f"(y) on the {num(first.get('rows'))} hold-out rows of {base}. The base "
                    "model (square) is the tables' 'before'; each mitigation is its table's "
                    "'after'. From the before/after table stored with each mitigated version "
                    f"(its run's mitigation.json; the mitigation section of its evidence): "
                    f"{', '.join(m['ref'] for m in members)}.",
                    series=series,
                    label=f"accuracy against {dname} by {key}",
                    x_label=f"{dname.replace('_', ' ')} by {key}",
                    y_label="accuracy",
                    y_range=None,
                )
            )
    return out


def mitigation_blocks(s: Mapping[str, Any]) -> list[Block]:
    figures = mitigation_figures(s)
    doc = s.get("mitigation")
    if not doc and figures:
        return [
            _missing("this version was made by no mitigation"),
            _p(f"Mitigations made from {s['model']['ref']}, on its hold-out rows:"),
            *figures,
        ]
    return figures + generic("mitigation", doc)
