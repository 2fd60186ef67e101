"""keel's built-in PyTorch architectures (imported only when torch is installed).

Each network takes float32 input and returns logits (classification) or values in the
target's own units (regression): input standardisation and the target's scale are buffers of
the network itself, so the weights, the ONNX graph and the served model all agree with no
separate pre- or post-processing. Every layer exports to ONNX (opset 17) and runs in ONNX
Runtime.

* ``mlp``: rows of numbers (keel's tabular feature transform, or any tensor, flattened);
* ``cnn``: images ``[C, H, W]``: two 3x3 convolutions, a 2x2 max-pool, a dense head;
* ``seq1d``: a window of past values ``[window]``: dilated causal 1-D convolutions plus a
  linear path over the raw window (so the seasonal-naive forecast is within reach).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "CNN", "MLP", "Seq1D"]


class _Affine(nn.Module):
    """``x * scale + shift`` with both as buffers (saved with the weights)."""

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(self, shift: float, scale: float) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(float(shift)))
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class MLP(nn.Module):
    """A multi-layer perceptron over flattened input."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.1,
        out_shift: float = 0.0,
        out_scale: float = 1.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = int(n_in)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(float(dropout))]
            width = int(h)
        layers.append(nn.Linear(width, int(n_out)))
        self.body = nn.Sequential(*layers)
        self.out = _Affine(out_shift, out_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x.flatten(1)))


class CNN(nn.Module):
    """A small convolutional image classifier (or regressor)."""

    def __init__(
        self,
        in_shape: Sequence[int],
        n_out: int,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.25,
        out_shift: float = 0.0,
        out_scale: float = 1.0,
    ) -> None:
        super().__init__()
        c, h, w = (int(v) for v in in_shape)
        c1, c2 = (int(v) for v in channels)
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(float(dropout)),
            nn.Linear(c2 * (h // 2) * (w // 2), int(hidden)),
            nn.ReLU(),
            nn.Linear(int(hidden), int(n_out)),
        )
        self.out = _Affine(out_shift, out_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.head(self.features(x)))


class Seq1D(nn.Module):
    """Forecast from a window of past values: dilated causal convolutions (receptive field
    covering the window) and a linear path over the window, summed."""

    def __init__(
        self,
        window: int,
        n_out: int = 1,
        channels: int = 32,
        layers: int = 4,
        dropout: float = 0.1,
        in_shift: float = 0.0,
        in_scale: float = 1.0,
        out_shift: float = 0.0,
        out_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.window = int(window)
        self.norm = _Affine(-float(in_shift) / float(in_scale), 1.0 / float(in_scale))
        convs: list[nn.Module] = []
        width = 1
        for i in range(int(layers)):
            convs += [nn.Conv1d(width, int(channels), 3, dilation=2**i, padding=0), nn.ReLU()]
            width = int(channels)
        self.convs = nn.Sequential(*convs)
        self.pads = [2 * 2**i for i in range(int(layers))]
        self.head = nn.Sequential(nn.Dropout(float(dropout)), nn.Linear(int(channels), int(n_out)))
        self.linear = nn.Linear(self.window, int(n_out))
        self.out = _Affine(out_shift, out_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.norm(x.flatten(1))
        h = z.unsqueeze(1)
        for k, layer in enumerate(self.convs):
            if isinstance(layer, nn.Conv1d):
                h = nn.functional.pad(h, (self.pads[k // 2], 0))  # causal: pad the past only
            h = layer(h)
        return self.out(self.head(h[:, :, -1]) + self.linear(z))


ARCHITECTURES: dict[str, type[nn.Module]] = {"mlp": MLP, "cnn": CNN, "seq1d": Seq1D}
