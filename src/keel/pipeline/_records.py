"""Pipeline runs in the store: a row per run and per step (the step's cache key, status,
attempts, seconds and JSON output), an event per step execution, and lineage edges from
what a step made to the step, and from the step to its pipeline run and its inputs."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update

from keel import config
from keel.errors import Conflict, NotFound
from keel.pipeline import _kinds
from keel.store import _tables

__all__ = [
    "PipelineRun",
    "StepRun",
    "get_pipeline_run",
    "get_pipeline_spec",
    "list_pipeline_runs",
]

t_runs, t_steps = _tables.pipeline_runs, _tables.pipeline_steps


@dataclass(frozen=True)
class StepRun:
    """One step of a pipeline run. ``status``: ``ran`` (executed here), ``cached`` (an
    output with the same key was reused from ``source_run``), ``failed`` (after
    ``attempts`` tries; ``error`` says why), ``pending`` (not reached) or ``running``."""

    name: str
    kind: str
    key: str
    status: str
    attempts: int
    seconds: float
    output: Any
    error: str | None
    source_run: str | None
    started_at: float | None
    ended_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PipelineRun:
    """A run of a pipeline: ``status`` is ``running``, ``succeeded`` or ``failed``; its
    ``steps`` in pipeline order. ``run[name]`` is the :class:`StepRun` of a step."""

    id: str
    pipeline: str
    status: str
    executor: str
    spec_sha: str
    created_at: float
    ended_at: float | None
    created_by: str
    steps: list[StepRun] = field(default_factory=list)

    def __getitem__(self, name: str) -> StepRun:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in self.__dict__.items() if k != "steps"},
            "steps": [s.to_dict() for s in self.steps],
        }


def _step_node(run_id: str, step: str) -> tuple[str, str]:
    return ("step", f"{run_id}/{step}")


def start(
    store: Any, pipeline: Any, order: list[Any], executor: str, resume: str | None
) -> tuple[str, dict[str, Any]]:
    """Create the run (or reopen ``resume``); returns its id and its step rows so far."""
    now = time.time()
    if resume is not None:
        run = get_pipeline_run(store, resume)
        if run.pipeline != pipeline.name:
            raise Conflict(
                f"resume: run {resume} is of pipeline {run.pipeline!r}, not {pipeline.name!r}"
            )
        have = {s.name for s in run.steps}
        with store.write() as conn:
            conn.execute(
                update(t_runs)
                .where(t_runs.c.id == resume)
                .values(status="running", ended_at=None, executor=executor)
            )
            _pending(conn, resume, [s for s in order if s.name not in have], pipeline)
            store.add_event(
                conn, "pipeline_run", resume, {"pipeline": pipeline.name, "status": "resumed"}
            )
        return resume, {s.name: s for s in run.steps}
    run_id = uuid.uuid4().hex
    spec_sha = store.blobs.put_bytes(pipeline.spec_json())
    with store.write() as conn:
        conn.execute(
            insert(t_runs).values(
                id=run_id,
                pipeline=pipeline.name,
                spec_sha=spec_sha,
                status="running",
                executor=executor,
                created_at=now,
                ended_at=None,
                created_by=config.user(),
            )
        )
        _pending(conn, run_id, order, pipeline)
        store.add_edge(conn, ("pipeline", run_id), ("blob", spec_sha), "spec")
        store.add_event(
            conn,
            "pipeline_run",
            run_id,
            {"pipeline": pipeline.name, "status": "started", "executor": executor},
        )
    return run_id, {}


def _pending(conn: Any, run_id: str, steps: list[Any], pipeline: Any) -> None:
    position = {s.name: i for i, s in enumerate(pipeline.steps)}
    for s in steps:
        conn.execute(
            insert(t_steps).values(
                run_id=run_id,
                step=s.name,
                position=position[s.name],
                kind=s.resolved_kind,
                key="",
                status="pending",
                attempts=0,
                seconds=0.0,
            )
        )


def cache_hit(store: Any, key: str) -> tuple[Any, str, str] | None:
    """The newest successful output stored under ``key``: (output, run id, step name)."""
    with store.read() as conn:
        row = conn.execute(
            select(t_steps.c.output_json, t_steps.c.run_id, t_steps.c.step)
            .where(t_steps.c.key == key, t_steps.c.status == "ran")
            .order_by(t_steps.c.ended_at.desc())
            .limit(1)
        ).first()
    return None if row is None else (json.loads(row.output_json), row.run_id, row.step)


def mark_cached(store: Any, run_id: str, step: Any, key: str, hit: tuple[Any, str, str]) -> None:
    output, src_run, src_step = hit
    now = time.time()
    with store.write() as conn:
        conn.execute(
            update(t_steps)
            .where(t_steps.c.run_id == run_id, t_steps.c.step == step.name)
            .values(
                key=key,
                status="cached",
                attempts=0,
                seconds=0.0,
                output_json=json.dumps(output),
                error=None,
                source_run=src_run,
                started_at=now,
                ended_at=now,
            )
        )
        node = _step_node(run_id, step.name)
        store.add_edge(conn, node, ("pipeline", run_id), "part_of")
        store.add_edge(conn, node, _step_node(src_run, src_step), "reused")
        store.add_event(
            conn,
            "pipeline_step",
            f"{run_id}/{step.name}",
            {
                "run": run_id,
                "step": step.name,
                "kind": step.resolved_kind,
                "key": key,
                "status": "cached",
                "source_run": src_run,
            },
        )


def mark_running(store: Any, run_id: str, todo: list[tuple[Any, str]]) -> None:
    now = time.time()
    with store.write() as conn:
        for step, key in todo:
            conn.execute(
                update(t_steps)
                .where(t_steps.c.run_id == run_id, t_steps.c.step == step.name)
                .values(
                    key=key,
                    status="running",
                    started_at=now,
                    ended_at=None,
                    error=None,
                    source_run=None,
                )
            )


def finish_step(
    store: Any,
    run_id: str,
    step: Any,
    key: str,
    result: dict[str, Any],
    inputs: dict[str, tuple[str, str]],
) -> None:
    """Record a step that was executed: its row, an event per attempt, and — when it ran —
    lineage: the step is part of the run, made from its inputs' steps and what it worked on,
    and what it made was made by it."""
    kind, attempts = step.resolved_kind, result["attempts"]
    subject = f"{run_id}/{step.name}"
    with store.write() as conn:
        conn.execute(
            update(t_steps)
            .where(t_steps.c.run_id == run_id, t_steps.c.step == step.name)
            .values(
                status=result["status"],
                attempts=len(attempts),
                seconds=sum(a["seconds"] for a in attempts),
                output_json=None if result["output"] is None else json.dumps(result["output"]),
                error=result["error"],
                ended_at=time.time(),
            )
        )
        for a in attempts:
            store.add_event(
                conn,
                "pipeline_step",
                subject,
                {
                    "run": run_id,
                    "step": step.name,
                    "kind": kind,
                    "key": key,
                    "attempt": a["attempt"],
                    "seconds": a["seconds"],
                    "status": "failed" if a["error"] else "ran",
                    "error": a["error"],
                },
            )
        if result["status"] != "ran":
            return
        node = _step_node(run_id, step.name)
        store.add_edge(conn, node, ("pipeline", run_id), "part_of")
        for name, (src_run, src_step) in inputs.items():
            store.add_edge(conn, node, _step_node(src_run, src_step), f"input:{name}"[:50])
        for pkind, pid, role in _kinds.about(kind, result["output"]):
            store.add_edge(conn, node, (pkind, pid), role)
        for child in _kinds.made(kind, result["output"]):
            store.add_edge(conn, child, node, "made_by")


def finish(store: Any, run_id: str, pipeline: str, status: str) -> None:
    with store.write() as conn:
        conn.execute(
            update(t_runs).where(t_runs.c.id == run_id).values(status=status, ended_at=time.time())
        )
        store.add_event(conn, "pipeline_run", run_id, {"pipeline": pipeline, "status": status})


def _step_from_row(r: Any) -> StepRun:
    return StepRun(
        name=r.step,
        kind=r.kind,
        key=r.key,
        status=r.status,
        attempts=r.attempts,
        seconds=r.seconds,
        output=None if r.output_json is None else json.loads(r.output_json),
        error=r.error,
        source_run=r.source_run,
        started_at=r.started_at,
        ended_at=r.ended_at,
    )


def get_pipeline_run(store: Any, run_id: str) -> PipelineRun:
    """A pipeline run with its steps (a unique prefix of the id, 8 characters or more, is
    enough)."""
    with store.read() as conn:
        q = select(t_runs)
        if len(run_id) >= 8 and len(run_id) < 32:
            q = q.where(t_runs.c.id.startswith(run_id, autoescape=True))
        else:
            q = q.where(t_runs.c.id == run_id)
        rows = conn.execute(q.limit(2)).all()
        if len(rows) != 1:
            what = "no pipeline run" if not rows else "more than one pipeline run"
            raise NotFound(f"{what} with id {run_id!r}; list them with 'keel pipeline list'")
        r = rows[0]
        steps = conn.execute(
            select(t_steps).where(t_steps.c.run_id == r.id).order_by(t_steps.c.position)
        ).all()
    return PipelineRun(
        r.id,
        r.pipeline,
        r.status,
        r.executor,
        r.spec_sha,
        r.created_at,
        r.ended_at,
        r.created_by,
        [_step_from_row(s) for s in steps],
    )


def list_pipeline_runs(
    store: Any, pipeline: str | None = None, limit: int = 50
) -> list[PipelineRun]:
    """The newest runs first (of ``pipeline`` when given), without their steps."""
    q = select(t_runs).order_by(t_runs.c.created_at.desc()).limit(limit)
    if pipeline:
        q = q.where(t_runs.c.pipeline == pipeline)
    with store.read() as conn:
        return [
            PipelineRun(
                r.id,
                r.pipeline,
                r.status,
                r.executor,
                r.spec_sha,
                r.created_at,
                r.ended_at,
                r.created_by,
            )
            for r in conn.execute(q)
        ]


def get_pipeline_spec(store: Any, run: PipelineRun | str) -> dict[str, Any]:
    """The pipeline as the run recorded it (its canonical JSON, as :meth:`Pipeline.to_dict`
    gives it: ``name``, ``description``, ``steps`` with each step's ``kind``, ``params``
    and ``inputs``): the step graph. Read as data; nothing is imported or checked, so a
    ``python`` step's module is never loaded. ``run``: a :class:`PipelineRun` or its id."""
    if not isinstance(run, PipelineRun):
        run = get_pipeline_run(store, run)
    try:
        spec = json.loads(store.blobs.get_bytes(run.spec_sha))
    except Exception:
        raise NotFound(
            f"the spec of pipeline run {run.id} (blob {run.spec_sha[:12]}) is missing from the "
            "store"
        ) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("steps"), list):
        raise NotFound(f"the spec of pipeline run {run.id} is not a pipeline")
    return spec
