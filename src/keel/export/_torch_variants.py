"""Magnitude pruning of a PyTorch network, without retraining.

``torch.nn.utils.prune.global_unstructured`` with the L1 criterion sets the smallest weights
of all Linear and Conv layers together to zero (biases and the network's scale buffers are
kept), then the pruning is made permanent, so the variant is a plain :class:`TorchModel`
with the same architecture and sparse weights, stored as safetensors like any other.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from keel.errors import InvalidInput

__all__ = ["AMOUNTS", "magnitude_pruned", "prune_torch"]

#: Shares of weights tried, most first, when no ``amount`` is given.
AMOUNTS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.3)


def magnitude_pruned(model: Any, amount: float) -> Any:
    """A copy of ``model`` with the ``amount`` share of its Linear/Conv weights (smallest
    magnitudes over all those layers) set to zero."""
    import torch
    from torch.nn.utils import prune

    from keel.models import TorchModel

    if not isinstance(amount, int | float) or isinstance(amount, bool) or not 0 < amount < 1:
        raise InvalidInput(
            f"prune: amount is the share of weights to zero, in (0, 1); got {amount!r}"
        )
    net = copy.deepcopy(model.net)
    layers = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    params = [(m, "weight") for m in net.modules() if isinstance(m, layers)]
    if not params:
        raise InvalidInput(
            f"prune: the network {model.architecture!r} has no Linear or Conv layer to prune"
        )
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=float(amount))
    for module, name in params:
        prune.remove(module, name)
    state = {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items()}
    return TorchModel(
        model.architecture,
        model.arch_kwargs,
        state,
        model.task,
        model.input_schema,
        model.classes_,
        model.transformer,
    )


def _sparsity(model: Any) -> tuple[int, int]:
    weights = [v for k, v in model.state.items() if k.endswith("weight") and v.ndim >= 2]
    return int(sum(int(np.sum(w == 0)) for w in weights)), int(sum(w.size for w in weights))


def prune_torch(
    model: Any, X: Any, y: Any, *, max_drop: float = 0.002, amount: float | None = None
) -> tuple[Any, dict[str, Any]]:
    """The most pruned network (of :data:`AMOUNTS`) whose hold-out metric is within
    ``max_drop`` of the full one's, or the one pruned by exactly ``amount``."""
    from keel.export._variants import _better, _metric

    key, full = _metric(model, X, y)
    for share in [amount] if amount is not None else AMOUNTS:
        small = magnitude_pruned(model, share)
        _, value = _metric(small, X, y)
        if amount is not None or _better(key, value, full) >= -max_drop:
            zeros, total = _sparsity(small)
            return small, {
                "amount": share,
                "zero_weights": zeros,
                "of": total,
                key: value,
                f"full_{key}": full,
            }
    raise InvalidInput(
        f"prune: even {min(AMOUNTS):.0%} of the weights pruned moves {key} more than "
        f"{max_drop} from {full:.4f}; raise max_drop or give amount=SHARE"
    )
