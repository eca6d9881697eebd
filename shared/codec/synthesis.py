"""Synthesis backends: latent -> pixels. PyTorch on a GPU, fp32 ONNX Runtime on a CPU.

On a CPU ONNX Runtime's synthesis is the faster one, and more so in small batches: decoding
Kodak end to end on two cores (`lsic bench decode`) ran 3.1-3.3 MP/s through it at 4 tiles a
batch against 1.8-2.0 through PyTorch at 16. A GPU wants large batches (fp16 on an H200: 500
MP/s at 16 tiles, 900 at 64). Each backend says how many tiles it runs best at (`batch`).
"""

from __future__ import annotations

import os
import re

import numpy as np

from lsic.codec.errors import UsageError
from lsic.codec.package import ModelPackage

# Synthesis precision by name -> TorchSynthesis(half=...): None picks fp16 on CUDA only.
PRECISIONS: dict[str, bool | None] = {"auto": None, "fp32": False, "fp16": True}


def to_rgb8(x_hat: np.ndarray) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return np.clip(np.rint(x_hat.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)


class OnnxSynthesis:
    """fp32 ONNX synthesis on ONNX Runtime: the decoder for machines without PyTorch."""

    name = "onnx"
    batch = 4  # 256x256 tiles per call

    def __init__(self, pkg: ModelPackage, threads: int = 0) -> None:
        """threads: 0 for every core."""
        from lsic.codec.encoder import make_session

        pkg.require_decoder()
        self.session = make_session(str(pkg.path("synthesis.fp32.onnx")), threads or os.cpu_count() or 1)

    def run_rgb8(self, y_hat: np.ndarray) -> np.ndarray:
        """(B, M, h, w) latents -> (B, H, W, 3) uint8 pixels."""
        (x,) = self.session.run(["x_hat"], {"y_hat": y_hat.astype(np.float32)})
        return np.stack([to_rgb8(img) for img in x])


class TorchSynthesis:
    """PyTorch synthesis built from CompressAI layers (g_s, and the package's residual branch if
    it has one); CUDA when available, else CPU.

    half=None (auto) runs fp16 on CUDA: measured on Kodak (`lsic bench half`), fp16 synthesis
    changes PSNR by under 0.01 dB at every operating point. CPUs stay fp32 (fp16 is slow there).
    """

    name = "torch"

    def __init__(self, pkg: ModelPackage, device: str = "auto", threads: int = 0, half: bool | None = None) -> None:
        import torch

        from lsic.codec.networks.model import Architecture, GainedHyperprior

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if threads:
            torch.set_num_threads(threads)
        arch = pkg.architecture
        g_s = GainedHyperprior(Architecture.from_dict(arch)).synthesis()
        pkg.require_decoder()
        state = torch.load(pkg.path("network.pt"), map_location="cpu", weights_only=True)
        g_s.load_state_dict({k: v for k, v in state.items() if k.startswith(("g_s.", "g_s_refine."))})
        self.half = device.startswith("cuda") if half is None else half
        self.g_s = (g_s.half() if self.half else g_s).to(device).eval()
        self.device = device
        self.batch = 4 if device == "cpu" else 32  # 256x256 tiles per call
        self.torch = torch

    def _forward(self, y_hat: np.ndarray):
        y = self.torch.from_numpy(np.ascontiguousarray(y_hat, dtype=np.float32))
        if self.device != "cpu":  # page-locked, so the copy runs as a DMA beside the kernels
            y = y.pin_memory().to(self.device, non_blocking=True)
        return self.g_s(y.half() if self.half else y).float()

    def run_rgb8(self, y_hat: np.ndarray) -> np.ndarray:
        """(B, M, h, w) latents -> (B, H, W, 3) uint8 pixels, rounded as to_rgb8 rounds but on
        the device: a quarter of the bytes come back, and no CPU core spends time converting."""
        with self.torch.inference_mode():
            x = self._forward(y_hat).mul_(255.0).round_().clamp_(0, 255).to(self.torch.uint8)
            return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def make_synthesis(
    pkg: ModelPackage, backend: str = "auto", device: str = "auto", threads: int = 0, half: bool | None = None
):
    if synthesis_backend(backend, device) == "torch":
        return TorchSynthesis(pkg, device=device, threads=threads, half=half)
    return OnnxSynthesis(pkg, threads=threads)


def synthesis_on_gpu(backend: str, device: str) -> bool:
    """Whether make_synthesis(backend, device) runs on a GPU."""
    if synthesis_backend(backend, device) != "torch" or device == "cpu":
        return False
    import torch

    return device != "auto" or bool(torch.cuda.is_available())


def synthesis_backend(backend: str, device: str) -> str:
    """The backend that runs: 'auto' is PyTorch where it runs on a GPU (device 'cuda', or 'auto'
    with CUDA present) and ONNX Runtime (fp32), the faster of the two on a CPU, elsewhere."""
    if backend != "auto":
        return backend
    if device == "cpu":
        return "onnx"
    try:
        import torch
    except ImportError:
        return "onnx"
    return "torch" if device != "auto" or torch.cuda.is_available() else "onnx"


def check_device(backend: str, device: str) -> None:
    """Refuse a backend and device that cannot run here (UsageError), before any frame meets
    them: a decoder asked for CUDA on a machine without it would fail every frame it is given."""
    if device != "auto" and device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise UsageError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if not device.startswith("cuda"):
        return
    if backend == "onnx":
        raise UsageError(f"the onnx synthesis runs on the CPU; device {device} needs the torch backend")
    try:
        import torch
    except ImportError:
        raise UsageError(f"device {device} needs PyTorch (the cloud install)") from None
    index = int(device.partition(":")[2] or 0)
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise UsageError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA devices")
