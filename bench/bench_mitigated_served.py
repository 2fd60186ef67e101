"""Mitigated versions exported and served: DP difference and accuracy on full UCI Adult's
hold-out measured from the served answers, against fairlearn's own in-process decisions.

Setup, as ``audit_figures_mitigation.py`` does it: a fresh project, Adult's train split
(32,561 rows) as the training dataset and its test split (16,281 rows) as the hold-out, the
zoo's default LightGBM registered as ``adult/1`` (``base``); then ``reweigh``, ``threshold``
(ThresholdOptimizer, demographic parity, sex, as the demo makes it),
``threshold_equalized_odds`` and ``expgrad`` (ExponentiatedGradient, demographic parity,
eps 0.01, max_iter 50; skipped with ``--no-expgrad``). Each version is exported
(parity checked) and served by ``keel.serve.start``; the hold-out rows go to
``/models/<name>/predict`` 100 rows a request, each request with its own id, and the
figures are computed from the answers.

Beside each served figure:

* ``fairlearn_expected``: from fairlearn's probabilities of a positive decision
  (``_pmf_predict`` of a ThresholdOptimizer refit on the same training scores, or of the
  ensemble's members and weights), i.e. the policy's own rates and expected accuracy;
* ``fairlearn_predict``: the mean (and standard deviation) over 100 random states of
  fairlearn's ``ThresholdOptimizer.predict`` (threshold only);
* ``keel_in_process``: ``model.predict`` (keel's per-row draw).

    .venv/bin/python bench/bench_mitigated_served.py   # writes bench/results/mitigated_served.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine, table, write_results

PACKAGES = ("keel", "fairlearn", "lightgbm", "onnxruntime", "numpy")
#: (name in the results, mitigation method or None for the parent itself, constraint)
VERSIONS = (
    ("base", None, None),
    ("reweigh", "reweigh", "demographic_parity"),
    ("expgrad", "expgrad", "demographic_parity"),
    ("threshold", "threshold", "demographic_parity"),
    ("threshold_equalized_odds", "threshold", "equalized_odds"),
)
POS = ">50K"


def _figures(chosen: np.ndarray, y: np.ndarray, sex: np.ndarray) -> dict[str, float]:
    rates = {g: float(chosen[sex == g].mean()) for g in ("Female", "Male")}
    tpr = [float(chosen[(sex == g) & y].mean()) for g in ("Female", "Male")]
    fpr = [float(chosen[(sex == g) & ~y].mean()) for g in ("Female", "Male")]
    return {
        "dp_difference": abs(rates["Female"] - rates["Male"]),
        "accuracy": float(np.mean(chosen == y)),
        "eo_difference": max(abs(tpr[0] - tpr[1]), abs(fpr[0] - fpr[1])),
        "selection_rate_female": rates["Female"],
        "selection_rate_male": rates["Male"],
    }


def _expected(pmf: np.ndarray, y: np.ndarray, sex: np.ndarray) -> dict[str, float]:
    rates = {g: float(pmf[sex == g].mean()) for g in ("Female", "Male")}
    return {
        "dp_difference": abs(rates["Female"] - rates["Male"]),
        "accuracy": float(np.mean(np.where(y, pmf, 1 - pmf))),
        "selection_rate_female": rates["Female"],
        "selection_rate_male": rates["Male"],
    }


def _serve(url: str, route: str, X: Any) -> np.ndarray:
    labels: list[str] = []
    records = json.loads(X.to_json(orient="records"))
    for k in range(0, len(records), 100):
        req = urllib.request.Request(
            f"{url}/models/{route}/predict",
            data=json.dumps({"rows": records[k : k + 100]}).encode(),
            headers={"Content-Type": "application/json", "x-request-id": f"holdout-{k}"},
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            labels += [p["label"] for p in json.loads(resp.read())["predictions"]]
    return np.asarray(labels) == POS


def _fairlearn_threshold(store: Any, parent: Any, prep: Any, X: Any) -> tuple[Any, Any]:
    from fairlearn.postprocessing import ThresholdOptimizer

    from keel import registry
    from keel.audit.mitigate import _score_estimator

    base = registry.load(store, parent.ref)
    cols = [c["name"] for c in base.input_schema]
    to = ThresholdOptimizer(estimator=_score_estimator(), prefit=True, predict_method="predict")
    to.fit(
        base.predict_proba(prep.train[cols])[:, [1]],
        (prep.train["income"] == POS).to_numpy().astype(int),
        sensitive_features=prep.train["sex"].to_numpy(),
    )
    return to, base.predict_proba(X[cols])[:, [1]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-expgrad", action="store_true")
    args = ap.parse_args()
    from keel import datasets, project, registry
    from keel.audit.mitigate import mitigate
    from keel.data import ingest
    from keel.export import export, prepared_of
    from keel.serve import start
    from keel.train import train

    results: dict[str, Any] = {"machine": machine(PACKAGES), "versions": {}}
    with tempfile.TemporaryDirectory(prefix="keel-mitigated-served-") as tmp:
        root = Path(tmp)
        with project.init(root / "proj", name="mitigated-served") as proj:
            store = proj.store
            paths = datasets.write_adult_csv(root / "data")
            ds = ingest(store, paths["train"], name="adult-train").dataset
            hold = ingest(store, paths["test"], name="adult-test").dataset
            parent = train(store, ds.ref, "income", holdout=hold.ref).register(store, "adult")
            for key, method, constraint in VERSIONS:
                if method == "expgrad" and args.no_expgrad:
                    continue
                t0 = time.perf_counter()
                mv = (
                    mitigate(store, parent.ref, method, "sex", constraint=constraint).version
                    if method
                    else parent
                )
                name = f"adult-{key}"
                fit_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                exported = export(store, mv.ref)
                export_s = time.perf_counter() - t0
                prep = prepared_of(store, mv.ref)
                X = prep.test[[c["name"] for c in mv.input_schema]].reset_index(drop=True)
                y = prep.test["income"].to_numpy() == POS
                sex = prep.test["sex"].to_numpy()
                model = registry.load(store, mv.ref)
                server = start(store, [f"{name}={mv.ref}"], max_request_rows=1000)
                try:
                    t0 = time.perf_counter()
                    served = _serve(server.url, name, X)
                    serve_s = time.perf_counter() - t0
                finally:
                    server.stop()
                entry: dict[str, Any] = {
                    "version": mv.ref,
                    "mitigate_seconds": fit_s,
                    "export_seconds": export_s,
                    "serve_seconds": serve_s,
                    "onnx_bytes": exported.size_bytes,
                    "parity": exported.parity.to_dict(),
                    "served": _figures(served, y, sex),
                    "keel_in_process": _figures(np.asarray(model.predict(X)) == POS, y, sex),
                }
                if key == "threshold":
                    to, scores = _fairlearn_threshold(store, parent, prep, X)
                    pmf = to._pmf_predict(scores, sensitive_features=sex)[:, 1]
                    runs = [
                        _figures(
                            to.predict(scores, sensitive_features=sex, random_state=r) == 1, y, sex
                        )
                        for r in range(100)
                    ]
                    entry["fairlearn_predict"] = {
                        k: {
                            "mean": float(np.mean([r[k] for r in runs])),
                            "std": float(np.std([r[k] for r in runs])),
                        }
                        for k in runs[0]
                    }
                    entry["fairlearn_expected"] = _expected(np.asarray(pmf, float), y, sex)
                elif key == "expgrad":
                    pmf = model.decision_probability(X)
                    entry["fairlearn_expected"] = _expected(np.asarray(pmf, float), y, sex)
                results["versions"][key] = entry
                print(f"{key}: {mv.ref} served in {serve_s:.1f} s", flush=True)
    rows = []
    for method, e in results["versions"].items():
        for key in ("served", "keel_in_process", "fairlearn_expected", "fairlearn_predict"):
            if key in e:
                f = {k: v["mean"] if isinstance(v, dict) else v for k, v in e[key].items()}
                eo = f"{f['eo_difference']:.4f}" if "eo_difference" in f else "—"
                rows.append([method, key, f"{f['dp_difference']:.4f}", f"{f['accuracy']:.4f}", eo])
    print(table(["version", "decisions", "DP difference", "accuracy", "EO difference"], rows))
    print(write_results("mitigated_served", results))


if __name__ == "__main__":
    main()
