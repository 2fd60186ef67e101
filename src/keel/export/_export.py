"""Export a registered model: its whole pipeline as one ONNX graph, parity-checked on the
model's own hold-out rows, stored with its parity report, and linked in lineage."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from keel.errors import InvalidInput, NotFound
from keel.store import Store, lineage

__all__ = [
    "ExportResult",
    "export",
    "export_variants",
    "holdout_of",
    "load_export",
    "parse_spec",
    "prepared_of",
]


@dataclass
class ExportResult:
    model_ref: str
    onnx_sha: str
    size_bytes: int
    parity: Any  # ParityReport

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_ref,
            "onnx_sha": self.onnx_sha,
            "size_bytes": self.size_bytes,
            "parity": self.parity.to_dict(),
        }


def holdout_of(store: Store, ref: str) -> tuple[Any, Any]:
    """The hold-out rows (raw input columns) and labels a model version was scored on,
    rebuilt from its run: the hold-out dataset, or the same split of the training data."""
    prep = prepared_of(store, ref)
    return prep.test[prep.columns], prep.test[prep.target].to_numpy()


def prepared_of(store: Store, ref: str) -> Any:
    """The training and hold-out frames of a model version's run, rebuilt exactly."""
    from keel import registry
    from keel.train import get_run, prepare

    mv = registry.get_version(store, ref)
    if mv.run_id is None:  # a variant: its parent's hold-out rows
        parents = [n for n in lineage(store, "model", mv.ref).parents if n.kind == "model"]
        if not parents:
            raise NotFound(f"model {mv.ref} has no training run, so no hold-out rows to check on")
        prep = prepared_of(store, parents[0].id)
        prep.input_schema = mv.input_schema
        return prep
    run = get_run(store, mv.run_id)
    p = run["params"]
    if "target" not in p:
        raise NotFound(f"run {mv.run_id[:12]} of {mv.ref} does not record its target")
    roles = {n.role: n.id for n in lineage(store, "run", mv.run_id).parents if n.kind == "dataset"}
    if "train" not in roles:
        raise NotFound(f"run {mv.run_id[:12]} of {mv.ref} records no training dataset")
    prep = prepare(
        store,
        roles["train"],
        p["target"],
        task=p.get("task"),
        holdout=roles.get("holdout"),
        split=p.get("split", "stratified") if "holdout" not in roles else "stratified",
        test_size=p.get("test_size", 0.2),
        seed=p.get("seed", 0),
        time_col=p.get("time_col"),
        group_col=p.get("group_col"),
        model=p.get("model", "lightgbm"),
    )
    prep.input_schema = mv.input_schema
    return prep


def export(
    store: Store, ref: str, *, tolerance: Any = None, rows: tuple[Any, Any] | None = None
) -> ExportResult:
    """Convert model ``ref`` to ONNX, check parity on its hold-out rows (refusing the export
    when it falls outside ``tolerance``), and store the graph and the report. ``rows``:
    the hold-out ``(X, y)`` when the caller already has them (else rebuilt from the run)."""
    from keel import registry
    from keel.export._convert import to_onnx
    from keel.export._parity import parity

    mv = registry.get_version(store, ref)
    model = registry.load(store, mv.ref)
    onx = to_onnx(model, name=mv.ref)
    X, y = rows if rows is not None else holdout_of(store, mv.ref)
    report = parity(model, onx, X, y, tolerance=tolerance)
    report.check(tolerance)
    data = onx.SerializeToString()
    onnx_sha = store.blobs.put_bytes(data)
    report_sha = store.blobs.put_bytes(json.dumps(report.to_dict(), sort_keys=True).encode())
    with store.write() as conn:
        store.add_edge(conn, ("blob", onnx_sha), ("model", mv.ref), "exported_from")
        store.add_edge(conn, ("blob", report_sha), ("blob", onnx_sha), "parity_of")
    registry.set_tag(store, mv.ref, "export.onnx", onnx_sha)
    registry.set_tag(store, mv.ref, "export.parity", report_sha)
    return ExportResult(mv.ref, onnx_sha, len(data), report)


def load_export(store: Store, ref: str) -> tuple[bytes, dict[str, Any]]:
    """The stored ONNX graph of ``ref`` and its parity report; export first if needed."""
    from keel import registry

    mv = registry.get_version(store, ref)
    if "export.onnx" not in mv.tags:
        raise InvalidInput(f"model {mv.ref} has not been exported; run: keel export {mv.ref}")
    graph = store.blobs.get_bytes(mv.tags["export.onnx"])
    report = json.loads(store.blobs.get_bytes(mv.tags["export.parity"]))
    return graph, report


def parse_spec(text: str | None, flag: str) -> dict[str, Any] | None:
    """``"trees=60,leaves=8"`` → ``{"trees": 60, "leaves": 8}``; ``""`` → ``{}``."""
    if text is None:
        return None
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{flag}: expected KEY=NUMBER[,KEY=NUMBER], got {part!r}")
        try:
            value: Any = int(raw) if raw.strip().lstrip("-").isdigit() else float(raw)
        except ValueError:
            raise InvalidInput(f"{flag}: {key.strip()!r} expects a number, got {raw!r}") from None
        out[key.strip().replace("-", "_")] = value
    return out


_SPEC_KEYS = {"prune": {"amount", "max_drop", "trees"}, "distill": {"trees", "leaves"}}


def _check_spec(spec: dict[str, Any] | None, what: str) -> None:
    unknown = set(spec or {}) - _SPEC_KEYS[what]
    if unknown:
        raise InvalidInput(
            f"--{what}: unknown key(s) {', '.join(sorted(unknown))}; expected "
            f"{', '.join(sorted(_SPEC_KEYS[what]))}"
        )


def export_variants(
    store: Store,
    ref: str,
    *,
    quantize: str | None = None,
    prune: dict[str, Any] | None = None,
    distill: dict[str, Any] | None = None,
    tolerance: Any = None,
    repeats: int = 200,
) -> tuple[ExportResult, Any, list[str]]:
    """Export ``ref``, make the requested smaller variants (each registered as a new version
    derived from it, and exported with its own parity check), and measure the trade-off."""
    from keel import registry
    from keel.export import _variants as v

    if quantize not in (None, "int8"):
        raise InvalidInput(f"--quantize: expected int8, got {quantize!r}")
    _check_spec(prune, "prune")
    _check_spec(distill, "distill")
    flavor = registry.get_version(store, ref).flavor
    if flavor in ("postprocessed", "randomized_ensemble") and (quantize or prune or distill):
        raise InvalidInput(
            f"--quantize/--prune/--distill: {ref} is a fairness-mitigated ({flavor}) version, "
            "whose decisions are drawn at random; make smaller variants of its parent and "
            "mitigate those instead"
        )
    prep = prepared_of(store, ref)
    X, y = prep.test[prep.columns], prep.test[prep.target].to_numpy()
    base = export(store, ref, tolerance=tolerance, rows=(X, y))
    model = registry.load(store, base.model_ref)
    fp32 = store.blobs.get_bytes(base.onnx_sha)
    made: list[tuple[str, Any, dict[str, Any]]] = []
    if prune is not None:
        made.append(("pruned", *v.prune(model, X, y, **prune)))
    if distill is not None:
        made.append(("distilled", *v.distill(model, prep.train[prep.columns], **distill)))
    if quantize:
        made.append(("int8", *v.quantize_int8(fp32, model)))
    variants = [v.Variant("fp32", base.model_ref, fp32, model)]
    refs = []
    for kind, small, detail in made:
        new_ref = v.register_variant(store, base.model_ref, small, kind, detail)
        graph = (
            small.onnx_bytes
            if kind == "int8"
            else store.blobs.get_bytes(export(store, new_ref, tolerance=tolerance).onnx_sha)
        )
        variants.append(v.Variant(kind, new_ref, graph, small, detail))
        refs.append(new_ref)
    report = v.trade_off(variants, X, y, repeats=repeats)
    sha = store.blobs.put_bytes(json.dumps(report.to_dict(), sort_keys=True).encode())
    registry.set_tag(store, base.model_ref, "export.tradeoff", sha)
    return base, report, refs
