"""The evidence of a model version as figures: plain data first (:func:`evidence_figures`, what
``/api/models/<name>/<version>/evidence`` answers), then inline SVG drawn on the server
(:func:`figure_html`) — bars, bars with intervals and the reliability curve by the model
card's own chart code (:mod:`keel.audit._card_svg`), curves over a budget (robustness by ε,
accuracy under noise) here. No script, no external file; every label is escaped, and each
mark carries a ``<title>`` with its exact figure.

A figure is ``{"id", "section", "title", "kind", ...}`` with ``kind`` one of
``interval_bars`` (``rows``: [name, value, low, high], ``lo``/``hi``: the axis, None for
the data's extent), ``bars`` (``rows``: [name, value], ``refs``: [name, value] reference
lines), ``reliability`` (``points``: the evidence's bins), ``lines`` (``series``: [{name,
points: [[x, y], ...]}], ``x_label``, ``y_label``) and ``numbers`` (``rows``: [name,
text]); ``note`` says where a figure's intervals come from when the evidence does not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from keel.audit.fairness import DISPARITIES as _DISPARITIES
from keel.ui._http import esc

__all__ = ["evidence_figures", "figure_html", "wilson"]

_LOSSY = ("loss", "brier", "error", "mse", "mae", "rmse")
#: Most rows one bar chart shows (the JSON has them all).
MAX_ROWS = 30


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _text(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def wilson(successes: Any, n: Any, z: float = 1.959964) -> tuple[float | None, float | None]:
    """The Wilson score interval (95% by default) of a proportion ``successes / n``."""
    if not (_num(successes) and _num(n)) or n <= 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _ci(entry: Any) -> tuple[Any, Any, Any]:
    if isinstance(entry, Mapping):
        return entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
    return entry, None, None


def _in01(*xs: Any) -> bool:
    vals = [x for x in xs if x is not None]
    return bool(vals) and all(_num(x) and 0 <= x <= 1 for x in vals)


class _Figures:
    def __init__(self) -> None:
        self.out: list[dict[str, Any]] = []

    def add(self, section: str, title: str, kind: str, **data: Any) -> None:
        rows = data.get("rows")
        if kind != "numbers" and rows is not None:
            rows = [r for r in rows if _num(r[1])]
            if not rows:
                return
            data["rows"] = rows
        if kind == "lines" and not any(s["points"] for s in data["series"]):
            return
        fig = {"id": f"fig-{len(self.out) + 1}", "section": section, "title": title}
        self.out.append({**fig, "kind": kind, **data})


def evidence_figures(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every figure the evidence document ``doc`` supports, section by section."""
    f = _Figures()
    for section, build in (
        ("performance", _performance),
        ("fairness", _fairness),
        ("explanations", _explanations),
        ("robustness", _robustness),
        ("privacy", _privacy),
        ("mitigation", _mitigation),
    ):
        part = doc.get(section)
        if isinstance(part, Mapping) and part:
            build(f, part)
    return f.out


def _performance(f: _Figures, perf: Mapping[str, Any]) -> None:
    names = [k for k, v in perf.items() if isinstance(v, Mapping) and "value" in v]
    bounded = [
        (k, *_ci(perf[k]))
        for k in names
        if not any(w in k for w in _LOSSY) and _in01(*_ci(perf[k]))
    ]
    others = [(k, *_ci(perf[k])) for k in names if k not in {b[0] for b in bounded}]
    boot = (perf.get("about") or {}).get("bootstrap") or {}
    note = (
        f"{_text((boot.get('confidence') or 0.95) * 100)}% percentile bootstrap intervals, "
        f"{_text(boot.get('n_boot'))} replicates, on {_text(perf.get('n'))} hold-out rows"
    )
    f.add("performance", "Hold-out metrics", "interval_bars", rows=bounded, lo=0, hi=1, note=note)
    f.add("performance", "Errors and losses", "interval_bars", rows=others, lo=None, hi=None)
    cal = perf.get("calibration")
    if isinstance(cal, Mapping):
        rel = [p for p in cal.get("reliability") or [] if isinstance(p, Mapping)]
        if rel:
            ece, lo, hi = _ci(cal.get("ece"))
            ece_text = _text(ece) + (f" [{_text(lo)}, {_text(hi)}]" if _num(lo) else "")
            f.add(
                "performance",
                "Calibration",
                "reliability",
                points=rel,
                note=f"expected calibration error {ece_text}; maximum {_text(cal.get('mce'))}; "
                f"Brier score {_text(cal.get('brier'))}; {_text(cal.get('n_bins'))} "
                f"{_text(cal.get('strategy'))} bins",
            )
    slices = perf.get("slices")
    if isinstance(slices, Mapping):
        metric = str(slices.get("metric") or "")
        worst = [w for w in slices.get("worst") or [] if isinstance(w, Mapping)][:MAX_ROWS]
        rows = [(f"{w.get('feature')} = {w.get('slice')}", w.get(metric)) for w in worst]
        overall = (slices.get("overall") or {}).get(metric)
        in01 = _in01(*[r[1] for r in rows], overall)
        f.add(
            "performance",
            f"Worst slices by {metric}",
            "bars",
            rows=rows,
            refs=[("overall", overall)] if _num(overall) else [],
            lo=0 if in01 else None,
            hi=1 if in01 else None,
            note=f"slices of at least {_text(slices.get('min_size'))} rows, worst first",
        )


def _fairness(f: _Figures, fair: Mapping[str, Any]) -> None:
    about = fair.get("about") or {}
    n_boot = (about.get("bootstrap") or {}).get("n_boot")
    for key, ev in fair.items():
        if key == "about" or not isinstance(ev, Mapping):
            continue
        rows = [(name, *_ci(ev.get(name))) for name in _DISPARITIES if name in ev]
        f.add(
            "fairness",
            f"Disparities by {key}",
            "interval_bars",
            rows=rows,
            lo=0,
            hi=1,
            note=f"95% bootstrap intervals, {_text(n_boot)} replicates",
            group=key,
        )
        groups = [g for g in ev.get("groups") or [] if isinstance(g, Mapping)][:MAX_ROWS]
        for title, rate, num, den in (
            ("Selection rate", "selection_rate", ("tp", "fp"), ("count",)),
            ("True positive rate", "tpr", ("tp",), ("tp", "fn")),
        ):
            rows = []
            for g in groups:
                k = sum(g.get(c) or 0 for c in num)
                n = sum(g.get(c) or 0 for c in den)
                lo, hi = wilson(k, n)
                rows.append((str(g.get("key")), g.get(rate), lo, hi))
            overall = (ev.get("overall") or {}).get(rate)
            f.add(
                "fairness",
                f"{title} by {key}",
                "interval_bars",
                rows=rows,
                lo=0,
                hi=1,
                note="Wilson 95% intervals from each group's counts"
                + (f"; overall {_text(overall)}" if _num(overall) else ""),
                group=key,
            )
        ff = ev.get("four_fifths_rule")
        if isinstance(ff, Mapping):
            failing = ", ".join(map(str, ff.get("failing_groups") or [])) or "none"
            f.add(
                "fairness",
                f"Four-fifths rule by {key}",
                "numbers",
                rows=[
                    ("verdict", "passes" if ff.get("passed") else "fails"),
                    ("reference group", _text(ff.get("reference_group"))),
                    ("threshold", _text(ff.get("threshold"))),
                    ("groups below", failing),
                ],
                group=key,
            )


def _importance(values: Any) -> list[tuple[str, Any]]:
    if not isinstance(values, Mapping):
        return []
    pairs = []
    for k, v in values.items():
        v = v.get("mean", v.get("value")) if isinstance(v, Mapping) else v
        if _num(v):
            pairs.append((str(k), v))
    return sorted(pairs, key=lambda kv: -abs(kv[1]))[:15]


def _explanations(f: _Figures, ex: Mapping[str, Any]) -> None:
    glob = ex.get("global") or {}
    shap = glob.get("mean_abs_shap")
    what = "mean |SHAP|" if shap else "mean |attribution|"
    top = _importance(shap or glob.get("mean_abs_attribution"))
    f.add(
        "explanations",
        f"Top features ({what})",
        "bars",
        rows=top,
        refs=[],
        lo=0,
        hi=None,
        note=f"{_text(ex.get('method'))} in {_text(ex.get('space'))} space, "
        f"class {_text(ex.get('class'))}",
    )
    perm = glob.get("permutation")
    if isinstance(perm, Mapping):
        f.add(
            "explanations",
            f"Permutation importance (drop in {_text(perm.get('scoring'))})",
            "bars",
            rows=_importance(perm.get("importances")),
            refs=[],
            lo=None,
            hi=None,
            note=f"{_text(perm.get('n_repeats'))} repeats on {_text(perm.get('n_rows'))} rows, "
            f"baseline {_text(perm.get('baseline'))}",
        )
    tops = glob.get("top_positions")
    if isinstance(tops, list) and tops:
        rows = [(str(r.get("position")), r.get("mean_abs")) for r in tops if isinstance(r, Mapping)]
        f.add("explanations", "Top input positions", "bars", rows=rows[:15], refs=[], lo=0, hi=None)
    comp = ex.get("completeness")
    if isinstance(comp, Mapping):  # Integrated Gradients (torch)
        f.add(
            "explanations",
            "Integrated Gradients completeness",
            "numbers",
            rows=[
                ("passed", _text(comp.get("passed"))),
                ("max relative gap", _text(comp.get("max_relative_gap"))),
                ("mean relative gap", _text(comp.get("mean_relative_gap"))),
                ("tolerance", _text(comp.get("tolerance"))),
                (
                    "rows within tolerance",
                    f"{_text(comp.get('rows_within_tolerance'))} of {_text(comp.get('rows'))}",
                ),
                ("baseline", _text(ex.get("baseline"))),
            ],
            note=_text(comp.get("definition")) if comp.get("definition") else None,
        )


def _robustness(f: _Figures, rob: Mapping[str, Any]) -> None:
    for name, att in rob.items():
        if not isinstance(att, Mapping) or name in ("about", "noise"):
            continue
        if att.get("supported") is False:
            f.add(
                "robustness",
                f"{name}: not run",
                "numbers",
                rows=[("why", _text(att.get("reason")))],
            )
            continue
        curve = [
            r
            for r in att.get("curve") or []
            if isinstance(r, Mapping) and _num(r.get("budget")) and _num(r.get("success_rate"))
        ]
        if curve:
            _budget_curve(f, name, att, curve)
        else:
            _eps_curve(f, name, att)
    _noise(f, rob.get("noise"))


def _budget_curve(
    f: _Figures, name: str, att: Mapping[str, Any], curve: list[Mapping[str, Any]]
) -> None:
    """An attack on valid rows (HopSkipJump, the counterfactual search): its ``curve`` of
    success rate by budget. The rows attacked were correctly classified, so accuracy under
    attack is one minus the success rate at each budget."""
    budget = att["eps"] if "eps" in att else att.get("max_features")
    f.add(
        "robustness",
        f"{name}: attack success by budget",
        "lines",
        series=[
            {
                "name": "attack success rate",
                "points": [[r["budget"], r["success_rate"]] for r in curve],
            }
        ],
        x_label=f"budget: {_text(att.get('budget_unit') or att.get('norm'))}",
        y_label="rate",
        note=f"{_text(att.get('n_rows'))} correctly classified hold-out rows; at the reported "
        f"budget {_text(budget)}: success {_text(att.get('success_rate'))}, accuracy under "
        f"attack {_text(att.get('accuracy_under_attack'))}",
        attack=name,
    )


def _eps_curve(f: _Figures, name: str, att: Mapping[str, Any]) -> None:
    """An attack reported by ε alone (FGSM and PGD on a network, older evidence): accuracy
    and success rate at each ε of ``by_eps``."""
    steps = [r for r in att.get("by_eps") or [] if isinstance(r, Mapping) and _num(r.get("eps"))]
    acc = (
        "accuracy_under_attack" if any("accuracy_under_attack" in r for r in steps) else "accuracy"
    )
    series = [
        {
            "name": "accuracy",
            "points": [[r["eps"], r.get(acc)] for r in steps if _num(r.get(acc))],
        },
        {
            "name": "attack success rate",
            "points": [
                [r["eps"], r.get("success_rate")] for r in steps if _num(r.get("success_rate"))
            ],
        },
    ]
    f.add(
        "robustness",
        f"{name}: accuracy and attack success by ε",
        "lines",
        series=series,
        x_label=f"ε ({_text(att.get('norm'))})",
        y_label="rate",
        note=f"{_text(att.get('n_rows'))} rows; at the reported ε = {_text(att.get('eps'))}: "
        f"accuracy {_text(att.get(acc))}, success {_text(att.get('success_rate'))}",
        attack=name,
    )


def _noise(f: _Figures, noise: Any) -> None:
    if not isinstance(noise, Mapping):
        return
    series = [
        {
            "name": "gaussian noise (scale)",
            "points": [
                [r.get("scale"), r.get("accuracy")]
                for r in noise.get("gaussian") or []
                if isinstance(r, Mapping) and _num(r.get("scale")) and _num(r.get("accuracy"))
            ],
        },
        {
            "name": "category flips (rate)",
            "points": [
                [r.get("rate"), r.get("accuracy")]
                for r in noise.get("category_flip") or []
                if isinstance(r, Mapping) and _num(r.get("rate")) and _num(r.get("accuracy"))
            ],
        },
    ]
    f.add(
        "robustness",
        "Accuracy under noise",
        "lines",
        series=series,
        x_label="noise level",
        y_label="accuracy",
        note=f"clean accuracy {_text(noise.get('clean_accuracy'))}; worst "
        f"{_text(noise.get('worst_accuracy'))} (drop {_text(noise.get('worst_drop'))})",
    )


def _privacy(f: _Figures, priv: Mapping[str, Any]) -> None:
    mia = priv.get("mia")
    if isinstance(mia, Mapping):
        rows = [
            (name, att.get("auc"))
            for name, att in mia.items()
            if isinstance(att, Mapping) and name != "about" and _num(att.get("auc"))
        ]
        f.add(
            "privacy",
            "Membership inference: attack AUC",
            "bars",
            rows=rows,
            refs=[("chance", 0.5)],
            lo=0,
            hi=1,
            note=f"worse of the attacks: AUC {_text(mia.get('auc'))}, advantage "
            f"{_text(mia.get('advantage'))}",
        )
    dp = priv.get("dp")
    if isinstance(dp, Mapping):
        rows = [("differentially private", _text(dp.get("differentially_private")))]
        for key, label in (
            ("epsilon", "ε spent"),
            ("target_epsilon", "target ε"),
            ("delta", "δ"),
            ("max_grad_norm", "max gradient norm"),
            ("mechanism", "mechanism"),
        ):
            if dp.get(key) is not None:
                rows.append((label, _text(dp.get(key))))
        f.add("privacy", "Differential privacy", "numbers", rows=rows)


def _mitigation(f: _Figures, mit: Mapping[str, Any]) -> None:
    rows = []
    for key in ("accuracy", "selection_rate"):
        ba = mit.get(key)
        if isinstance(ba, Mapping):
            rows.append((key, f"{_text(ba.get('before'))} → {_text(ba.get('after'))}"))
    for feature, ev in (mit.get("fairness") or {}).items():
        if not isinstance(ev, Mapping):
            continue
        for name in _DISPARITIES:
            ba = ev.get(name)
            if isinstance(ba, Mapping):
                rows.append(
                    (f"{feature}: {name}", f"{_text(ba.get('before'))} → {_text(ba.get('after'))}")
                )
    if rows:
        f.add(
            "mitigation",
            f"Mitigation of {_text(mit.get('parent'))}: before → after",
            "numbers",
            rows=rows,
        )


# -- drawing -------------------------------------------------------------------------------

_W, _H, _L, _R, _T, _B = 560, 260, 48, 16, 28, 40
_SERIES = ("#3a6ea5", "#b03a2e", "#2e7d32", "#8e44ad")


def _n(x: float) -> str:
    return f"{x:.1f}"


def lines(
    series: list[dict[str, Any]],
    label: str,
    x_label: str,
    y_label: str,
    lo: float = 0.0,
    hi: float = 1.0,
) -> str:
    """Curves of ``[x, y]`` points, one colour each, with a legend; y on ``[lo, hi]``."""
    pts = [p for s in series for p in s["points"]]
    if not pts:
        return ""
    xs = [p[0] for p in pts]
    x0v, x1v = min(xs), max(xs)
    if x1v <= x0v:
        x1v = x0v + 1.0
    lo = min([lo, *[p[1] for p in pts]])
    hi = max([hi, *[p[1] for p in pts]])

    def sx(v: float) -> float:
        return _L + (_W - _L - _R) * (v - x0v) / (x1v - x0v)

    def sy(v: float) -> float:
        return _H - _B - (_H - _B - _T) * (v - lo) / ((hi - lo) or 1.0)

    body = []
    for i in range(5):
        ty, tx = lo + (hi - lo) * i / 4, x0v + (x1v - x0v) * i / 4
        body.append(
            f'<line x1="{_L}" y1="{_n(sy(ty))}" x2="{_W - _R}" y2="{_n(sy(ty))}" '
            'stroke="#d9d9d9"/>'
            f'<text x="{_L - 4}" y="{_n(sy(ty) + 3)}" font-size="10" text-anchor="end">'
            f"{ty:.3g}</text>"
            f'<text x="{_n(sx(tx))}" y="{_H - _B + 14}" font-size="10" text-anchor="middle">'
            f"{tx:.3g}</text>"
        )
    body.append(
        f'<text x="{_n((_L + _W - _R) / 2)}" y="{_H - 8}" font-size="11" text-anchor="middle">'
        f"{esc(x_label)}</text>"
    )
    for j, s in enumerate(series):
        color = _SERIES[j % len(_SERIES)]
        ordered = sorted(s["points"])
        if not ordered:
            continue
        d = " ".join(
            f"{'M' if i == 0 else 'L'}{_n(sx(x))},{_n(sy(y))}" for i, (x, y) in enumerate(ordered)
        )
        body.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        for x, y in ordered:
            body.append(
                f'<circle cx="{_n(sx(x))}" cy="{_n(sy(y))}" r="3.5" fill="{color}" '
                f'data-x="{x!r}" data-value="{y!r}"><title>{esc(s["name"])} at '
                f"{esc(x_label)} {x:.4g}: {y:.4g}</title></circle>"
            )
        lx = _L + 8 + 190 * j
        body.append(
            f'<rect x="{lx}" y="8" width="12" height="4" fill="{color}"/>'
            f'<text x="{lx + 16}" y="14" font-size="11">{esc(s["name"][:30])}</text>'
        )
    return (
        f'<svg class="chart" role="img" aria-label="{esc(label)}" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}"><title>{esc(label)}</title>{"".join(body)}</svg>'
    )


def _svg(fig: Mapping[str, Any]) -> str:
    from keel.audit import _card_svg as card

    label = str(fig["title"])
    kind = fig["kind"]
    if kind == "interval_bars":
        return card.interval_bars(fig["rows"][:MAX_ROWS], label, fig.get("lo"), fig.get("hi"))
    if kind == "bars":
        return card.bars(
            fig["rows"][:MAX_ROWS],
            label,
            refs=fig.get("refs") or (),
            lo=fig.get("lo"),
            hi=fig.get("hi"),
        )
    if kind == "reliability":
        return card.reliability(fig["points"], label)
    if kind == "lines":
        return lines(fig["series"], label, fig.get("x_label", ""), fig.get("y_label", ""))
    return ""


def figure_html(fig: Mapping[str, Any]) -> str:
    """One figure as a ``<figure>``: its SVG (or, for ``numbers``, a list), a caption with its
    title and note, and the figures as a table a screen reader can read."""
    if fig["kind"] == "numbers":
        items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in fig["rows"])
        drawing = f'<dl class="numbers">{items}</dl>'
    else:
        drawing = _svg(fig)
    note = f'<span class="fig-note">{esc(fig["note"])}</span>' if fig.get("note") else ""
    return (
        f'<figure class="evidence-figure fig-{esc(fig["kind"])}" id="{esc(fig["id"])}" '
        f'data-section="{esc(fig["section"])}" data-testid="figure">'
        f'<figcaption><span class="fig-title">{esc(fig["title"])}</span>{note}</figcaption>'
        f"{drawing}</figure>"
    )
