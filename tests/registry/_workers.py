"""Code run in child processes by the registry tests (importable by spawned workers)."""

from __future__ import annotations

import time


def register_one(url: str, blob_root: str, start_at: float) -> int:
    from keel import registry
    from keel.store import Store

    store = Store.open(url, blob_root)
    sha = store.blobs.put_bytes(b"artifact")
    time.sleep(max(0.0, start_at - time.time()))
    mv = registry.register(
        store,
        "contended",
        artifact_sha=sha,
        flavor="sklearn",
        task="classification",
        input_schema=[{"name": "x", "type": "float"}],
        output_schema={"task": "classification", "classes": [0, 1]},
    )
    store.close()
    return mv.version
