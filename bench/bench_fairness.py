"""Per-group fairness metrics on 1M predictions: keel's vectorized group metrics against
fairlearn's ``MetricFrame``, in one process.

Data: ROWS synthetic, seeded, Adult-shaped predictions: ``sex`` and ``race`` as string
columns with the UCI Adult train split's proportions (Male 67%, Female 33%; White 85.4%,
Black 9.6%, Asian-Pac-Islander 3.2%, Amer-Indian-Eskimo 1.0%, Other 0.8%), a label whose
base rate depends on sex (31% / 11%, as in Adult) and a noisy classifier's 0/1 prediction.

What is timed, each "run" being both sensitive features, one after the other:

* ``fairlearn MetricFrame``: ``MetricFrame(metrics={accuracy_score, selection_rate,
  false_positive_rate, false_negative_rate}, y_true, y_pred, sensitive_features=col)`` for
  ``col`` = sex, then race. MetricFrame takes tens of seconds per run, so it is timed
  FAIRLEARN_REPEATS times (default 1) after a small warm-up call on 1,000 rows.
* ``keel group_metrics``: ``keel.audit._groups.group_metrics(y_true, y_pred, col)`` for the
  same two columns, from the same raw arrays and string columns (label checks, group
  encoding, one bincount, every rate: count, selection rate, accuracy, TPR, FPR, FNR,
  precision), KEEL_REPEATS times (default 7) after a warm-up; the median is reported.

Not in the ratio, for information (medians of KEEL_REPEATS): keel on groups encoded once
(the monitoring path: ``metrics_from_codes`` per window), keel's sex x race intersection
with ROC AUC from scores, and the whole ``fairness_report`` (sex, race, sex+race, every
disparity with a 1,000-replicate bootstrap).

Before timing, the four metrics from both tools are checked equal to 1e-9 for every group.

    .venv/bin/python bench/bench_fairness.py       # writes bench/results/fairness.json
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

import numpy as np
from _common import machine, median, table, write_results

PACKAGES = ("keel", "fairlearn", "numpy", "pandas", "scikit-learn")
TOLERANCE = 1e-9
GOAL_SPEEDUP = 100.0  # issue 5: keel's group metrics at least 100x MetricFrame
SEX = (["Male", "Female"], [0.6692, 0.3308])
RACE = (
    ["White", "Black", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other"],
    [0.8543, 0.0959, 0.0319, 0.0096, 0.0083],
)
METRICS = ("accuracy", "selection_rate", "fpr", "fnr")


def make_data(rows: int, seed: int) -> dict[str, Any]:
    import pandas as pd

    rng = np.random.default_rng(seed)
    sex = rng.choice(SEX[0], rows, p=SEX[1])
    race = rng.choice(RACE[0], rows, p=np.array(RACE[1]) / sum(RACE[1]))
    base = np.where(sex == "Male", 0.31, 0.11)
    y_true = (rng.random(rows) < base).astype(np.int64)
    score = np.clip(0.25 + 0.45 * y_true + rng.normal(0, 0.22, rows), 0, 1)
    y_pred = (score >= 0.5).astype(np.int64)
    frame = pd.DataFrame({"sex": sex, "race": race})  # pandas' string columns, as from a CSV
    return {"y_true": y_true, "y_pred": y_pred, "score": score, "frame": frame}


def fairlearn_run(data: dict[str, Any]) -> dict[str, Any]:
    from fairlearn.metrics import (
        MetricFrame,
        false_negative_rate,
        false_positive_rate,
        selection_rate,
    )
    from sklearn.metrics import accuracy_score

    metrics = {
        "accuracy": accuracy_score,
        "selection_rate": selection_rate,
        "fpr": false_positive_rate,
        "fnr": false_negative_rate,
    }
    return {
        col: MetricFrame(
            metrics=metrics,
            y_true=data["y_true"],
            y_pred=data["y_pred"],
            sensitive_features=data["frame"][col],
        ).by_group
        for col in ("sex", "race")
    }


def keel_run(data: dict[str, Any]) -> dict[str, Any]:
    from keel.audit._groups import group_metrics

    return {
        col: group_metrics(data["y_true"], data["y_pred"], data["frame"][col])
        for col in ("sex", "race")
    }


def check(theirs: dict[str, Any], ours: dict[str, Any]) -> float:
    """Largest absolute difference over every group and metric; raises past TOLERANCE."""
    worst = 0.0
    for col, by_group in theirs.items():
        frame = ours[col].to_frame()
        if list(frame.index) != list(by_group.index):
            raise AssertionError(f"{col}: groups differ: {list(frame.index)} vs {by_group.index}")
        for m in METRICS:
            diff = float(np.max(np.abs(frame[m].to_numpy() - by_group[m].to_numpy(float))))
            worst = max(worst, diff)
            if not diff <= TOLERANCE:
                raise AssertionError(f"{col} {m}: keel and fairlearn differ by {diff}")
    return worst


def time_repeats(fn: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        gc.enable()
    return out


def extras(data: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    from keel.audit._groups import binary, encode_groups, metrics_from_codes
    from keel.audit.fairness import fairness_report

    y, p, s, frame = data["y_true"], data["y_pred"], data["score"], data["frame"]
    encoded = [encode_groups(frame[c]) for c in ("sex", "race")]
    yb, pb = binary(y, "y_true"), binary(p, "y_pred")

    def monitoring() -> None:
        for enc in encoded:
            metrics_from_codes(enc, yb, pb, None)

    def intersection_auc() -> None:
        from keel.audit._groups import group_metrics

        group_metrics(y, p, frame, scores=s)

    def report() -> None:
        fairness_report(y, p, frame, n_boot=1000, seed=0)

    calls = {
        "keel metrics_from_codes (groups encoded once)": monitoring,
        "keel group_metrics sex x race with ROC AUC": intersection_auc,
        "keel fairness_report (sex, race, sex+race; n_boot=1000)": report,
    }
    out = {}
    for name, fn in calls.items():
        fn()  # warm-up
        out[name] = time_repeats(fn, repeats)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keel-repeats", type=int, default=7)
    p.add_argument("--fairlearn-repeats", type=int, default=1)
    p.add_argument("--out", default="fairness", help="results file name under bench/results")
    a = p.parse_args(argv)
    if a.keel_repeats < 5:
        p.error("--keel-repeats: at least 5, so the median means something")
    t_begin = time.perf_counter()

    data = make_data(a.rows, a.seed)
    small = {k: v[:1000] for k, v in data.items() if k != "frame"}
    small["frame"] = data["frame"].iloc[:1000]
    fairlearn_run(small)  # warm-up: imports and first-call costs, not timed
    keel_run(data)

    print(f"{a.rows:,} rows; timing fairlearn MetricFrame ({a.fairlearn_repeats} run)", flush=True)
    fl_times, theirs = [], None
    for _ in range(a.fairlearn_repeats):
        gc.collect()
        t0 = time.perf_counter()
        theirs = fairlearn_run(data)
        fl_times.append(time.perf_counter() - t0)
        print(f"  MetricFrame run: {fl_times[-1]:.1f} s", flush=True)
    worst = check(theirs, keel_run(data))
    print(f"Checked: keel equals MetricFrame on every group and metric (max abs diff {worst:.2g})")

    keel_times = time_repeats(lambda: keel_run(data), a.keel_repeats)
    extra = extras(data, a.keel_repeats)
    total_s = time.perf_counter() - t_begin

    fl, kl = median(fl_times), median(keel_times)
    ratio = fl / kl
    groups = {
        col: {str(k): int(v) for k, v in data["frame"][col].value_counts().items()}
        for col in ("sex", "race")
    }
    results = {
        "benchmark": "fairness",
        "machine": machine(PACKAGES),
        "config": {
            "rows": a.rows,
            "seed": a.seed,
            "keel_repeats": a.keel_repeats,
            "fairlearn_repeats": a.fairlearn_repeats,
            "repeats": f"keel {a.keel_repeats}, fairlearn {a.fairlearn_repeats}",
            "sensitive_features": ["sex", "race"],
            "group_sizes": groups,
            "positive_rate": float(data["y_true"].mean()),
            "selection_rate": float(data["y_pred"].mean()),
            "metrics": list(METRICS),
            "tolerance": TOLERANCE,
            "fairlearn": "MetricFrame(metrics={accuracy_score, selection_rate, "
            "false_positive_rate, false_negative_rate}, ...).by_group, once by sex and once "
            "by race, per run",
            "keel": "keel.audit._groups.group_metrics(y_true, y_pred, column) by sex and by "
            "race, per run (count, selection rate, accuracy, TPR, FPR, FNR, precision)",
            "gc": "disabled while timing keel",
        },
        "max_abs_diff": worst,
        "results": {
            "fairlearn MetricFrame": {"wall_s": fl_times, "wall_median_s": fl},
            "keel group_metrics": {"wall_s": keel_times, "wall_median_s": kl},
            **{k: {"wall_s": v, "wall_median_s": median(v)} for k, v in extra.items()},
        },
        "ratios": {"metricframe_over_keel": ratio},
        "goals": {
            "keel_at_least_100x_metricframe": {
                "target_speedup": GOAL_SPEEDUP,
                "speedup": ratio,
                "met": ratio >= GOAL_SPEEDUP,
            }
        },
        "total_seconds": total_s,
    }
    path = write_results(a.out, results)

    print()
    rows = [
        [name, r["wall_median_s"] * 1e3, len(r["wall_s"]), f"{fl / r['wall_median_s']:,.0f}x"]
        for name, r in results["results"].items()
    ]
    print(table(["method (sex and race)", "median ms", "runs", "MetricFrame ÷ this"], rows))
    met = "met" if ratio >= GOAL_SPEEDUP else "NOT met"
    print(f"\nGoal: keel >= {GOAL_SPEEDUP:.0f}x MetricFrame: {met} ({ratio:,.0f}x)")
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
