"""Python step functions the pipeline tests name as ``tests.pipeline.steps:NAME``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def flaky(ctx: Any, counter: str, fail_times: int) -> dict[str, Any]:
    """Fails the first ``fail_times`` calls (counted in the file ``counter``), then succeeds."""
    path = Path(counter)
    n = int(path.read_text()) if path.exists() else 0
    path.write_text(str(n + 1))
    if n < fail_times:
        raise RuntimeError(f"transient failure {n + 1}")
    return {"calls": n + 1, "attempt": ctx.attempt}


def needs_file(ctx: Any, flag: str) -> dict[str, Any]:
    """Fails until the file ``flag`` exists; passes on the dataset it got."""
    if not Path(flag).exists():
        raise RuntimeError(f"{flag} is not there yet")
    return {"checked": ctx.find("dataset")}


def rows(ctx: Any, scale: int = 1) -> dict[str, Any]:
    from keel.data import get_dataset

    ds = get_dataset(ctx.store, ctx.find("dataset"))
    return {"rows": ds.n_rows * scale, "inputs": sorted(ctx.inputs)}


def not_json(ctx: Any) -> Any:
    return {"when": object()}
