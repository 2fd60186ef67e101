"""Batch scoring on Ray Data against in-process scoring of the same file: ``keel.serve``'s
``score(..., executor="ray")`` and ``score(..., executor="inline")`` of an Adult-shaped
Parquet file at a few sizes, with the model's exported ONNX graph (LightGBM, 100 trees).

Both calls do the whole job a user runs: read the file, score every row, check the count,
and store the predictions as a dataset with lineage. Ray runs on a local Ray started once
before the timings (``ray.init(num_cpus=CORES)``: the cost of starting Ray is reported
apart), so a Ray timing is the job's own overhead (planning, actor start with the model
loaded once per actor, moving blocks) plus the scoring. Each size is timed REPEATS times,
inline and Ray alternating; medians are reported. A straight line ``seconds = a + b*rows``
fitted to each gives the overhead (``a``) and the per-row cost (``b``); the crossover is
the size past which Ray is faster, when its per-row cost is the lower.

    .venv/bin/python bench/bench_ray_score.py            # writes bench/results/ray_score.json
    .venv/bin/python bench/bench_ray_score.py --sizes 10000,100000 --repeats 2   # quicker
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, median, table, write_results

PACKAGES = ("keel", "ray", "onnxruntime", "pyarrow", "lightgbm")


def setup(root: Path, sizes: list[int]) -> dict[int, Path]:
    """A project with the exported Adult model ``adult`` and one Parquet file per size."""
    import keel.datasets
    from keel.data import ingest
    from keel.export import export
    from keel.project import init
    from keel.train import train

    df = keel.datasets.adult("train")
    df.to_csv(root / "train.csv", index=False)
    with init(root) as proj:
        ingest(proj.store, root / "train.csv", name="adult")
        run = train(proj.store, "adult", "income", params={"n_estimators": 100}, seed=0)
        run.register(proj.store, "adult")
        export(proj.store, "adult/1")
    files = {}
    rows = df.drop(columns=["income"])
    for n in sizes:
        files[n] = root / f"rows-{n}.parquet"
        rows.sample(n, replace=True, random_state=n).to_parquet(files[n], row_group_size=50_000)
    return files


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares ``seconds = a + b*rows``."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    return my - b * mx, b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000,3000000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-rows", type=int, default=8192)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    cores = len(os.sched_getaffinity(0))

    import ray
    from keel.project import open_project
    from keel.serve._score import score

    with tempfile.TemporaryDirectory(prefix="keel-bench-ray-") as tmp:
        root = Path(tmp)
        files = setup(root, sizes)
        t0 = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - t0
        timings: dict[str, dict[int, list[float]]] = {"inline": {}, "ray": {}}
        try:
            with open_project(root) as proj:
                for n in sizes:
                    for r in range(args.repeats):
                        order = ("inline", "ray") if r % 2 == 0 else ("ray", "inline")
                        for ex in order:
                            res = score(
                                proj.store,
                                "adult/1",
                                files[n],
                                executor=ex,
                                name=f"s{n}",
                                batch_rows=args.batch_rows,
                            )
                            assert res.rows == n and res.used == "onnx"
                            timings[ex].setdefault(n, []).append(res.seconds)
                            print(f"{ex:6} {n:>9,} rows {res.seconds:8.3f} s", file=sys.stderr)
        finally:
            ray.shutdown()

    med = {ex: {n: median(ts) for n, ts in by.items()} for ex, by in timings.items()}
    lines = {ex: fit(sorted(m.items())) for ex, m in med.items()}
    (a_in, b_in), (a_ray, b_ray) = lines["inline"], lines["ray"]
    crossover = (a_ray - a_in) / (b_in - b_ray) if b_ray < b_in else None
    rows = []
    for n in sizes:
        i, r = med["inline"][n], med["ray"][n]
        rows.append([n, r / i, n / i, n / r, i, r, r - i])
    print(
        table(
            [
                "rows",
                "Ray time / inline time",
                "inline rows/s",
                "Ray rows/s",
                "inline s",
                "Ray s",
                "Ray overhead s",
            ],
            rows,
        )
    )
    cross = (
        f"{crossover:,.0f} rows" if crossover is not None else "none (Ray's per-row cost is higher)"
    )
    print(
        f"fit: inline {a_in:.3f} s + {b_in * 1e6:.3f} µs/row; Ray {a_ray:.3f} s + "
        f"{b_ray * 1e6:.3f} µs/row; crossover {cross}; Ray start {ray_start:.1f} s (apart)"
    )
    info = machine(PACKAGES)
    print(
        f"CPU {info['cpu']}, {cores} cores, load {info['loadavg_1_5_15_at_start']} → "
        f"{info['loadavg_1_5_15_at_end']}"
    )
    write_results(
        "ray_score",
        {
            "machine": info,
            "sizes": sizes,
            "repeats": args.repeats,
            "batch_rows": args.batch_rows,
            "seconds": {ex: {str(n): ts for n, ts in by.items()} for ex, by in timings.items()},
            "median_seconds": {ex: {str(n): t for n, t in m.items()} for ex, m in med.items()},
            "fit": {
                "inline": {"overhead_s": a_in, "us_per_row": b_in * 1e6},
                "ray": {"overhead_s": a_ray, "us_per_row": b_ray * 1e6},
            },
            "crossover_rows": crossover,
            "ray_start_s": ray_start,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
