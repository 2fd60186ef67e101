"""Routes, loaded model versions (deployments) and the slots that hold them.

A *Route* names what a URL serves: a registered model by alias (``production`` by
default) or a pinned version. A *Slot* holds the deployment answering a route now; a swap
is one reference assignment, so a request sees the old version or the new one, never a
mix. A release (several versions by weight, and a shadow) holds a slot per variant; see
:mod:`keel.serve._release`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from keel.errors import InvalidInput
from keel.export._mitigated_export import DRAW, DRAW_SCHEME
from keel.serve._batch import Arrivals, MicroBatcher, Pending
from keel.serve._codec import InputSpec
from keel.serve._errors import ServeError

__all__ = ["Deployment", "Route", "Slot", "load_deployment"]

_ROUTE = re.compile(r"^(?:(?P<route>[A-Za-z0-9][A-Za-z0-9_.\-]*)=)?(?P<ref>.+)$")


@dataclass(frozen=True)
class Route:
    """``name`` in URLs serves registered ``model`` by ``alias``, or pinned ``version``."""

    name: str
    model: str
    alias: str | None = "production"
    version: int | None = None

    @classmethod
    def parse(cls, text: str, default_alias: str = "production") -> Route:
        """``lgb`` (by the default alias), ``lgb@candidate``, ``lgb/3`` (pinned), or
        ``NAME=REF`` to serve REF under another URL name."""
        from keel.registry import check_name, parse_ref

        m = _ROUTE.match(text.strip()) if isinstance(text, str) else None
        if m is None:
            raise InvalidInput(f"route: expected MODEL, MODEL@ALIAS, MODEL/VERSION, got {text!r}")
        model, version, alias = parse_ref(m["ref"])
        name = check_name(m["route"] or model, "route name")
        if version is not None:
            return cls(name, model, None, version)
        return cls(name, model, alias or default_alias)

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.version}" if self.version else f"{self.model}@{self.alias}"


class Deployment:
    """One model version, loaded and warmed: an ONNX Runtime session behind a batcher."""

    def __init__(self, mv: Any, session: Any, spec: InputSpec) -> None:
        self.model = mv.name
        self.version = int(mv.version)
        self.ref = mv.ref
        self.task = mv.task
        self.classes = mv.output_schema.get("classes")
        self.input_schema = mv.input_schema
        self.spec = spec
        self.session = session
        self.output_names = [o.name for o in session.get_outputs()]
        self.batcher: MicroBatcher | None = None
        self.run_seconds: tuple[float, float] = (0.0, 0.0)  # fixed cost, cost per row
        self._executor: ThreadPoolExecutor | None = None
        self.store: Any = None  # where the native model is, for explanations
        self.artifact_sha = mv.artifact_sha
        self.flavor = mv.flavor
        self._explainer: Any = None
        self._explainer_lock = threading.Lock()
        self.draw_seed: int | None = None  # a randomized (mitigated) model's: see submit

    async def submit(self, feed: dict[str, np.ndarray], n: int, meta: Any) -> Any:
        """Queue a request's block (``meta``: request id, arrival, perf_counter). A
        randomized model's block gets each row's draw from the request id first (see
        :func:`keel.models._mitigated.request_uniforms`), so the same request gets the same
        decisions."""
        if self.draw_seed is not None:
            from keel.models._mitigated import request_uniforms

            draws = request_uniforms(self.draw_seed, str(meta[0]), n).reshape(-1, 1)
            feed = {**feed, "draw": draws}
        assert self.batcher is not None
        return await self.batcher.submit(feed, n, meta)

    def loaded_explainer(self) -> Any:
        """The explainer if :meth:`explainer` has built it, else ``None`` (never blocks)."""
        return self._explainer

    def explainer(self) -> Any:
        """The version's :class:`keel.audit.Explainer`, built on first use (blocking: call it
        in a thread): exact TreeSHAP for LightGBM (its trees flattened for the compiled
        one-row walk, :meth:`keel.audit.Explainer.warm`), else against 100 training rows."""
        with self._explainer_lock:
            if self._explainer is None:
                from keel.audit import Explainer
                from keel.models import load_model

                model = load_model(self.store.blobs, self.artifact_sha)
                try:
                    explainer = Explainer(model).fit()
                    if explainer.method_ == "tree" and not explainer.warm():
                        logging.getLogger("keel.serve").warning(
                            "serve: explanations of %s go to LightGBM's pred_contrib, ~3x "
                            "the CPU of keel's compiled TreeSHAP, which needs numba (pip "
                            "install numba) and trees without categorical splits or "
                            "linear leaves",
                            self.ref,
                        )
                except InvalidInput:  # not a tree model: needs background rows
                    from keel.export import prepared_of

                    prep = prepared_of(self.store, self.ref)
                    background = prep.train[prep.columns]
                    explainer = Explainer(model).fit(background)
                self._explainer = explainer  # whole: loaded_explainer() may read it
            return self._explainer

    def run(self, block: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's outputs for a block of rows (see :class:`InputSpec`)."""
        feed = self.spec.graph_feed(block)
        if self.draw_seed is not None:
            feed[DRAW] = block["draw"]
        outputs = self.session.run(None, feed)
        return dict(zip(self.output_names, outputs, strict=True))

    def start(self, options: Any, on_batch: Any, arrivals: Arrivals | None = None) -> None:
        """Start the batcher (in the running event loop)."""
        inline_rows = 0
        if options.run_in_thread:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"keel-{self.model}")
            inline_rows = self.rows_within(options.inline_run_us / 1e6)
        self.batcher = MicroBatcher(
            self.run,
            max_rows=options.max_batch_rows,
            max_wait_s=options.max_wait_ms / 1000.0,
            executor=self._executor,
            on_batch=on_batch,
            arrivals=arrivals,
            inline_rows=inline_rows,
        )
        self.batcher.start()

    def measure(self, repeats: int = 5) -> None:
        """Warm the session and fit run time ≈ fixed + per_row × rows from 1 and 64 rows."""
        times = {}
        for n in (1, 64):
            block = self.spec.dummy_block(n)
            block["draw"] = np.zeros((n, 1), dtype=np.float32)
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                self.run(block)
                best = min(best, time.perf_counter() - t0)
            times[n] = best
        per_row = max(times[64] - times[1], 0.0) / 63
        self.run_seconds = (max(times[1] - per_row, 0.0), per_row)

    def rows_within(self, seconds: float) -> int:
        """How many rows a run handles within ``seconds`` (0 if not even one)."""
        fixed, per_row = self.run_seconds
        if fixed + per_row > seconds:
            return 0
        return int((seconds - fixed) / per_row) if per_row > 0 else 1 << 30

    async def retire(self) -> None:
        """Answer what is queued, then free the session's thread."""
        if self.batcher is not None:
            await self.batcher.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def rows_of(self, item: Pending) -> list[dict[str, Any]]:
        """A request's input rows back from its block, as the prediction log keeps them
        (missing values as None; a tensor as its summaries)."""
        return self.spec.log_rows(item.feed)

    def outputs_of(self, outputs: dict[str, np.ndarray], start: int, end: int) -> list[Any]:
        """Plain per-row outputs: ``{"label", "probabilities": {class: p}}`` or
        ``{"prediction"}``."""
        if self.task == "regression":
            return [{"prediction": v} for v in outputs["variable"][start:end, 0].tolist()]
        classes = [str(c) for c in self.classes]
        labels = outputs["label"][start:end].tolist()
        probs = outputs["probabilities"][start:end].tolist()
        return [
            {"label": lab, "probabilities": dict(zip(classes, p, strict=True))}
            for lab, p in zip(labels, probs, strict=True)
        ]

    def block_of(
        self,
        items: list[Pending],
        feed: dict[str, np.ndarray],
        outputs: dict[str, np.ndarray],
        done: float,
    ) -> Any:
        """A batch's requests (``feed``: their rows merged, as the batch ran them) and
        answers as a prediction-log :class:`Block` (columns)."""
        from keel.serve._predblock import Block

        metas = [item.meta for item in items]  # (request id, arrival epoch, perf_counter)
        spec = self.spec
        num_names, num = spec.log_numbers(feed)  # a tensor as its summaries, never raw
        text = feed["text"]
        regression = self.task == "regression"
        return Block(
            self.model,
            self.version,
            [m[0] for m in metas],
            [m[1] for m in metas],
            [(done - m[2]) * 1000.0 for m in metas],
            [item.n for item in items],
            spec.log_names,
            num_names,
            tuple(spec.text_names),
            num,
            text,
            None if regression else outputs["label"],
            None if regression else outputs["probabilities"],
            None if regression else tuple(str(c) for c in self.classes),
            outputs["variable"][:, 0] if regression else None,
        )


class Slot:
    """What answers one route now. ``live`` is swapped whole; readers never lock."""

    shadow: Slot | None = None  # a release's shadow (see keel.serve._release)

    def __init__(
        self, route: Route, variant: str | None = None, arrivals: Arrivals | None = None
    ) -> None:
        self.route = route
        self.variant = variant  # the release variant this slot holds (None: a plain route)
        self.live: Deployment | None = None
        self.failure: str | None = None  # why the last load failed, for the operator
        self.loaded_at: float | None = None
        self.target: int | None = None  # the version the last reload resolved and tried
        self.arrivals = arrivals or Arrivals()  # shared by the versions served in turn

    def leaves(self) -> list[Slot]:
        """The slots that hold deployments (a release has one per variant)."""
        return [self]

    def pick(self, key: str | None = None) -> Deployment:
        live = self.live
        if live is None:
            raise ServeError("not_ready", f"model {self.route.name!r} is not loaded yet")
        return live

    def pick_version(self, version: str) -> Deployment:
        live = self.pick()
        if version != str(live.version):
            raise ServeError(
                "model_not_found",
                f"model {self.route.name!r} does not serve version {version[:20]!r}; "
                f"it serves version {live.version}",
            )
        return live

    def swap(self, new: Deployment) -> Deployment | None:
        old, self.live = self.live, new
        self.failure, self.loaded_at = None, time.time()
        return old


def load_deployment(store: Any, ref: str, options: Any) -> Deployment:
    """Resolve ``ref``, fetch its exported graph (exporting it first when the version has
    none yet), open an ONNX Runtime session and warm it. Blocking: run it in a thread."""
    import onnxruntime as ort

    from keel import registry

    mv = registry.get_version(store, ref)
    graph = _graph_of(store, mv, options)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = options.threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
    spec = InputSpec.from_schema(mv.input_schema)
    got = {i.name: i.type for i in session.get_inputs()}
    draw_seed = _draw_seed(mv.ref, session, got.pop(DRAW, None))
    want = {
        n: "tensor(string)" if k == "string" else "tensor(float)"
        for n, k in zip(spec.names, spec.kinds, strict=True)
    }
    if got != want:
        raise InvalidInput(f"model {mv.ref}: its ONNX graph's inputs do not match its schema")
    _check_tensor_shapes(mv.ref, spec, session)
    deployment = Deployment(mv, session, spec)
    deployment.store = store
    deployment.draw_seed = draw_seed
    deployment.measure()
    return deployment


def _draw_seed(ref: str, session: Any, draw_type: str | None) -> int | None:
    """The seed of a randomized graph's draws (its metadata ``keel.draw``), None for a
    graph without a draw input."""
    import json

    if draw_type is None:
        return None
    meta = session.get_modelmeta().custom_metadata_map
    try:
        info = json.loads(meta.get("keel.draw", ""))
        seed = info["seed"]
        ok = draw_type == "tensor(float)" and info.get("scheme") == DRAW_SCHEME
    except (ValueError, TypeError, KeyError):
        ok, seed = False, None
    if not ok or not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InvalidInput(
            f"model {ref}: its ONNX graph has a {DRAW!r} input but no valid keel.draw "
            f"metadata ({DRAW_SCHEME!r} scheme and a seed); re-export it with keel export"
        )
    return seed


def _check_tensor_shapes(ref: str, spec: InputSpec, session: Any) -> None:
    """Refuse a graph whose tensor input has another rank, or another fixed size, than the
    schema's ``[N, *shape]`` (a symbolic dimension fits any size)."""
    shapes = {i.name: i.shape for i in session.get_inputs()}
    for t in spec.tensors:
        dims = list(shapes[t.name] or [])
        want = [None, *t.shape]
        fits = len(dims) == len(want) and all(
            not isinstance(d, int) or w is None or d == w for d, w in zip(dims, want, strict=True)
        )
        if not fits:
            raise InvalidInput(
                f"model {ref}: its ONNX graph's input {t.name!r} is {dims}, its schema says "
                f"{t.batch_shape()}"
            )


def _graph_of(store: Any, mv: Any, options: Any) -> bytes:
    from keel import registry
    from keel.export import export, load_export

    if "export.onnx" in mv.tags:
        return load_export(store, mv.ref)[0]
    if mv.flavor == "onnx":
        return registry.load(store, mv.ref).onnx_bytes
    if not options.export_missing:
        raise InvalidInput(f"model {mv.ref} has not been exported; run: keel export {mv.ref}")
    export(store, mv.ref)
    return load_export(store, mv.ref)[0]
