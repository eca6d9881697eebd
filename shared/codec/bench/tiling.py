"""`lsic bench tiling`: what independent tiles cost and what they buy.

1. Rate and PSNR of tile sizes against coding each image as one tile (same run, same images).
2. A 16384x16384 image encoded and decoded, each in its own process: peak memory (RSS).
3. Decoding a 1024x1024 region against the full decode of that image.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lsic.codec.image_io import list_images, read_rgb
from lsic.codec.metrics import psnr


def big_image(side: int) -> np.ndarray:
    """A large natural-looking test image: scikit-image photos tiled and mirrored."""
    import cv2
    from skimage import data

    base = np.concatenate([cv2.resize(data.astronaut(), (512, 512)), cv2.resize(data.coffee(), (512, 512))], axis=1)
    base = np.concatenate([base, base[::-1, ::-1]], axis=0)  # 1024 x 1024
    reps = -(-side // 1024)
    return np.ascontiguousarray(np.tile(base, (reps, reps, 1))[:side, :side])


def phase(kind: str, side: int, path: str, backend: str) -> None:
    """Runs in a child process so its peak RSS is its own."""
    from lsic.codec.bitstream import FrameLimits
    from lsic.codec.decoder import Decoder
    from lsic.codec.encoder import Encoder

    t0 = time.perf_counter()
    if kind == "encode":
        data = Encoder("default").encode(big_image(side), 3)
        Path(path).write_bytes(data)
        extra = {"bytes": len(data)}
    elif kind == "decode":
        out = Decoder(backend=backend, limits=FrameLimits(max_pixels=side * side)).decode(Path(path).read_bytes())
        extra = {"shape": list(out.rgb.shape)}
    else:
        out = Decoder(backend=backend, limits=FrameLimits(max_pixels=side * side)).decode(Path(path).read_bytes(), region=(side // 2, side // 2, 1024, 1024))
        extra = {"shape": list(out.rgb.shape), "tiles": len(out.tiles)}
    seconds = time.perf_counter() - t0
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"phase": kind, "seconds": round(seconds, 2), "peak_rss_mib": round(rss_mib, 1), **extra}))


def run_phase(kind: str, side: int, path: str, backend: str) -> dict:
    code = f"from lsic.codec.bench.tiling import phase; phase({kind!r}, {side}, {path!r}, {backend!r})"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="image folder for the tile-size comparison (e.g. Kodak)")
    p.add_argument("--limit", type=int, default=8)
    p.add_argument("--sizes", default="128,256,384,512")
    p.add_argument("--qualities", default="2,5")
    p.add_argument("--big", type=int, default=16384, help="side of the large image (0: skip)")
    p.add_argument("--backend", default="onnx", choices=["onnx", "torch", "auto"])


def run(args: argparse.Namespace) -> int:
    from lsic.codec.decoder import Decoder
    from lsic.codec.encoder import Encoder

    if args.data:
        images = [read_rgb(f) for f in list_images(Path(args.data))[: args.limit]]
        enc, dec = Encoder("default"), Decoder(backend=args.backend)
        rows = []
        sizes = [int(s) for s in args.sizes.split(",")]
        whole = max(-(-max(im.shape[:2]) // 64) * 64 for im in images)
        for q in (int(v) for v in args.qualities.split(",")):
            for tile in [*sizes, whole]:
                bpp, ps, secs = [], [], []
                for im in images:
                    t0 = time.perf_counter()
                    data = enc.encode(im, q, tile)
                    secs.append(time.perf_counter() - t0)
                    bpp.append(8 * len(data) / (im.shape[0] * im.shape[1]))
                    ps.append(psnr(dec.decode(data).rgb, im))
                rows.append(
                    {
                        "quality": q,
                        "tile": tile if tile != whole else "whole",
                        "bpp": float(np.mean(bpp)),
                        "psnr": float(np.mean(ps)),
                        "encode_s": float(np.mean(secs)),
                    }
                )
        print("| quality | tile | bpp | rate vs whole | PSNR dB | ΔPSNR | encode s |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            ref = next(x for x in rows if x["quality"] == r["quality"] and x["tile"] == "whole")
            print(
                f"| {r['quality']} | {r['tile']} | {r['bpp']:.4f} | {100 * (r['bpp'] / ref['bpp'] - 1):+.1f}% | {r['psnr']:.2f} | {r['psnr'] - ref['psnr']:+.2f} | {r['encode_s']:.3f} |"
            )
    if args.big:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "big.lsic")
            results = [run_phase(k, args.big, path, args.backend) for k in ("encode", "decode", "region")]
        for r in results:
            print(json.dumps(r))
        full, region = results[1]["seconds"], results[2]["seconds"]
        print(f"region 1024x1024 decode: {region:.2f}s vs full {full:.2f}s: {full / region:.0f}x faster")
    return 0
