"""Ingest throughput: ``keel.data.ingest`` of a 1M-row Adult-shaped CSV, in one process with
plain ``pandas.read_csv`` and ``pyarrow.csv.read_csv`` of the same file for context.

The CSV is the bundled Adult train split resampled with replacement (fixed seed), written
once to a temp dir (not timed). ``ingest`` does much more than the readers: read, infer a
schema, validate every cell, profile, encode Parquet (zstd), write blobs and records into a
fresh store. The readers only read. Each is timed REPEATS times (order rotated per repeat);
medians are reported. Separate passes then time keel's stages one by one.

    .venv/bin/python bench/bench_ingest.py              # writes bench/results/ingest.json
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import ROOT, machine, median, table, write_results

PACKAGES = ("keel", "pandas", "pyarrow", "numpy", "duckdb", "sqlalchemy")


def make_csv(path: Path, rows: int, seed: int) -> dict[str, Any]:
    import keel.datasets

    df = keel.datasets.adult("train")
    big = df.sample(n=rows, replace=True, random_state=seed).reset_index(drop=True)
    big.to_csv(path, index=False)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "rows": rows,
        "columns": int(big.shape[1]),
        "bytes": path.stat().st_size,
        "sha256": digest,
        "seed": seed,
        "source_rows": int(df.shape[0]),
    }


def keel_ingest(path: Path, workdir: Path, rows: int, name: str) -> Callable[[], float]:
    """A fresh store (opened, not timed), then the timed ingest; checks every row landed."""
    from keel.data import ingest
    from keel.store import Store

    def run() -> float:
        d = Path(tempfile.mkdtemp(prefix="keel-", dir=workdir))
        store = Store.open(f"sqlite:///{d}/store.db", d / "blobs")
        try:
            t0 = time.perf_counter()
            res = ingest(store, path, name=name)
            wall = time.perf_counter() - t0
        finally:
            store.close()
        if res.dataset.n_rows != rows or res.quarantine is not None or res.problems:
            raise AssertionError(
                f"keel ingest stored {res.dataset.n_rows} rows of {rows} "
                f"({len(res.problems)} problems)"
            )
        return wall

    return run


def pandas_read(path: Path, rows: int) -> Callable[[], float]:
    import pandas as pd

    def run() -> float:
        t0 = time.perf_counter()
        df = pd.read_csv(path)
        wall = time.perf_counter() - t0
        if len(df) != rows:
            raise AssertionError(f"pandas read {len(df)} rows of {rows}")
        return wall

    return run


def pyarrow_read(path: Path, rows: int) -> Callable[[], float]:
    import pyarrow.csv as pacsv

    def run() -> float:
        t0 = time.perf_counter()
        t = pacsv.read_csv(path)
        wall = time.perf_counter() - t0
        if t.num_rows != rows:
            raise AssertionError(f"pyarrow read {t.num_rows} rows of {rows}")
        return wall

    return run


def stages(path: Path) -> dict[str, float]:
    """keel's ingest stages timed one by one through keel.data's public functions, plus the
    Parquet encoding ingest does (zstd), redone here with pyarrow. Store writes not included.
    Best effort: keel.data is young, so a changed signature is reported, not fatal."""
    import pyarrow.parquet as pq

    from keel.data import infer_schema, profile, read_source, validate

    out: dict[str, float] = {}
    t0 = time.perf_counter()
    raw, info = read_source(path)
    out["read_source"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    schema = infer_schema(raw)
    out["infer_schema"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = validate(raw, schema, source=info)
    out["validate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    profile(result.good, schema)
    out["profile"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pq.write_table(result.good, io.BytesIO(), compression="zstd", store_schema=True)
    out["parquet_zstd"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="adult1m", help="dataset name given to ingest")
    p.add_argument("--out", default="ingest", help="results name: bench/results/<out>.json")
    a = p.parse_args(argv)

    import pyarrow as pa

    try:
        from keel.data import ingest  # noqa: F401
    except ImportError as exc:
        print(f"keel.data.ingest is not importable yet: {exc}", file=sys.stderr)
        return 2

    t_begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="keel-bench-ingest-") as tmp:
        work = Path(tmp)
        csv = work / "adult1m.csv"
        t0 = time.perf_counter()
        data = make_csv(csv, a.rows, a.seed)
        print(
            f"CSV: {data['rows']:,} rows x {data['columns']} columns, "
            f"{data['bytes'] / 1e6:.0f} MB, made in {time.perf_counter() - t0:.0f} s (not timed)"
        )
        # Warm-up on a small file: imports and first-call costs stay out of the timings.
        small = work / "small.csv"
        make_csv(small, 2_000, a.seed)
        for warm in (
            keel_ingest(small, work, 2_000, "warmup"),
            pandas_read(small, 2_000),
            pyarrow_read(small, 2_000),
        ):
            warm()

        tools = {
            "keel.data.ingest": keel_ingest(csv, work, a.rows, a.name),
            "pandas.read_csv": pandas_read(csv, a.rows),
            "pyarrow.csv.read_csv": pyarrow_read(csv, a.rows),
        }
        walls: dict[str, list[float]] = {k: [] for k in tools}
        names = list(tools)
        for rep in range(a.repeats):
            order = names[rep % len(names) :] + names[: rep % len(names)]
            for n in order:
                walls[n].append(tools[n]())
            print(
                f"  repeat {rep + 1}/{a.repeats}: "
                + "  ".join(f"{n} {walls[n][-1]:.2f} s" for n in names),
                flush=True,
            )
        stage_s: dict[str, Any] | str
        try:
            passes = [stages(csv) for _ in range(a.repeats)]
            stage_s = {n: median([p[n] for p in passes]) for n in passes[0]}
            stage_s["passes_s"] = passes
        except Exception as exc:  # best effort, see stages()
            stage_s = f"unavailable: {type(exc).__name__}: {exc}"
    total_s = time.perf_counter() - t_begin

    res = {
        n: {"wall_s": w, "wall_median_s": median(w), "rows_per_s": a.rows / median(w)}
        for n, w in walls.items()
    }
    k = res["keel.data.ingest"]
    ratios = {
        "keel_ingest_over_pandas_read_time": k["wall_median_s"]
        / res["pandas.read_csv"]["wall_median_s"],
        "keel_ingest_over_pyarrow_read_time": k["wall_median_s"]
        / res["pyarrow.csv.read_csv"]["wall_median_s"],
    }
    results = {
        "benchmark": "ingest",
        "machine": machine(PACKAGES),
        "config": {
            "repeats": a.repeats,
            "dataset_name": a.name,
            "csv": data,
            "keel": "ingest(store, path, name=...) into a fresh SQLite store + blob dir each "
            "repeat; schema inferred; on_error='raise'; every row checked stored",
            "readers": "pandas.read_csv(path) and pyarrow.csv.read_csv(path), defaults",
            "pyarrow_cpu_count": pa.cpu_count(),
        },
        "results": res,
        "ratios": ratios,
        "keel_stages_s": stage_s,
        "total_seconds": total_s,
    }
    path = write_results(a.out, results)

    print()
    print(f"Ingest of {a.rows:,} Adult-shaped CSV rows, median of {a.repeats}")
    rows = [
        [n, r["wall_median_s"], r["rows_per_s"], f"{k['wall_median_s'] / r['wall_median_s']:.1f}x"]
        for n, r in res.items()
    ]
    print(table(["what", "wall s", "rows/s", "keel time / this"], rows))
    print(
        f"\nkeel's ingest (read + infer + validate + profile + Parquet + store) takes "
        f"{ratios['keel_ingest_over_pandas_read_time']:.1f}x the time of a bare pandas read and "
        f"{ratios['keel_ingest_over_pyarrow_read_time']:.1f}x a bare pyarrow read."
    )
    if isinstance(stage_s, dict):
        parts = {n: v for n, v in stage_s.items() if n != "passes_s"}
        listed = ", ".join(f"{n} {v:.2f} s" for n, v in parts.items())
        print(
            f"keel stages, each alone (median of {a.repeats} separate passes): {listed}; "
            f"sum {sum(parts.values()):.2f} s (store writes not included)"
        )
    else:
        print(f"keel stages: {stage_s}")
    print(f"Wrote {path.relative_to(ROOT)} ({total_s:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
