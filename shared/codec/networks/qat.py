"""Quantization-aware fine-tuning: train g_a against the int8 arithmetic the edge will run.

Post-training int8 quantization of the analysis costs a few percent BD-rate (docs/benchmarks.md):
every activation that ONNX Runtime's QDQ quantizer rounds to 8 bits adds noise that the rest of
the network never saw in training. `prepare_qat` makes g_a round at the same places during
training, so the weights learn to tolerate it:

- the input image and the output of every int8 convolution: per-tensor uint8, range from the
  99.99th percentile of |activation| (what export's percentile calibration picks), symmetric
  for signed tensors, [0, t] for non-negative ones;
- inside each GDN: the squared input and the norm (its 1x1 convolution runs in int8), and the
  GDN's output where the next convolution is int8;
- convolution weights (and GDN's gamma): per-output-channel symmetric, 7-bit ([-64, 64]) as
  export's `reduce_range` writes them (export.quantize_analysis says why).

The convolutions export keeps float (int8_layout.FLOAT_G_A_LAYERS) and h_a stay float. Modules keep
their classes' parameters and state-dict keys (the fake-quantizers hold no persistent state), so
checkpoints and `lsic export` are unchanged; the ranges are re-estimated within a few steps of
resuming.
"""

from __future__ import annotations

import torch
from compressai.layers import GDN
from torch import Tensor, nn
from torch.nn import functional as F

from lsic.codec.networks.int8_layout import FLOAT_G_A_LAYERS

PERCENTILE = 99.99
SAMPLE = 1 << 16  # elements per batch used to estimate the percentile (a full sort is too slow)
MOMENTUM = 0.05
OBSERVE_EVERY = 8  # training steps between range updates (the percentile costs as much as the layer)


class FakeQuant(nn.Module):
    """Round to a uint8 grid (straight-through gradient) whose range tracks the activation."""

    def __init__(self, signed: bool) -> None:
        super().__init__()
        self.signed = signed
        self.register_buffer("threshold", torch.zeros(()), persistent=False)
        self.observe = True  # the first forward sets the range; observe_ranges schedules the rest

    @torch.no_grad()
    def _observe(self, x: Tensor) -> None:
        """Move the range towards this batch's percentile, on the device: no host sync, so a
        GPU step never waits for the CPU (the first observation sets the range outright)."""
        flat = x.detach().float().abs().flatten()
        if flat.numel() > SAMPLE:
            flat = flat[torch.randint(flat.numel(), (SAMPLE,), device=flat.device)]
        k = max(1, min(flat.numel(), round(flat.numel() * PERCENTILE / 100)))
        t = flat.kthvalue(k).values.clamp_min(1e-6)
        unset = self.threshold == 0
        self.threshold.copy_(torch.where(unset, t, torch.lerp(self.threshold, t, MOMENTUM)))

    def forward(self, x: Tensor) -> Tensor:
        if self.observe:
            self._observe(x)
        t = self.threshold.float().clamp_min(1e-6)
        scale, zero = (2 * t / 255, 128.0) if self.signed else (t / 255, 0.0)
        return fake_quant_uint8(x.float(), scale, zero).to(x.dtype)


def fake_quant_uint8(x: Tensor, scale: Tensor, zero: float) -> Tensor:
    """x rounded to the uint8 grid `scale * (q - zero)`, q in 0..255, with the straight-through
    gradient of torch.fake_quantize_per_tensor_affine (1 inside the range, 0 where it clips).
    Written in elementwise ops because torch.compile cannot trace that operator with a tensor
    scale: it would split the analysis into a graph per layer."""
    q = torch.round(x / scale) + zero
    inside = (q >= 0) & (q <= 255)
    rounded = (q.clamp(0, 255) - zero) * scale
    return rounded.detach() + (x - x.detach()) * inside


WEIGHT_LEVELS = 64  # ONNX Runtime's reduce_range int8 weights: [-64, 64]


def fake_quant_weight(w: Tensor) -> Tensor:
    """Per-output-channel symmetric 7-bit, as ONNX Runtime quantizes Conv weights with reduce_range."""
    scale = (w.detach().abs().amax(dim=tuple(range(1, w.dim()))) / WEIGHT_LEVELS).clamp_min(1e-12)
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -WEIGHT_LEVELS, WEIGHT_LEVELS)


class QATConv2d(nn.Conv2d):
    """Conv2d with int8 weights, and an int8 input (first layer) and output."""

    fq_in: FakeQuant | None
    fq_out: FakeQuant

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        if self.fq_in is not None:
            x = self.fq_in(x)
        return self.fq_out(self._conv_forward(x, fake_quant_weight(self.weight), self.bias))


class QATGDN(GDN):
    """GDN as export writes it (x / sqrt(conv(x*x))), rounded where the int8 graph rounds."""

    fq_square: FakeQuant
    fq_norm: FakeQuant
    fq_out: FakeQuant | None

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        gamma = self.gamma_reparam(self.gamma).reshape(c, c, 1, 1)
        norm = self.fq_norm(F.conv2d(self.fq_square(x * x), fake_quant_weight(gamma), self.beta_reparam(self.beta)))
        out = x / torch.sqrt(norm)
        return out if self.fq_out is None else self.fq_out(out)


def prepare_qat(g_a: nn.Sequential, float_layers: tuple[int, ...] | None = None) -> nn.Sequential:
    """Turn g_a (conv, GDN, conv, GDN, ..., conv) into its int8-simulating twin, in place.

    float_layers: indexes of the convolutions export keeps float (default: export's layout).
    """
    if float_layers is None:
        float_layers = FLOAT_G_A_LAYERS
    layers = list(g_a)
    if not all(isinstance(m, nn.Conv2d if i % 2 == 0 else GDN) for i, m in enumerate(layers)) or len(layers) % 2 == 0:
        raise ValueError("prepare_qat expects g_a = conv, GDN, ..., conv")
    int8 = {i for i in range(0, len(layers), 2) if i not in float_layers}
    for i, layer in enumerate(layers):
        if i in int8:  # its input is rounded by the GDN before it (or here, for the image)
            layer.__class__ = QATConv2d
            layer.fq_in = FakeQuant(signed=False) if i == 0 else None
            layer.fq_out = FakeQuant(signed=True)
        elif isinstance(layer, GDN):  # GDN's own 1x1 convolution is always int8
            if layer.inverse:
                raise ValueError("prepare_qat expects the analysis GDN, not its inverse")
            layer.__class__ = QATGDN
            layer.fq_square = FakeQuant(signed=False)
            layer.fq_norm = FakeQuant(signed=False)
            layer.fq_out = FakeQuant(signed=True) if i + 1 in int8 else None
    return g_a


def observe_ranges(g_a: nn.Module, on: bool) -> None:
    """Whether g_a's next forwards move its activation ranges (the trainer: one step in
    OBSERVE_EVERY). A flag set from outside rather than a call counter inside forward, so that
    torch.compile traces one of two graphs instead of recompiling at every call."""
    for module in g_a.modules():
        if isinstance(module, FakeQuant):
            module.observe = on
