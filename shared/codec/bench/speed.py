"""`lsic bench speed`: encode and decode megapixels per second, entropy coding shown apart,
against JPEG/WebP/AVIF measured in the same run on the same images."""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import numpy as np

from lsic.codec.bench.rd import pil_decode, pil_encode

SIZES = {"640x480": (480, 640), "768x512": (512, 768), "1920x1080": (1080, 1920)}


def test_image(h: int, w: int) -> np.ndarray:
    import cv2
    from skimage import data

    return np.ascontiguousarray(cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_AREA))


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    best = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    return float(np.median(best))


def entropy_only(pkg, results) -> None:
    from lsic.codec.entropy.latents import encode_tile

    for y, z in results:
        encode_tile(pkg, y, z)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="all")
    p.add_argument("--quality", type=int, default=6)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", help="write JSON results here")


def run(args: argparse.Namespace) -> int:
    from lsic.codec.decoder import Decoder
    from lsic.codec.encoder import Encoder
    from lsic.codec.package import STRIDE, available_models
    from lsic.codec.tiling import Grid, cut

    rows = []
    models = available_models() if args.models == "all" else args.models.split(",")
    for size, (h, w) in SIZES.items():
        img = test_image(h, w)
        mp = h * w / 1e6
        for mid in models:
            tiles = Grid(w, h, 256).tiles()
            padded = [cut(img, t, STRIDE) for t in tiles]
            one = Encoder(mid, threads=1)
            t_analysis = timed(partial(one.analyse, padded, args.quality - 1), args.repeat)
            results = one.analyse(padded, args.quality - 1)
            t_entropy = timed(partial(entropy_only, one.pkg, results), args.repeat)
            for threads in (1, 2):
                enc = one if threads == 1 else Encoder(mid, threads=threads)
                t_total = timed(partial(enc.encode, img, args.quality), args.repeat)
                rows.append(
                    {
                        "size": size,
                        "codec": f"LSIC {mid}",
                        "op": "encode int8",
                        "threads": threads,
                        "mp_per_s": mp / t_total,
                        "analysis_s_1thread": t_analysis,
                        "entropy_s_1thread": t_entropy,
                        "total_s": t_total,
                    }
                )
            data = Encoder(mid).encode(img, args.quality)
            for backend in ("torch", "onnx"):
                for threads in (1, 2):
                    try:
                        dec = Decoder(backend=backend, device="cpu", threads=threads)
                        t = timed(partial(dec.decode, data), args.repeat)
                    except ImportError:
                        continue
                    rows.append(
                        {
                            "size": size,
                            "codec": f"LSIC {mid}",
                            "op": f"decode {backend} cpu",
                            "threads": threads,
                            "mp_per_s": mp / t,
                            "total_s": t,
                        }
                    )
            try:
                import torch

                cuda = torch.cuda.is_available()
            except ImportError:
                cuda = False
            for half in (False, True) if cuda else ():
                dec = Decoder(backend="torch", device="cuda", half=half)
                t = timed(partial(dec.decode, data), args.repeat)
                rows.append(
                    {
                        "size": size,
                        "codec": f"LSIC {mid}",
                        "op": f"decode torch cuda {'fp16' if half else 'fp32'}",
                        "threads": 0,
                        "mp_per_s": mp / t,
                        "total_s": t,
                    }
                )
        for name, fmt, q in (("JPEG", "JPEG", 75), ("WebP", "WEBP", 75), ("AVIF", "AVIF", 50)):
            coded = pil_encode(fmt, img, q)
            for op, fn in (("encode", partial(pil_encode, fmt, img, q)), ("decode", partial(pil_decode, coded))):
                t = timed(fn, args.repeat)
                rows.append({"size": size, "codec": name, "op": op, "threads": 0, "mp_per_s": mp / t, "total_s": t})
    print("| size | codec | operation | threads | MP/s | notes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        note = ""
        if "analysis_s_1thread" in r:
            a, e = r["analysis_s_1thread"], r["entropy_s_1thread"]
            note = f"1 thread: analysis {a * 1000:.0f} ms, entropy coding {e * 1000:.0f} ms ({100 * e / (a + e):.0f}%)"
        print(f"| {r['size']} | {r['codec']} | {r['op']} | {r['threads'] or 'lib'} | {r['mp_per_s']:.2f} | {note} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0
