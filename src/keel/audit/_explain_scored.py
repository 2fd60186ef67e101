"""Which score an explanation explains: the model's own, or, for a fairness-mitigated
version (``keel.audit.mitigate``), the score its decision is made from.

* a plain model: its feature transform and final estimator (a LightGBM booster, a linear
  scikit-learn model, or anything else).
* ``ThresholdedModel`` (``threshold``: fairlearn's ThresholdOptimizer): the base model's
  score, explained as the base model would be (TreeSHAP for LightGBM). The decision is then
  a per-group post-processing of that score's probability (thresholds per group of the
  sensitive columns, randomized between two where the rule says so), which the values do
  not attribute: a sensitive column the base model does not read gets 0.
* ``EnsembleModel`` (``expgrad``: fairlearn's ExponentiatedGradient): the members' weighted
  mean log-odds ``sum_k w_k f_k(x)``. Shapley values are linear in the game, so the
  weighted sum of each member's exact TreeSHAP values is exactly the Shapley decomposition
  of that mean (the same for linear members). It is *not* a decomposition of the
  ensemble's probability of a positive decision, ``sum_k w_k [f_k(x) > 0]``, a step
  function of the scores. Members that decide the same for every row (fairlearn's
  constant predictors) carry no attribution and are left out of the mean (the weights of
  the others renormalised); the sentence returned says so.

A mitigated model whose members are neither trees nor linear falls back to the
model-agnostic estimator on its probability of a positive decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Scored", "scored_parts"]


@dataclass
class Scored:
    """The parts whose score is explained: ``transformer`` (raw columns ``reads`` to the
    encoded ones), ``estimators`` with their ``weights`` (one estimator, weight 1, for a
    plain model), and the sentence ``explains`` saying what is explained (None for a plain
    model, whose explanation is of itself)."""

    transformer: Any
    estimators: list[Any]
    weights: list[float]
    reads: list[str]
    explains: str | None = None
    mitigation: str | None = None


def _parts(model: Any) -> tuple[Any, Any]:
    """(fitted transformer, final estimator) of a keel model, or (None, None)."""
    if hasattr(model, "booster") and hasattr(model, "transformer"):
        return model.transformer, model.booster
    pipeline = getattr(model, "pipeline", None)
    if pipeline is not None and hasattr(pipeline, "steps") and len(pipeline.steps) >= 2:
        return pipeline[:-1], pipeline[-1]
    return None, None


def _names(schema: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in schema]


def scored_parts(model: Any) -> Scored:
    """What :class:`keel.audit.Explainer` explains of ``model`` (see the module doc)."""
    flavor = getattr(model, "flavor", None)
    if flavor == "postprocessed":
        return _thresholded(model)
    if flavor == "randomized_ensemble":
        return _ensemble(model)
    transformer, estimator = _parts(model)
    return Scored(
        transformer,
        [] if estimator is None else [estimator],
        [1.0],
        _names(model.input_schema),
    )


def _thresholded(model: Any) -> Scored:
    base = model.base
    transformer, estimator = _parts(base)
    sensitive = ", ".join(model.rule["sensitive"])
    groups = len(model.rule["groups"])
    explains = (
        f"the base model's score for {model.rule['positive_class']!r}, before the "
        f"post-processing: the decision compares that score's probability with a threshold "
        f"per group of {sensitive} ({groups} groups, fairlearn's ThresholdOptimizer, "
        f"constraint {model.rule.get('constraint')}), which these values do not attribute"
    )
    return Scored(
        transformer,
        [] if estimator is None else [estimator],
        [1.0],
        _names(base.input_schema),
        explains,
        "threshold",
    )


def _is_constant(member: Any) -> bool:
    return type(member).__name__ == "DummyClassifier"


def _ensemble(model: Any) -> Scored:
    pairs = [(m, w) for m, w in zip(model.members, model.weights, strict=True) if w > 0]
    scoring = [(m, w) for m, w in pairs if not _is_constant(m)]
    constant = sum(w for m, w in pairs if _is_constant(m))
    total = sum(w for _, w in scoring)
    explains = (
        f"the weighted mean log-odds of the ensemble's {len(scoring)} scoring members "
        "(fairlearn's ExponentiatedGradient, weights as fitted); exact for that mean, since "
        "Shapley values add up across members. Each member decides by its own log-odds > 0 "
        "and the ensemble's probability of a positive decision is the weight of the members "
        "that say yes, a step function of these scores that the values do not decompose"
    )
    if constant > 0:
        explains += (
            f"; members deciding the same for every row (weight {constant:.3f}) are left "
            "out and the others' weights renormalised"
        )
    return Scored(
        model.transformer,
        [m for m, _ in scoring],
        [w / total for _, w in scoring] if total > 0 else [],
        _names(model.input_schema),
        explains,
        "expgrad",
    )
