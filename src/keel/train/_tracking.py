"""Experiment tracking: a run's parameters, metrics (with steps), artifacts, inputs and
environment, each write one small transaction so nothing acknowledged is ever lost.

A run records the pid and host of the process writing it, and a heartbeat that its writes
refresh. Reading runs (:func:`list_runs`, :func:`get_run`) marks a ``running`` run failed
when its process is gone: on this host, when the pid no longer runs; on another host, when
the run showed no sign of life for :data:`STALE_AFTER_S`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import re
import socket
import sys
import time
import uuid
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update

from keel import config
from keel.errors import InvalidInput, KeelError, NotFound
from keel.store import Store, _tables

__all__ = ["HEARTBEAT_EVERY_S", "STALE_AFTER_S", "Run", "get_run", "list_runs", "start_run"]

#: A run's writes refresh its heartbeat at most this often (seconds).
HEARTBEAT_EVERY_S = 60.0
#: A ``running`` run of another host with no sign of life for this long (seconds) is marked
#: failed when runs are read. Long silent steps can call :meth:`Run.heartbeat`.
STALE_AFTER_S = 6 * 3600.0

_SHA1 = re.compile(r"[0-9a-f]{40}")
_PACKAGES = ("keel", "numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "optuna")
t_runs, t_params, t_metrics, t_artifacts = (
    _tables.runs,
    _tables.params,
    _tables.metrics,
    _tables.artifacts,
)


@functools.cache
def environment() -> dict[str, Any]:
    """Python, platform and the versions of the packages that decide a model's numbers
    (they cannot change inside one process, so this is computed once)."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions}


def git_commit(path: str | Path = ".") -> str | None:
    """The commit checked out in the git work tree holding ``path``, read from ``.git``
    itself (no subprocess: this runs at every ``start_run``); None outside a work tree."""
    start = Path(path).resolve()
    for folder in [start, *start.parents]:
        dot_git = folder / ".git"
        if dot_git.exists():
            return _read_head(_git_dir(dot_git))
    return None


def _git_dir(dot_git: Path) -> Path:
    if dot_git.is_file():  # a linked work tree or submodule: "gitdir: <path>"
        target = dot_git.read_text().partition("gitdir:")[2].strip()
        return (dot_git.parent / target).resolve()
    return dot_git


def _read_head(git_dir: Path) -> str | None:
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head if _SHA1.fullmatch(head) else None
        ref = head[4:].strip()
        common = git_dir
        if (git_dir / "commondir").is_file():
            common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
        for base in (git_dir, common):
            if (base / ref).is_file():
                sha = (base / ref).read_text().strip()
                return sha if _SHA1.fullmatch(sha) else None
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref and _SHA1.fullmatch(sha):
                    return sha
    except OSError:
        return None
    return None  # a new repository with no commit yet


def _check_key(key: str, what: str) -> str:
    if not isinstance(key, str) or not key or len(key) > 250:
        raise InvalidInput(f"{what} name: expected 1 to 250 characters, got {key!r}")
    return key


def _check_value(key: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"metric {key!r}: expected a number, got {value!r}") from None
    if math.isnan(v):
        raise InvalidInput(f"metric {key!r}: expected a number, got NaN")
    return v


class Run:
    """A training run. Use :func:`start_run`; end it with :meth:`end` or a ``with`` block."""

    def __init__(self, store: Store, run_id: str, experiment: str) -> None:
        self.store = store
        self.id = run_id
        self.experiment = experiment
        self._t0 = time.perf_counter()
        self._steps: dict[str, int] = {}
        self._beat_at = time.time()

    def heartbeat(self, force: bool = False) -> None:
        """Say that the run's process is alive (every write says so too, at most once every
        :data:`HEARTBEAT_EVERY_S`); a run on another host silent for :data:`STALE_AFTER_S`
        is marked failed when runs are read."""
        now = time.time()
        if not force and now - self._beat_at < HEARTBEAT_EVERY_S:
            return
        self._beat_at = now
        with self.store.write() as conn:
            conn.execute(update(t_runs).where(t_runs.c.id == self.id).values(heartbeat_at=now))

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: dict[str, Any]) -> None:
        rows = [
            {"run_id": self.id, "key": _check_key(k, "param"), "value": json.dumps(v, default=str)}
            for k, v in params.items()
        ]
        self.store.append(t_params, rows)
        self.heartbeat()

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics({key: value}, step=step)

    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        now = time.time()
        rows = []
        for key, value in values.items():
            s = self._next_step(_check_key(key, "metric")) if step is None else int(step)
            rows.append(
                {
                    "run_id": self.id,
                    "key": key,
                    "value": _check_value(key, value),
                    "step": s,
                    "ts": now,
                }
            )
        if rows:
            self.store.append(t_metrics, rows)
            self.heartbeat()

    def _next_step(self, key: str) -> int:
        step = self._steps.get(key, -1) + 1
        self._steps[key] = step
        return step

    def log_artifact(self, name: str, data: bytes | str | Path) -> str:
        """Store bytes or a file's content as a blob and name it in this run."""
        _check_key(name, "artifact")
        if isinstance(data, bytes):
            sha, size = self.store.blobs.put_bytes(data), len(data)
        else:
            path = Path(data)
            if not path.is_file():
                raise InvalidInput(f"artifact {name!r}: {str(path)!r} is not a file")
            sha, size = self.store.blobs.put_file(path), path.stat().st_size
        self.link_artifact(name, sha, size)
        return sha

    def link_artifact(self, name: str, sha: str, size: int) -> None:
        """Name a blob already in the store as this run's artifact ``name``."""
        _check_key(name, "artifact")
        with self.store.write() as conn:
            where = (t_artifacts.c.run_id == self.id, t_artifacts.c.name == name)
            conn.execute(t_artifacts.delete().where(*where))
            conn.execute(insert(t_artifacts).values(run_id=self.id, name=name, sha=sha, size=size))
        self.heartbeat()

    def add_input(self, kind: str, id: str, role: str) -> None:
        """Record that this run read ``(kind, id)`` (e.g. a dataset by its sha) as ``role``."""
        with self.store.write() as conn:
            self.store.add_edge(conn, ("run", self.id), (kind, id), role)

    def set_tags(self, tags: dict[str, Any]) -> None:
        with self.store.write() as conn:
            row = conn.execute(select(t_runs.c.tags_json).where(t_runs.c.id == self.id)).scalar()
            merged = {**json.loads(row or "{}"), **{k: str(v) for k, v in tags.items()}}
            conn.execute(
                update(t_runs).where(t_runs.c.id == self.id).values(tags_json=json.dumps(merged))
            )

    def end(self, status: str = "finished", reason: str | None = None) -> None:
        now = time.time()
        with self.store.write() as conn:
            conn.execute(
                update(t_runs)
                .where(t_runs.c.id == self.id)
                .values(
                    status=status,
                    ended_at=now,
                    heartbeat_at=now,
                    wall_time=time.perf_counter() - self._t0,
                    status_reason=reason,
                )
            )

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: Any, exc: Any, *_: Any) -> None:
        if exc_type is None:
            self.end("finished")
            return
        why = str(exc).splitlines()[0] if str(exc) else ""
        self.end("failed", f"{exc_type.__name__}: {why}"[:1000] if why else exc_type.__name__)

    def __repr__(self) -> str:
        return f"Run({self.id!r}, experiment={self.experiment!r})"


def start_run(
    store: Store,
    experiment: str = "default",
    *,
    seed: int | None = None,
    tags: dict[str, Any] | None = None,
    project_root: str | Path | None = None,
) -> Run:
    """Open a run; it records the environment and the git commit when there is one."""
    _check_key(experiment, "experiment")
    run_id = uuid.uuid4().hex
    now = time.time()
    with store.write() as conn:
        conn.execute(
            insert(t_runs).values(
                id=run_id,
                experiment=experiment,
                status="running",
                created_at=now,
                pid=os.getpid(),
                host=socket.gethostname(),
                heartbeat_at=now,
                seed=seed,
                git_commit=git_commit(project_root or "."),
                env_json=json.dumps(environment()),
                tags_json=json.dumps({k: str(v) for k, v in (tags or {}).items()}),
                created_by=config.user(),
            )
        )
    return Run(store, run_id, experiment)


def get_run(store: Store, run_id: str) -> dict[str, Any]:
    """Everything recorded about one run (a unique prefix of its id is enough)."""
    mark_dead_runs(store)
    with store.read() as conn:
        rows = conn.execute(select(t_runs).where(t_runs.c.id.startswith(run_id)).limit(2)).all()
        if len(rows) != 1:
            why = "is ambiguous" if rows else "does not exist"
            raise NotFound(f"run {run_id!r} {why}")
        row = rows[0]
        params = conn.execute(
            select(t_params.c.key, t_params.c.value).where(t_params.c.run_id == row.id)
        ).all()
        metrics = conn.execute(
            select(t_metrics.c.key, t_metrics.c.value, t_metrics.c.step)
            .where(t_metrics.c.run_id == row.id)
            .order_by(t_metrics.c.key, t_metrics.c.step, t_metrics.c.id)
        ).all()
        artifacts = conn.execute(
            select(t_artifacts.c.name, t_artifacts.c.sha, t_artifacts.c.size).where(
                t_artifacts.c.run_id == row.id
            )
        ).all()
    history: dict[str, list[tuple[int, float]]] = {}
    for k, v, s in metrics:
        history.setdefault(k, []).append((s, v))
    return {
        **{c: getattr(row, c) for c in ("id", "experiment", "status", "created_at", "ended_at")},
        **{c: getattr(row, c) for c in ("wall_time", "seed", "git_commit", "created_by")},
        **{c: getattr(row, c) for c in ("pid", "host", "heartbeat_at")},
        "reason": row.status_reason,
        "env": json.loads(row.env_json),
        "tags": json.loads(row.tags_json),
        "params": {k: json.loads(v) for k, v in params},
        "metrics": {k: h[-1][1] for k, h in history.items()},
        "metric_history": history,
        "artifacts": {n: {"sha": s, "size": z} for n, s, z in artifacts},
    }


def list_runs(store: Store, experiment: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Newest runs first, each with its parameters and the last value of each metric."""
    mark_dead_runs(store)
    q = select(t_runs).order_by(t_runs.c.created_at.desc()).limit(limit)
    if experiment:
        q = q.where(t_runs.c.experiment == experiment)
    with store.read() as conn:
        runs = conn.execute(q).all()
        ids = [r.id for r in runs]
        last = (
            select(t_metrics.c.run_id, t_metrics.c.key, func.max(t_metrics.c.id).label("mid"))
            .where(t_metrics.c.run_id.in_(ids))
            .group_by(t_metrics.c.run_id, t_metrics.c.key)
            .subquery()
        )
        mrows = conn.execute(
            select(last.c.run_id, last.c.key, t_metrics.c.value).join(
                t_metrics, t_metrics.c.id == last.c.mid
            )
        ).all()
        prows = conn.execute(select(t_params).where(t_params.c.run_id.in_(ids))).all()
    metrics: dict[str, dict[str, float]] = {}
    for rid, key, value in mrows:
        metrics.setdefault(rid, {})[key] = value
    params: dict[str, dict[str, Any]] = {}
    for p in prows:
        params.setdefault(p.run_id, {})[p.key] = json.loads(p.value)
    return [
        {
            "id": r.id,
            "experiment": r.experiment,
            "status": r.status,
            "reason": r.status_reason,
            "created_at": r.created_at,
            "wall_time": r.wall_time,
            "tags": json.loads(r.tags_json),
            "params": params.get(r.id, {}),
            "metrics": metrics.get(r.id, {}),
        }
        for r in runs
    ]


def mark_dead_runs(store: Store) -> list[str]:
    """Mark failed every ``running`` run whose process is gone; return their ids.

    On this host a run is dead when its pid no longer runs (or is a zombie); on another
    host, when its heartbeat is older than :data:`STALE_AFTER_S`. Runs recorded before
    keel kept pids are left alone. A store that cannot be written (read-only) is left as
    it is.
    """
    here, now = socket.gethostname(), time.time()
    cols = (t_runs.c.id, t_runs.c.pid, t_runs.c.host, t_runs.c.heartbeat_at, t_runs.c.created_at)
    with store.read() as conn:
        rows = conn.execute(select(*cols).where(t_runs.c.status == "running")).all()
    dead: dict[str, tuple[str, float]] = {}
    for r in rows:
        if r.pid is None or r.host is None:
            continue
        last = r.heartbeat_at if r.heartbeat_at is not None else r.created_at
        if r.host == here:
            if r.pid != os.getpid() and not _pid_alive(r.pid):
                dead[r.id] = (f"process {r.pid} ended without finishing the run", last)
        elif now - last > STALE_AFTER_S:
            hours = (now - last) / 3600
            dead[r.id] = (
                f"no sign of life from host {r.host!r} (process {r.pid}) for {hours:.1f} h; "
                f"presumed ended without finishing the run",
                last,
            )
    if not dead:
        return []
    try:
        with store.write() as conn:
            for run_id, (why, last) in dead.items():
                conn.execute(
                    update(t_runs)
                    .where(t_runs.c.id == run_id, t_runs.c.status == "running")
                    .values(status="failed", ended_at=last, status_reason=why)
                )
    except KeelError:
        return []
    return list(dead)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): the signal test is all there is
    return stat.rpartition(")")[2].split()[:1] != ["Z"]
