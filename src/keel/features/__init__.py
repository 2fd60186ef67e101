"""Declarative feature steps compiled to one scikit-learn transformer.

Training, serving and ONNX export all run the same compiled transformer::

    spec = FeatureSpec.from_yaml('''
    target: income
    steps:
      - {op: impute, columns: [age, hours-per-week], strategy: median}
      - {op: scale, columns: [age, hours-per-week]}
      - {op: impute, columns: [workclass], strategy: constant, fill_value: missing}
      - {op: onehot, columns: [workclass]}
    ''')
    transformer = compile_spec(spec, columns=list(frame.columns))
    matrix = transformer.fit_transform(frame)          # float64, no NaN from the encoders
    transformer.get_feature_names_out()                 # ['age', ..., 'workclass_Private']
    feature_origins(transformer)                        # ['age', ..., 'workclass']
"""

from keel.features._compile import TRUSTED_TYPES, compile_spec, feature_origins
from keel.features._spec import (
    KNOWN_OPS,
    LOGICAL_TYPES,
    ClipStep,
    DatePartsStep,
    DropStep,
    FeatureSpec,
    ImputeStep,
    InteractStep,
    LogStep,
    OneHotStep,
    OrdinalStep,
    PassthroughStep,
    ScaleStep,
    Step,
)
from keel.features._transformers import (
    DATE_PARTS,
    AsFloat,
    Clip,
    DateParts,
    Interactions,
    Log1p,
    NullToNaN,
)

__all__ = [
    "DATE_PARTS",
    "KNOWN_OPS",
    "LOGICAL_TYPES",
    "TRUSTED_TYPES",
    "AsFloat",
    "Clip",
    "ClipStep",
    "DateParts",
    "DatePartsStep",
    "DropStep",
    "FeatureSpec",
    "ImputeStep",
    "InteractStep",
    "Interactions",
    "Log1p",
    "LogStep",
    "NullToNaN",
    "OneHotStep",
    "OrdinalStep",
    "PassthroughStep",
    "ScaleStep",
    "Step",
    "compile_spec",
    "feature_origins",
]
