"""`lsic bench edge`: the edge agent end to end against a local cloud service.

For each frame size and quality, an `lsic-edge run` process encodes and streams the built-in
drone pass; reported: frames/s, achieved kbps, peak RSS of the agent process, compression.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from lsic.testing import CloudProcess


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="640x480,1280x720")
    p.add_argument("--qualities", default="1,2,3,4,5,6,7,8,9,10")
    p.add_argument("--models", default="all")
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--source", default="builtin", help="frame source (default: the built-in drone pass)")
    p.add_argument("--change-threshold", type=float, default=0.0)
    p.add_argument("--out", help="write JSON rows here")
    p.add_argument(
        "--unchanged-study",
        action="store_true",
        help="only measure bandwidth saved by unchanged tiles on --source (a video of a fixed camera)",
    )
    p.add_argument("--thresholds", default="0,1,2,3", help="change thresholds for --unchanged-study")


def unchanged_study(args: argparse.Namespace) -> int:
    """Bytes and PSNR of the same frames with unchanged-tile references at several thresholds."""
    import numpy as np

    from lsic.codec.decoder import Decoder
    from lsic.codec.encoder import Encoder
    from lsic.codec.metrics import psnr
    from lsic.codec.tiling import Grid
    from lsic.edge.changes import ChangeDetector
    from lsic.edge.sources import SourceOptions, frames

    enc, dec = Encoder("default", threads=args.threads), Decoder(backend="onnx")
    rows = []
    for q in (int(v) for v in args.qualities.split(",")):
        for thr in (float(v) for v in args.thresholds.split(",")):
            det = ChangeDetector(thr, refresh_every=100)
            previous, nbytes, psnrs, refs, total = None, 0, [], 0, 0
            for f in frames(args.source, SourceOptions()):
                if f.index >= args.frames:
                    break
                grid = Grid(f.rgb.shape[1], f.rgb.shape[0], 256)
                same = det.unchanged(f.rgb, grid) if thr > 0 else set()
                data = enc.encode(f.rgb, q, unchanged=same)
                out = dec.decode(data, previous=previous)
                previous = {i: t.copy() for i, t in out.tiles.items()}
                nbytes += len(data)
                psnrs.append(psnr(out.rgb, f.rgb))
                refs += len(same)
                total += len(grid)
            row = {
                "quality": q,
                "threshold": thr,
                "frames": len(psnrs),
                "kbps_at_10fps": round(nbytes * 8 / len(psnrs) * 10 / 1000, 1),
                "psnr": round(float(np.mean(psnrs)), 2),
                "reference_tiles": round(refs / total, 3),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| quality | threshold | kbit/s at 10 fps | saved | mean PSNR dB | tiles sent as references |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        base = next(x for x in rows if x["quality"] == r["quality"] and x["threshold"] == 0)
        print(
            f"| {r['quality']} | {r['threshold']:g} | {r['kbps_at_10fps']:.0f} | {100 * (1 - r['kbps_at_10fps'] / base['kbps_at_10fps']):.0f}% | {r['psnr']:.2f} | {100 * r['reference_tiles']:.0f}% |"
        )
    return 0


def run(args: argparse.Namespace) -> int:
    from lsic.codec.package import available_models

    if args.unchanged_study:
        return unchanged_study(args)

    models = available_models() if args.models == "all" else args.models.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cloud = CloudProcess(Path(tmp) / "cloud", extra=["--no-decode", "--max-fps-per-device", "1000"]).start()
        try:
            token = cloud.add_device("bench")
            for size in args.sizes.split(","):
                for mid in models:
                    for q in (int(v) for v in args.qualities.split(",")):
                        cmd = [
                            sys.executable,
                            "-m",
                            "lsic.edge.cli",
                            "run",
                            "--source",
                            args.source,
                            "--resize",
                            size,
                            "--loop",
                            "--server",
                            cloud.address,
                            "--device-id",
                            "bench",
                            "--token",
                            token,
                            "--insecure",
                            "--model",
                            mid,
                            "--quality",
                            str(q),
                            "--max-frames",
                            str(args.frames),
                            "--threads",
                            str(args.threads),
                            "--spool",
                            str(Path(tmp) / f"spool-{size}-{mid}-{q}"),
                            "--stream-id",
                            f"s-{size}-{mid}-{q}",
                            "--change-threshold",
                            str(args.change_threshold),
                            "--timeout",
                            "600",
                        ]
                        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                        summary = next(
                            json.loads(ln)["summary"] for ln in r.stdout.splitlines() if ln.startswith('{"summary"')
                        )
                        row = {
                            "size": size,
                            "model": mid,
                            "quality": q,
                            "fps": summary["fps"],
                            "encode_fps": round(summary["encoded"] / max(summary["encode_seconds"], 1e-9), 2),
                            "kbps_at_10fps": round(summary["coded_bytes"] * 8 / summary["encoded"] * 10 / 1000, 1),
                            "bpp": round(summary["coded_bytes"] * 8 / (summary["raw_bytes"] / 3), 4),
                            "peak_rss_mib": summary["peak_rss_mib"],
                            "ratio": summary["compression_ratio"],
                        }
                        rows.append(row)
                        print(json.dumps(row), flush=True)
        finally:
            cloud.stop()
    print(
        "\n| size | model | quality | frames/s (end to end) | encode frames/s | kbit/s at 10 fps | bpp | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['size']} | {r['model']} | {r['quality']} | {r['fps']:.1f} | {r['encode_fps']:.1f} | {r['kbps_at_10fps']:.0f} | {r['bpp']:.3f} | {r['peak_rss_mib']:.0f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0
