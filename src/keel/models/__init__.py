"""keel.models: the one model contract's adapters, and safe saving/loading (no pickle)."""

from keel.models._adapters import LightGBMModel, SklearnModel, check_input_frame
from keel.models._artifact import load_model, read_manifest, save_model, trusted_type
from keel.models._mitigated import EnsembleModel, ThresholdedModel
from keel.models._onnx import OnnxModel
from keel.models._torch import TorchModel, read_weights_file

__all__ = [
    "EnsembleModel",
    "LightGBMModel",
    "OnnxModel",
    "SklearnModel",
    "ThresholdedModel",
    "TorchModel",
    "check_input_frame",
    "load_model",
    "read_manifest",
    "read_weights_file",
    "save_model",
    "trusted_type",
]
