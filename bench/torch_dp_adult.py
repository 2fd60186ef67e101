"""DP-SGD on UCI Adult: torch-mlp accuracy, ROC AUC and membership-inference AUC against ε.

keel's ``torch-mlp`` (hidden [128, 64], the inferred feature spec) is trained on the bundled
Adult train split with the Adult test split as hold-out, in a fresh project in a temporary
folder, once without privacy and once per ε in 1, 3, 8 (DP-SGD through Opacus, δ = 1e-5,
per-sample gradients clipped to 1.0, EPOCHS epochs of Poisson-sampled batches of 256). Each
row gives the hold-out accuracy and ROC AUC, the ε the accountant says was spent, the
membership-inference AUC of :func:`keel.audit.membership_inference` (the worse of the loss
threshold and ART's black-box attack, 2,000 members and 2,000 non-members, seed 0) and the
training time.

    .venv/bin/python bench/torch_dp_adult.py            # writes bench/results/torch_dp.json
    .venv/bin/python bench/torch_dp_adult.py --quick    # 8,000 training rows, 4 epochs
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

EPSILONS = (None, 8.0, 3.0, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8,000 training rows, 4 epochs")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "torch_dp.json"))
    args = ap.parse_args()
    import torch

    from keel.audit import membership_inference
    from keel.data import ingest
    from keel.datasets import adult
    from keel.export import prepared_of
    from keel.store import Store
    from keel.train import get_run, train

    epochs = args.epochs or (4 if args.quick else 10)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
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
        for eps in EPSILONS:
            params = {"epochs": epochs, "batch_size": 256, "patience": epochs}
            if eps is not None:
                params["dp_epsilon"] = eps
            t0 = time.perf_counter()
            res = train(
                store,
                "adult",
                "income",
                model="torch-mlp",
                params=params,
                holdout="adult_test",
                seed=0,
            )
            seconds = time.perf_counter() - t0
            mv = res.register(store, "adult_torch")
            prep = prepared_of(store, mv.ref)
            mia = membership_inference(
                res.model,
                prep.train[prep.columns].reset_index(drop=True),
                prep.train[prep.target].to_numpy(),
                prep.test[prep.columns].reset_index(drop=True),
                prep.test[prep.target].to_numpy(),
                n_rows=2000,
                seed=0,
            )
            spent = get_run(store, res.run_id)["metrics"].get("dp_epsilon")
            row = {
                "target_epsilon": "none" if eps is None else eps,
                "spent_epsilon": spent,
                "accuracy": res.metrics["accuracy"],
                "roc_auc": res.metrics["roc_auc"],
                "mia_auc": mia["auc"],
                "train_s": seconds,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        store.close()
    out = {
        "rows": rows,
        "settings": {
            "epochs": epochs,
            "delta": 1e-5,
            "max_grad_norm": 1.0,
            "quick": args.quick,
            "n_train": len(tr),
            "n_test": len(te),
        },
    }
    Path(args.out).write_text(json.dumps(out, indent=2))
    print("| ε (target) | ε spent | accuracy | ROC AUC | MIA AUC | train s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        spent = "—" if r["spent_epsilon"] is None else f"{r['spent_epsilon']:.2f}"
        print(
            f"| {r['target_epsilon']} | {spent} | {r['accuracy']:.4f} | {r['roc_auc']:.4f} | "
            f"{r['mia_auc']:.4f} | {r['train_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
