"""keel.audit: the evidence a model carries — performance by slice, fairness, explanations,
robustness and privacy — with gates on promotion and a model card per version."""
