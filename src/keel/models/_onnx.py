"""An ONNX graph exported by keel, behind the one model contract.

It reads the same raw columns as the model it came from (see ``keel.export`` for the graph's
input and output contract), so an int8 or otherwise rewritten graph can be registered,
audited and served like any other model version.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from keel.models._adapters import _Base, check_input_frame

__all__ = ["OnnxModel"]


class OnnxModel(_Base):
    """An ONNX Runtime session over a keel-exported graph (one input per raw column)."""

    flavor = "onnx"

    def __init__(
        self,
        onnx_bytes: bytes,
        task: str,
        input_schema: list[dict[str, Any]],
        classes: list[Any] | None = None,
        *,
        threads: int = 1,
    ) -> None:
        super().__init__(task, input_schema, classes)
        self.onnx_bytes = onnx_bytes
        self.threads = threads
        self._session: Any = None

    @property
    def session(self) -> Any:
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            self._session = ort.InferenceSession(
                self.onnx_bytes, opts, providers=["CPUExecutionProvider"]
            )
        return self._session

    def _run(self, X: Any) -> dict[str, np.ndarray]:
        from keel.models._graph import onnx_inputs

        feed = onnx_inputs(check_input_frame(X, self.input_schema), self.input_schema)
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(None, feed), strict=True))

    def _proba(self, X: Any) -> np.ndarray:
        p = np.asarray(self._run(X)["probabilities"], dtype=np.float64)
        return p / p.sum(axis=1, keepdims=True)  # float32 rows summed to 1 ± 1e-7

    def predict(self, X: Any) -> np.ndarray:
        if self.task == "regression":
            return np.asarray(self._run(X)["variable"], dtype=np.float64).reshape(-1)
        idx = self._proba(X).argmax(axis=1)
        return np.asarray(self.classes_)[idx]
