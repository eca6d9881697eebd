"""`lsic bench roi-video`: people as regions of interest on a fixed camera, at equal total bitrate.

The clip's frames go through the edge's person detector (OpenCV's HOG people detector,
lsic.edge.regions) once. Then the same frames are coded two ways: every frame at one quality,
and with the detected people raised above a lowered background, the same (background, raise)
for every frame, searched in quarter-quality steps for the sharpest people whose total size is
within 3% of the uniform run's. Reported: PSNR inside the people boxes and outside them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, help="video of a fixed camera (e.g. the campus clip)")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--model", default="default")
    p.add_argument("--quality", type=int, default=3, help="the uniform run's quality")
    p.add_argument("--tolerance", type=float, default=0.03)
    p.add_argument("--out", help="write the JSON result here")


def run(args: argparse.Namespace) -> int:
    from lsic.codec import quality_map as qm
    from lsic.codec.bench.roi import masked_psnr
    from lsic.codec.decoder import Decoder
    from lsic.codec.encoder import Encoder
    from lsic.edge.regions import InterestFinder
    from lsic.edge.sources import SourceOptions, frames

    clip = [f.rgb for _, f in zip(range(args.frames), frames(args.source, SourceOptions()), strict=False)]
    finder = InterestFinder({"people"}, detect_every=1)
    people = [[r.box for r, _ in finder.find(rgb)] for rgb in clip]
    h, w = clip[0].shape[:2]
    masks = []
    for boxes in people:
        m = np.zeros((h, w), bool)
        for x, y, bw, bh in boxes:
            m[max(0, y) : y + bh, max(0, x) : x + bw] = True
        masks.append(m)
    with_people = [i for i, m in enumerate(masks) if m.any()]
    print(json.dumps({"frames": len(clip), "frames_with_people": len(with_people),
                      "people_boxes": sum(map(len, people))}), flush=True)
    enc, dec = Encoder(args.model), Decoder(backend="onnx")
    n = enc.pkg.n_rates

    def code(base: float | None, raise_: float = 0.0):
        total, inside, outside = 0, [], []
        for rgb, boxes, mask in zip(clip, people, masks, strict=True):
            if base is None:
                data = enc.encode(rgb, args.quality)
            else:
                qmap = qm.from_boxes(w, h, base, [(b, raise_) for b in boxes], n)
                data = enc.encode(rgb, max(1, int(base)), quality_map=qmap)
            total += len(data)
            rec = dec.decode(data).rgb
            if mask.any():
                inside.append(masked_psnr(rec, rgb, mask))
            outside.append(masked_psnr(rec, rgb, ~mask))
        return total, float(np.mean(inside)) if inside else float("nan"), float(np.mean(outside))

    ref = code(None)
    best = None
    for base in [b / 4 for b in range(4, 4 * args.quality + 1)]:
        lo, hi = 0.25, float(n - base)
        for _ in range(6):
            raise_ = round(4 * (lo + hi) / 2) / 4
            total, inside, outside = code(base, raise_)
            if abs(total - ref[0]) <= args.tolerance * ref[0] and (best is None or inside > best[1]):
                best = (total, inside, outside, base, raise_)
            if total > ref[0]:
                hi = raise_ - 0.25
            else:
                lo = raise_ + 0.25
            if lo > hi:
                break
    result = {"uniform": {"quality": args.quality, "bytes": ref[0], "people_psnr": ref[1], "outside_psnr": ref[2]}}
    if best:
        result["roi"] = {"background": best[3], "raise": best[4], "bytes": best[0], "people_psnr": best[1],
                         "outside_psnr": best[2], "size_change": best[0] / ref[0] - 1,
                         "people_gain_db": best[1] - ref[1], "outside_change_db": best[2] - ref[2]}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0
