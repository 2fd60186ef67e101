"""The built-in step kinds: what parameters each takes, what it needs from its inputs, what
besides its parameters decides whether it must run again (its fingerprint), what it calls in
keel, and what it made (for lineage).

Outputs are small JSON mappings. Steps about data output ``dataset`` (its reference) and
``sha``; steps about a model output ``model`` (its ``name/VERSION``), so a later step finds
what it works on in its inputs: the first input whose output has the field.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput

__all__ = ["KINDS", "StepContext", "check_params", "import_function"]

DATA_KINDS = ("ingest", "validate")
MODEL_KINDS = ("train", "audit", "gate", "export", "release")


@dataclass
class StepContext:
    """What a step function gets: the ``store``, the outputs of its ``inputs`` by step
    name, the ``step`` name, the pipeline ``run_id``, which ``attempt`` this is (1 first),
    and ``base_dir`` (the folder relative paths are read from)."""

    store: Any
    step: str
    run_id: str
    inputs: dict[str, Any]
    attempt: int = 1
    base_dir: str | None = None

    def path(self, value: str) -> Path:
        """``value`` as a path, relative ones from :attr:`base_dir`."""
        p = Path(value).expanduser()
        return p if p.is_absolute() or not self.base_dir else Path(self.base_dir) / p

    def find(self, key: str, *, skip: tuple[str, ...] = ()) -> Any:
        """The value of ``key`` in the first input output that has it."""
        for name, out in self.inputs.items():
            if name not in skip and isinstance(out, Mapping) and key in out:
                return out[key]
        raise InvalidInput(f"step {self.step!r}: inputs: none of {list(self.inputs)} gives {key!r}")


@dataclass(frozen=True)
class Kind:
    name: str
    run: Callable[[StepContext, dict[str, Any]], dict[str, Any]] | None
    params: dict[str, tuple[tuple[type, ...], bool]] = field(default_factory=dict)
    needs: str | None = None  # "dataset" or "model": what an input must provide

    def check_inputs(self, step: str, params: Mapping[str, Any], inputs: dict[str, str]) -> None:
        if self.needs is None:
            return
        providers = DATA_KINDS if self.needs == "dataset" else MODEL_KINDS
        holdout = params.get("holdout") if self.name == "train" else None
        ok = [n for n, k in inputs.items() if (k in providers or k == "python") and n != holdout]
        if not ok:
            what = "an ingest or validate step" if self.needs == "dataset" else "a train step"
            raise InvalidInput(
                f"step {step!r}: inputs: a {self.name} step needs a {self.needs} from "
                f"{what} (or a python step) among its inputs, got {list(inputs) or 'none'}"
            )


_STR, _INT, _NUM, _MAP, _LIST = (str,), (int,), (int, float), (dict,), (list,)


def check_params(kind: str, step: str, params: Mapping[str, Any]) -> None:
    """Refuse unknown, missing or mistyped parameters of a built-in kind, naming the field."""
    where = f"step {step!r}: params"
    if kind == "python":
        for key in params:
            if not isinstance(key, str) or not key.isidentifier():
                raise InvalidInput(
                    f"{where}: {key!r}: a python step's parameter names are keyword argument names"
                )
        return
    spec = KINDS[kind].params
    for key, value in params.items():
        if key not in spec:
            close = difflib.get_close_matches(str(key), list(spec), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(spec) or "none"
            raise InvalidInput(
                f"{where}: unknown parameter {key!r}{hint}; a {kind} step takes {known}"
            )
        types, _ = spec[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            want = " or ".join(_TYPE_WORDS[t] for t in types)
            raise InvalidInput(f"{where}.{key}: expected {want}, got {value!r}")
    for key, (_, required) in spec.items():
        if required and key not in params:
            raise InvalidInput(f"{where}.{key}: a {kind} step needs it")
    _check_kind_specifics(kind, where, params)


_TYPE_WORDS = {
    str: "text",
    int: "an integer",
    float: "a number",
    dict: "a mapping",
    list: "a list",
    bool: "true or false",
}


def _check_kind_specifics(kind: str, where: str, params: Mapping[str, Any]) -> None:
    if kind == "ingest" and ("path" in params) == ("sql" in params):
        raise InvalidInput(f"{where}: an ingest step needs one of 'path' or 'sql'")
    if kind == "ingest" and params.get("on_error", "raise") not in ("raise", "quarantine"):
        raise InvalidInput(
            f"{where}.on_error: expected raise or quarantine, got {params['on_error']!r}"
        )
    if kind == "train":
        from keel.registry import check_name
        from keel.train import get_kind

        try:
            get_kind(params.get("model", "lightgbm"))
            if "register" in params:
                check_name(params["register"], "register")
        except InvalidInput as exc:
            raise InvalidInput(f"{where}.{_field_of(exc)}: {exc}") from None
    if kind == "audit":
        from keel.audit import SECTIONS

        bad = [s for s in params.get("sections", []) if s not in SECTIONS]
        if bad:
            raise InvalidInput(
                f"{where}.sections: unknown section {bad[0]!r}; expected some of "
                f"{', '.join(SECTIONS)}"
            )
    if kind == "release" and not str(params.get("alias", "")).strip():
        raise InvalidInput(f"{where}.alias: expected an alias such as candidate")


def _field_of(exc: InvalidInput) -> str:
    return "register" if str(exc).startswith("register") else "model"


def import_function(name: str) -> Callable[..., Any]:
    """The function ``"module:function"`` names (``function`` may be dotted: ``Class.meth``)."""
    module, _, attr = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{name} is not callable")
    return obj


# -- fingerprints: what besides the parameters and the inputs decides the output ----------


def _file_sha(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None  # the step itself will say what is wrong with the path


def fingerprint(
    kind: str,
    params: Mapping[str, Any],
    function: str | None,
    settings: Mapping[str, Any],
    base_dir: str | None,
) -> Any:
    """Extra key material: the bytes of files a step reads, the project policy a gate or an
    audit applies, the source of a python step's function."""
    ctx = StepContext(None, "", "", {}, base_dir=base_dir)
    out: dict[str, Any] = {}
    for key in ("path", "schema"):
        value = params.get(key)
        if kind in ("ingest", "validate") and isinstance(value, str) and "\n" not in value:
            out[key] = _file_sha(ctx.path(value))
    if kind in ("audit", "gate", "release"):
        out["audit_settings"] = settings.get("audit")
    if kind == "python" and function:
        try:
            src = inspect.getsource(import_function(function))
            out["source"] = hashlib.sha256(src.encode()).hexdigest()
        except (OSError, TypeError):
            out["source"] = None
    return out


# -- running ------------------------------------------------------------------------------


def _ingest(ctx: StepContext, p: dict[str, Any]) -> dict[str, Any]:
    from keel.data import ingest

    path = str(ctx.path(p["path"])) if "path" in p else None
    schema = p.get("schema")
    if isinstance(schema, str) and "\n" not in schema:
        schema = ctx.path(schema)
    res = ingest(
        ctx.store,
        path,
        name=p.get("name"),
        schema=schema,
        sql=p.get("sql"),
        format=p.get("format"),
        on_error=p.get("on_error", "raise"),
    )
    d = res.dataset
    out = {"dataset": d.ref, "sha": d.sha, "rows": d.n_rows, "problems": len(res.problems)}
    if res.quarantine is not None:
        out["quarantine"] = res.quarantine.ref
    return out


def _validate(ctx: StepContext, p: dict[str, Any]) -> dict[str, Any]:
    from keel.data import Schema, get_dataset, load_table, validate

    ds = get_dataset(ctx.store, ctx.find("dataset"))
    raw = p["schema"]
    if isinstance(raw, dict):
        schema = Schema.from_dict(raw, where=f"step {ctx.step!r}: params.schema")
    else:
        schema = Schema.from_yaml(ctx.path(raw) if "\n" not in raw else raw)
    result = validate(load_table(ctx.store, ds), schema, source=ds.ref, line_offset=None)
    result.raise_if_bad()
    return {"dataset": ds.ref, "sha": ds.sha, "rows": ds.n_rows}


_TRAIN_ARGS = (
    "model",
    "params",
    "features",
    "task",
    "split",
    "test_size",
    "seed",
    "experiment",
    "time_col",
    "group_col",
)


def _train(ctx: StepContext, p: dict[str, Any]) -> dict[str, Any]:
    from keel.train import train

    holdout = p.get("holdout")
    if holdout in ctx.inputs:
        holdout = ctx.inputs[holdout]["dataset"]
    skip = (p["holdout"],) if p.get("holdout") in ctx.inputs else ()
    dataset = ctx.find("dataset", skip=skip)
    kwargs = {k: p[k] for k in _TRAIN_ARGS if k in p}
    res = train(
        ctx.store,
        dataset,
        p["target"],
        holdout=holdout,
        tags={"pipeline_run": ctx.run_id, "pipeline_step": ctx.step},
        **kwargs,
    )
    mv = res.register(
        ctx.store, p.get("register") or dataset.split("/")[0], p.get("description", "")
    )
    return {
        "model": mv.ref,
        "run": res.run_id,
        "dataset": dataset,
        "metrics": {k: float(v) for k, v in res.metrics.items()},
    }


def _audit(ctx: StepContext, p: dict[str, Any]) -> dict[str, Any]:
    from keel.audit import audit

    ev = audit(ctx.store, ctx.find("model"), progress=None, **p)
    return {"model": ev.ref, "evidence": ev.id, "sha": ev.sha, "sections": ev.sections}


def _gate(ctx: StepContext, p: dict[str, Any]) -> dict[str, Any]:
    from keel.audit import gate
    from keel.errors import ValidationFailed

    res = gate(ctx.store, ctx.find("model"))
    if not res.passed:
        failed = "; ".join(
            f"{c['rule']} ({c['missing']})"
            if c.get("missing")
            else f"{c['rule']} (got {c['value']:.4g})"
            for c in res.failed
        )
        why = failed or getattr(res, "note", None) or "no rule passed"
        raise ValidationFailed(f"gate: {res.model} fails the project's gates: {why}")
    return {
        "model": res.model,
        "passed": True,
        "evidence": res.evidence_id,
        "checks": len(res.checks),
    }


def _export(ctx: StepContext, p: dict[str, Any]) -> dict[str, Any]:
    from keel.export import Tolerance, export

    tol = Tolerance(**p["tolerance"]) if p.get("tolerance") else None
    res = export(ctx.store, ctx.find("model"), tolerance=tol)
    return {"model": res.model_ref, "onnx_sha": res.onnx_sha, "size_bytes": res.size_bytes}


def _release(ctx: StepContext, p: dict[str, Any]) -> dict[str, Any]:
    from keel.registry import set_alias

    why = p.get("why") or f"pipeline run {ctx.run_id}, step {ctx.step}"
    mv = set_alias(ctx.store, ctx.find("model"), p["alias"], why=why)
    return {"model": mv.ref, "alias": p["alias"]}


KINDS: dict[str, Kind] = {
    k.name: k
    for k in [
        Kind(
            "ingest",
            _ingest,
            {
                "path": (_STR, False),
                "sql": (_STR, False),
                "name": (_STR, False),
                "schema": (_STR + _MAP, False),
                "format": (_STR, False),
                "on_error": (_STR, False),
            },
        ),
        Kind("validate", _validate, {"schema": (_STR + _MAP, True)}, needs="dataset"),
        Kind(
            "train",
            _train,
            {
                "target": (_STR, True),
                "model": (_STR, False),
                "params": (_MAP, False),
                "features": (_STR + _MAP, False),
                "task": (_STR, False),
                "holdout": (_STR, False),
                "split": (_STR, False),
                "test_size": (_NUM, False),
                "seed": (_INT, False),
                "experiment": (_STR, False),
                "time_col": (_STR, False),
                "group_col": (_STR, False),
                "register": (_STR, False),
                "description": (_STR, False),
            },
            needs="dataset",
        ),
        Kind(
            "audit",
            _audit,
            {
                "sections": (_LIST, False),
                "sensitive": (_LIST, False),
                "seed": (_INT, False),
                "n_boot": (_INT, False),
                "sample": (_INT, False),
            },
            needs="model",
        ),
        Kind("gate", _gate, {}, needs="model"),
        Kind("export", _export, {"tolerance": (_MAP, False)}, needs="model"),
        Kind("release", _release, {"alias": (_STR, True), "why": (_STR, False)}, needs="model"),
        Kind("python", None),
    ]
}


def made(kind: str, output: Any) -> list[tuple[str, str]]:
    """What a step that ran made, as lineage nodes."""
    if not isinstance(output, Mapping):
        return []
    if kind == "ingest":
        return [("dataset", str(output["sha"]))]
    if kind == "train":
        return [("run", str(output["run"])), ("model", str(output["model"]))]
    if kind == "audit" and output.get("evidence") is not None:
        return [("evidence", str(output["evidence"]))]
    if kind == "export":
        return [("blob", str(output["onnx_sha"]))]
    return []


def about(kind: str, output: Any) -> list[tuple[str, str, str]]:
    """What a step worked on (it was made from), as lineage parents with a role."""
    if not isinstance(output, Mapping):
        return []
    if kind == "validate":
        return [("dataset", str(output["sha"]), "validates")]
    if kind in ("gate", "release"):
        return [("model", str(output["model"]), "gates" if kind == "gate" else "releases")]
    return []
