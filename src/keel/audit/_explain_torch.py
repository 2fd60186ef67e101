"""Integrated Gradients (Captum) for keel's PyTorch models: why a network decides.

For a row x and a baseline b, IG attributes ``f(x) - f(b)`` to the network's inputs by
integrating the gradient along the straight path from b to x. ``f`` is the log-odds of the
explained class (``z_k - logsumexp_{j != k} z_j`` from the logits; for two classes, the
logit difference) or the predicted value of a regressor. The network is run in float64 so
that the only error left is the path integral's; its steps are raised (64, 256, 1024)
for the rows whose **completeness** gap is still above the tolerance::

    gap = |sum(attributions) - (f(x) - f(b))| / max(|f(x) - f(b)|, 1e-3)

* tabular ``torch-mlp``: attributions of the transformed features are summed back to the raw
  columns (``keel.features.feature_origins``; an interaction ``a*b`` split equally); the
  baseline is the mean of the background's transformed features; the explained class is
  the positive (last) class;
* tensors (images ``[C, H, W]``, windows ``[window]``): the baseline is zeros (a black
  image, a flat series); the explained class is each row's predicted class; the evidence
  keeps the mean |attribution| map over the rows (per pixel, per position).
"""

from __future__ import annotations

import copy
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from keel.errors import InvalidInput, MissingExtra

__all__ = ["TOLERANCE", "integrated_gradients", "plot_attributions", "torch_explanation_evidence"]

TOLERANCE = 1e-3
STEPS = (64, 256, 1024)
_FLOOR = 1e-3  # below this output change the gap is absolute
_TOP = 10
_BATCH = 32768


def _captum() -> Any:
    try:
        from captum.attr import IntegratedGradients
    except ImportError:
        raise MissingExtra(
            "Integrated Gradients needs Captum; install it with: pip install 'keel[torch]'"
        ) from None
    return IntegratedGradients


def _explained(model: Any) -> Any:
    """The network in float64 returning, per row, the log-odds of every class (or the
    value)."""
    from keel.models._torch import torch

    t = torch()
    net = copy.deepcopy(model.net).double().eval()
    classify = model.task == "classification"

    def f(x: Any) -> Any:
        z = net(x)
        if not classify:
            return z[:, :1]
        k = z.shape[1]
        others = z.unsqueeze(1).expand(-1, k, -1)
        eye = t.eye(k, dtype=t.bool, device=z.device).unsqueeze(0)
        return z - t.logsumexp(others.masked_fill(eye, -t.inf), dim=2)

    return f


def integrated_gradients(
    model: Any,
    inputs: np.ndarray,
    *,
    baseline: np.ndarray | None = None,
    targets: np.ndarray | None = None,
    tolerance: float = TOLERANCE,
    steps: tuple[int, ...] = STEPS,
) -> dict[str, Any]:
    """IG of a keel ``TorchModel`` on prepared network inputs (``model.inputs(X)``).

    ``baseline``: one input (default zeros). ``targets``: the class index explained per row
    (default the predicted class; ignored for a regressor). Returns ``values`` (shaped like
    ``inputs``), ``output`` f(x), ``baseline_output`` f(b), ``targets``, ``gap`` (relative
    completeness gap per row) and ``steps`` (the steps each row needed)."""
    from keel.models._torch import torch

    t = torch()
    ig_cls = _captum()
    x = np.asarray(inputs, dtype=np.float64)
    if x.ndim < 2 or len(x) == 0:
        raise InvalidInput(f"inputs: expected a batch [N, ...] of network inputs, got {x.shape}")
    b = np.zeros(x.shape[1:]) if baseline is None else np.asarray(baseline, dtype=np.float64)
    if b.shape != x.shape[1:]:
        raise InvalidInput(f"baseline: expected shape {list(x.shape[1:])}, got {list(b.shape)}")
    f = _explained(model)
    xt, bt = t.from_numpy(x), t.from_numpy(np.broadcast_to(b, x.shape).copy())
    with t.no_grad():
        fx, fb = f(xt).numpy(), f(bt[:1]).numpy()[0]
    if model.task == "classification":
        k = fx.argmax(axis=1) if targets is None else np.asarray(targets, dtype=int)
    else:
        k = np.zeros(len(x), dtype=int)
    out, base = fx[np.arange(len(x)), k], fb[k]
    values = np.zeros_like(x)
    gap = np.full(len(x), np.inf)
    used = np.zeros(len(x), dtype=int)
    ig = ig_cls(f)
    todo = np.arange(len(x))
    for n_steps in steps:
        if len(todo) == 0:
            break
        chunk = max(1, _BATCH // int(n_steps))  # rows x steps per forward pass
        a = np.concatenate(
            [
                ig.attribute(
                    xt[part],
                    baselines=bt[part],
                    target=t.from_numpy(k[part]),
                    n_steps=int(n_steps),
                    method="gausslegendre",
                )
                .detach()
                .numpy()
                for part in np.array_split(todo, -(-len(todo) // chunk))
            ]
        )
        delta = out[todo] - base[todo]
        err = np.abs(a.reshape(len(todo), -1).sum(axis=1) - delta)
        values[todo], gap[todo], used[todo] = a, err / np.maximum(np.abs(delta), _FLOOR), n_steps
        todo = todo[gap[todo] > tolerance]
    return {
        "values": values,
        "output": out,
        "baseline_output": base,
        "targets": k,
        "gap": gap,
        "steps": used,
    }


def _completeness(res: dict[str, Any], tolerance: float) -> dict[str, Any]:
    gap = res["gap"]
    return {
        "max_relative_gap": float(gap.max()),
        "mean_relative_gap": float(gap.mean()),
        "tolerance": tolerance,
        "passed": bool(gap.max() <= tolerance),
        "rows": len(gap),
        "rows_within_tolerance": int((gap <= tolerance).sum()),
        "max_steps": int(res["steps"].max()),
        "steps_tried": list(STEPS),
        "method": "gausslegendre",
        "definition": "|sum(attributions) - (f(x) - f(baseline))| / "
        f"max(|f(x) - f(baseline)|, {_FLOOR:g}), f in float64",
    }


def _space(model: Any) -> str:
    return "log_odds" if model.task == "classification" else "value"


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("keel", "torch", "captum", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _seeded(n: int, k: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).permutation(n)[: min(n, k)])


def torch_explanation_evidence(
    model: Any,
    X: Any,
    y: Any = None,
    *,
    background: Any = None,
    seed: int = 0,
    n_rows: int = 500,
    n_local: int = 5,
    n_pdp: int = 5,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """The explanations section of an audit for a keel ``TorchModel``: Integrated Gradients
    with its completeness check (``explanations.completeness.max_relative_gap``)."""
    if model.transformer is not None:
        return _tabular(model, X, y, background, seed, n_rows, n_local, n_pdp, tolerance)
    return _tensor(model, X, seed, n_rows, n_local, tolerance)


def _tabular(
    model: Any,
    X: Any,
    y: Any,
    background: Any,
    seed: int,
    n_rows: int,
    n_local: int,
    n_pdp: int,
    tolerance: float,
) -> dict[str, Any]:
    from keel.audit._explain_global import (
        _seeded_rows,
        partial_dependence,
        permutation_importance,
        surrogate_tree,
    )
    from keel.audit._explain_rows import to_frame
    from keel.audit.explain import _sum_back_matrix

    frame = to_frame(X, model.input_schema)
    rows = _seeded_rows(frame, n_rows, seed)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    Z = model.inputs(rows)
    Zb = model.inputs(frame if background is None else background)
    classes = list(model.output_schema.get("classes") or [])
    target = classes[-1] if classes else None
    targets = np.full(len(Z), len(classes) - 1) if classes else None
    res = integrated_gradients(
        model, Z, baseline=Zb.mean(axis=0), targets=targets, tolerance=tolerance
    )
    features = [c["name"] for c in model.input_schema]
    try:
        raw = res["values"] @ _sum_back_matrix(model.transformer, features)
    except (InvalidInput, AttributeError, ValueError, TypeError):
        features = [str(n) for n in model.transformer.get_feature_names_out()]
        raw = res["values"]
    timings["integrated_gradients_s"] = time.perf_counter() - t0
    mean = np.abs(raw).mean(axis=0)
    order = sorted(range(len(features)), key=lambda j: (-mean[j], features[j]))
    importance = {features[j]: float(mean[j]) for j in order}
    about = {"space": _space(model), "method": "integrated_gradients", "class": target}
    local = [
        {
            "output": float(res["output"][i]),
            "expected_value": float(res["baseline_output"][i]),
            "contributions": dict(zip(features, map(float, raw[i]), strict=True)),
            **about,
        }
        for i in range(min(n_local, len(raw)))
    ]
    out: dict[str, Any] = {
        **about,
        "expected_value": float(res["baseline_output"][0]),
        "baseline": "the mean of the background rows' transformed features",
        "global": {"mean_abs_attribution": importance},
        "local": local,
        "completeness": _completeness(res, tolerance),
    }
    if y is not None:
        t0 = time.perf_counter()
        out["global"]["permutation"] = permutation_importance(model, frame, y, seed=seed)
        timings["permutation_importance_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["pdp"] = [partial_dependence(model, rows, f, seed=seed) for f in list(importance)[:n_pdp]]
    timings["pdp_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["surrogate"] = surrogate_tree(model, frame, seed=seed)
    timings["surrogate_s"] = time.perf_counter() - t0
    out["repeat"] = _repeat(seed, len(rows), len(frame), timings)
    return out


def _tensor(
    model: Any, X: Any, seed: int, n_rows: int, n_local: int, tolerance: float
) -> dict[str, Any]:
    t0 = time.perf_counter()
    A = model.inputs(X)
    pick = _seeded(len(A), n_rows, seed)
    res = integrated_gradients(model, A[pick], tolerance=tolerance)
    mean_map = np.abs(res["values"]).mean(axis=0)
    flat = mean_map.ravel()
    top = np.argsort(-flat, kind="stable")[:_TOP]
    classes = list(model.output_schema.get("classes") or [])
    local = []
    for i in range(min(n_local, len(pick))):
        k = int(res["targets"][i])
        local.append(
            {
                "row": int(pick[i]),
                "class": classes[k] if classes else None,
                "output": float(res["output"][i]),
                "baseline_output": float(res["baseline_output"][i]),
                "sum_attributions": float(res["values"][i].sum()),
                "relative_gap": float(res["gap"][i]),
            }
        )
    tensor = next(c for c in model.input_schema if c.get("type") == "tensor")
    return {
        "method": "integrated_gradients",
        "space": _space(model),
        "class": "each row's predicted class" if classes else None,
        "baseline": "zeros (a black image, a flat series)",
        "input": {"name": tensor["name"], "shape": list(mean_map.shape)},
        "global": {
            "mean_abs_map": mean_map.tolist(),
            "max_mean_abs": float(flat.max()),
            "mean_abs": float(flat.mean()),
            "top_positions": [
                {
                    "position": [int(v) for v in np.unravel_index(j, mean_map.shape)],
                    "mean_abs": float(flat[j]),
                }
                for j in top
            ],
        },
        "local": local,
        "completeness": _completeness(res, tolerance),
        "repeat": _repeat(
            seed, len(pick), len(A), {"integrated_gradients_s": time.perf_counter() - t0}
        ),
    }


def _repeat(seed: int, explained: int, total: int, timings: dict[str, float]) -> dict[str, Any]:
    return {
        "seed": seed,
        "rows_explained": explained,
        "rows_total": total,
        "versions": _versions(),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }


def plot_attributions(section: dict[str, Any], path: str | Path) -> Path:
    """Write the attributions of an explanations section from a torch model as a PNG: the
    mean |attribution| map of images (a heat map per channel averaged), the mean per position
    of a sequence, or bars per raw feature. Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingExtra(
            "matplotlib is not installed; install it with: pip install matplotlib"
        ) from exc
    glob = section.get("global") or {}
    path = Path(path)
    fig, ax = plt.subplots(figsize=(4.5, 3.6), dpi=120)
    if "mean_abs_map" in glob:
        m = np.asarray(glob["mean_abs_map"], dtype=np.float64)
        if m.ndim == 3:
            m = m.mean(axis=0)
        if m.ndim == 2:
            im = ax.imshow(m, cmap="magma")
            fig.colorbar(im, ax=ax, label="mean |attribution|")
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.bar(np.arange(m.size), m.ravel(), color="C0")
            ax.set_xlabel("position in the window (oldest first)")
            ax.set_ylabel("mean |attribution|")
    elif "mean_abs_attribution" in glob:
        items = list(glob["mean_abs_attribution"].items())[:15][::-1]
        ax.barh([k for k, _ in items], [v for _, v in items], color="C0")
        ax.set_xlabel("mean |attribution| (" + str(section.get("space")) + ")")
    else:
        plt.close(fig)
        raise InvalidInput(
            "section: expected the explanations of a torch model (Integrated "
            "Gradients), with global.mean_abs_map or global.mean_abs_attribution"
        )
    gap = (section.get("completeness") or {}).get("max_relative_gap")
    ax.set_title(f"Integrated Gradients (max completeness gap {gap:.1e})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
