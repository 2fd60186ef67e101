"""keel.audit: the evidence a model carries — performance by slice, fairness, explanations,
robustness and privacy — with gates on promotion and a model card per version.

::

    from keel.audit import audit, gate, model_card
    ev = audit(store, "adult/3", sensitive=["sex", "race"])     # stored, linked to adult/3
    ev.doc["fairness"]["sex"]["demographic_parity_difference"]  # {"value", "ci_low", ...}
    gate(store, "adult/3").passed                               # keel.yaml: audit.policy
    model_card(store, "adult/3").write("cards/adult-3")         # card.md + card.html
"""

from keel.audit._evidence import (
    EVIDENCE_FORMAT,
    SECTIONS,
    AuditContext,
    Evidence,
    audit,
    get_evidence,
    list_evidence,
    save_evidence,
)
from keel.audit._groups import (
    GroupCodes,
    GroupMetrics,
    encode_groups,
    group_metrics,
    metrics_from_codes,
)
from keel.audit._predictions import audit_predictions
from keel.audit.card import Card, model_card, write_card
from keel.audit.explain import (
    Attributions,
    Explainer,
    explanation_evidence,
    partial_dependence,
    permutation_importance,
    shap_importance,
    surrogate_tree,
)
from keel.audit.fairness import (
    DISPARITIES,
    demographic_parity_difference,
    demographic_parity_ratio,
    disparate_impact_ratio,
    equal_opportunity_difference,
    equal_opportunity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    fairness_report,
)
from keel.audit.gates import GateResult, Policy, Rule, evidence_values, gate
from keel.audit.mitigate import (
    Mitigation,
    exponentiated_gradient,
    mitigate,
    mitigation_of,
    reweigh,
    reweighing_weights,
    threshold_optimizer,
)
from keel.audit.performance import calibration, performance_report, slice_metrics
from keel.audit.privacy import accuracy_vs_epsilon, membership_inference, privacy_section
from keel.audit.robustness import adversarial_training, robustness_report, robustness_section

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
    "list_evidence",
    "membership_inference",
    "metrics_from_codes",
    "mitigate",
    "mitigation_of",
    "model_card",
    "partial_dependence",
    "performance_report",
    "permutation_importance",
    "privacy_section",
    "reweigh",
    "reweighing_weights",
    "robustness_report",
    "robustness_section",
    "save_evidence",
    "shap_importance",
    "slice_metrics",
    "surrogate_tree",
    "threshold_optimizer",
    "write_card",
]
