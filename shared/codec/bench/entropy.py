"""`lsic bench entropy`: the rate cost of the integer hyper-synthesis (and context) against the
float ones, and what the context itself saves and costs.

Same images, the latents the encoder codes (int8 analysis over windows of tiles), same z symbols
and the same integer tables; only the network that picks each y symbol's table and mean differs:
the shipped integer network, the trained float network (PyTorch), or, for a package with a
context, the integer hyper-synthesis alone (y in one pass, as if there were no context). All are really entropy-coded; bytes are compared, and the
entropy coding of a tile is timed with and without the context.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from lsic.codec.image_io import list_images, read_rgb


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help="package whose float network (network.pt) is compared")
    p.add_argument("--data", required=True)
    p.add_argument("--limit", type=int, default=24)
    p.add_argument("--qualities", default="1,2,3,4,5,6,7,8")


def run(args: argparse.Namespace) -> int:
    import torch

    from lsic.codec.encoder import Encoder
    from lsic.codec.entropy.latents import FX, coding_passes, encode_tile, quantize
    from lsic.codec.entropy.tables import scale_table
    from lsic.codec.networks.model import Architecture, GainedHyperprior

    enc = Encoder(args.model)
    pkg = enc.pkg
    arch = pkg.architecture
    net = GainedHyperprior(Architecture.from_dict(arch))
    net.load_state_dict(torch.load(pkg.path("network.pt"), map_location="cpu", weights_only=True))
    net.eval()
    thresholds = scale_table()[:-1]
    images = [read_rgb(f) for f in list_images(Path(args.data))[: args.limit]]
    context = bool(pkg.context_layers)
    print("| quality | bytes, integer hyper-synthesis | bytes, float hyper-synthesis | integer cost |"
          + (" bytes, hyperprior alone | context saves |" if context else ""))
    print("|---|---|---|---|" + ("---|---|" if context else ""))
    total_i = total_f = total_h = 0
    seconds = {"with": 0.0, "without": 0.0}
    n_tiles = 0
    for q in (int(v) for v in args.qualities.split(",")):
        bytes_int = bytes_float = bytes_hyper = 0
        for img in images:
            for y, z in enc.frame_latents(img, q):
                started = time.perf_counter()
                bytes_int += len(encode_tile(pkg, y, z))
                seconds["with"] += time.perf_counter() - started
                n_tiles += 1
                if context:
                    started = time.perf_counter()
                    alone = quantize(pkg, y, z, context=False)
                    bytes_hyper += len(pkg.latent_codec.encode(alone.z, [(alone.y, alone.index)]))
                    seconds["without"] += time.perf_counter() - started
                s = quantize(pkg, y, z)
                z_hat = torch.from_numpy((s.z + pkg.z_medians_fx[:, None, None] / FX).astype(np.float32))[None]
                with torch.no_grad():
                    hyper = net.h_s(z_hat)
                    means = hyper.chunk(2, 1)[1]
                    if net.context is not None:
                        y_t = torch.from_numpy(y.astype(np.float32))[None]
                        hyper = net.context(hyper, torch.round(y_t - means) + means)
                scales, means = (t[0].numpy().astype(np.float64) for t in hyper.chunk(2, 1))
                index = np.searchsorted(thresholds, np.maximum(scales, 0.11), side="left").astype(np.int32)
                y_int = np.rint(y.astype(np.float64) - means).astype(np.int64)
                passes = coding_passes(pkg, *y_int.shape[1:])
                bytes_float += len(pkg.latent_codec.encode(s.z, [(y_int[:, m], index[:, m]) for m in passes]))
        total_i += bytes_int
        total_f += bytes_float
        total_h += bytes_hyper
        extra = f" {bytes_hyper} | {100 * (1 - bytes_int / bytes_hyper):.2f}% |" if context else ""
        print(f"| {q} | {bytes_int} | {bytes_float} | {100 * (bytes_int / bytes_float - 1):+.2f}% |{extra}", flush=True)
    extra = f" {total_h} | {100 * (1 - total_i / total_h):.2f}% |" if context else ""
    print(f"| all | {total_i} | {total_f} | {100 * (total_i / total_f - 1):+.2f}% |{extra}")
    if context:
        with_ms, without_ms = (1000 * seconds[k] / n_tiles for k in ("with", "without"))
        print(f"\nentropy coding of a 256x256 tile, one thread: {with_ms:.1f} ms with the context, {without_ms:.1f} ms without")
    return 0
