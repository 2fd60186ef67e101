"""Evidence documents: what one audit of one model version found, stored as a versioned JSON
blob, listed in the ``evidence`` table and linked to the version in the lineage graph.

A document is::

    {
      "format": 1,
      "model": {"ref": "adult/3", "name": ..., "version": ..., "task": ..., "flavor": ...},
      "data": {"holdout": {...}, "train": {...}, "positive_class": ">50K"},
      "settings": {"seed": 0, "n_boot": 200, "sensitive": ["sex", "race"], ...},
      "libraries": {"keel": "0.1.0", "fairlearn": ..., ...},
      "timings_s": {"performance": 0.4, ...},
      "created_at": 1764230400.0, "created_by": "ana",
      "performance": {...}, "fairness": {...}, "explanations": {...}, ...
    }

Sections are produced by the functions in :data:`SECTIONS`; each gets an :class:`AuditContext`
(the model, its hold-out and training rows, the settings) and returns a JSON-able dict.
NaN and infinities are written as null (JSON has neither).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import insert, select

from keel.errors import InvalidInput, NotFound, StoreError
from keel.store import Store, _tables

__all__ = [
    "EVIDENCE_FORMAT",
    "SECTIONS",
    "AuditContext",
    "Evidence",
    "audit",
    "get_evidence",
    "list_evidence",
    "save_evidence",
]

EVIDENCE_FORMAT = 1
_t = _tables.evidence
_LIBRARIES = (
    "keel",
    "numpy",
    "pandas",
    "scikit-learn",
    "lightgbm",
    "fairlearn",
    "adversarial-robustness-toolbox",
    "diffprivlib",
    "onnxruntime",
)


@dataclass(frozen=True)
class Evidence:
    """One stored audit of a model version."""

    id: int | None
    ref: str
    sha: str | None
    doc: dict[str, Any]

    @property
    def sections(self) -> list[str]:
        return [s for s in SECTIONS if s in self.doc]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "ref": self.ref, "sha": self.sha, **self.doc}


@dataclass
class AuditContext:
    """What a section works on: the model, rows and settings of one audit."""

    model: Any
    mv: Any
    X_test: Any
    y_test: np.ndarray
    X_train: Any
    y_train: np.ndarray
    sensitive: list[str]
    seed: int = 0
    n_boot: int = 200
    sample: int = 2000
    settings: dict[str, Any] = field(default_factory=dict)
    store: Any = None  # where the version's run is (what training recorded: DP-SGD's ε)
    #: ``report(step, fraction)``: a section's progress within itself (see :func:`audit`)
    report: Callable[[str, float], None] | None = None
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> list[Any]:
        return list(self.mv.output_schema.get("classes") or [])

    @property
    def positive(self) -> Any:
        return self.classes[-1] if self.classes else None

    def proba(self, which: str = "test") -> np.ndarray:
        """Predicted probabilities on the test (or train) rows, computed once."""
        key = f"proba_{which}"
        if key not in self._cache:
            X = self.X_test if which == "test" else self.X_train
            self._cache[key] = np.asarray(self.model.predict_proba(X))
        return self._cache[key]

    def predict(self, which: str = "test") -> np.ndarray:
        key = f"pred_{which}"
        if key not in self._cache:
            X = self.X_test if which == "test" else self.X_train
            self._cache[key] = np.asarray(self.model.predict(X))
        return self._cache[key]


def _performance(ctx: AuditContext) -> dict[str, Any]:
    from keel.audit.performance import performance_report

    if ctx.mv.task == "regression":
        rep = performance_report(
            ctx.y_test,
            task="regression",
            y_pred=ctx.predict(),
            features=ctx.X_test,
            n_boot=ctx.n_boot,
            seed=ctx.seed,
        )
    else:
        _binary_only(ctx, "performance")
        rep = performance_report(
            ctx.y_test,
            task="classification",
            scores=ctx.proba()[:, -1],
            features=ctx.X_test,
            pos_label=ctx.positive,
            n_boot=ctx.n_boot,
            seed=ctx.seed,
        )
    return performance_section(rep)


def performance_section(rep: dict[str, Any]) -> dict[str, Any]:
    """A performance report with its metrics at the top (``performance.roc_auc``)."""
    metrics = rep["metrics"].pop("metrics")
    return {**metrics, "about": rep.pop("metrics"), **rep}


def fairness_section(rep: dict[str, Any]) -> dict[str, Any]:
    """A fairness report as one entry per sensitive feature (and intersection), its
    disparities at the top: ``fairness.sex.demographic_parity_difference``."""
    out = {key: {**ev.pop("disparities"), **ev} for key, ev in rep.pop("features").items()}
    return {**out, "about": rep}


def _fairness(ctx: AuditContext) -> dict[str, Any]:
    from keel.audit.fairness import fairness_report

    _binary_only(ctx, "fairness")
    if not ctx.sensitive:
        raise InvalidInput(
            "fairness: no sensitive features; pass sensitive=[...] (--sensitive COL) or set "
            "audit.sensitive in keel.yaml"
        )
    missing = [c for c in ctx.sensitive if c not in ctx.X_test.columns]
    if missing:
        raise InvalidInput(
            f"fairness: sensitive feature {missing[0]!r} is not a column of the hold-out rows; "
            f"columns: {', '.join(map(str, ctx.X_test.columns))}"
        )
    scores = ctx.proba()[:, -1]
    y_pred = np.where(scores >= 0.5, ctx.positive, ctx.classes[0])
    rep = fairness_report(
        ctx.y_test,
        y_pred,
        ctx.X_test[ctx.sensitive],
        scores=scores,
        pos_label=ctx.positive,
        n_boot=ctx.n_boot,
        seed=ctx.seed,
        missing="group",
    )
    return fairness_section(rep)


def _explanations(ctx: AuditContext) -> dict[str, Any]:
    from keel.audit._explain_global import explanation_evidence

    if getattr(ctx.model, "flavor", None) == "torch":  # Integrated Gradients (Captum)
        from keel.audit._explain_torch import torch_explanation_evidence

        tabular = ctx.model.transformer is not None
        return torch_explanation_evidence(
            ctx.model,
            ctx.X_test,
            ctx.y_test if tabular else None,
            background=ctx.X_train,
            seed=ctx.seed,
            n_rows=min(ctx.sample, 500 if tabular else 100),
        )

    return explanation_evidence(
        ctx.model,
        ctx.X_test,
        ctx.y_test,
        background=ctx.X_train,
        seed=ctx.seed,
        n_rows=min(ctx.sample, 500),
        progress=ctx.report,
    )


def _robustness(ctx: AuditContext) -> dict[str, Any]:
    from keel.audit.robustness import robustness_section

    return robustness_section(ctx)


def _privacy(ctx: AuditContext) -> dict[str, Any]:
    from keel.audit.privacy import privacy_section

    return privacy_section(ctx)


def _binary_only(ctx: AuditContext, section: str) -> None:
    if ctx.mv.task != "classification" or len(ctx.classes) != 2:
        raise InvalidInput(
            f"{section}: expected a binary classifier, got a {ctx.mv.task} model with "
            f"classes {ctx.classes}"
        )


#: The sections an audit can produce, in the order they run.
SECTIONS: dict[str, Callable[[AuditContext], dict[str, Any]]] = {
    "performance": _performance,
    "fairness": _fairness,
    "explanations": _explanations,
    "robustness": _robustness,
    "privacy": _privacy,
}


def _plain(x: Any) -> Any:
    """``x`` with NumPy values as Python ones and NaN/inf as None (strict JSON)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _libraries() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def audit(
    store: Store,
    ref: str,
    *,
    sections: list[str] | None = None,
    sensitive: list[str] | None = None,
    seed: int = 0,
    n_boot: int = 200,
    sample: int = 2000,
    progress: Any = None,
    save: bool = True,
) -> Evidence:
    """Audit model version ``ref`` on its hold-out rows and store the evidence.

    ``sections``: which of :data:`SECTIONS` (default: every one that applies to the model;
    those that do not, e.g. fairness without sensitive columns or robustness of a regressor,
    are listed under ``skipped`` with the reason; named ones must apply). ``sensitive``: the
    sensitive columns (default: ``audit.sensitive`` of the project's ``keel.yaml``). ``seed``,
    ``n_boot`` (bootstrap replicates) and ``sample`` (rows for the costly sections) are
    recorded in the document. ``progress``: a callable ``(step, done, total)``, told as each
    section starts (``step`` its name, ``done`` the sections finished) and, within a long
    section, as it goes (``step`` as ``"explanations: permutation importance (12/71
    scorings)"``, ``done`` a fraction between the two whole numbers); ``(None, total,
    total)`` at the end."""
    from keel import registry
    from keel.export import prepared_of

    chosen = list(SECTIONS) if sections is None else list(sections)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise InvalidInput(
            f"sections: unknown section {unknown[0]!r}; expected some of {', '.join(SECTIONS)}"
        )
    if not isinstance(n_boot, int) or n_boot < 10:
        raise InvalidInput(f"n_boot: expected an integer ≥ 10, got {n_boot!r}")
    if not isinstance(sample, int) or sample < 50:
        raise InvalidInput(f"sample: expected an integer ≥ 50, got {sample!r}")
    from keel.audit.gates import Policy

    Policy.from_settings(getattr(store, "settings", None))  # a bad policy fails before work
    settings = dict(getattr(store, "settings", {}).get("audit") or {})
    if sensitive is None:
        sensitive = list(settings.get("sensitive") or [])
    mv = registry.get_version(store, ref)
    prep = prepared_of(store, mv.ref)
    model = registry.load(store, mv.ref)
    ctx = AuditContext(
        model=model,
        mv=mv,
        X_test=prep.test[prep.columns].reset_index(drop=True),
        y_test=prep.test[prep.target].to_numpy(),
        X_train=prep.train[prep.columns].reset_index(drop=True),
        y_train=prep.train[prep.target].to_numpy(),
        sensitive=list(sensitive),
        seed=seed,
        n_boot=n_boot,
        sample=sample,
        settings=settings,
        store=store,
    )
    missing = [c for c in ctx.sensitive if c not in ctx.X_test.columns]
    if missing:  # a misspelt column must not quietly drop the fairness evidence
        raise InvalidInput(
            f"sensitive feature {missing[0]!r} is not a column of {mv.ref}'s hold-out rows; "
            f"columns: {', '.join(map(str, ctx.X_test.columns))}"
        )
    doc: dict[str, Any] = {
        "format": EVIDENCE_FORMAT,
        "model": {
            "ref": mv.ref,
            "name": mv.name,
            "version": mv.version,
            "task": mv.task,
            "flavor": mv.flavor,
            "artifact_sha": mv.artifact_sha,
        },
        "data": {
            "target": prep.target,
            "holdout_rows": len(ctx.X_test),
            "train_rows": len(ctx.X_train),
            "classes": ctx.classes,
            "positive_class": ctx.positive,
        },
        "settings": {
            "seed": seed,
            "n_boot": n_boot,
            "sample": sample,
            "sensitive": list(sensitive),
            "sections": chosen,
        },
        "libraries": _libraries(),
        "timings_s": {},
    }
    for i, name in enumerate(chosen):
        if progress is not None:
            progress(name, i, len(chosen))
            ctx.report = _within(progress, name, i, len(chosen))
        t0 = time.perf_counter()
        try:
            doc[name] = SECTIONS[name](ctx)
        except InvalidInput as exc:
            if sections is not None:  # asked for by name: it must apply
                raise
            doc.setdefault("skipped", {})[name] = str(exc)
            continue
        doc["timings_s"][name] = time.perf_counter() - t0
    from keel.audit.mitigate import mitigation_of

    table = mitigation_of(store, mv.ref)
    if table is not None:  # a mitigated version carries its before/after table
        doc["mitigation"] = table
    if progress is not None:
        progress(None, len(chosen), len(chosen))
    if not save:
        return Evidence(None, mv.ref, None, _plain(doc))
    return save_evidence(store, mv.ref, doc)


def _within(
    progress: Callable[[str | None, float, int], None], section: str, i: int, total: int
) -> Callable[[str, float], None]:
    """A section's ``report(step, fraction)`` as the audit's ``progress`` sees it."""

    def report(step: str, fraction: float) -> None:
        progress(f"{section}: {step}", i + min(max(float(fraction), 0.0), 1.0), total)

    return report


def save_evidence(store: Store, ref: str, doc: dict[str, Any]) -> Evidence:
    """Store ``doc`` as the newest evidence of version ``ref``; returns it with its id."""
    from keel import config, registry

    mv = registry.get_version(store, ref)
    who = config.user()
    now = time.time()
    doc = _plain({**doc, "created_at": now, "created_by": who})
    try:
        data = json.dumps(doc, sort_keys=True, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"evidence of {mv.ref}: not storable as JSON: {exc}") from None
    sha = store.blobs.put_bytes(data)
    sections = [s for s in doc if s in SECTIONS or s in ("robustness", "privacy", "mitigation")]
    with store.write() as conn:
        result = conn.execute(
            insert(_t).values(
                name=mv.name,
                version=mv.version,
                sha=sha,
                format=EVIDENCE_FORMAT,
                sections=json.dumps(sections),
                created_at=now,
                created_by=who,
            )
        )
        if result.inserted_primary_key is None:  # a single-row insert always reports its id
            raise StoreError(f"evidence of {mv.ref}: the store returned no row id")
        row_id = result.inserted_primary_key[0]
        store.add_edge(conn, ("evidence", str(row_id)), ("model", mv.ref), "audits")
        store.add_event(conn, "audited", mv.ref, {"evidence": row_id, "sections": sections})
    return Evidence(int(row_id), mv.ref, sha, doc)


def get_evidence(
    store: Store, ref: str, *, id: int | None = None, missing_ok: bool = False
) -> Evidence | None:
    """The newest evidence of version ``ref`` (or evidence ``id``); None or
    :class:`NotFound` when there is none."""
    from keel import registry

    mv = registry.get_version(store, ref)
    q = select(_t).where(_t.c.name == mv.name, _t.c.version == mv.version)
    if id is not None:
        q = q.where(_t.c.id == id)
    with store.read() as conn:
        row = conn.execute(q.order_by(_t.c.id.desc()).limit(1)).first()
    if row is None:
        if missing_ok:
            return None
        what = f"evidence {id}" if id is not None else "evidence"
        raise NotFound(f"{mv.ref} has no {what}; run 'keel audit {mv.ref}'")
    doc = json.loads(store.blobs.get_bytes(row.sha))
    return Evidence(int(row.id), mv.ref, row.sha, doc)


def list_evidence(store: Store, name: str | None = None) -> list[dict[str, Any]]:
    """Every stored audit (of model ``name``), oldest first."""
    q = select(_t).order_by(_t.c.id)
    if name is not None:
        q = q.where(_t.c.name == name)
    with store.read() as conn:
        return [
            {
                "id": r.id,
                "ref": f"{r.name}/{r.version}",
                "sha": r.sha,
                "sections": json.loads(r.sections),
                "created_at": r.created_at,
                "created_by": r.created_by,
            }
            for r in conn.execute(q)
        ]
