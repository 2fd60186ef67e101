"""Robustness and privacy figures on UCI Adult (full train split, scored on the test split).

The model is keel's default LightGBM (``keel train``: 400 trees, 31 leaves, the inferred
feature spec) trained on the bundled Adult train split with the Adult test split as hold-out,
registered in a fresh project in a temporary folder. Figures, each with the settings the
audit sections use (seed 0):

* robustness: ``robustness_report`` on valid rows only (rows an applicant could submit:
  whole numbers within the training range, categories seen in training, missing cells
  kept) for the default LightGBM and a logistic regression: HopSkipJump on 100 correctly
  classified hold-out rows with every query projected onto a valid row (10 iterations, 100
  evaluations per gradient estimate; success within L2 0.25 over features, where a number
  counts the fraction of its training range it moved and a changed category 1, with the
  success curve over budgets), the counterfactual search (the smallest valid change of 1, 2
  or 3 features that flips the decision) and accuracy under Gaussian noise and category
  flips on 2,000 hold-out rows. Gradient attacks (FGSM, PGD) are not run on tabular models:
  their points are encoded, continuous features, not rows;
* adversarial augmentation: ``adversarial_training`` (the counterfactual search on
  ``--attack-rows`` correctly classified training rows; each minimal flipping valid row is
  added with its true label and the same model kind refit), both models attacked on the same
  100 hold-out rows; the new model is kept only when valid-row robustness rises by at least
  0.01 with hold-out accuracy down at most 0.01, and the verdict says which;
* privacy: ``membership_inference`` on 2,000 members and 2,000 non-members for the default
  LightGBM, an overfit random forest (no depth limit, leaves of one row) and a DP logistic
  regression at ε = 1; ``accuracy_vs_epsilon`` (3 repeats per finite ε).

    .venv/bin/python bench/audit_robustness_privacy.py
    # writes bench/results/robustness.json and bench/results/privacy.json
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


def _project(root: Path) -> Any:
    from keel import project as keel_project
    from keel.data import ingest
    from keel.datasets import adult

    adult("train").to_csv(root / "adult-train.csv", index=False)
    adult("test").to_csv(root / "adult-test.csv", index=False)
    proj = keel_project.init(root, name="bench")
    ingest(proj.store, root / "adult-train.csv", name="adult")
    ingest(proj.store, root / "adult-test.csv", name="adult_test")
    return proj


def _train(store: Any, model: str, name: str, params: dict[str, Any] | None = None) -> Any:
    from keel.train import train

    res = train(store, "adult", "income", model=model, params=params, holdout="adult_test")
    return res.register(store, name)


def _frames(store: Any, ref: str) -> tuple[Any, ...]:
    from keel import registry
    from keel.export import prepared_of

    prep = prepared_of(store, ref)
    return (
        registry.load(store, ref),
        prep.train[prep.columns].reset_index(drop=True),
        prep.train[prep.target].to_numpy(),
        prep.test[prep.columns].reset_index(drop=True),
        prep.test[prep.target].to_numpy(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack-rows", type=int, default=1000)
    args = parser.parse_args()
    warnings.filterwarnings("error")
    from keel.audit.privacy import accuracy_vs_epsilon, membership_inference
    from keel.audit.robustness import adversarial_training, robustness_report

    with tempfile.TemporaryDirectory() as tmp:
        proj = _project(Path(tmp))
        store = proj.store
        models = {
            "lightgbm": _train(store, "lightgbm", "adult"),
            "logistic_regression": _train(store, "logistic_regression", "adult_lr"),
            "random_forest_overfit": _train(
                store, "random_forest", "adult_rf", {"min_samples_leaf": 1, "n_estimators": 100}
            ),
            "dp_logistic_regression_eps1": _train(
                store, "dp_logistic_regression", "adult_dp", {"epsilon": 1.0}
            ),
        }
        rob: dict[str, Any] = {}
        for key in ("lightgbm", "logistic_regression"):
            model, X_tr, _, X_te, y_te = _frames(store, models[key].ref)
            t0 = time.perf_counter()
            rob[key] = robustness_report(model, X_te, y_te, X_tr, n_rows=100, noise_rows=2000)
            print(f"robustness {key}: {time.perf_counter() - t0:.1f} s", flush=True)
        t0 = time.perf_counter()
        _, adv = adversarial_training(store, models["lightgbm"].ref, n_rows=args.attack_rows)
        print(f"adversarial training: {time.perf_counter() - t0:.1f} s", flush=True)
        mia: dict[str, Any] = {}
        for key, mv in models.items():
            model, X_tr, y_tr, X_te, y_te = _frames(store, mv.ref)
            mia[key] = membership_inference(model, X_tr, y_tr, X_te, y_te, n_rows=2000)
            mia[key]["holdout_metrics"] = mv.metrics
        t0 = time.perf_counter()
        eps_table = accuracy_vs_epsilon(store, models["lightgbm"].ref, repeats=3)
        print(f"accuracy vs epsilon: {time.perf_counter() - t0:.1f} s", flush=True)
        proj.close()
    info = machine(PACKAGES)
    write_results("robustness", {"machine": info, "robustness": rob, "adversarial": adv})
    write_results("privacy", {"machine": info, "mia": mia, "accuracy_vs_epsilon": eps_table})
    _print(rob, adv, mia, eps_table)


def _print(rob: dict[str, Any], adv: dict[str, Any], mia: dict[str, Any], eps: Any) -> None:
    rows = []
    for key, rep in rob.items():
        for attack in ("hopskipjump", "counterfactual"):
            a = rep[attack]
            for r in a["curve"]:
                rows.append([key, attack, a["budget_unit"], r["budget"], r["success_rate"]])
    print(table(["model", "attack (valid rows)", "budget in", "budget", "success rate"], rows))
    keys = list(adv["before"])
    print(table(["", *keys], [[k, *(adv[k].get(x) for x in keys)] for k in ("before", "after")]))
    print(adv["verdict"])
    rows = [
        [k, m["threshold"]["auc"], m["threshold"]["advantage"]]
        + [m["art_black_box"]["auc"], m["art_black_box"]["advantage"]]
        for k, m in mia.items()
    ]
    print(table(["model", "threshold AUC", "adv", "ART AUC", "adv"], rows))
    print(
        table(
            ["model", "epsilon", "accuracy", "std"],
            [[r["model"], r["epsilon"], r["accuracy"], r["accuracy_std"]] for r in eps["rows"]],
        )
    )


if __name__ == "__main__":
    main()
