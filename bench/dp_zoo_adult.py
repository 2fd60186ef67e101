"""The zoo's differentially private models on UCI Adult: hold-out accuracy and ROC AUC
against ε, and, at the default ε = 1, the exported graph's parity and the served answers.

Each of ``dp_logistic_regression`` and ``dp_gaussian_nb`` (zoo defaults but ε) is trained on
the bundled Adult train split with the Adult test split as hold-out, in a fresh project in a
temporary folder, for each ε in EPSILONS and each of SEEDS seeds (the noise is drawn from the
seed): the table gives the mean and standard deviation over seeds. At ε = 1, seed 0, the
version is exported (the whole pipeline, parity checked on the 16,281 hold-out rows) and
served by ``keel serve`` on 127.0.0.1; every hold-out row is sent to ``/models/NAME/predict``
and the served probabilities and labels are compared with ``model.predict_proba`` and
``model.predict`` in-process; accuracy and ROC AUC are also computed from the served answers.
The non-private ``logistic_regression`` (zoo defaults) is the reference row.

    .venv/bin/python bench/dp_zoo_adult.py            # writes bench/results/dp_zoo.json
    .venv/bin/python bench/dp_zoo_adult.py --quick    # 8,000 training rows, 2 seeds
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("dp_logistic_regression", "dp_gaussian_nb")
EPSILONS = (0.3, 1.0, 3.0, 10.0)
SEEDS = 5
BATCH = 1000


def _served(url: str, name: str, frame: Any, classes: list[Any]) -> tuple[np.ndarray, list[Any]]:
    import http.client

    host, port = url.removeprefix("http://").rsplit(":", 1)
    probs, labels = [], []
    for start in range(0, len(frame), BATCH):
        part = frame.iloc[start : start + BATCH]
        rows = [
            {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
            for r in json.loads(part.to_json(orient="records"))
        ]
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        conn.request(
            "POST",
            f"/models/{name}/predict",
            json.dumps({"rows": rows}),
            {"Content-Type": "application/json"},
        )
        body = json.loads(conn.getresponse().read())
        conn.close()
        for p in body["predictions"]:
            probs.append([p["probabilities"][str(c)] for c in classes])
            labels.append(p["label"])
    return np.asarray(probs), labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8,000 training rows, 2 seeds")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dp_zoo.json"))
    args = ap.parse_args()
    from sklearn.metrics import accuracy_score, roc_auc_score

    from keel import registry
    from keel.data import ingest
    from keel.datasets import adult
    from keel.export import export
    from keel.serve import start
    from keel.store import Store
    from keel.train import train

    seeds = 2 if args.quick else SEEDS
    rows: list[dict[str, Any]] = []
    served: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = Store.open(f"sqlite:///{root}/store.db", root / "blobs")
        tr, te = adult("train"), adult("test")
        if args.quick:
            tr = tr.sample(8000, random_state=0)
        tr.to_csv(root / "train.csv", index=False)
        te.to_csv(root / "test.csv", index=False)
        ingest(store, root / "train.csv", name="adult")
        ingest(store, root / "test.csv", name="adult_test")
        grid = [("logistic_regression", None)] + [(k, e) for k in KINDS for e in EPSILONS]
        for kind, eps in grid:
            acc, auc, secs = [], [], []
            for seed in range(1 if eps is None else seeds):
                params = {} if eps is None else {"epsilon": eps}
                t0 = time.perf_counter()
                res = train(
                    store,
                    "adult",
                    "income",
                    model=kind,
                    params=params,
                    holdout="adult_test",
                    seed=seed,
                )
                secs.append(time.perf_counter() - t0)
                acc.append(res.metrics["accuracy"])
                auc.append(res.metrics["roc_auc"])
                if eps == 1.0 and seed == 0:
                    mv = res.register(store, kind)
                    registry.set_alias(store, mv.ref, "production")
                    served[kind] = {"ref": mv.ref, "parity": export(store, mv.ref).parity.to_dict()}
            row = {
                "model": kind,
                "epsilon": "none" if eps is None else eps,
                "seeds": len(acc),
                "accuracy": statistics.fmean(acc),
                "accuracy_sd": statistics.pstdev(acc),
                "roc_auc": statistics.fmean(auc),
                "roc_auc_sd": statistics.pstdev(auc),
                "train_s": statistics.fmean(secs),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        server = start(store, list(KINDS), max_request_rows=BATCH)
        try:
            X, y = te.drop(columns=["income"]), te["income"].to_numpy()
            for kind in KINDS:
                model = registry.load(store, served[kind]["ref"])
                classes = list(model.output_schema["classes"])
                got, labels = _served(server.url, kind, X, classes)
                want = model.predict_proba(X)
                positive = classes.index(">50K")
                served[kind].update(
                    {
                        "rows": len(X),
                        "max_abs_diff_vs_in_process": float(np.max(np.abs(got - want))),
                        "label_agreement_vs_in_process": float(
                            np.mean(np.asarray(labels) == np.asarray(model.predict(X)))
                        ),
                        "served_accuracy": float(accuracy_score(y, labels)),
                        "served_roc_auc": float(roc_auc_score(y == ">50K", got[:, positive])),
                    }
                )
                print(json.dumps({kind: served[kind]}), flush=True)
        finally:
            server.stop()
        store.close()
    out = {
        "rows": rows,
        "served_at_epsilon_1": served,
        "settings": {"seeds": seeds, "quick": args.quick, "n_train": len(tr), "n_test": len(te)},
    }
    Path(args.out).write_text(json.dumps(out, indent=2))
    print("| model | ε | accuracy | ROC AUC | train s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['epsilon']} | {r['accuracy']:.4f} ± {r['accuracy_sd']:.4f} | "
            f"{r['roc_auc']:.4f} ± {r['roc_auc_sd']:.4f} | {r['train_s']:.1f} |"
        )
    print(
        "| model (ε = 1, seed 0) | parity max Δp | served max Δp | served = in-process "
        "labels | served accuracy | served ROC AUC |"
    )
    print("|---|---|---|---|---|---|")
    for kind, s in served.items():
        print(
            f"| {kind} | {s['parity']['max_abs_diff']:.2g} | {s['max_abs_diff_vs_in_process']:.2g}"
            f" | {s['label_agreement_vs_in_process']:.4f} | {s['served_accuracy']:.4f} | "
            f"{s['served_roc_auc']:.4f} |"
        )


if __name__ == "__main__":
    main()
