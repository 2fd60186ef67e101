"""PyTorch networks behind keel's one model contract.

A :class:`TorchModel` is an architecture (a built-in name such as ``"cnn"``, or a user's
``"package.module:Class"``, a subclass of ``torch.nn.Module``), the JSON keyword arguments
that build it, and its weights, kept as safetensors. It reads either rows of named columns
through keel's feature transform (``torch-mlp`` on tabular data, the transform saved with
skops as for every other tabular model) or named tensors (``input_schema`` entries of type
``"tensor"`` with their per-row ``shape`` and ``dtype``), given as a mapping of arrays, one
array, or a DataFrame whose column holds one array per row.

Weights are only ever read as safetensors (a flat table of arrays, no code). A PyTorch
``.pt``/``.pth`` file is a pickle: :func:`read_weights_file` refuses it and says how to
convert it. torch itself is imported only when a network is built (``keel[torch]``).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput, UnsafeArtifact, require
from keel.models._adapters import _Base, check_input_frame

__all__ = [
    "BUILTIN_ARCHITECTURES",
    "TorchModel",
    "is_tensor_schema",
    "read_weights_file",
    "resolve_architecture",
    "tensor_input",
    "weights_from_bytes",
    "weights_to_bytes",
]

BUILTIN_ARCHITECTURES = ("mlp", "cnn", "seq1d")
_BATCH = 4096  # rows per forward pass


def torch() -> Any:
    """The ``torch`` module, or the install command for ``keel[torch]``."""
    return require("torch", "torch")


def is_tensor_schema(input_schema: list[dict[str, Any]]) -> bool:
    """Whether a model reads named tensors (rather than columns of scalars)."""
    return any(c.get("type") == "tensor" for c in input_schema)


def resolve_architecture(name: str) -> Any:
    """The ``torch.nn.Module`` subclass ``name`` stands for: a built-in (``mlp``, ``cnn``,
    ``seq1d``) or ``"package.module:Class"`` from the user's own importable code. Anything
    that is not a Module subclass is refused before it is called."""
    if name in BUILTIN_ARCHITECTURES:
        require("torch", "torch")
        from keel.models._torch_nets import ARCHITECTURES

        return ARCHITECTURES[name]
    module_name, sep, attr = str(name).partition(":")
    if not sep or not module_name or not attr.isidentifier():
        raise InvalidInput(
            f"architecture: expected one of {', '.join(BUILTIN_ARCHITECTURES)} or "
            f"'package.module:Class', got {name!r}"
        )
    nn = torch().nn
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(
            f"architecture {name!r}: module {module_name!r} does not import here ({exc}); the "
            "architecture comes from your code, which must be importable where the model loads"
        ) from None
    cls = vars(module).get(attr)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UnsafeArtifact(
            f"architecture {name!r}: expected a torch.nn.Module subclass, got "
            f"{type(cls).__name__ if cls is not None else 'nothing of that name'}"
        )
    return cls


def weights_to_bytes(state: Mapping[str, Any]) -> bytes:
    """A state dict (tensors or arrays) as safetensors bytes."""
    from safetensors.numpy import save

    arrays = {}
    for k, v in state.items():
        a = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        arrays[k] = np.ascontiguousarray(a)
    return bytes(save(arrays))


def weights_from_bytes(data: bytes, what: str = "weights") -> dict[str, np.ndarray]:
    """Arrays from safetensors bytes; anything else (a pickle above all) is refused."""
    from safetensors.numpy import load

    looks_safe = len(data) >= 9 and data[8:9] == b"{"  # u64 header length, then JSON
    if not looks_safe and (data[:1] == b"\x80" or data[:2] == b"PK"):
        raise UnsafeArtifact(
            f"{what}: a PyTorch pickle (torch.save), which keel never loads; save the weights "
            "with safetensors instead: safetensors.torch.save_file(model.state_dict(), PATH)"
        )
    try:
        return dict(load(data))
    except Exception as exc:  # safetensors' own SafetensorError
        raise UnsafeArtifact(f"{what}: not a safetensors file ({exc})") from None


def read_weights_file(path: str | Path) -> dict[str, np.ndarray]:
    """Weights from a ``.safetensors`` file; ``.pt``/``.pth``/``.bin`` pickles are refused
    with the way to convert them."""
    p = Path(path)
    if p.suffix.lower() in (".pt", ".pth", ".bin", ".pkl", ".ckpt"):
        raise UnsafeArtifact(
            f"{p.name}: a PyTorch {p.suffix} file is a pickle and can run code when loaded; keel "
            "reads weights as safetensors only: in your own trusted session run "
            "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')"
        )
    if not p.is_file():
        raise InvalidInput(f"weights: no file {p}")
    return weights_from_bytes(p.read_bytes(), p.name)


def _stack(values: Any, name: str) -> np.ndarray:
    if isinstance(values, pd.Series):
        values = values.to_numpy()
    if isinstance(values, np.ndarray) and values.dtype != object:
        return values
    try:
        return np.stack([np.asarray(v) for v in values])
    except ValueError as exc:
        raise InvalidInput(f"input {name!r}: rows of different shapes ({exc})") from None


def tensor_input(X: Any, column: Mapping[str, Any]) -> np.ndarray:
    """The batch for one tensor input, ``[N, *shape]`` float32, checked against the schema
    entry ``column`` (``name``, per-row ``shape``): a wrong shape or a NaN is refused,
    naming the expected and the given shape."""
    name = str(column["name"])
    if isinstance(X, pd.DataFrame):
        if name not in X.columns:
            raise InvalidInput(f"model input: missing tensor {name!r}")
        arr = _stack(X[name], name)
    elif isinstance(X, Mapping):
        if name not in X:
            raise InvalidInput(
                f"model input: missing tensor {name!r}; given {', '.join(map(str, X)) or 'none'}"
            )
        arr = _stack(X[name], name)
    else:
        arr = _stack(X, name)
    shape = [int(s) for s in column.get("shape", [])]
    if arr.ndim == len(shape):  # one sample without its batch dimension
        arr = arr[None]
    if list(arr.shape[1:]) != shape:
        raise InvalidInput(
            f"input {name!r}: expected shape [N, {', '.join(map(str, shape))}], "
            f"got {list(arr.shape)}"
        )
    if arr.dtype.kind not in "biuf":
        raise InvalidInput(f"input {name!r}: expected numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).reshape(len(arr), -1).all(axis=1))[0])
        raise InvalidInput(f"input {name!r} row {bad}: NaN or infinite values")
    return arr


class TorchModel(_Base):
    """A trained PyTorch network (see the module docstring)."""

    flavor = "torch"

    def __init__(
        self,
        architecture: str,
        arch_kwargs: dict[str, Any],
        state: Mapping[str, Any],
        task: str,
        input_schema: list[dict[str, Any]],
        classes: list[Any] | None = None,
        transformer: Any = None,
    ) -> None:
        super().__init__(task, input_schema, classes)
        try:
            json.dumps(arch_kwargs)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"architecture {architecture!r}: its keyword arguments must be JSON values, "
                f"got {arch_kwargs!r}"
            ) from None
        self.architecture = architecture
        self.arch_kwargs = dict(arch_kwargs)
        self.state = {k: np.asarray(v) for k, v in state.items()}
        self.transformer = transformer
        self._net: Any = None

    @classmethod
    def from_estimator(
        cls, est: Any, task: str, input_schema: list[dict[str, Any]], transformer: Any = None
    ) -> TorchModel:
        """Wrap a fitted keel torch estimator (``net_``, ``architecture``, ``arch_kwargs_``)."""
        classes = list(est.classes_) if task == "classification" else None
        state = {k: v.detach().cpu().numpy() for k, v in est.net_.state_dict().items()}
        return cls(
            est.architecture, est.arch_kwargs_, state, task, input_schema, classes, transformer
        )

    @property
    def net(self) -> Any:
        """The network, built from the architecture and weights, in eval mode on the CPU."""
        if self._net is None:
            t = torch()
            net = resolve_architecture(self.architecture)(**self.arch_kwargs)
            try:
                net.load_state_dict({k: t.from_numpy(v.copy()) for k, v in self.state.items()})
            except RuntimeError as exc:
                raise UnsafeArtifact(
                    f"weights do not fit architecture {self.architecture!r}: "
                    f"{str(exc).splitlines()[0]}"
                ) from None
            self._net = net.eval()
        return self._net

    @property
    def tags(self) -> dict[str, Any]:
        return {
            **super().tags,
            "allow_nan": self.transformer is not None,
            "tensor_inputs": is_tensor_schema(self.input_schema),
            "differentiable": True,
        }

    def inputs(self, X: Any) -> np.ndarray:
        """What the network reads, ``[N, ...]`` float32: the feature transform's output for
        tabular rows, the (single) tensor input otherwise."""
        if self.transformer is not None:
            frame = check_input_frame(X, self.input_schema)
            return np.asarray(self.transformer.transform(frame), dtype=np.float32)
        tensors = [c for c in self.input_schema if c.get("type") == "tensor"]
        if len(tensors) != 1:
            raise InvalidInput(
                f"model input: a torch model reads one tensor, its schema names {len(tensors)}"
            )
        return tensor_input(X, tensors[0])

    def forward(self, arr: np.ndarray) -> np.ndarray:
        """The network's raw output (logits, or values) for prepared inputs."""
        t = torch()
        outs = []
        with t.no_grad():
            for i in range(0, max(len(arr), 1), _BATCH):
                batch = t.from_numpy(np.ascontiguousarray(arr[i : i + _BATCH]))
                outs.append(self.net(batch).cpu().numpy())
        return np.concatenate(outs).astype(np.float64)

    def _proba(self, X: Any) -> np.ndarray:
        z = self.forward(self.inputs(X))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.task != "classification":
            raise InvalidInput(f"predict_proba: a {self.task} model has no class probabilities")
        return self._proba(X)

    def predict(self, X: Any) -> np.ndarray:
        if self.task == "regression":
            return self.forward(self.inputs(X))[:, 0]
        return np.asarray(self.classes_)[self._proba(X).argmax(axis=1)]

    def describe(self) -> dict[str, Any]:
        """The architecture and the number of weights (for runs and cards)."""
        n = int(sum(v.size for v in self.state.values()))
        return {"architecture": self.architecture, "kwargs": self.arch_kwargs, "parameters": n}


def net_spec_bytes(model: TorchModel) -> bytes:
    return json.dumps(
        {"architecture": model.architecture, "kwargs": model.arch_kwargs}, sort_keys=True
    ).encode()


def net_spec_from_bytes(data: bytes) -> tuple[str, dict[str, Any]]:
    try:
        spec = json.loads(data.decode("utf-8"))
        arch, kwargs = spec["architecture"], spec["kwargs"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise UnsafeArtifact("torch network spec: not keel's JSON spec") from None
    if not isinstance(arch, str) or not isinstance(kwargs, dict):
        raise UnsafeArtifact("torch network spec: architecture must be text, kwargs an object")
    return arch, kwargs
