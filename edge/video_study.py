"""`lsic bench video`: temporal coding on a fixed camera against x264 and x265, in one run.

The same frames go through ffmpeg's libx264 (veryfast, zerolatency) and libx265 (fast,
zerolatency) over a CRF sweep, and through LSIC's temporal coding (keyframe, then predicted
frames) over its qualities. Reported per point: kbit/s at the clip's frame rate and the mean RGB
PSNR of the decoded frames; per codec: BD-rate against x264 and x265 (piecewise-cubic in log
rate, as lsic.codec.bench.rd computes it); and the edge encoder's frames/s on 2 threads at VGA.
With --end-to-end the LSIC points are measured through the real path instead: an `lsic-edge
run` process streams the clip to a local cloud service, whose decode worker reconstructs it,
and every frame is read back through the archive API.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

X264 = ("libx264", ["-preset", "veryfast", "-tune", "zerolatency"])
X265 = ("libx265", ["-preset", "fast", "-tune", "zerolatency", "-x265-params", "log-level=none"])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, help="video of a fixed camera (e.g. the campus clip)")
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--fps", type=float, default=0.0, help="frame rate for kbit/s (default: the file's)")
    p.add_argument("--model", default="default")
    p.add_argument("--qualities", default="1,3,5,7,9")
    p.add_argument("--crf", default="23,26,29,32,35,38")
    p.add_argument("--keyframe-interval", type=int, default=250)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--end-to-end", action="store_true", help="LSIC through edge agent -> cloud -> archive API")
    p.add_argument("--speed-frames", type=int, default=60, help="frames for the VGA encode-speed row (0: skip)")
    p.add_argument("--out", help="write the JSON result here")
    p.add_argument("--plot", help="write a rate-PSNR plot (PNG) here")


def read_clip(source: str, count: int) -> tuple[list[np.ndarray], float]:
    from lsic.edge.sources import SourceOptions, file_fps, frames

    clip = [f.rgb for _, f in zip(range(count), frames(source, SourceOptions()), strict=False)]
    return clip, file_fps(source) or 10.0


def rgb_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-10))


def ffmpeg_point(clip: list[np.ndarray], fps: float, codec: tuple[str, list[str]], crf: int, tmp: Path) -> dict:
    """One CRF of one ffmpeg encoder: bytes of the elementary stream, PSNR of its decoded frames."""
    h, w = clip[0].shape[:2]
    out = tmp / f"{codec[0]}-{crf}.mkv"
    enc = [
        "ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
        "-r", str(fps), "-i", "-", "-c:v", codec[0], *codec[1], "-crf", str(crf), "-pix_fmt", "yuv420p",
        str(out),
    ]
    subprocess.run(enc, input=b"".join(f.tobytes() for f in clip), check=True)
    probe = subprocess.run(
        ["ffprobe", "-loglevel", "error", "-select_streams", "v:0", "-show_entries", "packet=size", "-of", "csv=p=0",
         str(out)], capture_output=True, text=True, check=True,
    )
    nbytes = sum(int(v) for v in probe.stdout.split())
    raw = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True,
    ).stdout
    decoded = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)[: len(clip)]
    psnr = float(np.mean([rgb_psnr(d, f) for d, f in zip(decoded, clip, strict=True)]))
    return {"crf": crf, "kbps": nbytes * 8 / (len(clip) / fps) / 1000, "psnr": psnr}


def lsic_point(clip: list[np.ndarray], fps: float, quality: int, args: argparse.Namespace, enc, dec) -> dict:
    """One quality of temporal coding, decoded in order by the cloud's decoder (in this process)."""
    from lsic.codec.video import VideoEncoder, VideoSettings

    video = VideoEncoder(enc, settings=VideoSettings(args.keyframe_interval))
    nbytes, psnrs, coded, blocks, keys = 0, [], 0, 0, 0
    latents = None
    for rgb in clip:
        f = video.encode(rgb, quality)
        out = dec.decode(f.data, latents=latents)
        latents = out.latents
        nbytes += len(f.data)
        psnrs.append(rgb_psnr(out.rgb, rgb))
        coded, blocks, keys = coded + f.coded_blocks, blocks + f.blocks, keys + f.keyframe
    return {"quality": quality, "kbps": nbytes * 8 / (len(clip) / fps) / 1000, "psnr": float(np.mean(psnrs)),
            "coded_blocks": round(coded / blocks, 4), "keyframes": keys}


def end_to_end_points(clip: list[np.ndarray], fps: float, qualities: list[int], args: argparse.Namespace) -> list[dict]:
    """LSIC through the product: `lsic-edge run` -> cloud ingest -> decode worker -> archive API."""
    import sys
    import tempfile

    from lsic.codec.image_io import write_rgb
    from lsic.testing import CloudProcess

    points = []
    with tempfile.TemporaryDirectory() as tmp:
        frames_dir = Path(tmp) / "clip"
        frames_dir.mkdir()
        for i, rgb in enumerate(clip):  # the exact frames the other codecs saw, in order
            write_rgb(frames_dir / f"{i:05d}.png", rgb)
        cloud = CloudProcess(Path(tmp) / "cloud", extra=["--max-fps-per-device", "1000"]).start()
        try:
            token = cloud.add_device("bench")
            for q in qualities:
                stream = f"q{q}"
                cmd = [sys.executable, "-m", "lsic.edge.cli", "run", "--source", str(frames_dir), "--temporal", "on",
                       "--server", cloud.address, "--device-id", "bench", "--token", token, "--insecure",
                       "--model", args.model, "--quality", str(q), "--max-frames", str(len(clip)),
                       "--threads", str(args.threads), "--spool", str(Path(tmp) / f"spool-{q}"),
                       "--stream-id", stream, "--keyframe-interval", str(args.keyframe_interval), "--timeout", "600"]
                subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
                rows = cloud.wait_decoded("bench", stream, len(clip), timeout=900)
                nbytes = sum(r.bytes for r in rows)
                psnrs = [rgb_psnr(cloud.reconstruct("bench", stream, r.key.sequence), clip[i]) for i, r in enumerate(rows)]
                point = {"quality": q, "kbps": nbytes * 8 / (len(clip) / fps) / 1000, "psnr": float(np.mean(psnrs)),
                         "path": "edge agent -> cloud -> archive"}
                points.append(point)
                print(json.dumps({"lsic": point}), flush=True)
        finally:
            cloud.stop()
    return points


def vga_speed(clip: list[np.ndarray], count: int, args: argparse.Namespace, enc) -> dict:
    """The edge encoder's frames/s at 640x480 (the clip scaled up), temporal coding at quality 6."""
    import cv2

    from lsic.codec.video import VideoEncoder, VideoSettings

    frames = [cv2.resize(f, (640, 480), interpolation=cv2.INTER_LINEAR) for f in clip[:count]]
    video = VideoEncoder(enc, settings=VideoSettings(args.keyframe_interval))
    t0 = time.perf_counter()
    for f in frames:
        video.encode(f, 6)
    dt = time.perf_counter() - t0
    return {"size": "640x480", "quality": 6, "frames": len(frames), "threads": args.threads,
            "fps": round(len(frames) / dt, 1)}


def bd_rates(curves: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    from lsic.codec.bench.rd import bd_rate

    out = {}
    for name, pts in curves.items():
        out[name] = {}
        for base in ("x264", "x265"):
            if base == name or base not in curves:
                continue
            b = curves[base]
            out[name][f"vs_{base}"] = round(
                bd_rate([p["kbps"] for p in b], [p["psnr"] for p in b], [p["kbps"] for p in pts], [p["psnr"] for p in pts]),
                1,
            )
    return out


def plot(curves: dict[str, list[dict]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, pts in curves.items():
        ax.plot([p["kbps"] for p in pts], [p["psnr"] for p in pts], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("kbit/s")
    ax.set_ylabel("RGB PSNR (dB)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(args: argparse.Namespace) -> int:
    import tempfile

    from lsic.codec.decoder import Decoder
    from lsic.codec.encoder import Encoder
    from lsic.codec.errors import UsageError

    if shutil.which("ffmpeg") is None:
        raise UsageError("`lsic bench video` needs ffmpeg with libx264 and libx265 (Debian: apt-get install ffmpeg)")
    clip, fps = read_clip(args.source, args.frames)
    fps = args.fps or fps
    h, w = clip[0].shape[:2]
    print(json.dumps({"source": args.source, "frames": len(clip), "size": f"{w}x{h}", "fps": fps}), flush=True)
    curves: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, codec in (("x264", X264), ("x265", X265)):
            curves[name] = []
            for crf in (int(v) for v in args.crf.split(",")):
                point = ffmpeg_point(clip, fps, codec, crf, Path(tmp))
                curves[name].append(point)
                print(json.dumps({name: point}), flush=True)
    qualities = [int(v) for v in args.qualities.split(",")]
    enc = Encoder(args.model, threads=args.threads)
    if args.end_to_end:
        curves["lsic"] = end_to_end_points(clip, fps, qualities, args)
    else:
        dec = Decoder(backend="onnx")
        curves["lsic"] = []
        for q in qualities:
            point = lsic_point(clip, fps, q, args, enc, dec)
            curves["lsic"].append(point)
            print(json.dumps({"lsic": point}), flush=True)
    result = {"source": Path(args.source).name, "frames": len(clip), "size": f"{w}x{h}", "fps": fps,
              "model": args.model, "keyframe_interval": args.keyframe_interval, "curves": curves,
              "bd_rate_percent": bd_rates(curves)}
    if args.speed_frames:
        result["edge_encode"] = vga_speed(clip, args.speed_frames, args, enc)
    print(json.dumps({"bd_rate_percent": result["bd_rate_percent"], "edge_encode": result.get("edge_encode")}))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        plot(curves, args.plot, f"{Path(args.source).name}, {len(clip)} frames {w}x{h} at {fps:g} fps")
    return 0
