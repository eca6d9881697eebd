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
    p.add_argument("--temporal", default="off", help="the agent's --temporal (auto, on, off)")
    p.add_argument("--out", help="write JSON rows here")


def run(args: argparse.Namespace) -> int:
    from lsic.codec.package import available_models

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
                            "--temporal",
                            args.temporal,
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
