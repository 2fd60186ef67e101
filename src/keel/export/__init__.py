"""keel.export: a model's whole pipeline as one ONNX graph, parity-checked; smaller variants
(pruned, distilled, int8) with their size/latency/metric trade-off; and signed bundles with
a runner that needs only onnxruntime and numpy."""

from keel.export._archive import extract_archive
from keel.export._bundle import verify_bundle, write_bundle
from keel.export._convert import onnx_input_type, onnx_inputs, output_names, to_onnx
from keel.export._export import (
    ExportResult,
    export,
    export_variants,
    holdout_of,
    load_export,
    parse_spec,
    prepared_of,
)
from keel.export._parity import ParityReport, Tolerance, check_graph, parity
from keel.export._sign import (
    generate_keypair,
    load_private_key,
    load_public_key,
    public_key_fingerprint,
)
from keel.export._variants import (
    TradeOff,
    Variant,
    distill,
    prune,
    quantize_int8,
    register_variant,
    trade_off,
)

__all__ = [
    "ExportResult",
    "ParityReport",
    "Tolerance",
    "TradeOff",
    "Variant",
    "check_graph",
    "distill",
    "export",
    "export_variants",
    "extract_archive",
    "generate_keypair",
    "holdout_of",
    "load_export",
    "load_private_key",
    "load_public_key",
    "onnx_input_type",
    "onnx_inputs",
    "output_names",
    "parity",
    "parse_spec",
    "prepared_of",
    "prune",
    "public_key_fingerprint",
    "quantize_int8",
    "register_variant",
    "to_onnx",
    "trade_off",
    "verify_bundle",
    "write_bundle",
]
