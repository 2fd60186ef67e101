"""A model card's sections as a list of blocks — paragraphs, key/value lists, tables, charts,
"missing" notes — that the Markdown and HTML writers render alike (:mod:`._card_render`).

Every figure comes from the card's sections; a section without evidence becomes a
"missing" note that says so, never text written in its place."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from keel.audit.fairness import DISPARITIES as _DISPARITIES

__all__ = ["NOT_STATED", "EVIDENCE_BLOCKS", "generic", "num"]

NOT_STATED = "not stated"
Block = dict[str, Any]


def num(x: Any) -> str:
    """A figure as the card prints it: 3 decimals (4 significant digits when small)."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "—"
        if x != 0 and abs(x) < 0.01:
            return f"{x:.3g}"
        if abs(x) >= 1e5:
            return f"{x:,.0f}"
        return f"{x:.3f}"
    return str(x)


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "—"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ci(entry: Any) -> list[str]:
    if isinstance(entry, Mapping):
        return [num(entry.get("value")), num(entry.get("ci_low")), num(entry.get("ci_high"))]
    return [num(entry), "—", "—"]


def _p(text: str) -> Block:
    return {"kind": "p", "text": text}


def _kv(pairs: list[tuple[str, Any]]) -> Block:
    return {"kind": "kv", "rows": [(k, v if isinstance(v, str) else num(v)) for k, v in pairs]}


def _table(headers: list[str], rows: list[list[Any]], caption: str = "") -> Block:
    cells = [[c if isinstance(c, str) else num(c) for c in r] for r in rows]
    return {"kind": "table", "headers": headers, "rows": cells, "caption": caption}


def _missing(text: str) -> Block:
    return {"kind": "missing", "text": text}


def _stated(value: Any) -> Block:
    if value is None:
        return {"kind": "missing", "text": NOT_STATED}
    if isinstance(value, list):
        return {"kind": "list", "items": [str(v) for v in value]}
    if isinstance(value, Mapping):
        return {"kind": "kv", "rows": [(k, _flat_text(v)) for k, v in value.items()]}
    return _p(str(value))


def _flat_text(v: Any) -> str:
    if v is None:
        return NOT_STATED
    if isinstance(v, list):
        return "; ".join(map(str, v))
    if isinstance(v, Mapping):
        return "; ".join(f"{k}: {_flat_text(x)}" for k, x in v.items())
    return str(v)


def _short(sha: Any, n: int = 16) -> str:
    return f"{sha[:n]}…" if isinstance(sha, str) and len(sha) > n else str(sha or "—")


def _model(s: Mapping[str, Any]) -> list[Block]:
    m = s["model"]
    blocks = [
        _kv(
            [
                ("model", m["ref"]),
                ("kind", f"{m['flavor']} ({m['task']})"),
                ("artifact sha256", m["artifact_sha"]),
                ("registered", f"{_when(m['created_at'])} by {m['created_by']}"),
                ("aliases", ", ".join(m["aliases"]) or "none"),
                ("classes", ", ".join(map(str, m["classes"])) or "—"),
                ("positive class", str(m["positive_class"] or "—")),
                ("description", m["description"] or NOT_STATED),
            ]
        )
    ]
    if m["inputs"]:
        decides_by = [str(c.get("name")) for c in m["inputs"] if c.get("sensitive")]
        headers, rows = ["input", "type"], [[c.get("name"), c.get("type")] for c in m["inputs"]]
        if decides_by:
            headers.append("sensitive")
            for row, c in zip(rows, m["inputs"], strict=True):
                row.append("yes: decides by it" if c.get("sensitive") else "")
        blocks.append(_table(headers, rows, "input specification"))
        if decides_by:
            blocks.append(_sensitive_warning(decides_by))
    return blocks


def _sensitive_warning(columns: list[str]) -> Block:
    names = ", ".join(columns)
    return _p(
        f"Warning: this version reads the sensitive feature(s) {names} at decision time (per-group "
        "thresholds): every request must carry them. Deciding with a protected attribute may "
        "be unlawful in some jurisdictions (for example in credit, housing or employment); "
        "whether to deploy it is the user's decision, with legal advice."
    )


def _intended(s: Mapping[str, Any]) -> list[Block]:
    iu = s["intended_use"]
    out: list[Block] = [_p("As stated by the project in keel.yaml (card: section).")]
    for key, title in (
        ("intended_use", "Intended use"),
        ("users", "Users and affected persons"),
        ("limitations", "Limitations"),
        ("human_oversight", "Human oversight"),
    ):
        out += [{"kind": "h3", "text": title}, _stated(iu.get(key))]
    return out


def _data(s: Mapping[str, Any]) -> list[Block]:
    d = s["data"]
    out: list[Block] = [
        _kv(
            [
                ("target", str(d.get("target") or "—")),
                ("training rows", d.get("train_rows")),
                ("hold-out rows (evaluation)", d.get("holdout_rows")),
                ("sensitive features", ", ".join(d["sensitive"]) or "none declared"),
            ]
        )
    ]
    if not d["datasets"]:
        out.append(_missing("no dataset is linked to this version in the lineage"))
    rows = []
    for ds in d["datasets"]:
        src = "; ".join(
            f"{x.get('label')} (sha256 {_short(x.get('sha'), 12)})" for x in ds["sources"]
        )
        rows.append(
            [ds.get("ref", "—"), ds.get("role") or "—", ds["sha"], ds.get("rows"), src or "—"]
        )
    if rows:
        out.append(_table(["dataset", "role", "sha256", "rows", "source"], rows, "datasets"))
    for ds in d["datasets"]:
        cols = (ds.get("profile") or {}).get("columns") or {}
        if not cols:
            out.append(_missing(f"dataset {ds.get('ref', ds['sha'][:12])} has no profile"))
            continue
        prof = []
        for name, c in cols.items():
            if "mean" in c:
                summary = f"mean {num(c.get('mean'))}, sd {num(c.get('std'))}, "
                summary += f"range {num(c.get('min'))} to {num(c.get('max'))}"
            elif isinstance(c.get("top"), Mapping) and c["top"]:
                top = max(c["top"].items(), key=lambda kv: kv[1])
                summary = f"{c.get('distinct', len(c['top']))} values; most frequent {top[0]}"
            else:
                summary = "—"
            prof.append([name, c.get("type", "—"), c.get("count"), c.get("null_count"), summary])
        out.append(
            _table(
                ["column", "type", "rows", "missing", "summary"],
                prof,
                f"profile of {ds.get('ref', ds['sha'][:12])}",
            )
        )
    for col, groups in d["sensitive_groups"].items():
        total = sum(groups.values()) or 1
        out.append(
            _table(
                [col, "rows", "share"],
                [[g, n, n / total] for g, n in groups.items()],
                f"sensitive feature {col} in the data",
            )
        )
    return out


def _training(s: Mapping[str, Any]) -> list[Block]:
    t = s["training"]
    if t is None:
        return [_missing("no training run is linked to this version")]
    env = t.get("env") or {}
    inh = t.get("inherited") or {}

    def via(fact: str) -> str:
        return f" (inherited from {inh[fact]})" if inh.get(fact) else ""

    out: list[Block] = []
    chain = t.get("mitigated_from") or []
    if chain:
        steps = " ← ".join([s["model"]["ref"], *(c["ref"] for c in chain)])
        methods = ", ".join(f"{c['method'] or 'a mitigation'} of {c['ref']}" for c in chain)
        out.append(
            _p(
                f"This version was made by mitigation ({methods}); lineage {steps}. The model "
                f"kind, parameters, split, seed and search below are those of {chain[-1]['ref']}'s "
                "training, which the mitigation took over; the run is the mitigation's."
            )
        )
    pairs: list[tuple[str, Any]] = [
        ("run", t["run_id"]),
        ("experiment", str(t.get("experiment") or "—")),
        ("model kind", f"{t.get('model') or '—'}{via('model')}"),
        ("seed", f"{num(t.get('seed'))}{via('seed')}"),
    ]
    if t.get("mitigation_seed") is not None:
        pairs.append(("mitigation seed (row draws)", t["mitigation_seed"]))
    pairs += [
        (
            "split",
            f"{t.get('split') or '—'} (test size {num(t.get('test_size'))}){via('split')}",
        ),
        ("feature spec sha256", f"{t.get('feature_spec_sha') or '—'}{via('feature_spec')}"),
        ("wall time (s)", t.get("wall_time_s")),
        ("git commit", str(t.get("git_commit") or "—")),
        ("python / platform", f"{env.get('python', '—')} / {env.get('platform', '—')}"),
    ]
    out += [
        _kv(pairs),
        _table(
            ["parameter", "value"],
            [
                [k, v if isinstance(v, int | float) else _flat_text(v)]
                for k, v in sorted(t["model_params"].items())
            ],
            "model parameters" + via("model_params"),
        ),
    ]
    search = t.get("search")
    if search is None:
        where = "this version's lineage" if chain else "this version's run"
        out.append(_p(f"No hyper-parameter search in {where}: the parameters above were given."))
    else:
        out.append({"kind": "h3", "text": "Hyper-parameter search"})
        if search.get("inherited_from"):
            out.append(
                _p(
                    f"Inherited from {search['inherited_from']}: the parameters come from the "
                    f"search that made {search['inherited_from']}, which this version was "
                    "mitigated from."
                )
            )
        out.append(
            _kv(
                [
                    ("search run", search["run_id"]),
                    ("trials", search.get("n_trials")),
                    ("sampler / executor", f"{search['sampler']} / {search.get('executor')}"),
                    ("objective", str(search.get("metric") or "—")),
                    ("best objective", search.get("best")),
                    ("seed", search.get("seed")),
                ]
            )
        )
    return out


def _evaluation(s: Mapping[str, Any]) -> list[Block]:
    perf = s.get("performance")
    if not perf:
        return [_missing("the evidence has no performance section")]
    about = perf.get("about") or {}
    boot = about.get("bootstrap") or {}
    names = [k for k, v in perf.items() if isinstance(v, Mapping) and "value" in v]
    conf = boot.get("confidence", 0.95)
    out: list[Block] = [
        _p(
            f"Hold-out set of {num(perf.get('n'))} rows; {conf * 100:g}% percentile bootstrap "
            f"intervals from {num(boot.get('n_boot'))} replicates "
            f"({boot.get('scheme', 'bootstrap')}, seed {boot.get('seed')})."
        ),
        _table(
            ["metric", "value", "low", "high"],
            [[k, *_ci(perf[k])] for k in names],
            "hold-out metrics",
        ),
    ]
    bounded = [
        (k, perf[k]["value"], perf[k].get("ci_low"), perf[k].get("ci_high"))
        for k in names
        if not any(w in k for w in ("loss", "brier", "error", "mse", "mae"))
        and _in01(perf[k].get("value"), perf[k].get("ci_low"), perf[k].get("ci_high"))
    ]
    if bounded:
        out.append(
            {
                "kind": "chart",
                "chart": "interval_bars",
                "rows": bounded,
                "label": "hold-out metrics with 95% intervals",
            }
        )
    cal = perf.get("calibration")
    if cal:
        out.append({"kind": "h3", "text": "Calibration"})
        out.append(
            _kv(
                [
                    ("expected calibration error", " ".join(_ci_text(cal.get("ece")))),
                    ("maximum calibration error", cal.get("mce")),
                    ("Brier score", cal.get("brier")),
                    ("bins", f"{cal.get('n_bins')} ({cal.get('strategy')})"),
                ]
            )
        )
        rel = cal.get("reliability") or []
        out.append(
            {"kind": "chart", "chart": "reliability", "points": rel, "label": "reliability curve"}
        )
        out.append(
            _table(
                ["bin", "rows", "mean predicted", "observed rate"],
                [
                    [
                        f"{num(b.get('lower'))}–{num(b.get('upper'))}",
                        b.get("count"),
                        b.get("mean_predicted"),
                        b.get("fraction_positive"),
                    ]
                    for b in rel
                ],
                "reliability",
            )
        )
    slices = perf.get("slices") or {}
    worst = slices.get("worst") or []
    metric = slices.get("metric")
    if worst:
        out.append({"kind": "h3", "text": "Worst slices"})
        out.append(
            _table(
                ["feature", "slice", "rows", str(metric), "overall", "shortfall"],
                [
                    [
                        w.get("feature"),
                        w.get("slice"),
                        w.get("count"),
                        w.get(metric),
                        w.get("overall"),
                        w.get("shortfall"),
                    ]
                    for w in worst
                ],
                f"slices of at least {slices.get('min_size')} rows, ranked by {metric}",
            )
        )
    return out


def _ci_text(entry: Any) -> list[str]:
    v, lo, hi = _ci(entry)
    return [v] if lo == "—" else [v, f"[{lo}, {hi}]"]


def _in01(*xs: Any) -> bool:
    vals = [x for x in xs if x is not None]
    return bool(vals) and all(isinstance(x, int | float) and 0 <= x <= 1 for x in vals)


def _fairness(s: Mapping[str, Any]) -> list[Block]:
    fair = s.get("fairness")
    keys = [k for k, v in (fair or {}).items() if k != "about" and isinstance(v, Mapping)]
    if not keys:
        sens = s["data"]["sensitive"]
        why = "no sensitive features were declared" if not sens else "no fairness section"
        return [_missing(f"the evidence has no fairness evaluation ({why})")]
    about = fair.get("about") or {}  # type: ignore[union-attr]
    out: list[Block] = [
        _p(
            f"Positive outcome: {about.get('pos_label')}. Disparities between groups "
            f"({about.get('method', 'between groups')}, {about.get('agg', 'worst case')}) with "
            f"{num((about.get('bootstrap') or {}).get('n_boot'))}-replicate bootstrap intervals."
        )
    ]
    for key in keys:
        ev = fair[key]  # type: ignore[index]
        out.append({"kind": "h3", "text": f"By {key}"})
        out.append(
            _table(
                ["disparity", "value", "low", "high"],
                [[name, *_ci(ev.get(name))] for name in _DISPARITIES if name in ev],
                f"disparities by {key}",
            )
        )
        groups = ev.get("groups") or []
        out.append(
            _table(
                ["group", "rows", "selection rate", "TPR", "FPR", "FNR", "precision", "ROC AUC"],
                [
                    [
                        g.get("key"),
                        g.get("count"),
                        g.get("selection_rate"),
                        g.get("tpr"),
                        g.get("fpr"),
                        g.get("fnr"),
                        g.get("precision"),
                        g.get("roc_auc"),
                    ]
                    for g in groups
                ],
                f"groups of {key}",
            )
        )
        ff = ev.get("four_fifths_rule") or {}
        ref = ff.get("reference_group")
        ref_rate = next((g.get("selection_rate") for g in groups if g.get("key") == ref), None)
        refs = [("overall", (ev.get("overall") or {}).get("selection_rate"))]
        if isinstance(ref_rate, int | float) and isinstance(ff.get("threshold"), int | float):
            refs.append(("four-fifths of reference", ff["threshold"] * ref_rate))
        out.append(
            {
                "kind": "chart",
                "chart": "bars",
                "rows": [(str(g.get("key")), g.get("selection_rate")) for g in groups],
                "refs": [(n, v) for n, v in refs if v is not None],
                "label": f"selection rate by {key}",
            }
        )
        if ff:
            verdict = "passes" if ff.get("passed") else "fails"
            failing = ", ".join(map(str, ff.get("failing_groups") or [])) or "none"
            out.append(
                _p(
                    f"Four-fifths rule (threshold {num(ff.get('threshold'))}, reference group "
                    f"{ref}): {verdict}; groups below: {failing}."
                )
            )
    return out


def _explanations(s: Mapping[str, Any]) -> list[Block]:
    ex = s.get("explanations")
    if not ex:
        return [_missing("the evidence has no explanations section")]
    glob = ex.get("global") or {}
    out: list[Block] = [
        _kv(
            [
                ("method", str(ex.get("method", "—"))),
                ("output space", str(ex.get("space", "—"))),
                ("explained class", str(ex.get("class", "—"))),
                ("expected value", ex.get("expected_value")),
            ]
        )
    ]
    comp = ex.get("completeness")
    if isinstance(comp, Mapping):  # Integrated Gradients: sum of attributions = f(x) - f(b)
        out.append(
            _kv(
                [
                    ("completeness: max relative gap", comp.get("max_relative_gap")),
                    ("completeness: tolerance", comp.get("tolerance")),
                    (
                        "rows within tolerance",
                        f"{comp.get('rows_within_tolerance')} of {comp.get('rows')}",
                    ),
                    ("baseline", str(ex.get("baseline", "—"))),
                ]
            )
        )
    what = "mean |SHAP|" if glob.get("mean_abs_shap") else "mean |attribution|"
    shap = glob.get("mean_abs_shap") or glob.get("mean_abs_attribution")
    if isinstance(shap, Mapping) and shap:
        top = sorted(shap.items(), key=lambda kv: -(kv[1] or 0))
        out.append(
            {
                "kind": "chart",
                "chart": "bars",
                "rows": top[:12],
                "refs": [],
                "label": f"global importance ({what})",
            }
        )
        out.append(_table(["feature", what], [list(kv) for kv in top], what))
    tops = glob.get("top_positions")
    if isinstance(tops, list) and tops:
        rows = [[str(r.get("position")), r.get("mean_abs")] for r in tops]
        out.append(_table(["input position", "mean |attribution|"], rows, "top input positions"))
    perm = glob.get("permutation")
    if isinstance(perm, Mapping) and perm.get("importances"):
        imp = perm["importances"]
        rows = sorted(([k, *_pair(v)] for k, v in imp.items()), key=lambda r: -(r[1] or 0))
        out.append(
            _table(
                ["feature", "drop in " + str(perm.get("scoring")), "sd"],
                rows,
                f"permutation importance ({perm.get('n_repeats')} repeats, "
                f"baseline {num(perm.get('baseline'))})",
            )
        )
    sur = ex.get("surrogate")
    if isinstance(sur, Mapping):
        fid = sur.get("fidelity") or {}
        out.append({"kind": "h3", "text": "Global surrogate tree"})
        out.append(
            _kv(
                [
                    ("depth / leaves", f"{sur.get('depth')} / {sur.get('n_leaves')}"),
                    ("fidelity on hold-out", fid.get("holdout")),
                    ("fidelity on training rows", fid.get("train")),
                ]
            )
        )
        if sur.get("rules"):
            out.append({"kind": "pre", "text": str(sur["rules"])})
    if ex.get("pdp"):
        out.append(
            _p(f"Partial dependence computed for {len(ex['pdp'])} features (in the evidence).")
        )
    return out


def _pair(v: Any) -> list[Any]:
    if isinstance(v, Mapping):
        return [v.get("mean", v.get("value")), v.get("std")]
    return [v, None]


def generic(name: str, doc: Any) -> list[Block]:
    """A section whose shape the card does not know in detail (robustness, privacy,
    mitigation): every figure with its path, intervals where given, and tables of records."""
    if not doc:
        return [_missing(f"the evidence has no {name} section")]
    figures: list[list[Any]] = []
    changes: list[list[Any]] = []
    tables: list[Block] = []
    texts: list[tuple[str, Any]] = []

    def walk(x: Any, path: str) -> None:
        if isinstance(x, Mapping) and {"before", "after"} <= set(x):
            changes.append([path, x.get("before"), x.get("after"), x.get("change")])
        elif isinstance(x, Mapping):
            if "value" in x and not isinstance(x["value"], Mapping | list):
                figures.append([path, *_ci(x)])
                rest = {k: v for k, v in x.items() if k not in ("value", "ci_low", "ci_high")}
                for k, v in rest.items():
                    if isinstance(v, Mapping | list):
                        walk(v, f"{path}.{k}")
                return
            for k, v in x.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(x, list):
            if x and all(isinstance(r, Mapping) for r in x):
                heads = _axis_first(list(dict.fromkeys(k for r in x for k in r)), x)[:8]
                rows = [[_cell(r.get(h)) for h in heads] for r in x[:50]]
                tables.append(_table(heads, rows, path))
            elif x and all(isinstance(r, int | float | str) for r in x):
                texts.append((path, ", ".join(num(v) for v in x[:20])))
        elif isinstance(x, int | float) and not isinstance(x, bool):
            figures.append([path, num(x), "—", "—"])
        elif x is not None:
            texts.append((path, num(x)))

    walk(doc, "")
    texts.sort(key=lambda t: t[0].startswith("about."))  # what was found first, setup last
    figures.sort(key=lambda f: f[0].startswith("about."))
    out: list[Block] = []
    if texts:
        out.append(_kv(texts[:40]))
    if figures:
        out.append(_table(["figure", "value", "low", "high"], figures[:120], f"{name} figures"))
    if changes:
        out.append(_table(["figure", "before", "after", "change"], changes[:120], "before/after"))
    return out + tables


def _axis_first(heads: list[str], records: list[Any]) -> list[str]:
    """The columns with the first strictly increasing numeric one (a budget, a noise scale,
    an ε: what the other columns were measured at) moved to the front."""
    for h in heads:
        col = [r.get(h) for r in records]
        if len(col) > 1 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in col
        ):
            if all(a < b for a, b in zip(col, col[1:], strict=False)):
                return [h] + [k for k in heads if k != h]
    return heads


def _cell(v: Any) -> Any:
    if isinstance(v, Mapping):
        return _ci(v)[0] if "value" in v else _flat_text(v)
    if isinstance(v, list):
        return _flat_text(v)
    return v


#: The card's sections drawn from the version, its lineage and its evidence, in order.
EVIDENCE_BLOCKS = (
    ("model", "Model details", _model),
    ("intended_use", "Intended use and limits", _intended),
    ("data", "Data", _data),
    ("training", "Training", _training),
    ("evaluation", "Evaluation", _evaluation),
    ("fairness", "Fairness", _fairness),
    ("explanations", "Explanations", _explanations),
    ("robustness", "Robustness", lambda s: _figures("robustness", s)),
    ("privacy", "Privacy", lambda s: _figures("privacy", s)),
    ("mitigation", "Mitigation", lambda s: _figures("mitigation", s)),
)


def _figures(name: str, s: Mapping[str, Any]) -> list[Block]:
    """The section ``name`` with its pictures (:mod:`._card_figures`, which builds on this
    module's blocks, hence the late import)."""
    from keel.audit import _card_figures

    make = getattr(_card_figures, f"{name}_blocks")
    blocks: list[Block] = make(s)
    return blocks
