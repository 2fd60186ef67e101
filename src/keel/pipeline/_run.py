"""Running a pipeline: check it, then in waves run every step whose inputs are done —
reusing a stored output when the step's key matches — through an executor."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput
from keel.pipeline import _kinds, _records
from keel.pipeline._spec import Pipeline, Step
from keel.pipeline._worker import execute

__all__ = ["run_pipeline", "step_key"]


def step_key(step: Step, input_keys: Mapping[str, str], fingerprint: Any = None) -> str:
    """sha256 of what decides a step's output: its kind (and function), its parameters, the
    keys of its inputs' outputs, its fingerprint (the bytes of files it reads, the policy it
    applies, its function's source) and keel's version."""
    import keel

    doc = {
        "kind": step.resolved_kind,
        "function": step.function_name,
        "params": dict(step.params),
        "inputs": dict(sorted(input_keys.items())),
        "fingerprint": fingerprint,
        "keel": keel.__version__,
    }
    data = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def _executor(executor: Any, workers: int | None) -> tuple[Any, bool]:
    if isinstance(executor, str):
        from keel.executors import get_executor

        return get_executor(executor, workers), True
    if not hasattr(executor, "map"):
        raise InvalidInput(
            f"executor: expected inline, process, ray or an executor, got {executor!r}"
        )
    return executor, False


def _shared(store: Any, name: str) -> dict[str, Any]:
    if name == "inline":
        return {"store": store}
    root = store.blobs.location  # a folder or an s3:// URL: both open from another process
    if root == "memory:" or store.url in ("sqlite://", "sqlite:///:memory:"):
        raise InvalidInput(
            f"executor {name!r}: the store must be a database and a blob folder "
            "that other processes can open; use executor='inline'"
        )
    return {"url": store.url, "blob_root": str(root), "settings": dict(store.settings)}


def _check_release(store: Any, order: list[Step]) -> None:
    """A pipeline moves a gated alias (``production`` by default) only when the project
    allows it: ``pipeline: {allow_production: true}`` in keel.yaml (the gates still run)."""
    from keel.audit.gates import Policy

    settings = getattr(store, "settings", None) or {}
    allowed = bool((settings.get("pipeline") or {}).get("allow_production", False))
    gated = Policy.from_settings(settings).gated_aliases
    for s in order:
        alias = s.params.get("alias") if s.resolved_kind == "release" else None
        if alias in gated and not allowed:
            raise InvalidInput(
                f"step {s.name!r}: params.alias: {alias!r} is gated by the project's audit "
                "policy; a pipeline releases to it only when keel.yaml sets "
                "'pipeline: {allow_production: true}' (release to 'candidate' instead)"
            )


def run_pipeline(
    store: Any,
    pipeline: Pipeline | str | Path,
    *,
    executor: Any = "inline",
    resume: str | None = None,
    workers: int | None = None,
) -> _records.PipelineRun:
    """Run ``pipeline`` (a :class:`Pipeline` or the path of its YAML file) on ``store``.

    A step whose key (:func:`step_key`) has a stored successful output is not run again: the
    output is reused (status ``cached``). Steps whose inputs are all done run together in
    one wave through ``executor`` (``inline``: here, one after another; ``process``: a local
    process pool; ``ray``: Ray tasks; or an executor object, which is left open). A step
    that still fails after its retries stops the run after its wave: the outputs of the
    steps before stay stored, and ``run_pipeline(..., resume=run.id)`` — or simply running
    the pipeline again — continues from the failed step. A malformed pipeline raises
    :class:`InvalidInput` before anything is stored."""
    if not isinstance(pipeline, Pipeline):
        pipeline = Pipeline.load(pipeline)
    order = pipeline.check()
    _check_release(store, order)
    ex, owned = _executor(executor, workers)
    try:
        shared = _shared(store, getattr(ex, "name", "custom"))
        run_id, before = _records.start(
            store, pipeline, order, getattr(ex, "name", "custom"), resume
        )
        try:
            status = _waves(store, pipeline, order, ex, shared, run_id, before)
        except BaseException:  # interrupted, or the store itself failed: say so if we can
            try:
                _records.finish(store, run_id, pipeline.name, "failed")
            except Exception:  # pragma: no cover - the store is down; the run stays "running"
                pass
            raise
        _records.finish(store, run_id, pipeline.name, status)
    finally:
        if owned:
            ex.close()
    return _records.get_pipeline_run(store, run_id)


def _waves(
    store: Any,
    pipeline: Pipeline,
    order: list[Step],
    ex: Any,
    shared: dict[str, Any],
    run_id: str,
    before: dict[str, Any],
) -> str:
    done: dict[str, tuple[str, Any, tuple[str, str]]] = {}  # name -> (key, output, made by)
    settings = getattr(store, "settings", None) or {}
    while True:
        ready = [s for s in order if s.name not in done and all(i in done for i in s.inputs)]
        if not ready:
            return "succeeded" if len(done) == len(order) else "failed"
        todo: list[tuple[Step, str]] = []
        for s in ready:
            fp = _kinds.fingerprint(
                s.resolved_kind, s.params, s.function_name, settings, pipeline.base_dir
            )
            key = step_key(s, {i: done[i][0] for i in s.inputs}, fp)
            prev = before.get(s.name)  # resuming: what this run already did
            if prev is not None and prev.key == key and prev.status == "ran":
                done[s.name] = (key, prev.output, (run_id, s.name))
                continue
            hit = _records.cache_hit(store, key) if s.cache else None
            if hit is not None:
                _records.mark_cached(store, run_id, s, key, hit)
                done[s.name] = (key, hit[0], (hit[1], hit[2]))
            else:
                todo.append((s, key))
        if not todo:
            continue
        _records.mark_running(store, run_id, todo)
        tasks = [_task(s, run_id, pipeline, done) for s, _ in todo]
        failed = False
        for (s, key), res in zip(todo, _results(ex, shared, tasks), strict=True):
            inputs = {i: done[i][2] for i in s.inputs}
            _records.finish_step(store, run_id, s, key, res, inputs)
            if res["status"] == "ran":
                done[s.name] = (key, res["output"], (run_id, s.name))
            else:
                failed = True
        if failed:
            return "failed"


def _task(
    step: Step, run_id: str, pipeline: Pipeline, done: dict[str, tuple[str, Any, tuple[str, str]]]
) -> dict[str, Any]:
    return {
        "step": step.name,
        "kind": step.resolved_kind,
        "function": step.function_name,
        "params": dict(step.params),
        "inputs": {i: done[i][1] for i in step.inputs},
        "retries": step.retries,
        "retry_delay": step.retry_delay,
        "run_id": run_id,
        "base_dir": pipeline.base_dir,
    }


def _results(ex: Any, shared: dict[str, Any], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each task's result; a task the executor itself lost (a dead worker) counts as failed."""
    out: list[dict[str, Any]] = []
    try:
        for res in ex.map(execute, tasks, shared=shared):
            out.append(res)
    except Exception as exc:  # BrokenProcessPool, a Ray worker that died, ...
        err = f"executor {getattr(ex, 'name', '?')}: {type(exc).__name__}: {exc}"[:4000]
        lost = {
            "status": "failed",
            "error": err,
            "output": None,
            "attempts": [{"attempt": 1, "at": 0.0, "seconds": 0.0, "error": err}],
        }
        out.extend(dict(lost) for _ in tasks[len(out) :])
    return out
