"""What every mitigation shares: checking its inputs before anything is written, gathering
the parent version's rows and training settings, and recording the new version (a run that
names the parent, the method and its settings; the registered version; a lineage edge)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput, NotFound
from keel.store import Store

__all__ = ["Parent", "load_parent", "record"]

#: the lineage role from a mitigated version to the version it was made from
ROLE = "mitigated_from"


@dataclass
class Parent:
    """The version being mitigated, its rows, and how it was trained."""

    mv: Any
    model: Any
    prep: Any
    sensitive: list[str]
    run: dict[str, Any]
    classes: list[Any] = field(default_factory=list)

    @property
    def positive(self) -> Any:
        return self.classes[-1]

    @property
    def X_train(self) -> pd.DataFrame:
        return self.prep.train[self.prep.columns]

    @property
    def X_test(self) -> pd.DataFrame:
        return self.prep.test[self.prep.columns]

    @property
    def y_train(self) -> np.ndarray:
        return self.prep.train[self.prep.target].to_numpy()

    @property
    def y_test(self) -> np.ndarray:
        return self.prep.test[self.prep.target].to_numpy()

    @property
    def training_params(self) -> dict[str, Any]:
        return dict(self.run.get("params") or {})

    @property
    def model_params(self) -> dict[str, Any]:
        p = self.training_params
        return {k[len("model.") :]: v for k, v in p.items() if k.startswith("model.")}

    def extra_inputs(self) -> list[dict[str, Any]]:
        """Sensitive columns the model does not read, typed like its other inputs."""
        have = {c["name"] for c in self.mv.input_schema}
        return [
            {"name": c, "type": _logical_type(self.prep.train[c])}
            for c in self.sensitive
            if c not in have
        ]


def _logical_type(col: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(col):
        return "bool"
    if pd.api.types.is_integer_dtype(col):
        return "int"
    if pd.api.types.is_float_dtype(col):
        return "float"
    return "string"


def check_sensitive(sensitive: Any) -> list[str]:
    cols = [sensitive] if isinstance(sensitive, str) else list(sensitive or [])
    if not cols or not all(isinstance(c, str) and c for c in cols):
        raise InvalidInput(
            f"--sensitive: expected one or more column names, e.g. 'sex', got {sensitive!r}"
        )
    if len(set(cols)) != len(cols):
        raise InvalidInput(f"--sensitive: a column is named twice in {cols}")
    return cols


def _training_run(store: Store, mv: Any) -> dict[str, Any]:
    """The run that trained ``mv``, or its nearest ancestor's (a variant has none)."""
    from keel import registry
    from keel.store import lineage
    from keel.train import get_run

    seen = set()
    while mv.run_id is None and mv.ref not in seen:
        seen.add(mv.ref)
        parents = [n for n in lineage(store, "model", mv.ref).parents if n.kind == "model"]
        if not parents:
            raise NotFound(f"model {mv.ref} has no training run to mitigate from")
        mv = registry.get_version(store, parents[0].id)
    if mv.run_id is None:
        raise NotFound(f"model {mv.ref} has no training run to mitigate from")
    return get_run(store, mv.run_id)


def load_parent(
    store: Store, ref: str, sensitive: Any, method: str, name: str | None = None
) -> Parent:
    """Resolve ``ref``, rebuild its training and hold-out rows, and check that ``method``
    can work on them (and that ``name``, if given, can be registered); nothing is written."""
    from keel import registry
    from keel.export import prepared_of

    cols = check_sensitive(sensitive)
    if name is not None:
        registry.check_name(name, "--name")
    mv = registry.get_version(store, ref)
    classes = list(mv.output_schema.get("classes") or [])
    if mv.task != "classification" or len(classes) != 2:
        raise InvalidInput(
            f"{method}: expected a binary classifier, got {mv.ref}, a {mv.task} model with "
            f"classes {classes}"
        )
    model = registry.load(store, mv.ref)
    if model.tags.get("hard_decisions"):
        raise InvalidInput(
            f"{method}: {mv.ref} is already mitigated ({mv.flavor}) and makes hard decisions; "
            "mitigate the version it was made from instead"
        )
    run = _training_run(store, mv)
    prep = prepared_of(store, mv.ref)
    parent = Parent(mv, model, prep, cols, run, classes)
    _check_columns(parent, method)
    _check_train_rows(parent)
    return parent


def _check_columns(p: Parent, method: str) -> None:
    available = [c for c in p.prep.train.columns if c != p.prep.target]
    for c in p.sensitive:
        if c == p.prep.target:
            raise InvalidInput(f"--sensitive: {c!r} is the model's target, not a group column")
        if c not in p.prep.train.columns or c not in p.prep.test.columns:
            raise InvalidInput(
                f"--sensitive: column {c!r} is not in the data of {p.mv.ref}; "
                f"columns: {', '.join(map(str, available))}"
            )


def _check_train_rows(p: Parent) -> None:
    y = p.y_train
    present = [c for c in p.classes if (y == c).any()]
    if len(present) < 2:
        raise InvalidInput(
            f"target {p.prep.target!r}: the training rows of {p.mv.ref} hold only the label "
            f"{present[0] if present else None!r}; mitigation needs both classes"
        )
    from keel.models._mitigated import group_keys

    for c in p.sensitive:
        groups = set(group_keys(p.prep.train, [c]))
        if len(groups) < 2:
            raise InvalidInput(
                f"--sensitive: column {c!r} has a single group ({next(iter(groups))!r}) in the "
                f"training rows of {p.mv.ref}; mitigation needs two or more"
            )


def holdout_metrics(y: np.ndarray, pred: np.ndarray, positive: Any) -> dict[str, float]:
    """Metrics of a model that makes hard decisions: accuracy and F1 on the hold-out."""
    from sklearn import metrics as m

    return {
        "accuracy": float(m.accuracy_score(y, pred)),
        "f1": float(m.f1_score(y == positive, pred == positive)),
    }


def record(
    store: Store,
    parent: Parent,
    *,
    method: str,
    settings: dict[str, Any],
    table: dict[str, Any],
    name: str | None,
    model: Any = None,
    run_id: str | None = None,
    metrics: dict[str, float] | None = None,
) -> Any:
    """Record the mitigated ``model`` (or the run ``run_id`` that already trained and saved
    one) and register it as the next version of ``name`` (default: the parent's name)."""
    from keel import registry
    from keel.train import Run, get_run, start_run

    target_name = registry.check_name(name or parent.mv.name, "--name")
    params = {f"mitigation.{k}": v for k, v in settings.items()}
    artifact = json.dumps(table, sort_keys=True, allow_nan=False).encode()
    if run_id is None:
        from keel.models import save_model

        run = start_run(
            store,
            parent.run.get("experiment") or "default",
            seed=settings.get("seed"),
            tags={"model": parent.training_params.get("model"), "mitigation": method},
        )
        with run:
            run.log_params({**parent.training_params, **params})
            for sha, role in parent.prep.inputs:
                run.add_input("dataset", sha, role)
            spec = (parent.run.get("artifacts") or {}).get("feature_spec.json")
            if spec:
                run.link_artifact("feature_spec.json", spec["sha"], spec["size"])
            run.log_metrics({f"holdout_{k}": v for k, v in (metrics or {}).items()}, step=0)
            sha = save_model(model, store.blobs)
            run.link_artifact("model", sha, store.blobs.size(sha))
    else:
        run = Run(store, run_id, parent.run.get("experiment") or "default")
        run.log_params(params)
        run.set_tags({"mitigation": method})
        sha = get_run(store, run_id)["artifacts"]["model"]["sha"]
    run.add_input("model", parent.mv.ref, "mitigates")
    run.log_artifact("mitigation.json", artifact)
    manifest = json.loads(store.blobs.get_bytes(sha))
    mv = registry.register(
        store,
        target_name,
        artifact_sha=sha,
        flavor=manifest["flavor"],
        task=manifest["task"],
        input_schema=manifest["input_schema"],
        output_schema=manifest["output_schema"],
        run_id=run.id,
        metrics=metrics or {},
        description=f"{method} mitigation of {parent.mv.ref} (sensitive: "
        f"{', '.join(parent.sensitive)})",
    )
    with store.write() as conn:
        store.add_edge(conn, ("model", mv.ref), ("model", parent.mv.ref), ROLE)
    registry.set_tag(store, mv.ref, "mitigation", method)
    return registry.get_version(store, mv.ref)
