"""Where a step runs: in this process, a pool worker or a Ray task. It gets plain data only
(the kind, the function's ``module:function`` name, parameters, input outputs), opens the
store once per process, tries the step up to ``retries + 1`` times, and returns what
happened; the driver records it. It never raises for a failing step."""

from __future__ import annotations

import json
import time
import traceback
from typing import Any

from keel.errors import InvalidInput

MAX_OUTPUT_BYTES = 64 * 1024
_STORES: dict[tuple[str, str], Any] = {}


def _store(shared: dict[str, Any]) -> Any:
    if shared.get("store") is not None:  # inline: the caller's own store
        return shared["store"]
    key = (shared["url"], shared["blob_root"])
    store = _STORES.get(key)
    if store is None:
        from keel.store import Store

        store = Store.open(*key)
        _STORES[key] = store
    store.settings = shared.get("settings") or {}
    return store


def _call(store: Any, task: dict[str, Any], attempt: int) -> Any:
    from keel.pipeline._kinds import KINDS, StepContext, import_function

    ctx = StepContext(
        store, task["step"], task["run_id"], task["inputs"], attempt, task.get("base_dir")
    )
    if task["kind"] == "python":
        return import_function(task["function"])(ctx, **task["params"])
    run = KINDS[task["kind"]].run
    assert run is not None
    return run(ctx, dict(task["params"]))


def _plain(step: str, output: Any) -> Any:
    """The output as stored: JSON, small."""
    try:
        data = json.dumps(output, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"step {step!r}: output: expected plain JSON values ({exc})") from None
    if len(data) > MAX_OUTPUT_BYTES:
        raise InvalidInput(
            f"step {step!r}: output: {len(data):,} bytes of JSON, over the "
            f"{MAX_OUTPUT_BYTES:,} allowed; store big results as blobs and output their sha"
        )
    return json.loads(data)


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, InvalidInput):  # say where an unexpected error came from
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            f = frames[-1]
            text += f" (at {f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name})"
    return text[:4000]


def execute(shared: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """Run one step with its retries. Bad input (:class:`InvalidInput`, a failed gate or
    validation) is not retried: it would fail the same way again."""
    attempts: list[dict[str, Any]] = []
    try:
        store = _store(shared)
    except Exception as exc:
        err = _describe(exc)
        attempts.append({"attempt": 1, "at": time.time(), "seconds": 0.0, "error": err})
        return {"status": "failed", "error": err, "attempts": attempts, "output": None}
    tries = int(task["retries"]) + 1
    for attempt in range(1, tries + 1):
        at, t0 = time.time(), time.perf_counter()
        try:
            output = _plain(task["step"], _call(store, task, attempt))
        except Exception as exc:
            err = _describe(exc)
            seconds = time.perf_counter() - t0
            attempts.append({"attempt": attempt, "at": at, "seconds": seconds, "error": err})
            if isinstance(exc, InvalidInput) or attempt == tries:
                return {"status": "failed", "error": err, "attempts": attempts, "output": None}
            time.sleep(float(task["retry_delay"]) * 2 ** (attempt - 1))
            continue
        seconds = time.perf_counter() - t0
        attempts.append({"attempt": attempt, "at": at, "seconds": seconds, "error": None})
        return {"status": "ran", "error": None, "attempts": attempts, "output": output}
    raise AssertionError("unreachable")  # pragma: no cover
