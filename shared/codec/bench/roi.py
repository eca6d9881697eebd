"""`lsic bench roi`: what a region of interest buys at equal file size.

For each image: the whole frame at one quality (the reference size), then a box in the middle
(a third of each side) raised above a lowered background, every (background, raise) pair in
quarter-quality steps searched for the sharpest box whose file is within 3% of the reference.
Reported: PSNR inside the box and outside it, both ways.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lsic.codec.image_io import list_images, read_rgb
from lsic.codec.metrics import psnr


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="image folder (e.g. ../shared/data/eval/kodak)")
    p.add_argument("--model", default="default")
    p.add_argument("--quality", type=int, default=3, help="the uniform reference's quality")
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--tolerance", type=float, default=0.03, help="file size match, relative")
    p.add_argument("--out", help="write JSON rows here")


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    diff = (a.astype(np.float64) - b.astype(np.float64))[mask]
    mse = float(np.mean(diff**2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def best_at_equal_size(enc, dec, img, box, target: int, n: int, base_q: int, tol: float):
    """(box PSNR, outside PSNR, bytes, background, raise) of the sharpest box within tol of target."""
    from lsic.codec import quality_map as qm

    h, w = img.shape[:2]
    inside = np.zeros((h, w), bool)
    x, y, bw, bh = box
    inside[y : y + bh, x : x + bw] = True
    best = None
    for base in [b / 4 for b in range(4, 4 * base_q + 1)]:
        lo, hi = 0.25, float(n - base)
        for _ in range(7):  # the file grows with the raise: bisect it onto the target size
            raise_ = round(4 * (lo + hi) / 2) / 4
            data = enc.encode(img, max(1, int(base)), quality_map=qm.from_boxes(w, h, base, [(box, raise_)], n))
            if abs(len(data) - target) <= tol * target:
                rec = dec.decode(data).rgb
                row = (masked_psnr(rec, img, inside), masked_psnr(rec, img, ~inside), len(data), base, raise_)
                best = row if best is None or row[0] > best[0] else best
            if len(data) > target:
                hi = raise_ - 0.25
            else:
                lo = raise_ + 0.25
            if lo > hi:
                break
    return best


def run(args: argparse.Namespace) -> int:
    from lsic.codec.decoder import Decoder
    from lsic.codec.encoder import Encoder

    enc, dec = Encoder(args.model), Decoder(backend="onnx")
    rows = []
    for path in list_images(Path(args.data))[: args.limit or None]:
        img = read_rgb(path)
        h, w = img.shape[:2]
        box = (w // 3, h // 3, w // 3, h // 3)
        inside = np.zeros((h, w), bool)
        inside[box[1] : box[1] + box[3], box[0] : box[0] + box[2]] = True
        ref = enc.encode(img, args.quality)
        rec = dec.decode(ref).rgb
        best = best_at_equal_size(enc, dec, img, box, len(ref), enc.pkg.n_rates, args.quality, args.tolerance)
        row = {"image": path.name, "bytes": len(ref), "box_psnr": masked_psnr(rec, img, inside),
               "outside_psnr": masked_psnr(rec, img, ~inside), "psnr": psnr(rec, img)}
        if best:
            row.update(roi_bytes=best[2], roi_box_psnr=best[0], roi_outside_psnr=best[1], background=best[3],
                       raise_=best[4])
        rows.append(row)
        print(json.dumps(row), flush=True)
    found = [r for r in rows if "roi_box_psnr" in r]
    gain = [r["roi_box_psnr"] - r["box_psnr"] for r in found]
    cost = [r["roi_outside_psnr"] - r["outside_psnr"] for r in found]
    size = [r["roi_bytes"] / r["bytes"] - 1 for r in found]
    print(f"\n{len(found)}/{len(rows)} images matched within {args.tolerance:.0%} of the uniform file size")
    print("| | mean | min | max |\n|---|---|---|---|")
    for name, v in (("box PSNR gain, dB", gain), ("outside PSNR change, dB", cost), ("size change", size)):
        if v:
            print(f"| {name} | {np.mean(v):+.2f} | {np.min(v):+.2f} | {np.max(v):+.2f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0
