"""keel.audit: the evidence a model carries — performance by slice, fairness, explanations,
robustness and privacy — with gates on promotion and a model card per version.

::

    from keel.audit import audit, gate, model_card
    ev = audit(store, "adult/3", sensitive=["sex", "race"])     # stored, linked to adult/3
    ev.doc["fairness"]["sex"]["demographic_parity_difference"]  # {"value", "ci_low", ...}
    gate(store, "adult/3").passed                               # keel.yaml: audit.policy
    model_card(store, "adult/3").write("cards/adult-3")         # card.md + card.html

The names load on first use, so importing ``keel.audit.gates`` (every alias move does)
does not pull in the explainers, attacks and card renderers.
"""

from __future__ import annotations

import importlib
from typing import Any

# ``mitigate`` is both a submodule and a function of it: bound now, so that importing the
# submodule later cannot leave the module object where the function should be.
from keel.audit.mitigate import mitigate  # noqa: E402

#: Each public name and the module that defines it.
_WHERE: dict[str, str] = {
    "AuditContext": "keel.audit._evidence",
    "EVIDENCE_FORMAT": "keel.audit._evidence",
    "Evidence": "keel.audit._evidence",
    "SECTIONS": "keel.audit._evidence",
    "audit": "keel.audit._evidence",
    "get_evidence": "keel.audit._evidence",
    "list_evidence": "keel.audit._evidence",
    "save_evidence": "keel.audit._evidence",
    "GroupCodes": "keel.audit._groups",
    "GroupMetrics": "keel.audit._groups",
    "encode_groups": "keel.audit._groups",
    "group_metrics": "keel.audit._groups",
    "metrics_from_codes": "keel.audit._groups",
    "audit_predictions": "keel.audit._predictions",
    "Card": "keel.audit.card",
    "model_card": "keel.audit.card",
    "write_card": "keel.audit.card",
    "Attributions": "keel.audit.explain",
    "Explainer": "keel.audit.explain",
    "explanation_evidence": "keel.audit.explain",
    "partial_dependence": "keel.audit.explain",
    "permutation_importance": "keel.audit.explain",
    "shap_importance": "keel.audit.explain",
    "surrogate_tree": "keel.audit.explain",
    "integrated_gradients": "keel.audit._explain_torch",
    "plot_attributions": "keel.audit._explain_torch",
    "torch_explanation_evidence": "keel.audit._explain_torch",
    "tensor_attacks": "keel.audit._attacks_torch",
    "torch_dp_info": "keel.audit.privacy",
    "DISPARITIES": "keel.audit.fairness",
    "demographic_parity_difference": "keel.audit.fairness",
    "demographic_parity_ratio": "keel.audit.fairness",
    "disparate_impact_ratio": "keel.audit.fairness",
    "equal_opportunity_difference": "keel.audit.fairness",
    "equal_opportunity_ratio": "keel.audit.fairness",
    "equalized_odds_difference": "keel.audit.fairness",
    "equalized_odds_ratio": "keel.audit.fairness",
    "fairness_report": "keel.audit.fairness",
    "GateResult": "keel.audit.gates",
    "Policy": "keel.audit.gates",
    "Rule": "keel.audit.gates",
    "alias_trail": "keel.audit.gates",
    "evidence_values": "keel.audit.gates",
    "gate": "keel.audit.gates",
    "Mitigation": "keel.audit.mitigate",
    "exponentiated_gradient": "keel.audit.mitigate",
    "mitigate": "keel.audit.mitigate",
    "mitigation_of": "keel.audit.mitigate",
    "reweigh": "keel.audit.mitigate",
    "reweighing_weights": "keel.audit.mitigate",
    "threshold_optimizer": "keel.audit.mitigate",
    "calibration": "keel.audit.performance",
    "performance_report": "keel.audit.performance",
    "slice_metrics": "keel.audit.performance",
    "accuracy_vs_epsilon": "keel.audit.privacy",
    "membership_inference": "keel.audit.privacy",
    "privacy_section": "keel.audit.privacy",
    "adversarial_training": "keel.audit.robustness",
    "robustness_report": "keel.audit.robustness",
    "robustness_section": "keel.audit.robustness",
}

__all__ = [
    "DISPARITIES",
    "EVIDENCE_FORMAT",
    "SECTIONS",
    "Attributions",
    "AuditContext",
    "Card",
    "Evidence",
    "Explainer",
    "GateResult",
    "GroupCodes",
    "GroupMetrics",
    "Mitigation",
    "Policy",
    "Rule",
    "accuracy_vs_epsilon",
    "adversarial_training",
    "alias_trail",
    "audit",
    "audit_predictions",
    "calibration",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "disparate_impact_ratio",
    "encode_groups",
    "equal_opportunity_difference",
    "equal_opportunity_ratio",
    "equalized_odds_difference",
    "equalized_odds_ratio",
    "evidence_values",
    "explanation_evidence",
    "exponentiated_gradient",
    "fairness_report",
    "gate",
    "get_evidence",
    "group_metrics",
    "integrated_gradients",
    "list_evidence",
    "membership_inference",
    "metrics_from_codes",
    "mitigate",
    "mitigation_of",
    "model_card",
    "partial_dependence",
    "performance_report",
    "permutation_importance",
    "plot_attributions",
    "privacy_section",
    "reweigh",
    "reweighing_weights",
    "robustness_report",
    "robustness_section",
    "save_evidence",
    "shap_importance",
    "slice_metrics",
    "surrogate_tree",
    "tensor_attacks",
    "threshold_optimizer",
    "torch_dp_info",
    "torch_explanation_evidence",
    "write_card",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'keel.audit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
