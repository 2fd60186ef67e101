"""The end-to-end demo on bundled UCI Adult: init (with an audit policy) → ingest + validate
→ search LightGBM → register → audit (performance, fairness by sex and race, explanations) →
the gate refuses it (demographic parity by sex) → mitigate (reweighing, ThresholdOptimizer),
audit each, gate → export the ThresholdOptimizer version to ONNX, serve it on 127.0.0.1 and
measure its fairness from the served answers → release the version that passes the gates
as ``production``, export it to ONNX
with parity, pruned and distilled variants (10% canary, shadow) → serve on 127.0.0.1, send
hold-out rows as traffic, ingest their labels → comparison, model card, lineage. Act two,
on the bike-sharing year: train on winter and spring, serve, replay August, detect the
seasonal drift, alert a signed webhook, retrain through a pipeline and put the new model on
the canary."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from keel import datasets, project, registry
from keel.data import ingest, load_frame
from keel.serve import comparison
from keel.train import search

__all__ = ["DEMO_AUDIT", "DemoResult", "run_demo", "serve_canary"]

MODEL_NAME = "adult-income"

#: The demo project's ``audit`` and ``card`` settings (keel.yaml).
DEMO_AUDIT: dict[str, Any] = {
    "audit": {
        "sensitive": ["sex", "race"],
        "policy": [
            "performance.accuracy >= 0.85",
            "performance.roc_auc >= 0.90",
            "fairness.sex.demographic_parity_difference <= 0.12",
        ],
    },
    "card": {
        "intended_use": "Demonstration: predicts whether a 1994 US census respondent earns "
        "more than $50K a year, to show keel's lifecycle on public data.",
        "users": "ML engineers trying keel.",
        "limitations": [
            "Census data from 1994; not representative of any population today.",
            "Not for decisions about people: income, credit or hiring.",
        ],
        "monitoring": "Prediction log sampled at 100%; labels joined by request id; "
        "comparison of production, canary and shadow with 'keel compare'.",
    },
}


@dataclass
class DemoResult:
    project: Path
    model_ref: str
    metrics: dict[str, float]
    trials: list[dict[str, Any]]
    datasets: dict[str, str]
    parity: dict[str, Any]
    tradeoff: Any
    traffic: dict[str, Any]
    comparison: dict[str, Any]
    audit: dict[str, Any] = field(default_factory=dict)
    card: dict[str, str] = field(default_factory=dict)
    monitoring: dict[str, Any] = field(default_factory=dict)
    monitoring_log: list[str] = field(default_factory=list)
    fair_served: dict[str, Any] = field(default_factory=dict)


def _audited(store: Any, ref: str, sections: list[str], seed: int) -> dict[str, Any]:
    from keel.audit import audit, evidence_values, gate

    ev = audit(store, ref, sections=sections, seed=seed, n_boot=200)
    values = evidence_values(ev.doc)
    result = gate(store, ref)
    return {
        "ref": ref,
        "evidence": ev.id,
        "accuracy": values.get("performance.accuracy"),
        "roc_auc": values.get("performance.roc_auc"),
        "dp_sex": values.get("fairness.sex.demographic_parity_difference"),
        "passed": result.passed,
        "failed": [c["rule"] for c in result.failed],
    }


def run_demo(
    folder: str | Path | None = None,
    *,
    n_trials: int = 12,
    executor: Any = "process",
    seed: int = 0,
    progress: bool = True,
    requests: int = 2000,
    monitoring: bool = True,
) -> DemoResult:
    """Run the whole flow in ``folder`` (a new temporary folder by default)."""
    from keel.audit import mitigate, write_card
    from keel.export import export_variants

    root = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="keel-demo-"))
    project.init(root, name="adult-demo").close()
    cfg = root / "keel.yaml"
    cfg.write_text(
        yaml.safe_dump({**yaml.safe_load(cfg.read_text()), **DEMO_AUDIT}, sort_keys=False)
    )
    with project.open_project(root) as proj:
        store = proj.store
        paths = datasets.write_adult_csv(root / "data")
        train_ds = ingest(store, paths["train"], name="adult-train").dataset
        test_ds = ingest(store, paths["test"], name="adult-test").dataset
        result = search(
            store,
            train_ds.ref,
            "income",
            model="lightgbm",
            n_trials=n_trials,
            holdout=test_ds.ref,
            executor=executor,
            seed=seed,
            experiment="adult-demo",
            progress=progress,
        )
        best = result.final.register(
            store, MODEL_NAME, "LightGBM on UCI Adult, best of an Optuna search"
        )
        audits: dict[str, Any] = {
            "best": _audited(store, best.ref, ["performance", "fairness"], seed)
        }
        reweighed = mitigate(store, best.ref, "reweigh", "sex").version
        thresholded = mitigate(store, best.ref, "threshold", "sex").version
        audits["threshold"] = _audited(store, thresholded.ref, ["performance", "fairness"], seed)
        sections = ["performance", "fairness", "explanations"]
        audits["reweigh"] = _audited(store, reweighed.ref, sections, seed)
        mv = reweighed  # a LightGBM model: it exports to ONNX and serves
        why = "reweighed for sex; passes the gates"
        override = None
        if not audits["reweigh"]["passed"]:  # a short search can land just past the bar
            override = "demo: the reweighed model is the servable one; see its card"
            audits["override"] = override
        registry.set_alias(store, mv.ref, "production", why=why, override=override)
        exported, tradeoff, variants = export_variants(store, mv.ref, prune={}, distill={})
        pruned, distilled = variants
        registry.set_alias(store, pruned, "candidate", why="pruned variant, on a 10% canary")
        registry.set_alias(store, distilled, "challenger", why="distilled variant, in shadow")
        test_frame = load_frame(store, test_ds.ref)
        from keel._demo_fair import serve_fair_version

        fair_served = serve_fair_version(
            store,
            thresholded.ref,
            test_frame,
            "income",
            "sex",
            positive=">50K",
            route=f"{MODEL_NAME}-fair",
        )
        traffic = serve_canary(store, test_frame, "income", requests=requests, seed=seed)
        report = comparison(store, MODEL_NAME)
        paths_ = write_card(store, mv.ref, root / "cards" / f"{MODEL_NAME}-{mv.version}")
        metrics = registry.get_version(store, mv.ref).metrics
    log: list[str] = []
    act2: dict[str, Any] = {}
    if monitoring:  # act two: a model watched on its own traffic, on the bike-sharing year
        from keel._demo_monitor import run_monitor_act

        act2 = run_monitor_act(root / "bikes", requests=min(requests, 600), say=log.append)
    return DemoResult(
        root,
        mv.ref,
        metrics,
        result.trials,
        {"train": train_ds.ref, "holdout": test_ds.ref},
        exported.parity.to_dict(),
        tradeoff,
        traffic,
        report,
        audits,
        {k: str(v) for k, v in paths_.items()},
        act2,
        log,
        fair_served,
    )


def serve_canary(
    store: Any, frame: Any, target: str, *, requests: int, seed: int = 0, threads: int = 4
) -> dict[str, Any]:
    """Serve MODEL_NAME as production 90 / candidate 10 with the ``challenger`` in shadow on
    127.0.0.1, send ``requests`` single-row requests of ``frame`` (sticky by a caller key)
    from ``threads`` keep-alive connections, then ingest the rows' true labels by request id.
    Returns the traffic seen: requests, seconds, versions that answered, labels matched."""
    import threading
    import time

    import pandas as pd

    from keel._demo_monitor import post_rows
    from keel.serve import PredictionLog, Release, ingest_labels, start

    release = Release(
        MODEL_NAME, {"production": 90, "candidate": 10}, shadow="challenger", seed=seed
    )
    rows = frame.drop(columns=[target]).head(requests).to_dict("records")
    rows = [{k: (None if v != v else v) for k, v in r.items()} for r in rows]  # NaN: missing
    truth = frame[target].head(requests).astype(str).tolist()
    answers: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def send(url: str, part: range) -> None:
        got = post_rows(url, MODEL_NAME, [rows[i] for i in part], [f"caller-{i}" for i in part])
        with lock:
            answers.extend(
                (rid, version, truth[i]) for (rid, version), i in zip(got, part, strict=True)
            )

    with PredictionLog(store) as log, start(store, [release], sink=log) as server:
        t0 = time.perf_counter()
        workers = [
            threading.Thread(target=send, args=(server.url, range(k, len(rows), threads)))
            for k in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        seconds = time.perf_counter() - t0
        deadline = time.monotonic() + 30  # let the shadow's copies finish
        info = server.app.slots[MODEL_NAME].describe()["shadow"]
        while info["ok"] + info["failed"] + info["dropped"] < info["sent"]:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
            info = server.app.slots[MODEL_NAME].describe()["shadow"]
    labels = pd.DataFrame({"request_id": [a[0] for a in answers], "y": [a[2] for a in answers]})
    path = Path(tempfile.mkdtemp(prefix="keel-demo-labels-")) / "labels.parquet"
    labels.to_parquet(path)
    matched = ingest_labels(store, path, label_col="y", model=MODEL_NAME)["matched"]
    served: dict[int, int] = {}
    for _, version, _ in answers:
        served[version] = served.get(version, 0) + 1
    return {
        "requests": len(answers),
        "seconds": seconds,
        "requests_per_s": len(answers) / seconds,
        "served_by_version": dict(sorted(served.items())),
        "labels_matched": matched,
    }
