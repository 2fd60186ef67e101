"""The end-to-end demo on bundled UCI Adult: init → ingest + validate → search LightGBM →
register → alias ``candidate`` → export to ONNX with parity, pruned and distilled variants →
results, trade-off and lineage."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel import datasets, project, registry
from keel.data import ingest
from keel.train import search

__all__ = ["DemoResult", "run_demo"]

MODEL_NAME = "adult-income"


@dataclass
class DemoResult:
    project: Path
    model_ref: str
    metrics: dict[str, float]
    trials: list[dict[str, Any]]
    datasets: dict[str, str]
    parity: dict[str, Any]
    tradeoff: Any


def run_demo(
    folder: str | Path | None = None,
    *,
    n_trials: int = 12,
    executor: Any = "process",
    seed: int = 0,
    progress: bool = True,
) -> DemoResult:
    """Run the whole flow in ``folder`` (a new temporary folder by default)."""
    root = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="keel-demo-"))
    with project.init(root, name="adult-demo") as proj:
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
        final = result.final
        mv = final.register(store, MODEL_NAME, "LightGBM on UCI Adult, best of an Optuna search")
        registry.set_alias(store, mv.ref, "candidate", why="best trial of the demo search")
        from keel.export import export_variants

        exported, tradeoff, _ = export_variants(store, mv.ref, prune={}, distill={})
    return DemoResult(
        root,
        mv.ref,
        final.metrics,
        result.trials,
        {"train": train_ds.ref, "holdout": test_ds.ref},
        exported.parity.to_dict(),
        tradeoff,
    )
