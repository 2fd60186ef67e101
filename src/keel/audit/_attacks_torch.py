"""FGSM and PGD on keel's PyTorch classifiers, through ART's ``PyTorchClassifier``.

Image and other tensor models are attacked in their own input units (pixel intensities for
images), L-infinity, clipped to the training inputs' range ([0, 1] for keel's digits); a
tabular ``torch-mlp`` is attacked in :class:`keel.audit._space.EncodedSpace` like every other
tabular model, through its network's real gradients. Each budget is stored under a key a
gate can name: ``robustness.pgd.eps_0_1.accuracy`` is the accuracy on the attacked hold-out
rows under PGD at ε = 0.1 (``eps_0``: no attack, the clean accuracy of the same rows).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np

from keel.audit._space import art
from keel.errors import InvalidInput

__all__ = ["TORCH_EPS", "art_torch_classifier", "eps_key", "space_classifier", "tensor_attacks"]

TORCH_EPS = (0.0, 0.05, 0.1, 0.2)  # L-infinity, input units
TORCH_DEFAULT_EPS = 0.1


def eps_key(eps: float) -> str:
    """``0.1`` → ``"eps_0_1"``: a budget as one segment of a gate path."""
    return "eps_" + f"{float(eps):g}".replace(".", "_").replace("-", "m")


def art_torch_classifier(net: Any, input_shape: tuple[int, ...], n_classes: int, clip: Any) -> Any:
    """ART's classifier around a copy of ``net`` (float32, eval mode, CPU)."""
    from keel.models._torch import torch

    t = torch()
    model = copy.deepcopy(net).float().eval().cpu()
    cls = art().estimators.classification.PyTorchClassifier
    return cls(
        model=model,
        loss=t.nn.CrossEntropyLoss(),
        input_shape=tuple(int(s) for s in input_shape),
        nb_classes=int(n_classes),
        clip_values=(float(clip[0]), float(clip[1])),
        device_type="cpu",
    )


def space_classifier(space: Any) -> Any:
    """ART's classifier for a tabular torch model in the attack space: the network after the
    map from [0, 1] back to encoded features, so ART's gradients are the network's own."""
    from keel.models._torch import torch

    t = torch()  # first, so that a missing torch fails with the install command
    from torch import nn

    net = space.estimator.net
    lo = t.as_tensor(space.lo, dtype=t.float32)
    span = t.as_tensor(space.span, dtype=t.float32)

    class FromUnit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, u: Any) -> Any:
            return self.net(lo + u * span)

    return art_torch_classifier(FromUnit(), (space.n_features,), len(space.classes), (0.0, 1.0))


def _attack(clf: Any, name: str, eps: float, x: np.ndarray, onehot: np.ndarray, it: int) -> Any:
    evasion = art().attacks.evasion
    if eps == 0 or len(x) == 0:
        return x.copy()
    if name == "fgsm":
        return evasion.FastGradientMethod(clf, eps=eps, norm=np.inf).generate(x, onehot)
    attack = evasion.ProjectedGradientDescent(
        clf, eps=eps, eps_step=eps / 4, max_iter=it, norm=np.inf, verbose=False
    )
    return attack.generate(x, onehot)


def sweep(
    clf: Any,
    x: np.ndarray,
    labels: np.ndarray,
    eps_grid: tuple[float, ...],
    eps: float,
    pgd_iter: int,
    seed: int,
) -> dict[str, Any]:
    """FGSM and PGD at each budget: accuracy (true labels) and success rate (rows the model
    had right that the attack turns wrong), keyed ``eps_<budget>``."""
    from keel.models._torch import torch

    t = torch()
    onehot = np.eye(clf.nb_classes, dtype=np.float32)[labels]
    clean = clf.predict(x).argmax(axis=1) == labels
    grid = tuple(sorted(set(eps_grid) | {eps}))
    out: dict[str, Any] = {}
    for name in ("fgsm", "pgd"):
        t0 = time.perf_counter()
        rows = []
        for e in grid:
            t.manual_seed(seed)  # PGD's random start
            np.random.seed(seed % (2**32))
            adv = _attack(clf, name, float(e), x, onehot, pgd_iter)
            right = clf.predict(adv).argmax(axis=1) == labels
            rows.append(
                {
                    "eps": float(e),
                    "accuracy": float(right.mean()) if len(x) else float("nan"),
                    "success_rate": float((clean & ~right).sum() / max(clean.sum(), 1)),
                    "max_linf": float(np.abs(adv - x).max()) if len(x) else 0.0,
                }
            )
        main = rows[grid.index(eps)]
        out[name] = {
            "supported": True,
            "norm": "linf",
            "eps": float(eps),
            "accuracy_under_attack": main["accuracy"],
            "success_rate": main["success_rate"],
            **{eps_key(r["eps"]): r for r in rows},
            "by_eps": rows,
            "budget": {"max_iter": 1 if name == "fgsm" else pgd_iter, "eps_step": "eps / 4"},
            "n_rows": len(x),
            "time_s": time.perf_counter() - t0,
        }
    return out


def tensor_attacks(
    model: Any,
    X_test: Any,
    y_test: np.ndarray,
    X_train: Any,
    *,
    eps_grid: tuple[float, ...] = TORCH_EPS,
    eps: float = TORCH_DEFAULT_EPS,
    n_rows: int = 200,
    seed: int = 0,
    pgd_iter: int = 20,
) -> dict[str, Any]:
    """The robustness section of a torch classifier that reads a tensor (images): FGSM and
    PGD accuracy at each ε on ``n_rows`` seeded hold-out rows."""
    bad = [e for e in (*eps_grid, eps) if isinstance(e, bool) or not e >= 0]
    if bad:
        raise InvalidInput(f"eps: expected numbers ≥ 0, got {bad[0]!r}")
    t0 = time.perf_counter()
    A = model.inputs(X_test)
    A_train = model.inputs(X_train)
    clip = (float(A_train.min()), float(A_train.max()))
    classes = list(model.classes_)
    lookup = {c: i for i, c in enumerate(classes)}
    labels = np.array([lookup.get(v, -1) for v in np.asarray(y_test, dtype=object)])
    pick = np.random.default_rng(seed).permutation(len(A))[:n_rows]
    pick = np.sort(pick[labels[pick] >= 0])
    x, lab = np.ascontiguousarray(A[pick], dtype=np.float32), labels[pick]
    clf = art_torch_classifier(model.net, x.shape[1:], len(classes), clip)
    attacks = sweep(clf, x, lab, tuple(eps_grid), float(eps), pgd_iter, seed)
    return {
        **attacks,
        "clean_accuracy": attacks["fgsm"][eps_key(0.0)]["accuracy"]
        if 0.0 in eps_grid
        else float(np.mean(clf.predict(x).argmax(axis=1) == lab)),
        "about": {
            "space": f"the network's input (L-infinity in input units), clipped to the "
            f"training inputs' range [{clip[0]:g}, {clip[1]:g}]",
            "sample": "seeded hold-out rows (all of them, right or wrong)",
            "n_rows": len(x),
            "seed": seed,
            "attacks": "ART FastGradientMethod and ProjectedGradientDescent (PyTorch)",
            "time_s": time.perf_counter() - t0,
        },
    }
