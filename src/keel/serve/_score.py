"""Batch scoring: a registered model over a Parquet or CSV file, in this process or on Ray
Data, stored as a dataset whose lineage names the model version and the input file's hash.

The model is the version's exported ONNX graph when it has one (``use="auto"``), else the
registered model itself through keel's model contract. Both paths read the file with the
same pyarrow options and run the same :class:`BatchScorer` over batches, so Ray and in-process
scoring give the same rows in the same order.

Nothing is stored until every batch is scored and the number of predictions equals the
number of input rows; then the predictions land as one dataset (blob first, then its records
in one transaction, see ``keel.data``). A Ray job that fails (a node that leaves and whose
work Ray cannot redo) stores nothing and says why in one line.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from keel import errors
from keel.errors import InvalidInput, KeelError, NotFound
from keel.store import Store, sha256_file

__all__ = ["EXECUTORS", "USES", "BatchScorer", "ScoreResult", "read_input", "score"]

EXECUTORS = ("inline", "ray")
USES = ("auto", "onnx", "model")
FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet"}
#: Columns every predictions dataset starts with; the model's outputs follow.
ROW, MODEL = "row", "model_version"


@dataclass
class ScoreResult:
    dataset: Any  # keel.data.Dataset
    model: str
    used: str
    """``onnx`` (the exported graph) or ``model`` (the registered model itself)."""
    executor: str
    rows: int
    seconds: float
    source_sha: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "dataset": self.dataset.to_dict()}


@dataclass(frozen=True)
class ScorerSpec:
    """What a scoring worker needs to build the model, as plain data (no pickled model):
    the blobs by sha256, the artifact to load, and how to name its outputs."""

    kind: str  # "onnx" or "model"
    sha: str
    blobs: dict[str, bytes]
    task: str
    input_schema: list[dict[str, Any]]
    classes: list[Any] | None


class BatchScorer:
    """Loads the model once (per Ray actor, or once in this process) and scores batches:
    a pyarrow table in, a table of the model's outputs out (same rows, same order)."""

    def __init__(self, spec: ScorerSpec) -> None:
        from keel.models import OnnxModel, load_model
        from keel.store import MemoryBlobStore

        self.spec = spec
        if spec.kind == "onnx":
            self.model: Any = OnnxModel(
                spec.blobs[spec.sha], spec.task, spec.input_schema, spec.classes
            )
        else:
            blobs = MemoryBlobStore()
            for data in spec.blobs.values():
                blobs.put_bytes(data)
            self.model = load_model(blobs, spec.sha)

    def __call__(self, batch: pa.Table) -> pa.Table:
        frame = _frame(batch, self.spec.input_schema)
        if self.spec.task == "regression":
            pred = np.asarray(self.model.predict(frame), dtype=np.float64).reshape(-1)
            return pa.table({"prediction": pred})
        classes = list(self.spec.classes or [])
        if self.model.flavor in _mitigated_flavors():
            labels = np.asarray(self.model.predict(frame))  # drawn per row: not argmax
            proba = np.asarray(self.model.predict_proba(frame), dtype=np.float64)
        else:
            proba = np.asarray(self.model.predict_proba(frame), dtype=np.float64)
            labels = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        cols: dict[str, Any] = {"label": pa.array(labels.tolist())}
        for i, c in enumerate(classes):
            cols[f"proba_{c}"] = proba[:, i]
        return pa.table(cols)


def _mitigated_flavors() -> tuple[str, ...]:
    from keel.models._mitigated import FLAVORS

    return FLAVORS


def _frame(batch: pa.Table, input_schema: list[dict[str, Any]]) -> Any:
    """The batch as pandas with the model's columns; categories as plain strings."""
    names = [c["name"] for c in input_schema]
    missing = [n for n in names if n not in batch.column_names]
    if missing:
        raise InvalidInput(
            f"score: the data lacks column(s) {', '.join(map(repr, missing))}; the model reads "
            f"{', '.join(names)}"
        )
    return batch.select(names).to_pandas()


def score(
    store: Store,
    ref: str,
    data: str | Path,
    *,
    executor: str = "inline",
    name: str | None = None,
    use: str = "auto",
    batch_rows: int = 4096,
    address: str | None = None,
    concurrency: int | None = None,
) -> ScoreResult:
    """Score every row of ``data`` (a ``.parquet`` or ``.csv`` file) with model ``ref``
    (``name``, ``name/3`` or ``name@alias``) and store the predictions as dataset ``name``
    (default ``<model>-scores``) with lineage to the model version and the input file.

    ``executor``: ``inline`` (this process) or ``ray`` (Ray Data: the cluster at
    ``address``, else ``RAY_ADDRESS``, else a local Ray started here). ``use``: ``onnx``
    (the exported graph; refused when there is none), ``model`` (the registered model
    itself) or ``auto`` (the graph when there is one). ``concurrency``: Ray actors that score
    (default: as many as the cluster has CPUs)."""
    from keel import registry

    if executor not in EXECUTORS:
        raise InvalidInput(f"executor: expected one of {', '.join(EXECUTORS)}; got {executor!r}")
    if use not in USES:
        raise InvalidInput(f"use: expected one of {', '.join(USES)}; got {use!r}")
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise InvalidInput(f"batch_rows: expected a whole number >= 1, got {batch_rows!r}")
    if concurrency is not None and (not isinstance(concurrency, int) or concurrency < 1):
        raise InvalidInput(f"concurrency: expected a whole number >= 1, got {concurrency!r}")
    path, fmt = _check_data(data)
    mv = registry.get_version(store, ref)
    name = registry.check_name(name or f"{mv.name}-scores", "dataset name")
    spec = scorer_spec(store, mv, use)
    t0 = time.perf_counter()
    source_sha, size = sha256_file(path)
    if executor == "inline":
        out = _score_inline(spec, path, fmt, batch_rows)
        expected = out.num_rows
    else:
        out, expected = _score_ray(spec, path, fmt, batch_rows, address, concurrency)
    if out.num_rows != expected:
        raise KeelError(
            f"score: {out.num_rows:,} predictions for {expected:,} input rows of {path.name}; "
            "nothing was stored"
        )
    ds = _store_predictions(store, name, out, mv, spec, path, fmt, source_sha, size)
    return ScoreResult(
        ds, mv.ref, spec.kind, executor, out.num_rows, time.perf_counter() - t0, source_sha
    )


def _check_data(data: str | Path) -> tuple[Path, str]:
    path = Path(data).expanduser()
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInput(
            f"data: expected a .parquet or .csv file, got {path.name!r} (suffix "
            f"{path.suffix or 'none'!r})"
        )
    if not path.is_file():
        raise NotFound(f"data file {str(data)!r} does not exist")
    return path.resolve(), fmt


def scorer_spec(store: Store, mv: Any, use: str) -> ScorerSpec:
    """The exported graph (``use`` onnx, or auto when there is one) or the registered
    model's artifact with every blob it names."""
    from keel.models import read_manifest

    mitigated = mv.flavor in _mitigated_flavors()
    onnx_sha = mv.tags.get("export.onnx")
    if use == "onnx" and (onnx_sha is None or mitigated):
        why = (
            "its exported graph takes a per-request draw that batch scoring does not feed; "
            "use the registered model (use model)"
            if mitigated
            else f"run: keel export {mv.ref}"
        )
        raise InvalidInput(f"model {mv.ref} has no exported ONNX graph to score with; {why}")
    if onnx_sha is not None and not mitigated and use in ("auto", "onnx"):
        graph = store.blobs.get_bytes(onnx_sha)
        output = mv.output_schema or {}
        return ScorerSpec(
            "onnx", onnx_sha, {onnx_sha: graph}, mv.task, mv.input_schema, output.get("classes")
        )
    manifest = read_manifest(store.blobs, mv.artifact_sha)
    shas = {mv.artifact_sha, *_shas_in(manifest.get("components", {}))}
    blobs = {sha: store.blobs.get_bytes(sha) for sha in sorted(shas)}
    return ScorerSpec(
        "model", mv.artifact_sha, blobs, mv.task, mv.input_schema, manifest.get("classes")
    )


def _shas_in(node: Any) -> Iterator[str]:
    """Every blob a manifest names (``{"sha": ...}`` at any depth)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "sha" and isinstance(value, str):
                yield value
            else:
                yield from _shas_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _shas_in(value)


# ---------------------------------------------------------------- reading, both paths alike


def _csv_options(path: Path) -> tuple[Any, Any, Any]:
    import pyarrow.csv as pcsv

    from keel.data import DEFAULT_NULL_VALUES

    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    return (
        pcsv.ReadOptions(block_size=1 << 22),
        pcsv.ParseOptions(delimiter=delimiter),
        pcsv.ConvertOptions(null_values=list(DEFAULT_NULL_VALUES), strings_can_be_null=True),
    )


def read_input(path: Path, fmt: str) -> pa.Table:
    """The whole file as Arrow, read as the Ray path reads it."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    try:
        if fmt == "parquet":
            return pq.read_table(path)
        read, parse, convert = _csv_options(path)
        return pcsv.read_csv(path, read, parse, convert)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(path, fmt, exc) from None


def _input_rows(path: Path, fmt: str) -> int:
    """Rows in the file, counted apart from the scoring job (Parquet: from its footer)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    try:
        if fmt == "parquet":
            return int(pq.ParquetFile(path).metadata.num_rows)
        read, parse, _ = _csv_options(path)
        with pcsv.open_csv(path, read, parse) as reader:
            first = reader.schema.names[:1]
        convert = pcsv.ConvertOptions(include_columns=first, column_types={first[0]: pa.string()})
        with pcsv.open_csv(path, read, parse, convert) as reader:
            return sum(batch.num_rows for batch in reader)
    except (pa.ArrowInvalid, OSError, IndexError) as exc:
        raise _unreadable(path, fmt, exc) from None


def _unreadable(path: Path, fmt: str, exc: BaseException) -> InvalidInput:
    return InvalidInput(f"data file {path.name}: cannot read it as {fmt}: {_line(exc)}")


def _score_inline(spec: ScorerSpec, path: Path, fmt: str, batch_rows: int) -> pa.Table:
    table = read_input(path, fmt)
    scorer = BatchScorer(spec)
    parts = [scorer(table.slice(i, batch_rows)) for i in range(0, table.num_rows, batch_rows)]
    return pa.concat_tables(parts) if parts else scorer(table)


# ---------------------------------------------------------------- Ray Data


def _score_ray(
    spec: ScorerSpec,
    path: Path,
    fmt: str,
    batch_rows: int,
    address: str | None,
    concurrency: int | None,
) -> tuple[pa.Table, int]:
    from keel.executors import RayExecutor

    expected = _input_rows(path, fmt)
    ex = RayExecutor(address=address)  # else the cluster RAY_ADDRESS names, else a local Ray
    ray = ex._ray()
    quiet = logging.getLogger("ray.data")  # a failure is reported by keel, in one line
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # predictions in the input's row order
        ctx.enable_progress_bars = False
        if fmt == "parquet":
            ds = ray.data.read_parquet(str(path))
        else:
            read, parse, convert = _csv_options(path)
            ds = ray.data.read_csv(
                str(path), read_options=read, parse_options=parse, convert_options=convert
            )
        actors = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
        scored = ds.map_batches(
            BatchScorer,
            fn_constructor_kwargs={"spec": spec},
            batch_size=batch_rows,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
            num_cpus=1,
        )
        failure = None
        try:
            parts = list(scored.iter_batches(batch_size=None, batch_format="pyarrow"))
        except Exception as exc:  # Ray's own errors: one line, nothing stored
            failure = _ray_failure(exc, path)
        if failure is not None:
            # the failed execution's actors (and their CPUs) are released only once its
            # executor, held in reference cycles by the error's frames, is collected
            del scored, ds
            gc.collect()
            raise failure
    finally:
        quiet.setLevel(level)
        ex.close()
    out = pa.concat_tables(parts) if parts else pa.table({})
    return out, expected


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAY_ERROR = re.compile(r"^(?:ray\.exceptions\.)?(\w+(?:Error|Exception)): (.+)$")
_KEEL_ERROR = re.compile(r"^\s*keel\.errors\.(\w+): (.+)$")
_NODE_LEFT = re.compile(r"node (?:has died|was terminated|is dead)|marked dead", re.IGNORECASE)


def _ray_failure(exc: BaseException, path: Path) -> KeelError:
    """One line for a failed Ray job: the user's own keel error when that is the cause (a
    column the model reads is missing), else what Ray says went wrong."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and len(chain) < 20:
        if isinstance(cause, KeelError):
            return type(cause)(f"score (ray): {cause}")
        chain.append(cause)
        inner = getattr(cause, "cause", None)
        nxt = cause.__cause__ or cause.__context__
        cause = inner if isinstance(inner, BaseException) else nxt
    text = _ANSI.sub("", "\n".join(str(e) for e in chain))
    ours = [m.groups() for m in map(_KEEL_ERROR.match, text.splitlines()) if m]
    if ours:  # Ray passes the worker's traceback as text
        kind, message = ours[-1]
        cls = getattr(errors, kind, KeelError)
        if not (isinstance(cls, type) and issubclass(cls, KeelError)):
            cls = KeelError
        return cls(f"score (ray): {message}")
    if _NODE_LEFT.search(text):
        why = "a Ray node left the cluster during the job and Ray could not redo its part"
    else:
        found = [m.groups() for m in map(_RAY_ERROR.match, text.splitlines()) if m]
        why = ": ".join(found[-1]) if found else f"{type(exc).__name__}: {_line(exc)}"
    return KeelError(f"score (ray) of {path.name} failed, nothing was stored: {why}")


def _line(exc: BaseException) -> str:
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    return lines[0] if lines else type(exc).__name__


# ---------------------------------------------------------------- storing


def _store_predictions(
    store: Store,
    name: str,
    out: pa.Table,
    mv: Any,
    spec: ScorerSpec,
    path: Path,
    fmt: str,
    source_sha: str,
    size: int,
) -> Any:
    """The predictions as dataset ``name`` (kind ``predictions``): lineage to the input file
    (``read_from``, by its sha256), the model version (``predicted_by``) and the artifact
    that scored (``scored_with``)."""
    from keel.data import SourceInfo, infer_schema
    from keel.data._ingest import _parquet_bytes, store_dataset

    n = out.num_rows
    table = pa.table(
        {
            ROW: pa.array(np.arange(n, dtype=np.int64)),
            MODEL: pa.array([mv.ref] * n, pa.string()).dictionary_encode(),
            **{c: out[c] for c in out.column_names},
        }
    )
    schema = infer_schema(table, null_values=())
    schema.columns[0].description = f"row of {path.name} (0-based, in file order)"
    schema.columns[1].description = "the model version that made the prediction"
    # The predictions' sha256 names these bytes (which hold the model version): the edges to
    # the model and the artifact are true of them whether or not the record below lands, so
    # they go first and the dataset appears with its whole lineage in one transaction.
    sha = hashlib.sha256(_parquet_bytes(table)).hexdigest()
    with store.write() as conn:
        store.add_edge(conn, ("dataset", sha), ("model", mv.ref), "predicted_by")
        store.add_edge(conn, ("dataset", sha), ("blob", spec.sha), "scored_with")
    info = SourceInfo(
        uri=str(path),
        path=[str(path)],
        format=fmt,
        sha256=[source_sha],
        size=size,
        sizes=[size],
        rows=n,
    )
    ds, _, _ = store_dataset(store, name, table, schema, kind="predictions", info=info)
    if ds.sha != sha:  # the dataset's bytes are not the ones the edges name
        with store.write() as conn:
            store.add_edge(conn, ("dataset", ds.sha), ("model", mv.ref), "predicted_by")
            store.add_edge(conn, ("dataset", ds.sha), ("blob", spec.sha), "scored_with")
    return ds
