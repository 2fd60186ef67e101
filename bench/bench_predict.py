"""In-process predict latency on UCI Adult: keel's ONNX graph against the scikit-learn pipeline
and the bare LightGBM booster, one row and 1,000 rows, in one process.

The model is keel's default LightGBM (``build_model(prep, "lightgbm", None, seed=0)``: 400
trees, feature spec inferred from the column types) trained on the bundled Adult train split.
What is timed, on rows of the Adult test split (missing values included):

* ``sklearn pipeline``: a ``sklearn.pipeline.Pipeline`` of keel's feature ColumnTransformer
  and an ``LGBMClassifier`` with the zoo's defaults, fitted on the same data the same way;
  ``predict_proba`` on a one-row (or 1,000-row) pandas DataFrame. What a user would otherwise
  ship.
* ``booster``: ``booster.predict(X)`` of the bare LightGBM booster on rows already encoded
  (the transform is done beforehand, not timed): the ceiling a user who hand-encodes gets.
  Default call (LightGBM's OpenMP threads); for the full model also with ``num_threads=1``.
* ``onnx run``: ``keel.export.to_onnx(model)`` in onnxruntime (CPU, ``intra_op`` and
  ``inter_op`` threads 1), ``session.run`` on a feed built beforehand.
* ``onnx feed+run``: the same plus building the feed from the DataFrame row,
  ``keel.export.onnx_inputs(frame, model.input_schema)``: what a caller holding a DataFrame pays.

The same for the smaller variants ``keel.export.prune(model, X_test, y_test)`` and
``keel.export.distill(model, X_train)`` (booster and ONNX graph each).

Single rows: SINGLE calls per method (each timed alone) cycling through POOL distinct test
rows, in ROUNDS rounds whose method order rotates; batches: BATCH calls of one 1,000-row
frame, order rotated per call. A warm-up pass first (not timed), whose outputs are checked:
every method must give the same probabilities (to 1e-5) on every row used. The garbage
collector is off while timing. Medians are reported.

    .venv/bin/python bench/bench_predict.py             # writes bench/results/predict.json
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import ROOT, machine, median, table, write_results

PACKAGES = (
    "keel",
    "onnxruntime",
    "onnx",
    "skl2onnx",
    "onnxmltools",
    "lightgbm",
    "scikit-learn",
    "numpy",
    "pandas",
)
TOLERANCE = 1e-5
# The project's goals for keel's ONNX graph, one row: at most 1/50 of the sklearn pipeline's
# latency, and within 1.5x of the bare booster's.
GOAL_SPEEDUP_OVER_PIPELINE = 50.0
GOAL_OVER_BOOSTER = 1.5

Call = Callable[[int], Any]  # row index in the pool (ignored for batches) -> output


def build(seed: int) -> dict[str, Any]:
    """Data, keel's model, the equivalent sklearn pipeline, the variants and their graphs."""
    from sklearn.pipeline import Pipeline

    import keel.datasets
    from keel.export import distill, prune, to_onnx
    from keel.features import compile_spec
    from keel.train import ZOO
    from keel.train._train import Prepared, _load_spec, _seed_everything, build_model

    train, test = keel.datasets.adult("train"), keel.datasets.adult("test")
    types = {c: ("int" if train[c].dtype.kind == "i" else "string") for c in train.columns}
    inputs = [c for c in train.columns if c != "income"]
    spec = _load_spec(None, types, "income")
    schema = [{"name": c, "type": types[c]} for c in inputs]
    prep = Prepared(train, test, "income", "classification", spec, schema)
    info: dict[str, Any] = {"train_rows": len(train), "test_rows": len(test)}

    t0 = time.perf_counter()
    model = build_model(prep, "lightgbm", None, seed=seed)
    info["fit_keel_s"] = time.perf_counter() - t0

    # The pipeline a user would write: keel's transform + LGBMClassifier, fitted as
    # build_model does (same seed, same estimator defaults).
    t0 = time.perf_counter()
    _seed_everything(seed)
    pipe = Pipeline(
        [
            ("features", compile_spec(spec, inputs)),
            ("model", ZOO["lightgbm"].estimator("classification", None, seed)),
        ]
    )
    pipe.fit(train[inputs], train["income"].to_numpy().astype(str))
    info["fit_pipeline_s"] = time.perf_counter() - t0
    if list(pipe.classes_) != list(model.classes_):
        raise AssertionError(f"classes differ: {pipe.classes_} vs {model.classes_}")

    X_test, y_test = test[inputs], test["income"].to_numpy().astype(str)
    t0 = time.perf_counter()
    pruned, pruned_detail = prune(model, X_test, y_test)
    info["prune_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    distilled, distilled_detail = distill(model, train[inputs], seed=seed)
    info["distill_s"] = time.perf_counter() - t0

    variants = {}
    for name, m, detail in (
        ("fp32", model, {"trees": model.booster.num_trees()}),
        ("pruned", pruned, pruned_detail),
        ("distilled", distilled, distilled_detail),
    ):
        t0 = time.perf_counter()
        data = to_onnx(m).SerializeToString()
        variants[name] = {
            "model": m,
            "onnx": data,
            "detail": detail,
            "to_onnx_s": time.perf_counter() - t0,
        }
    info["ZOO_lightgbm_defaults"] = dict(ZOO["lightgbm"].defaults)
    return {
        "pipe": pipe,
        "X_train": train[inputs],
        "X_test": X_test,
        "schema": schema,
        "variants": variants,
        "info": info,
    }


def session(onnx_bytes: bytes) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])


def methods(
    built: dict[str, Any], frames: list[Any], encoded: list[np.ndarray]
) -> dict[str, tuple[Call, Callable[[Any], np.ndarray]]]:
    """name -> (call on pool item i, positive-class probabilities of its output)."""
    from keel.export import onnx_inputs

    pipe, schema = built["pipe"], built["schema"]
    pos = lambda out: np.asarray(out)[:, 1]  # noqa: E731
    flat = lambda out: np.asarray(out).reshape(-1)  # noqa: E731
    onnx_pos = lambda out: np.asarray(out[0])[:, 1]  # noqa: E731
    out: dict[str, tuple[Call, Callable[[Any], np.ndarray]]] = {
        "sklearn pipeline": (lambda i: pipe.predict_proba(frames[i]), pos)
    }
    for name, v in built["variants"].items():
        booster, sess = v["model"].booster, session(v["onnx"])
        feeds = [onnx_inputs(f, schema) for f in frames]
        label = "" if name == "fp32" else f" {name}"
        out[f"booster{label}"] = (
            lambda i, b=booster: b.predict(encoded[i]),
            flat,
        )
        if name == "fp32":
            out["booster num_threads=1"] = (
                lambda i, b=booster: b.predict(encoded[i], num_threads=1),
                flat,
            )
        out[f"onnx{label} run"] = (
            lambda i, s=sess, f=feeds: s.run(["probabilities"], f[i]),
            onnx_pos,
        )
        out[f"onnx{label} feed+run"] = (
            lambda i, s=sess: s.run(["probabilities"], onnx_inputs(frames[i], schema)),
            onnx_pos,
        )
    return out


def check(
    calls: dict[str, tuple[Call, Callable[[Any], np.ndarray]]],
    frames: list[Any],
    built: dict[str, Any],
) -> dict[str, float]:
    """Run every method once over ``frames`` (the warm-up) and compare positive-class
    probabilities: the full model's methods with the sklearn pipeline; each variant's graph
    with its booster, and that booster with the variant's keel model (``predict_proba``)."""
    n = len(frames)
    got = {
        k: np.concatenate([conv(call(i)) for i in range(n)]) for k, (call, conv) in calls.items()
    }
    worst: dict[str, float] = {}
    for k, p in got.items():
        variant = next((v for v in ("pruned", "distilled") if v in k), None)
        ref = got["sklearn pipeline"] if variant is None else got[f"booster {variant}"]
        worst[k] = float(np.max(np.abs(p - ref)))
    for variant in ("pruned", "distilled"):  # the variant's booster against its keel model
        m = built["variants"][variant]["model"]
        own = np.concatenate([m.predict_proba(frames[i])[:, 1] for i in range(n)])
        worst[f"booster {variant} vs keel model"] = float(
            np.max(np.abs(got[f"booster {variant}"] - own))
        )
    bad = {k: v for k, v in worst.items() if v > TOLERANCE}
    if bad:
        raise AssertionError(f"probabilities differ by more than {TOLERANCE}: {bad}")
    return worst


def time_calls(
    calls: dict[str, tuple[Call, Any]], total: int, rounds: int, pool: int
) -> dict[str, list[float]]:
    """``total`` timed calls per method in ``rounds`` blocks, method order rotated per round;
    call j of a method uses pool item j % pool. Milliseconds."""
    names = list(calls)
    per = max(1, total // rounds)
    ms: dict[str, list[float]] = {k: [] for k in names}
    clock = time.perf_counter
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for k in order:
                call, _ = calls[k]
                times = ms[k]
                start = len(times)
                for j in range(start, start + per):
                    i = j % pool
                    t0 = clock()
                    call(i)
                    times.append((clock() - t0) * 1e3)
    finally:
        gc.enable()
    return ms


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--single", type=int, default=2_000, help="timed one-row calls per method")
    p.add_argument("--batch", type=int, default=50, help="timed 1,000-row calls per method")
    p.add_argument("--batch-rows", type=int, default=1_000)
    p.add_argument("--pool", type=int, default=200, help="distinct test rows for single calls")
    p.add_argument("--rounds", type=int, default=20, help="rotation rounds for single calls")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="predict", help="results name: bench/results/<out>.json")
    a = p.parse_args(argv)

    t_begin = time.perf_counter()
    built = build(a.seed)
    X = built["X_test"]
    transformer = built["variants"]["fp32"]["model"].transformer

    pool_rows = X.sample(n=a.pool, random_state=a.seed)
    frames = [pool_rows.iloc[[i]] for i in range(a.pool)]
    encoded = [transformer.transform(f) for f in frames]  # not timed: the hand-encoded rows
    batch_frame = X.sample(n=a.batch_rows, random_state=a.seed + 1)
    batch_encoded = transformer.transform(batch_frame)

    single = methods(built, frames, encoded)
    batch = methods(built, [batch_frame], [batch_encoded])
    names = list(single)

    worst_single = check(single, frames, built)
    worst_batch = check(batch, [batch_frame], built)
    print(
        f"Checked: every method gives the same probabilities (max abs diff "
        f"{max(worst_single.values()):.2g} on {a.pool} single rows, "
        f"{max(worst_batch.values()):.2g} on the {a.batch_rows:,}-row batch; limit {TOLERANCE})",
        flush=True,
    )

    t0 = time.perf_counter()
    single_ms = time_calls(single, a.single, a.rounds, a.pool)
    print(f"Timed {a.single:,} one-row calls per method in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    batch_ms = time_calls(batch, a.batch, a.batch, 1)
    print(
        f"Timed {a.batch} {a.batch_rows:,}-row calls per method in "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    total_s = time.perf_counter() - t_begin

    res = {
        k: {
            # raw times rounded to 0.1 µs, to keep the file small
            "single_ms": [round(x, 4) for x in single_ms[k]],
            "single_median_ms": median(single_ms[k]),
            "single_p90_ms": float(np.percentile(single_ms[k], 90)),
            "batch_ms": [round(x, 4) for x in batch_ms[k]],
            "batch_median_ms": median(batch_ms[k]),
            "batch_us_per_row": median(batch_ms[k]) * 1e3 / a.batch_rows,
        }
        for k in names
    }
    s = {k: r["single_median_ms"] for k, r in res.items()}
    b = {k: r["batch_median_ms"] for k, r in res.items()}
    ratios: dict[str, float] = {
        # > 1: keel faster. Goal: >= 50 (keel ONNX one row at most 1/50 of the pipeline).
        "single_pipeline_over_onnx_run": s["sklearn pipeline"] / s["onnx run"],
        "single_pipeline_over_onnx_feed_run": s["sklearn pipeline"] / s["onnx feed+run"],
        # < 1.5 meets the goal (keel ONNX one row within 1.5x of the bare booster).
        "single_onnx_run_over_booster": s["onnx run"] / s["booster"],
        "single_onnx_feed_run_over_booster": s["onnx feed+run"] / s["booster"],
        "single_onnx_run_over_booster_1thread": s["onnx run"] / s["booster num_threads=1"],
        "batch_pipeline_over_onnx_run": b["sklearn pipeline"] / b["onnx run"],
        "batch_pipeline_over_onnx_feed_run": b["sklearn pipeline"] / b["onnx feed+run"],
        "batch_onnx_run_over_booster": b["onnx run"] / b["booster"],
        "batch_onnx_feed_run_over_booster": b["onnx feed+run"] / b["booster"],
        "batch_onnx_run_over_booster_1thread": b["onnx run"] / b["booster num_threads=1"],
    }
    for v in ("pruned", "distilled"):
        ratios[f"single_pipeline_over_onnx_{v}_run"] = s["sklearn pipeline"] / s[f"onnx {v} run"]
        ratios[f"single_pipeline_over_onnx_{v}_feed_run"] = (
            s["sklearn pipeline"] / s[f"onnx {v} feed+run"]
        )
        ratios[f"single_onnx_{v}_run_over_its_booster"] = s[f"onnx {v} run"] / s[f"booster {v}"]
        ratios[f"single_onnx_{v}_run_over_full_booster"] = s[f"onnx {v} run"] / s["booster"]
    ceiling = min(s["booster"], s["booster num_threads=1"])
    goals = {
        "onnx_single_row_at_most_1_50_of_sklearn_pipeline": {
            "target_speedup": GOAL_SPEEDUP_OVER_PIPELINE,
            "run_only": ratios["single_pipeline_over_onnx_run"],
            "run_only_met": ratios["single_pipeline_over_onnx_run"] >= GOAL_SPEEDUP_OVER_PIPELINE,
            "feed_and_run": ratios["single_pipeline_over_onnx_feed_run"],
            "feed_and_run_met": ratios["single_pipeline_over_onnx_feed_run"]
            >= GOAL_SPEEDUP_OVER_PIPELINE,
        },
        # Against the faster of the two booster calls (the stricter ceiling).
        "onnx_single_row_within_1_5x_of_bare_booster": {
            "target_ratio": GOAL_OVER_BOOSTER,
            "booster_ms": ceiling,
            "run_only": s["onnx run"] / ceiling,
            "run_only_met": s["onnx run"] / ceiling <= GOAL_OVER_BOOSTER,
            "feed_and_run": s["onnx feed+run"] / ceiling,
            "feed_and_run_met": s["onnx feed+run"] / ceiling <= GOAL_OVER_BOOSTER,
        },
    }
    import onnxruntime as ort

    variants = {
        k: {
            "onnx_bytes": len(v["onnx"]),
            "booster_trees": v["model"].booster.num_trees(),
            "detail": v["detail"],
            "to_onnx_s": v["to_onnx_s"],
        }
        for k, v in built["variants"].items()
    }
    results = {
        "benchmark": "predict",
        "machine": machine(PACKAGES),
        "config": {
            "single_calls": a.single,
            "single_rounds": a.rounds,
            "single_pool_rows": a.pool,
            "batch_calls": a.batch,
            "batch_rows": a.batch_rows,
            "seed": a.seed,
            "tolerance": TOLERANCE,
            "model": "keel build_model(prep, 'lightgbm', None, seed) on Adult train "
            "(feature spec inferred), rows from Adult test",
            "sklearn_pipeline": "Pipeline([('features', compile_spec(spec, inputs)), "
            "('model', ZOO['lightgbm'].estimator(...))]).predict_proba(DataFrame)",
            "booster": "booster.predict(encoded) on rows transformed beforehand (not timed); "
            "default threads, and num_threads=1",
            "onnx": "keel.export.to_onnx(model) in onnxruntime CPUExecutionProvider, "
            "intra_op_num_threads=1, inter_op_num_threads=1, run(['probabilities'], feed); "
            "'feed+run' also builds the feed with keel.export.onnx_inputs(frame, schema)",
            "onnxruntime_providers": ort.get_available_providers(),
            "gc": "disabled while timing",
            "build": built["info"],
        },
        "variants": variants,
        "max_abs_prob_diff": {"single": worst_single, "batch": worst_batch},
        "results": res,
        "ratios": ratios,
        "goals": goals,
        "total_seconds": total_s,
    }
    path = write_results(a.out, results)

    print()
    print(
        f"Predict latency on Adult, median of {a.single:,} one-row calls and {a.batch} "
        f"{a.batch_rows:,}-row calls (onnxruntime 1 thread)"
    )
    rows = [
        [
            k,
            r["single_median_ms"],
            r["single_p90_ms"],
            r["batch_median_ms"],
            r["batch_us_per_row"],
            f"{s['sklearn pipeline'] / r['single_median_ms']:.1f}x",
            f"{r['single_median_ms'] / s['booster']:.2f}x",
        ]
        for k, r in res.items()
    ]
    print(
        table(
            [
                "method",
                "1 row ms",
                "1 row p90 ms",
                "1,000 rows ms",
                "µs/row",
                "pipeline ÷ this (1 row)",
                "this ÷ booster (1 row)",
            ],
            rows,
        )
    )
    print(
        "\nVariants: "
        + "; ".join(f"{k} {v['onnx_bytes']:,} B, {v['detail']}" for k, v in variants.items())
    )
    g1 = goals["onnx_single_row_at_most_1_50_of_sklearn_pipeline"]
    g2 = goals["onnx_single_row_within_1_5x_of_bare_booster"]
    yn = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    print(
        f"\nGoal 1, keel ONNX one row ≤ 1/{GOAL_SPEEDUP_OVER_PIPELINE:.0f} of the sklearn "
        f"pipeline: run alone {g1['run_only']:.0f}x faster ({yn(g1['run_only_met'])}); with "
        f"feed building {g1['feed_and_run']:.0f}x ({yn(g1['feed_and_run_met'])})."
    )
    print(
        f"Goal 2, keel ONNX one row within {GOAL_OVER_BOOSTER}x of the bare booster (the "
        f"faster call, {g2['booster_ms']:.3g} ms): run alone "
        f"{g2['run_only']:.2f}x ({yn(g2['run_only_met'])}); with feed building "
        f"{g2['feed_and_run']:.2f}x ({yn(g2['feed_and_run_met'])})."
    )
    print(f"Wrote {path.relative_to(ROOT)} ({total_s:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
