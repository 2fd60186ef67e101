"""The data of bench_ui.py: one set of runs written into a keel project and into MLflow's own
SQLite store, the same values in both, cached on disk between runs of the benchmark.

Not a benchmark itself. ``build(spec)`` returns the two stores, writing them on first use
into ``<tmp>/keel-bench-ui-v<FORMAT>-<spec>/`` (each behind a ``.done`` marker, so a store
left half-written by an interrupted run is rebuilt, never used).

The runs, seeded (numpy ``default_rng(SEED)``), one experiment ``bench-ui`` in each tool:

- ``runs`` runs named ``run-00000`` ... (keel: tag ``name``; MLflow: the run name), started
  one second apart, newest last;
- ``params`` params each: every fifth a category (``model``-like strings), the others
  numbers (ints and 4-digit floats), logged with their Python type (MLflow keeps a string);
- ``metrics`` metrics each (``METRICS``): one value at step 0, or for the ``curves`` runs
  whose index is a multiple of ``runs // curves`` a curve of ``steps`` steps that ends on
  the same final value. The last value of each metric is the final value in both tools.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1  # bump when what is written changes: the cache key
SEED = 0
EXPERIMENT = "bench-ui"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the first run's start; runs are 1 s apart
METRICS = (
    "roc_auc",
    "accuracy",
    "f1",
    "precision",
    "recall",
    "log_loss",
    "brier",
    "loss",
    "val_loss",
    "learning_rate",
)
CATEGORIES = ("lightgbm", "xgboost", "logreg", "mlp", "random_forest")
# MLflow's log_batch limits (mlflow.utils.validation): 1,000 metrics, 100 params + tags,
# 1,000 entities in all per call.
MLFLOW_MAX_METRICS = 1000
MLFLOW_MAX_ENTITIES = 1000


@dataclass(frozen=True)
class Spec:
    runs: int = 10_000
    params: int = 20
    metrics: int = 10
    curves: int = 100
    steps: int = 1000

    def key(self) -> str:
        return f"r{self.runs}-p{self.params}-m{self.metrics}-c{self.curves}-s{self.steps}"

    def curve_runs(self) -> list[int]:
        """Indices of the runs whose metrics are curves of ``steps`` steps."""
        every = max(1, self.runs // max(1, self.curves))
        return list(range(0, self.runs, every))[: self.curves]


@dataclass
class Stores:
    spec: Spec
    root: Path
    keel_project: Path
    mlflow_db: Path
    mlflow_artifacts: Path
    mlflow_experiment_id: str
    built_s: dict[str, float]  # seconds each store took to write (0 when it came from cache)


# -- the values --------------------------------------------------------------------------


def param_names(spec: Spec) -> list[str]:
    return [f"param_{j:02d}" for j in range(spec.params)]


def metric_names(spec: Spec) -> list[str]:
    names = list(METRICS[: spec.metrics])
    names += [f"metric_{j:02d}" for j in range(len(names), spec.metrics)]
    return names


class Values:
    """Every value of every run, drawn once from the seed."""

    def __init__(self, spec: Spec) -> None:
        rng = np.random.default_rng(SEED)
        self.spec = spec
        self.finals = np.round(rng.uniform(0.5, 0.99, (spec.runs, spec.metrics)), 6)
        self.cats = rng.integers(0, len(CATEGORIES), (spec.runs, spec.params))
        self.ints = rng.integers(1, 512, (spec.runs, spec.params))
        self.floats = np.round(rng.uniform(1e-4, 1.0, (spec.runs, spec.params)), 4)
        self.curve_set = set(spec.curve_runs())
        self.starts = np.round(rng.uniform(0.0, 0.5, (spec.runs, spec.metrics)), 6)
        self.noise_seed = int(rng.integers(0, 2**31))

    def name(self, i: int) -> str:
        return f"run-{i:05d}"

    def params(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for j, key in enumerate(param_names(self.spec)):
            if j % 5 == 0:
                out[key] = CATEGORIES[int(self.cats[i, j])]
            elif j % 2:
                out[key] = int(self.ints[i, j])
            else:
                out[key] = float(self.floats[i, j])
        return out

    def curves(self, i: int) -> np.ndarray:
        """(metrics, steps) values; the last column is the run's final values."""
        spec = self.spec
        if i not in self.curve_set:
            return self.finals[i][:, None]
        steps = np.arange(spec.steps)
        rng = np.random.default_rng(self.noise_seed + i)
        final, start = self.finals[i][:, None], self.starts[i][:, None]
        decay = np.exp(-steps[None, :] / (spec.steps / 6))
        noise = rng.normal(0.0, 0.01, (spec.metrics, spec.steps)) * decay
        out = np.round(final + (start - final) * decay + noise, 6)
        out[:, -1] = self.finals[i]
        return out


# -- keel --------------------------------------------------------------------------------


def write_keel(folder: Path, spec: Spec, values: Values, say: Any = print) -> None:
    """A keel project in ``folder`` holding the runs, through keel's Python API."""
    from keel import project
    from keel.train import start_run

    names = metric_names(spec)
    with project.init(folder, name="bench-ui") as proj:
        store = proj.store
        for i in range(spec.runs):
            run = start_run(store, EXPERIMENT, seed=i, tags={"name": values.name(i)})
            run.log_params(values.params(i))
            curves = values.curves(i)
            for s in range(curves.shape[1]):
                run.log_metrics(
                    {k: float(v) for k, v in zip(names, curves[:, s], strict=True)}, step=s
                )
            run.end()
            if (i + 1) % 1000 == 0:
                say(f"  keel: {i + 1:,}/{spec.runs:,} runs")


# -- MLflow ------------------------------------------------------------------------------


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for k in range(0, len(items), size):
        yield items[k : k + size]


def write_mlflow(db: Path, artifacts: Path, spec: Spec, values: Values, say: Any = print) -> str:
    """The same runs in MLflow's own SQLite store through ``MlflowClient`` (``log_batch`` up
    to its limits); returns the experiment id."""
    _quiet_mlflow()
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
    names = metric_names(spec)
    for i in range(spec.runs):
        start_ms = int((T0 + i) * 1000)
        run = client.create_run(exp, start_time=start_ms, run_name=values.name(i))
        rid = run.info.run_id
        params = [Param(k, str(v)) for k, v in values.params(i).items()]
        curves = values.curves(i)
        metrics = [
            Metric(k, float(curves[m, s]), start_ms + s, s)
            for s in range(curves.shape[1])
            for m, k in enumerate(names)
        ]
        tags = [RunTag("seed", str(i))]
        first = MLFLOW_MAX_ENTITIES - len(params) - len(tags)
        client.log_batch(rid, metrics=metrics[:first], params=params, tags=tags)
        for part in _batches(metrics[first:], MLFLOW_MAX_METRICS):
            client.log_batch(rid, metrics=part)
        client.set_terminated(rid, "FINISHED", end_time=start_ms + 900)
        if (i + 1) % 1000 == 0:
            say(f"  mlflow: {i + 1:,}/{spec.runs:,} runs")
    return str(exp)


# -- the cache ---------------------------------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get("KEEL_BENCH_UI_CACHE") or tempfile.gettempdir())


def build(spec: Spec, *, say: Any = print, root: Path | None = None) -> Stores:
    """Both stores for ``spec``, from the cache when there (and complete), else written now."""
    import shutil

    base = (root or cache_root()) / f"keel-bench-ui-v{FORMAT}-{spec.key()}"
    base.mkdir(parents=True, exist_ok=True)
    values = Values(spec)
    built = {"keel": 0.0, "mlflow": 0.0}
    keel_dir, ml_dir = base / "keel", base / "mlflow"
    if not (base / "keel.done").is_file():
        shutil.rmtree(keel_dir, ignore_errors=True)
        say(f"writing the keel store in {keel_dir} ({spec.runs:,} runs)")
        t0 = time.perf_counter()
        write_keel(keel_dir, spec, values, say)
        built["keel"] = time.perf_counter() - t0
        (base / "keel.done").write_text(f"{built['keel']:.1f}\n")
    if not (base / "mlflow.done").is_file():
        shutil.rmtree(ml_dir, ignore_errors=True)
        ml_dir.mkdir(parents=True)
        say(f"writing the MLflow store in {ml_dir} ({spec.runs:,} runs)")
        t0 = time.perf_counter()
        exp = write_mlflow(ml_dir / "mlflow.db", ml_dir / "artifacts", spec, values, say)
        built["mlflow"] = time.perf_counter() - t0
        (base / "mlflow.done").write_text(f"{exp}\n{built['mlflow']:.1f}\n")
    exp_id = (base / "mlflow.done").read_text().split()[0]
    return Stores(spec, base, keel_dir, ml_dir / "mlflow.db", ml_dir / "artifacts", exp_id, built)


def describe(stores: Stores) -> dict[str, Any]:
    return {
        **asdict(stores.spec),
        "format": FORMAT,
        "seed": SEED,
        "experiment": EXPERIMENT,
        "metric_names": metric_names(stores.spec),
        "cache": str(stores.root),
        "build_seconds": stores.built_s,
    }
