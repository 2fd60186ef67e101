"""Executors fan work out: in this process, over a local process pool, or on Ray.

Each runs ``fn(shared, item)`` for every item and yields results in the order of the items;
``shared`` (training arrays, say) travels to each worker once. Pick one by name with
:func:`get_executor`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any

from keel import config
from keel.errors import InvalidInput, require

__all__ = ["InlineExecutor", "ProcessExecutor", "RayExecutor", "get_executor"]

_SHARED: Any = None


def _set_shared(shared: Any) -> None:
    global _SHARED
    _SHARED = shared


def _call_with_shared(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(_SHARED, item)


def _default_workers() -> int:
    n = config.get_int("KEEL_WORKERS")
    return n if n > 0 else max(1, os.cpu_count() or 1)


@contextmanager
def _main_script_hidden(fn: Callable[..., Any]) -> Iterator[None]:
    """Spawned workers re-run the user's ``__main__`` script unless it is guarded by
    ``if __name__ == "__main__":``; an unguarded script would start the work again in every
    worker. keel's own worker functions never need the user's script, so while workers start
    its path is hidden from ``multiprocessing`` (a function from ``__main__`` keeps the
    standard behaviour, since the workers must import it)."""
    main = sys.modules.get("__main__")
    if main is None or getattr(fn, "__module__", "__main__") == "__main__":
        yield
        return
    saved: dict[str, Any] = {
        k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__
    }
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class InlineExecutor:
    """Runs everything here, one item after another (debugging, tiny jobs)."""

    name = "inline"
    workers = 1

    def map(
        self, fn: Callable[[Any, Any], Any], items: Iterable[Any], *, shared: Any = None
    ) -> Iterator[Any]:
        for item in items:
            yield fn(shared, item)

    def close(self) -> None:
        pass


class ProcessExecutor:
    """A local pool of worker processes (spawned, so no thread state is inherited).

    The pool is started on first use and kept for later calls with the same ``shared``.
    """

    name = "process"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or _default_workers()
        self._pool: ProcessPoolExecutor | None = None
        self._shared_id: int | None = None

    def _ensure_pool(self, shared: Any) -> ProcessPoolExecutor:
        if self._pool is None or self._shared_id != id(shared):
            self.close()
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=mp.get_context("spawn"),
                initializer=_set_shared,
                initargs=(shared,),
            )
            self._shared_id = id(shared)
        return self._pool

    def map(
        self, fn: Callable[[Any, Any], Any], items: Iterable[Any], *, shared: Any = None
    ) -> Iterator[Any]:
        pool = self._ensure_pool(shared)
        with _main_script_hidden(fn):  # workers start during submit
            futures = [pool.submit(_call_with_shared, fn, item) for item in items]
        for f in futures:
            yield f.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _same_cluster(ray: Any, address: str) -> bool:
    """Whether this process's Ray connection is to the cluster at ``address`` (host:port of
    its GCS; the port decides, since Ray reports the node's IP for a loopback address)."""
    if address == "auto" or address.startswith("ray://"):  # Ray's client: leave it be
        return True
    try:
        current = str(ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001 - no readable address: reconnect to be sure
        return False
    return current.rsplit(":", 1)[-1] == address.rsplit(":", 1)[-1]


class RayExecutor:
    """Ray tasks on a cluster (``address``), or a local Ray started on first use.

    ``shared`` is put in Ray's object store once and handed to every task by reference.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        # a cluster named by Ray's own RAY_ADDRESS is joined as one given here (Ray refuses
        # num_cpus when it connects to an existing cluster)
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.workers = workers or _default_workers()
        self._started_here = False

    def _ray(self) -> Any:
        ray = require("ray", "ray")
        if ray.is_initialized() and self.address and not _same_cluster(ray, self.address):
            # this process is connected to another Ray (a local one started earlier): join
            # the cluster asked for rather than running there
            ray.shutdown()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = self.workers
            ray.init(**kwargs)
            self._started_here = True
        return ray

    def map(
        self, fn: Callable[[Any, Any], Any], items: Iterable[Any], *, shared: Any = None
    ) -> Iterator[Any]:
        ray = self._ray()
        remote = ray.remote(num_cpus=1)(fn)
        ref = ray.put(shared)
        refs = [remote.remote(ref, item) for item in items]
        for r in refs:
            yield ray.get(r)

    def close(self) -> None:
        if self._started_here:
            import ray

            ray.shutdown()
            self._started_here = False


def get_executor(name: str | None = None, workers: int | None = None) -> Any:
    """An executor by name: ``inline``, ``process`` (the default) or ``ray``."""
    name = name or str(config.get("KEEL_EXECUTOR"))
    if name == "inline":
        return InlineExecutor()
    if name == "process":
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(workers=workers)
    raise InvalidInput(f"executor: expected one of inline, process, ray; got {name!r}")
