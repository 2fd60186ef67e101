"""Valid-row robustness of every zoo model on UCI Adult and German credit.

For each classifier kind of keel's zoo (LightGBM, HistGradientBoosting, random forest,
logistic regression, MLP, DP logistic regression, DP Gaussian NB; defaults as ``keel train``
uses them) trained by ``keel.train`` on each data set, ``robustness_report`` attacks
``--rows`` correctly classified hold-out rows (seed 0) on valid rows only, with the
immutable features frozen:

* HopSkipJump (ART), every query projected onto a valid row: success within the default
  budget (L2 0.25 over features: a number's fraction of its training range, 1 per changed
  category), and the success curve over budgets;
* the counterfactual search: the share of rows whose decision flips by changing 1, 2 or 3
  features to valid values, the median number changed and the features changed most.

Adult: the bundled ``keel.datasets.adult`` train split (``--adult-rows`` of it, seeded;
default all 32,561) with the test split as hold-out; frozen age, race, sex. German credit:
the bundled ``keel.datasets.german_credit`` (1,000 rows, codes mapped to words), split 80/20
stratified (seed 0); frozen age, personal status and sex, foreign worker.

    .venv/bin/python bench/robustness_valid_rows.py
    # writes bench/results/robustness_valid_rows.json
    .venv/bin/python bench/robustness_valid_rows.py --datasets german \
        --out robustness_valid_rows_german  # one data set, into its own file
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, table, write_results  # noqa: E402

PACKAGES = ("keel", "adversarial-robustness-toolbox", "diffprivlib", "lightgbm", "scikit-learn")
KINDS = (
    "lightgbm",
    "hist_gradient_boosting",
    "random_forest",
    "logistic_regression",
    "mlp",
    "dp_logistic_regression",
    "dp_gaussian_nb",
)
FROZEN = {
    "adult": ["age", "race", "sex"],
    "german": ["age", "status_sex", "foreign_worker"],
}


def _datasets(root: Path, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from sklearn.model_selection import train_test_split

    from keel.datasets import adult, german_credit

    train = adult("train")
    if args.adult_rows < len(train):
        train = train.sample(args.adult_rows, random_state=0)
    train.to_csv(root / "adult.csv", index=False)
    adult("test").to_csv(root / "adult_test.csv", index=False)
    g = german_credit()
    g_tr, g_te = train_test_split(g, test_size=0.2, random_state=0, stratify=g["credit"])
    g_tr.to_csv(root / "german.csv", index=False)
    g_te.to_csv(root / "german_test.csv", index=False)
    return {
        "adult": {"target": "income", "rows": len(train)},
        "german": {"target": "credit", "rows": len(g_tr)},
    }


def _run(store: Any, name: str, target: str, kind: str, args: argparse.Namespace) -> Any:
    from keel import registry
    from keel.audit.robustness import robustness_report
    from keel.export import prepared_of
    from keel.train import train

    t0 = time.perf_counter()
    res = train(store, name, target, model=kind, holdout=f"{name}_test", seed=0)
    mv = res.register(store, f"{name}_{kind}")
    fit_s = time.perf_counter() - t0
    prep = prepared_of(store, mv.ref)
    model = registry.load(store, mv.ref)
    X_tr = prep.train[prep.columns].reset_index(drop=True)
    X_te = prep.test[prep.columns].reset_index(drop=True)
    y_te = prep.test[prep.target].to_numpy()
    t0 = time.perf_counter()
    rep = robustness_report(
        model, X_te, y_te, X_tr, n_rows=args.rows, noise_rows=2000, frozen=FROZEN[name]
    )
    rep["robustness_s"] = time.perf_counter() - t0
    rep["fit_s"] = fit_s
    rep["holdout_metrics"] = mv.metrics
    return rep


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100, help="attacked hold-out rows")
    parser.add_argument("--adult-rows", type=int, default=32561, help="Adult training rows")
    parser.add_argument("--kinds", nargs="*", default=list(KINDS))
    parser.add_argument("--datasets", nargs="*", default=["adult", "german"])
    parser.add_argument(
        "--out", default="robustness_valid_rows", help="results name (bench/results/NAME.json)"
    )
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")  # MLP convergence, diffprivlib's notes
    from keel import project as keel_project
    from keel.data import ingest

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        info = _datasets(root, args)
        proj = keel_project.init(root, name="bench")
        try:
            for name in args.datasets:
                ingest(proj.store, root / f"{name}.csv", name=name)
                ingest(proj.store, root / f"{name}_test.csv", name=f"{name}_test")
                for kind in args.kinds:
                    rep = _run(proj.store, name, info[name]["target"], kind, args)
                    out.setdefault(name, {})[kind] = rep
                    print(
                        f"{name} {kind}: fit {rep['fit_s']:.1f} s, robustness "
                        f"{rep['robustness_s']:.1f} s",
                        flush=True,
                    )
        finally:
            proj.close()
    write_results(
        args.out,
        {"machine": machine(PACKAGES), "settings": vars(args), "frozen": FROZEN, **out},
    )
    _print(out)


def _print(out: dict[str, Any]) -> None:
    rows = []
    for name, by_kind in out.items():
        for kind, rep in by_kind.items():
            h, c = rep["hopskipjump"], rep["counterfactual"]
            top = ", ".join(list(c["features_changed"])[:3])
            rows.append(
                [
                    name,
                    kind,
                    rep["clean_accuracy"],
                    h["success_rate"],
                    h["success_rate_unbounded"],
                    c["flip_rate"]["1"],
                    c["flip_rate"]["2"],
                    c["flip_rate"]["3"],
                    c["median_features_changed"],
                    top,
                    rep["robustness_s"],
                ]
            )
    headers = [
        "data",
        "model",
        "accuracy",
        "HSJ ≤0.25",
        "HSJ any",
        "flip 1",
        "flip ≤2",
        "flip ≤3",
        "median k",
        "changed most",
        "seconds",
    ]
    print(table(headers, rows))


if __name__ == "__main__":
    main()
