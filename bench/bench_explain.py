"""SHAP explanations on UCI Adult: keel's batch TreeSHAP against shap.TreeExplainer (and
LightGBM's own ``pred_contrib``) on 10,000 rows, and keel's one-row explanation latency.

The model is keel's default LightGBM (``build_model(prep, "lightgbm", None, seed=0)``: 400
trees, 31 leaves, the inferred feature spec, which one-hot encodes the text columns: 108
encoded columns) trained on the bundled Adult train split. Rows: the first ROWS of the Adult
test split (missing values included), then of the train split if more are asked for.

What is timed, each REPEATS times in rotating order, medians reported:

* ``shap.TreeExplainer``: ``shap.TreeExplainer(booster).shap_values(Z)`` on rows encoded
  beforehand (the transform is not timed; building the explainer is not timed either).
* ``lightgbm pred_contrib``: ``booster.predict(Z, pred_contrib=True)`` on the same ``Z``
  (what shap calls for a LightGBM model).
* ``keel attributions``: ``Explainer(model).fit().attributions(X)`` on the *raw* rows: the
  feature transform, TreeSHAP, and the sum back to the 14 raw features are all timed;
  building the explainer (once per model version) is timed separately.
* ``... 1 thread``: ``pred_contrib`` with ``num_threads=1`` and keel with ``n_threads=1``,
  to separate the gain of working per cell from the gain of threads.

The first three use LightGBM's default thread count (the machine's cores); keel splits a
batch by iterations over one Python thread per core, each running LightGBM on one thread.
Before timing, keel's values on the encoded columns are checked equal to shap's to 1e-6,
and contributions plus expected value equal to the raw margin to 1e-6.

One row: ``explainer.explain_one(row)`` on a dict of raw values as a request carries it
(JSON types, None for missing), SINGLE calls cycling through POOL distinct test rows, GC
off; median and p99. Each answer is checked against the batch values for its row.

    .venv/bin/python bench/bench_explain.py          # writes bench/results/explain.json
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from _common import machine, median, table, write_results

PACKAGES = ("keel", "shap", "lightgbm", "scikit-learn", "numpy", "pandas")
TOLERANCE = 1e-6
GOAL_SINGLE_MS = 5.0
GOAL_BATCH_RATIO = 1.0  # keel's batch time at most shap.TreeExplainer's


def build(seed: int, rows: int) -> dict[str, Any]:
    import keel.datasets
    from keel.train._train import Prepared, _load_spec, build_model

    train, test = keel.datasets.adult("train"), keel.datasets.adult("test")
    types = {c: ("int" if train[c].dtype.kind == "i" else "string") for c in train.columns}
    inputs = [c for c in train.columns if c != "income"]
    spec = _load_spec(None, types, "income")
    schema = [{"name": c, "type": types[c]} for c in inputs]
    prep = Prepared(train, test, "income", "classification", spec, schema)
    t0 = time.perf_counter()
    model = build_model(prep, "lightgbm", None, seed=seed)
    fit_s = time.perf_counter() - t0
    X = pd.concat([test, train], ignore_index=True)[inputs].iloc[:rows].reset_index(drop=True)
    return {"model": model, "X": X, "spec": spec.to_dict(), "fit_s": fit_s}


def record(frame: pd.DataFrame, i: int) -> dict[str, Any]:
    out = {}
    for k, v in frame.iloc[i].items():
        out[k] = None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)
    return out


def check(model: Any, explainer: Any, X: pd.DataFrame, Z: np.ndarray, shap_values: Any) -> dict:
    a = explainer.attributions(X, expanded=True)
    sv = np.asarray(shap_values).reshape(a.expanded.shape)
    diff = float(np.abs(a.expanded - sv).max())
    raw = model.booster.predict(Z, raw_score=True)
    additivity = float(np.abs(a.values.sum(axis=1) + a.expected_value - raw).max())
    if diff > TOLERANCE or additivity > TOLERANCE:
        raise AssertionError(f"keel differs from shap by {diff:g}, additivity {additivity:g}")
    return {
        "max_abs_diff_vs_shap_encoded_columns": diff,
        "max_abs_additivity_error_raw_features": additivity,
        "encoded_columns": int(a.expanded.shape[1]),
        "raw_features": len(a.features),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--single", type=int, default=2000, help="one-row calls")
    p.add_argument("--pool", type=int, default=200, help="distinct rows for one-row calls")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="explain")
    a = p.parse_args(argv)
    import shap

    from keel.audit.explain import Explainer

    t_begin = time.perf_counter()
    built = build(a.seed, a.rows)
    model, X = built["model"], built["X"]
    Z = model.transformer.transform(X)
    print(f"Model fitted in {built['fit_s']:.1f} s; {len(X):,} rows, {Z.shape[1]} columns")

    t0 = time.perf_counter()
    explainer = Explainer(model).fit()
    keel_setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tree_explainer = shap.TreeExplainer(model.booster)
    shap_setup_s = time.perf_counter() - t0

    def run_shap() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # shap's note on binary LightGBM output shape
            return tree_explainer.shap_values(Z)

    one_thread = Explainer(model, n_threads=1).fit()
    methods = {
        "shap.TreeExplainer": run_shap,
        "lightgbm pred_contrib": lambda: model.booster.predict(Z, pred_contrib=True),
        "keel attributions": lambda: explainer.attributions(X),
        "lightgbm pred_contrib 1 thread": lambda: model.booster.predict(
            Z, pred_contrib=True, num_threads=1
        ),
        "keel attributions 1 thread": lambda: one_thread.attributions(X),
    }
    shap_values = run_shap()
    correctness = check(model, explainer, X, Z, shap_values)
    print(f"Values checked: {correctness}")

    times: dict[str, list[float]] = {k: [] for k in methods}
    names = list(methods)
    gc.disable()
    try:
        for r in range(a.repeats):
            for k in names[r % len(names) :] + names[: r % len(names)]:
                t0 = time.perf_counter()
                methods[k]()
                times[k].append(time.perf_counter() - t0)
                print(f"  repeat {r + 1}: {k} {times[k][-1]:.2f} s", flush=True)
    finally:
        gc.enable()

    pool = [record(X, i) for i in range(min(a.pool, len(X)))]
    batch = explainer.attributions(X.iloc[: len(pool)])
    for i, row in enumerate(pool[:50]):
        out = explainer.explain_one(row)
        got = np.asarray(list(out["contributions"].values()))
        if np.abs(got - batch.values[i]).max() > TOLERANCE:
            raise AssertionError(f"one-row explanation of row {i} differs from the batch")
    single_ms = []
    gc.disable()
    try:
        for i in range(a.single):
            row = pool[i % len(pool)]
            t0 = time.perf_counter()
            explainer.explain_one(row)
            single_ms.append((time.perf_counter() - t0) * 1e3)
    finally:
        gc.enable()

    med = {k: median(v) for k, v in times.items()}
    results = {
        k: {"seconds": [round(x, 4) for x in v], "median_s": med[k], "rows_per_s": a.rows / med[k]}
        for k, v in times.items()
    }
    results["keel explain_one"] = {
        "median_ms": median(single_ms),
        "p99_ms": float(np.percentile(single_ms, 99)),
        "mean_ms": float(np.mean(single_ms)),
        "max_ms": float(np.max(single_ms)),
        "calls": a.single,
    }
    ratios = {
        # > 1: keel faster
        "batch_shap_over_keel": med["shap.TreeExplainer"] / med["keel attributions"],
        "batch_pred_contrib_over_keel": med["lightgbm pred_contrib"] / med["keel attributions"],
        "batch_shap_over_keel_with_setup": (med["shap.TreeExplainer"] + shap_setup_s)
        / (med["keel attributions"] + keel_setup_s),
        # the same work on one thread each: the gain of computing per cell, not of threads
        "batch_1thread_pred_contrib_over_keel": med["lightgbm pred_contrib 1 thread"]
        / med["keel attributions 1 thread"],
    }
    goals = {
        "batch_no_slower_than_shap_tree_explainer": {
            "target_ratio": GOAL_BATCH_RATIO,
            "shap_over_keel": ratios["batch_shap_over_keel"],
            "met": ratios["batch_shap_over_keel"] >= GOAL_BATCH_RATIO,
        },
        "equal_values_to_1e-6": {
            "max_abs_diff": correctness["max_abs_diff_vs_shap_encoded_columns"],
            "met": correctness["max_abs_diff_vs_shap_encoded_columns"] <= TOLERANCE,
        },
        "single_row_at_most_5_ms": {
            "target_ms": GOAL_SINGLE_MS,
            "median_ms": results["keel explain_one"]["median_ms"],
            "p99_ms": results["keel explain_one"]["p99_ms"],
            "met": results["keel explain_one"]["median_ms"] <= GOAL_SINGLE_MS,
            "p99_met": results["keel explain_one"]["p99_ms"] <= GOAL_SINGLE_MS,
        },
    }
    out = {
        "benchmark": "explain",
        "machine": machine(PACKAGES),
        "config": {
            "rows": a.rows,
            "repeats": a.repeats,
            "single_calls": a.single,
            "single_pool_rows": len(pool),
            "seed": a.seed,
            "tolerance": TOLERANCE,
            "model": "keel build_model(prep, 'lightgbm', None, seed) on Adult train: "
            f"{model.booster.num_trees()} trees, feature spec inferred (one-hot text)",
            "feature_spec": built["spec"],
            "encoded_columns": int(Z.shape[1]),
            "rows_from": "Adult test split, then train",
            "shap": "shap.TreeExplainer(booster).shap_values(Z), Z encoded beforehand",
            "keel": "keel.audit.explain.Explainer(model).fit().attributions(X_raw): "
            "transform + TreeSHAP + sum-back to raw features",
            "threads": "LightGBM default (all cores) unless the name says 1 thread; keel: one "
            "worker thread per core, LightGBM 1 thread each; one row: 1 thread",
            "gc": "disabled while timing",
            "fit_s": built["fit_s"],
            "setup_s": {"keel Explainer.fit": keel_setup_s, "shap.TreeExplainer": shap_setup_s},
        },
        "correctness": correctness,
        "results": results,
        "ratios": ratios,
        "goals": goals,
        "total_seconds": time.perf_counter() - t_begin,
    }
    path = write_results(a.out, out)
    print()
    print(f"SHAP on {a.rows:,} Adult rows ({Z.shape[1]} encoded columns), median of {a.repeats}")
    rows = [[k, med[k], a.rows / med[k], f"{med[k] / med['keel attributions']:.2f}x"] for k in med]
    print(table(["method", "median s", "rows/s", "time vs keel"], rows))
    s = results["keel explain_one"]
    print(
        f"\nOne row (explain_one, dict in): median {s['median_ms']:.3f} ms, p99 "
        f"{s['p99_ms']:.3f} ms over {a.single:,} calls; goal <= {GOAL_SINGLE_MS:g} ms"
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
