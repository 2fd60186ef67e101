"""Training PyTorch networks the keel way: a scikit-learn estimator around one loop.

:class:`TorchEstimator` fits a network from keel's architectures (or the user's own, see
:func:`keel.models._torch.resolve_architecture`) on float32 arrays: epochs over shuffled
mini-batches with Adam, a validation part held out of the training rows (stratified for
classes, the latest rows for time-ordered data), the training loss, validation loss and the
task metric recorded per epoch in ``history_`` (and passed to ``on_epoch``, which the trainer
uses to log to the tracking store and Optuna to prune), early stopping after ``patience``
epochs without a better validation loss, and the best epoch's weights kept. Seeds fix the
weights: the same seed gives the same weights on the CPU. It runs on CUDA when there is one
(``device="auto"``) and on the CPU otherwise.

Two options hook into the loop without changing its shape:

* adversarial training (``adv_epsilon > 0``): each batch's loss is the mean of the loss on the
  batch and on its adversarial twin, FGSM (``adv_steps=1``) or PGD with a random start
  (``adv_steps`` > 1), L-infinity within ``adv_epsilon`` in input units, clipped to the
  training inputs' range;
* DP-SGD (``dp_epsilon``): Opacus' ``make_private_with_epsilon`` calibrates the noise so that
  ``epochs`` epochs of Poisson-sampled batches with per-sample gradients clipped to
  ``dp_max_grad_norm`` spend at most (``dp_epsilon``, ``dp_delta``); the ε actually spent
  (fewer epochs when early stopping ends the run) is in each epoch's record (``dp_epsilon``)
  and in ``dp_`` after the fit.

Because it is an estimator, a torch model trains through the same ``build_model`` as every
other kind: after keel's feature transform for tabular data, or directly on a tensor column.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from keel.errors import InvalidInput

__all__ = ["TorchEstimator", "device_for"]


def _torch() -> Any:
    from keel.models._torch import torch

    return torch()


def device_for(device: str) -> str:
    """``"auto"``: ``"cuda"`` when a GPU is there, else ``"cpu"``."""
    t = _torch()
    if device == "auto":
        return "cuda" if t.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise InvalidInput(f"device: expected auto, cpu or cuda, got {device!r}")
    if str(device).startswith("cuda") and not t.cuda.is_available():
        raise InvalidInput("device: cuda was asked for, but no CUDA device is available here")
    return str(device)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _option_checks(est: Any) -> list[tuple[str, Any, bool, str]]:
    """The checks of the adversarial-training and DP-SGD parameters."""
    eps = est.dp_epsilon
    return [
        ("adv_epsilon", est.adv_epsilon, _number(est.adv_epsilon) and est.adv_epsilon >= 0, ">= 0"),
        (
            "adv_steps",
            est.adv_steps,
            isinstance(est.adv_steps, int) and est.adv_steps >= 1,
            "a whole number >= 1 (1: FGSM, more: PGD)",
        ),
        (
            "dp_epsilon",
            eps,
            eps is None or (_number(eps) and math.isfinite(eps) and eps > 0),
            "a number > 0 (the privacy budget; leave it unset for no privacy)",
        ),
        ("dp_delta", est.dp_delta, _number(est.dp_delta) and 0 < est.dp_delta < 1, "in (0, 1)"),
        (
            "dp_max_grad_norm",
            est.dp_max_grad_norm,
            _number(est.dp_max_grad_norm) and est.dp_max_grad_norm > 0,
            "a number > 0",
        ),
        (
            "adv_epsilon",
            est.adv_epsilon,
            not (eps is not None and _number(est.adv_epsilon) and est.adv_epsilon > 0),
            "0 with dp_epsilon (adversarial training and DP-SGD do not combine yet)",
        ),
    ]


def _batches(private: Any, Xt: Any, yt: Any, order: Any, size: int) -> Any:
    """One epoch's mini-batches: slices of the shuffled order, or Opacus' Poisson batches
    (an empty draw is skipped; the inputs ask for gradients so that Opacus' backward hooks
    fire as PyTorch intends, without its warning)."""
    if private is None:
        for i in range(0, len(order), size):
            b = order[i : i + size]
            yield Xt[b], yt[b]
        return
    for xb, yb in private["loader"]:
        if len(xb):
            yield xb.requires_grad_(True), yb


def _ints(value: Any, name: str) -> list[int]:
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    try:
        out = [int(v) for v in (value if isinstance(value, Sequence) else [value])]
    except (TypeError, ValueError):
        raise InvalidInput(f"parameter {name!r}: expected whole numbers, got {value!r}") from None
    if not out or min(out) < 1:
        raise InvalidInput(f"parameter {name!r}: expected whole numbers >= 1, got {value!r}")
    return out


class TorchEstimator(BaseEstimator):
    """A network trained by keel's loop (see the module docstring). ``architecture``:
    ``mlp``, ``cnn``, ``seq1d`` or ``"package.module:Class"``; for a user's class,
    ``net_kwargs`` are its keyword arguments (JSON values)."""

    def __init__(
        self,
        architecture: str = "mlp",
        task: str = "classification",
        epochs: int = 30,
        batch_size: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int = 5,
        val_fraction: float = 0.1,
        val_split: str = "stratified",
        hidden: Any = (128, 64),
        channels: Any = (32, 64),
        layers: int = 4,
        dropout: float = 0.1,
        net_kwargs: dict[str, Any] | None = None,
        device: str = "auto",
        random_state: int = 0,
        adv_epsilon: float = 0.0,
        adv_steps: int = 1,
        dp_epsilon: float | None = None,
        dp_delta: float = 1e-5,
        dp_max_grad_norm: float = 1.0,
    ) -> None:
        self.architecture = architecture
        self.task = task
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.val_fraction = val_fraction
        self.val_split = val_split
        self.hidden = hidden
        self.channels = channels
        self.layers = layers
        self.dropout = dropout
        self.net_kwargs = net_kwargs
        self.device = device
        self.random_state = random_state
        self.adv_epsilon = adv_epsilon
        self.adv_steps = adv_steps
        self.dp_epsilon = dp_epsilon
        self.dp_delta = dp_delta
        self.dp_max_grad_norm = dp_max_grad_norm

    # ------------------------------------------------------------------ checks

    def _check(self) -> None:
        checks = [
            ("epochs", self.epochs, isinstance(self.epochs, int) and self.epochs >= 1, ">= 1"),
            (
                "batch_size",
                self.batch_size,
                isinstance(self.batch_size, int) and self.batch_size >= 1,
                ">= 1",
            ),
            ("lr", self.lr, isinstance(self.lr, int | float) and self.lr > 0, "> 0"),
            (
                "weight_decay",
                self.weight_decay,
                isinstance(self.weight_decay, int | float) and self.weight_decay >= 0,
                ">= 0",
            ),
            (
                "patience",
                self.patience,
                isinstance(self.patience, int) and self.patience >= 1,
                ">= 1",
            ),
            (
                "val_fraction",
                self.val_fraction,
                isinstance(self.val_fraction, int | float) and 0 < self.val_fraction < 0.5,
                "between 0 and 0.5",
            ),
            (
                "dropout",
                self.dropout,
                isinstance(self.dropout, int | float) and 0 <= self.dropout < 1,
                "in [0, 1)",
            ),
            (
                "val_split",
                self.val_split,
                self.val_split in ("stratified", "tail"),
                "'stratified' or 'tail'",
            ),
            *_option_checks(self),
        ]
        for name, value, ok, want in checks:
            if isinstance(value, bool) or not ok:
                raise InvalidInput(f"parameter {name!r} = {value!r}: expected {want}")

    _parameter_constraints: dict[str, Any] = {}  # noqa: RUF012 - keel's train checks call

    def _validate_params(self) -> None:
        """What keel's trainer calls before it opens a run: a bad value changes nothing."""
        self._check()

    def _arch_kwargs(self, X: np.ndarray, n_out: int, y: np.ndarray) -> dict[str, Any]:
        shift, scale = 0.0, 1.0
        if self.task == "regression":
            shift, scale = float(np.mean(y)), float(np.std(y) or 1.0)
        out = {"out_shift": shift, "out_scale": scale}
        if self.architecture == "mlp":
            n_in = int(np.prod(X.shape[1:]))
            hidden = _ints(self.hidden, "hidden")
            return {"n_in": n_in, "n_out": n_out, "hidden": hidden, "dropout": self.dropout, **out}
        if self.architecture == "cnn":
            if X.ndim != 4:
                raise InvalidInput(
                    f"model 'torch-cnn': expects images [N, C, H, W], got inputs of shape "
                    f"{list(X.shape)}"
                )
            channels = _ints(self.channels, "channels")
            if len(channels) != 2:
                raise InvalidInput(f"parameter 'channels': expected two numbers, got {channels}")
            return {
                "in_shape": list(X.shape[1:]),
                "n_out": n_out,
                "channels": channels,
                "dropout": self.dropout,
                **out,
            }
        if self.architecture == "seq1d":
            if X.ndim != 2:
                raise InvalidInput(
                    f"model 'torch-seq': expects windows [N, window], got inputs of shape "
                    f"{list(X.shape)}"
                )
            return {
                "window": int(X.shape[1]),
                "n_out": n_out,
                "layers": _ints(self.layers, "layers")[0],
                "dropout": self.dropout,
                "in_shift": float(X.mean()),
                "in_scale": float(X.std() or 1.0),
                **out,
            }
        return dict(self.net_kwargs or {})

    # ------------------------------------------------------------------ fit

    def _split(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(y)
        n_val = max(1, int(round(n * self.val_fraction)))
        if self.val_split == "tail":
            idx = np.arange(n)
            return idx[: n - n_val], idx[n - n_val :]
        rng = np.random.default_rng(self.random_state)
        if self.task == "classification":
            val: list[int] = []
            for c in np.unique(y):
                rows = np.flatnonzero(y == c)
                k = int(round(len(rows) * self.val_fraction))
                val.extend(rng.permutation(rows)[:k])
            val_idx = np.sort(np.asarray(val, dtype=np.int64))
        else:
            val_idx = np.sort(rng.permutation(n)[:n_val])
        mask = np.ones(n, dtype=bool)
        mask[val_idx] = False
        return np.flatnonzero(mask), val_idx

    def fit(self, X: Any, y: Any) -> TorchEstimator:
        from keel.models._torch import resolve_architecture

        t = _torch()
        self._check()
        X = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
        y = np.asarray(y)
        if len(X) != len(y) or len(X) < 4:
            raise InvalidInput(f"training data: {len(X)} rows of inputs, {len(y)} targets; need 4+")
        if not np.isfinite(X).all():
            raise InvalidInput("training data: the network's inputs hold NaN or infinite values")
        if self.task == "classification":
            self.classes_, target = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise InvalidInput(
                    "target: classification needs at least 2 classes, got only "
                    f"{self.classes_[0]!r}"
                )
            n_out = len(self.classes_)
        else:
            target = y.astype(np.float32)
            n_out = 1
        self.arch_kwargs_ = self._arch_kwargs(X, n_out, target)
        t.manual_seed(self.random_state)
        device = device_for(self.device)
        net = resolve_architecture(self.architecture)(**self.arch_kwargs_).to(device)
        tr, va = self._split(target if self.task == "classification" else np.zeros(len(y)))
        Xt = t.from_numpy(X[tr]).to(device)
        Xv = t.from_numpy(X[va]).to(device)
        yt_np, yv_np = target[tr], target[va]
        dtype = t.long if self.task == "classification" else t.float32
        yt = t.as_tensor(yt_np, dtype=dtype, device=device)
        yv = t.as_tensor(yv_np, dtype=dtype, device=device)
        opt = t.optim.Adam(net.parameters(), lr=float(self.lr), weight_decay=self.weight_decay)
        gen = t.Generator().manual_seed(self.random_state)
        self._clip = (float(X[tr].min()), float(X[tr].max()))  # adversarial points stay inside
        net, opt, private = self._private(net, opt, Xt, yt)  # unchanged without dp_epsilon
        self.history_: list[dict[str, float]] = []
        best, best_state, waited = math.inf, None, 0
        for epoch in range(1, self.epochs + 1):
            started = time.perf_counter()
            net.train()
            order = t.randperm(len(tr), generator=gen).to(device)
            total = 0.0
            for xb, yb in _batches(private, Xt, yt, order, self.batch_size):
                opt.zero_grad(set_to_none=True)
                loss = self._batch_loss(net, xb, yb)
                loss.backward()
                opt.step()
                total += loss.item() * len(xb)
            record = {"epoch": epoch, "train_loss": total / len(tr)}
            record.update(self._validate(net, Xv, yv, yv_np))
            if private is not None:
                record["dp_epsilon"] = self._epsilon(private)
            record["seconds"] = time.perf_counter() - started
            self.history_.append(record)
            if record["val_loss"] < best - 1e-6:
                best, waited = record["val_loss"], 0
                best_state = copy.deepcopy(net.state_dict())
                self.best_epoch_ = epoch
            else:
                waited += 1
            if self.on_epoch is not None:
                self.on_epoch(record)  # may raise (Optuna's pruning)
            if waited >= self.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        if private is not None:
            net = self._spent(net, private)
        self.net_ = net.cpu().eval()
        return self

    # ------------------------------------------------------------------ the two options

    def _batch_loss(self, net: Any, xb: Any, yb: Any) -> Any:
        """The loss of one batch; with adversarial training, the mean of the clean and the
        adversarial loss."""
        if not self.adv_epsilon:
            return self._loss(net(xb), yb)
        adv = self._adversarial(net, xb, yb)
        return 0.5 * (self._loss(net(xb), yb) + self._loss(net(adv), yb))

    def _adversarial(self, net: Any, x: Any, y: Any) -> Any:
        """FGSM (one step) or PGD (``adv_steps``, random start) within ``adv_epsilon``."""
        t = _torch()
        eps, steps = float(self.adv_epsilon), int(self.adv_steps)
        lo, hi = self._clip
        if steps == 1:
            delta, step = t.zeros_like(x), eps
        else:
            delta, step = (t.rand_like(x) * 2 - 1) * eps, 2.5 * eps / steps
        for _ in range(steps):
            xa = (x + delta).clamp(lo, hi).requires_grad_(True)
            (grad,) = t.autograd.grad(self._loss(net(xa), y), xa)
            delta = (delta + step * grad.sign()).clamp(-eps, eps)
        return (x + delta).clamp(lo, hi).detach()

    def _private(self, net: Any, opt: Any, Xt: Any, yt: Any) -> tuple[Any, Any, Any]:
        """Opacus' private module, optimizer and Poisson-sampled loader (None: not private)."""
        if self.dp_epsilon is None:
            return net, opt, None
        import warnings

        t = _torch()
        try:
            from opacus import PrivacyEngine
            from opacus.validators import ModuleValidator
        except ImportError:
            from keel.errors import MissingExtra

            raise MissingExtra(
                "dp_epsilon needs Opacus; install it with: pip install 'keel[torch]'"
            ) from None
        problems = ModuleValidator.validate(net, strict=False)
        if problems:
            raise InvalidInput(
                f"dp_epsilon: the network cannot be trained with DP-SGD: {problems[0]}"
            )
        data = t.utils.data.TensorDataset(Xt, yt)
        loader = t.utils.data.DataLoader(data, batch_size=int(self.batch_size))
        with warnings.catch_warnings():  # "secure RNG turned off": seeded on purpose
            warnings.simplefilter("ignore")
            engine = PrivacyEngine(accountant="rdp")
            net, opt, loader = engine.make_private_with_epsilon(
                module=net,
                optimizer=opt,
                data_loader=loader,
                target_epsilon=float(self.dp_epsilon),
                target_delta=float(self.dp_delta),
                epochs=int(self.epochs),
                max_grad_norm=float(self.dp_max_grad_norm),
            )
        return (
            net,
            opt,
            {
                "engine": engine,
                "loader": loader,
                "optimizer": opt,
                "target_epsilon": float(self.dp_epsilon),
            },
        )

    def _epsilon(self, private: dict[str, Any]) -> float:
        """The ε spent so far at ``dp_delta``."""
        import warnings

        with warnings.catch_warnings():  # RDP's "optimal order is the largest alpha"
            warnings.simplefilter("ignore")
            return float(private["engine"].get_epsilon(float(self.dp_delta)))

    def _spent(self, gsm: Any, private: dict[str, Any]) -> Any:
        """Record the privacy spent (``dp_``) and unwrap Opacus' module."""
        self.dp_ = {
            "epsilon": self._epsilon(private),
            "delta": float(self.dp_delta),
            "target_epsilon": private["target_epsilon"],
            "max_grad_norm": float(self.dp_max_grad_norm),
            "noise_multiplier": float(private["optimizer"].noise_multiplier),
            "sample_rate": float(private["loader"].sample_rate),
            "epochs_planned": int(self.epochs),
            "epochs_run": len(self.history_),
            "steps": int(private["engine"].accountant.history[-1][2])
            if private["engine"].accountant.history
            else 0,
            "accountant": "rdp",
            "mechanism": "DP-SGD (Opacus): per-sample gradient clipping, Gaussian noise, "
            "Poisson sampling",
        }
        return gsm.to_standard_module() if hasattr(gsm, "to_standard_module") else gsm._module

    on_epoch: Callable[[dict[str, float]], None] | None = None
    """Called with each epoch's record; set on the instance (not a parameter, so clones of
    the estimator do not share it)."""

    def _loss(self, out: Any, y: Any) -> Any:
        f = _torch().nn.functional
        if self.task == "classification":
            return f.cross_entropy(out, y)
        return f.mse_loss(out[:, 0], y)

    def _validate(self, net: Any, Xv: Any, yv: Any, yv_np: np.ndarray) -> dict[str, float]:
        t = _torch()
        net.eval()
        with t.no_grad():
            out = net(Xv)
            loss = float(self._loss(out, yv))
        if self.task == "regression":
            pred = out[:, 0].cpu().numpy()
            return {"val_loss": loss, "val_rmse": float(np.sqrt(np.mean((pred - yv_np) ** 2)))}
        proba = t.softmax(out, dim=1).cpu().numpy()
        rec = {"val_loss": loss, "val_accuracy": float((proba.argmax(1) == yv_np).mean())}
        if proba.shape[1] == 2 and 0 < yv_np.sum() < len(yv_np):
            from sklearn.metrics import roc_auc_score

            rec["val_roc_auc"] = float(roc_auc_score(yv_np, proba[:, 1]))
        return rec

    # ------------------------------------------------------------------ predict

    def _out(self, X: Any) -> np.ndarray:
        t = _torch()
        with t.no_grad():
            return self.net_(t.from_numpy(np.asarray(X, dtype=np.float32))).numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        z = self._out(X).astype(np.float64)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        if self.task == "regression":
            return self._out(X)[:, 0]
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
