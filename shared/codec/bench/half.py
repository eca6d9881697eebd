"""`lsic bench half`: what fp16 synthesis costs in quality, the measurement behind the cloud's
default of half precision on GPUs.

Same bitstreams, same decoded latents; only the synthesis precision differs. Runs on CUDA when
present, else on the CPU (PyTorch's CPU fp16 kernels round like the GPU's at the op level, but
accumulate differently; the GPU figure is the one that decides, and this reports which it ran).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lsic.codec.image_io import list_images, read_rgb
from lsic.codec.metrics import psnr


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="image folder (e.g. ../shared/data/eval/kodak)")
    p.add_argument("--model", default="default")
    p.add_argument("--limit", type=int, default=24)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def run(args: argparse.Namespace) -> int:
    from lsic.codec.decoder import Decoder
    from lsic.codec.encoder import Encoder

    images = [read_rgb(f) for f in list_images(Path(args.data))[: args.limit]]
    enc = Encoder(args.model)
    fp32 = Decoder(backend="torch", device=args.device, half=False)
    fp16 = Decoder(backend="torch", device=args.device, half=True)
    device = fp32.synthesis(enc.pkg).device
    print(f"model {args.model}, {len(images)} images, device {device}")
    print("| quality | PSNR fp32 dB | PSNR fp16 dB | Δ dB | max pixel difference |")
    print("|---|---|---|---|---|")
    for q in range(1, enc.pkg.n_rates + 1):
        p32, p16, worst = [], [], 0
        for img in images:
            data = enc.encode(img, q)
            a, b = fp32.decode(data).rgb, fp16.decode(data).rgb
            p32.append(psnr(a, img))
            p16.append(psnr(b, img))
            worst = max(worst, int(np.abs(a.astype(np.int16) - b).max()))
        d = float(np.mean(p16) - np.mean(p32))
        print(f"| {q} | {np.mean(p32):.3f} | {np.mean(p16):.3f} | {d:+.4f} | {worst} |")
    return 0
