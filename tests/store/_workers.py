"""Child processes for the multi-process store tests, and the parent's side of running them.

A child is ``python -W error -c "...; _workers.main()" <job> <args...>``. It imports what the
job needs, prints ``ready``, waits for a line on stdin, then does the job, so the parent can
release all children at the same moment (:func:`run_together`). Children print results on
stdout, one line each, flushed; anything on stderr or a non-zero exit code is a failure.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


# -- the parent's side ------------------------------------------------------------------


def start(job: str, *args: object, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start a child running ``job``; it prints ``ready`` once imported and connected."""
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import _workers; _workers.main()"
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-c", code, job, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "ready\n":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"child did not start: {line!r}\n{err}")


def finish_killed(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[str, str]:
    """Everything a killed child wrote. Not ``communicate()``: it reads the pipe's file
    descriptor directly and would miss what ``wait_ready``'s ``readline`` already buffered."""
    assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
    proc.stdin.close()
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait(timeout=timeout)
    return out, err


def run_together(
    job: str, args_per_child: list[tuple[object, ...]], timeout: float = 120
) -> list[tuple[int, str, str]]:
    """Start one child per args tuple, release them at once, return (rc, stdout, stderr)s."""
    return run_together_timed(job, args_per_child, timeout)[0]


def run_together_timed(
    job: str, args_per_child: list[tuple[object, ...]], timeout: float = 120
) -> tuple[list[tuple[int, str, str]], float]:
    """:func:`run_together`, and the wall seconds from the go signal to the last child's
    exit (imports and connecting are done before it)."""
    procs = [start(job, *args) for args in args_per_child]
    try:
        for proc in procs:
            wait_ready(proc)
        t0 = time.perf_counter()
        for proc in procs:  # the go signal: every child is blocked reading stdin
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            results.append((proc.returncode, out, err))
        return results, time.perf_counter() - t0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


# -- the children -----------------------------------------------------------------------


def main() -> None:
    job, *args = sys.argv[1:]
    {"open": _open, "metrics": _metrics, "until_killed": _until_killed}[job](*args)


def _ready_then_wait() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def _preload() -> None:
    """Import what opening a store imports, so children race on the database, not imports."""
    import alembic.command  # noqa: F401
    import alembic.config  # noqa: F401
    import alembic.runtime.migration  # noqa: F401
    import alembic.script  # noqa: F401

    import keel.store  # noqa: F401


def _open(url: str, blob_root: str) -> None:
    """Open (and so migrate) the store at ``url``; print its schema revision."""
    _preload()
    from keel.store import Store

    _ready_then_wait()
    store = Store.open(url, blob_root)
    print(store.schema_revision(), flush=True)
    store.close()


def _metrics(url: str, blob_root: str, run_id: str, key: str, n: str) -> None:
    """``n`` metric writes through the tracking API (``Run.log_metric``, each its own write
    transaction); print how many were written."""
    from keel.store import Store
    from keel.train import Run

    store = Store.open(url, blob_root)
    run = Run(store, run_id, "reliability")
    _ready_then_wait()
    for step in range(int(n)):
        run.log_metric(key, float(step), step=step)
    store.close()
    print(n, flush=True)


def _until_killed(url: str, blob_root: str, run_id: str, key: str) -> None:
    """Write steps 0, 1, 2, ... until killed; print each step once its write returned.

    Each step is two rows in one transaction (``<key>/loss`` and ``<key>/acc``), so a
    half-written step would show as one row without the other.
    """
    from keel.store import Store
    from keel.train import Run

    store = Store.open(url, blob_root)
    run = Run(store, run_id, "reliability")
    print("ready", flush=True)
    step = 0
    while True:
        run.log_metrics({f"{key}/loss": 1.0, f"{key}/acc": 1.0}, step=step)  # one transaction
        print(step, flush=True)
        step += 1
