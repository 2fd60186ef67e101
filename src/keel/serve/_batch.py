"""Micro-batching: concurrent requests for one model version merged into one session run.

A lone request is never held back: the worker runs whatever is queued as soon as the
session is free. Requests that arrive while a run is in flight queue up and go together
in the next run (up to ``max_rows``). ``max_wait_s`` adds a short wait for requests that
are already being received (their handler has started but not yet submitted), never for
requests that may or may not come.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

__all__ = ["Arrivals", "MicroBatcher", "Pending"]

log = logging.getLogger("keel.serve")

Feed = dict[str, np.ndarray]


class Pending:
    """One request waiting in the queue."""

    __slots__ = ("feed", "future", "meta", "n", "t0")

    def __init__(self, feed: Feed, n: int, future: asyncio.Future, meta: Any) -> None:
        self.feed, self.n, self.future, self.meta = feed, n, future, meta
        self.t0 = time.perf_counter()


class Arrivals:
    """How many requests for a route are being received right now (``with arrivals:``)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> Arrivals:
        self.count += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.count -= 1


class MicroBatcher:
    """Queue requests for ``run(feed) -> outputs`` and run them in merged batches.

    ``executor``: where the (blocking) run happens; None runs it on the event loop.
    ``inline_rows``: batches of at most this many rows run on the event loop even with an
    executor (a thread hand-off costs more than a run that short).
    ``on_batch(items, feed, outputs, seconds)``: called after the answers are handed back,
    with the batch's merged feed (so a listener need not merge the requests' feeds again).
    """

    def __init__(
        self,
        run: Callable[[Feed], dict[str, np.ndarray]],
        *,
        max_rows: int = 256,
        max_wait_s: float = 0.0,
        executor: Executor | None = None,
        on_batch: Callable[[list[Pending], Feed, dict[str, np.ndarray], float], None] | None = None,
        arrivals: Arrivals | None = None,
        inline_rows: int = 0,
    ) -> None:
        self.run = run
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.executor = executor
        self.on_batch = on_batch
        self._queue: deque[Pending] = deque()
        self._rows = 0
        self.arrivals = arrivals or Arrivals()
        self.inline_rows = inline_rows
        self._closed = False
        self._started = False
        # The worker sleeps on a future of its own (None while it works). ``_holding``: it
        # is holding a batch back for requests being received, so a new request wakes it
        # only once the wait has nothing left to wait for (see :meth:`submit`).
        self._waiter: asyncio.Future[None] | None = None
        self._holding = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._started = True
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def submit(self, feed: Feed, n: int, meta: Any = None) -> dict[str, np.ndarray]:
        """The outputs for this request's ``n`` rows."""
        if self._closed or not self._started:
            raise RuntimeError("the batcher is not running")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(Pending(feed, n, future, meta))
        self._rows += n
        if self._waiter is not None and (
            not self._holding or self.arrivals.count <= 0 or self._rows >= self.max_rows
        ):
            self._wake()
        return await future

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, holding: bool) -> None:
        self._holding = holding
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closed = True
        self._wake()
        if self._task is not None:
            await self._task

    async def _work(self) -> None:
        while True:
            if not self._queue:
                if self._closed:
                    return
                await self._sleep(holding=False)
                continue
            if self.max_wait_s > 0 and self.arrivals.count > 0 and self._rows < self.max_rows:
                await self._wait_for_arrivals()
            batch = self._take()
            try:
                await self._run_batch(batch)
            except Exception:  # pragma: no cover - _run_batch hands errors to the requests
                log.exception("batch worker failed")

    async def _wait_for_arrivals(self) -> None:
        """Hold the queue until the requests being received have been submitted, the batch
        is full, or the oldest request has waited ``max_wait_s``: one timer for the wait,
        and a wake-up only when one of these may have happened."""
        remaining = self._queue[0].t0 + self.max_wait_s - time.perf_counter()
        if remaining <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + remaining
        timer = loop.call_at(deadline, self._wake)
        try:
            while self.arrivals.count > 0 and self._rows < self.max_rows and not self._closed:
                await self._sleep(holding=True)
                if loop.time() >= deadline:
                    return
        finally:
            timer.cancel()
            self._waiter = None

    def _take(self) -> list[Pending]:
        batch = [self._queue.popleft()]
        rows = batch[0].n
        while self._queue and rows + self._queue[0].n <= self.max_rows:
            item = self._queue.popleft()
            batch.append(item)
            rows += item.n
        self._rows -= rows
        return batch

    async def _call(self, feed: Feed) -> dict[str, np.ndarray]:
        if self.executor is None or len(feed["num"]) <= self.inline_rows:
            return self.run(feed)
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.run, feed)

    async def _run_batch(self, batch: list[Pending]) -> None:
        start = time.perf_counter()
        if len(batch) == 1:
            feed = batch[0].feed
        else:
            feed = {k: np.concatenate([p.feed[k] for p in batch]) for k in batch[0].feed}
        try:
            outputs = await self._call(feed)
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0], exc)
                return
            for item in batch:  # find the request that broke the run; answer the others
                try:
                    _answer(item, await self._call(item.feed))
                except Exception as exc_one:
                    _fail(item, exc_one)
            return
        offset = 0
        for item in batch:
            end = offset + item.n
            part = outputs if len(batch) == 1 else {k: v[offset:end] for k, v in outputs.items()}
            _answer(item, part)
            offset = end
        if self.on_batch is not None:
            self.on_batch(batch, feed, outputs, time.perf_counter() - start)


def _answer(item: Pending, outputs: dict[str, np.ndarray]) -> None:
    if not item.future.done():
        item.future.set_result(outputs)


def _fail(item: Pending, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)
