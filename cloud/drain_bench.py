"""`lsic bench drain`: how fast a real decode worker empties a backlog of stored frames.

A cloud service (ingest only) takes a folder's images, encoded once (or bitstreams), as one
device's frames over gRPC; then `lsic-cloud decode` runs on that archive, as the service or a cluster runs it
(leases, entropy processes, synthesis, PNG pyramid, cache), once per setting of its entropy
processes, each on a fresh archive. The rate counts the frames decoded after its first batch
is stored (the start of the worker and its processes is reported apart).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import grpc

from lsic.codec.errors import UsageError
from lsic.testing import CloudProcess, cloud_command
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

POLL_S = 0.1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="image folder (e.g. ../shared/data/eval/kodak), encoded with `default` first")
    p.add_argument("--streams", help="or a folder of .lsic bitstreams (lsic bench decode --save-streams)")
    p.add_argument("--quality", type=int, default=6)
    p.add_argument("--frames", type=int, default=96, help="frames in the backlog (the images repeated)")
    p.add_argument("--processes", default="0,auto", help="the worker's --decode-processes settings, e.g. 0,auto,4")
    p.add_argument("--batch-frames", type=int, default=16)
    p.add_argument("--decode-device", default="auto")
    p.add_argument("--store-overlap", default="auto", choices=["auto", "on", "off"], help="the worker's setting")
    p.add_argument("--out", help="write the JSON rows here")


def run(args: argparse.Namespace) -> int:
    from lsic.codec.tile_pool import usable_cores

    settings = _settings(args.processes)
    if args.frames < 2 * args.batch_frames:
        raise UsageError(f"--frames {args.frames}: give at least two batches ({2 * args.batch_frames})")
    frames = _bitstreams(args)
    backlog = [frames[i % len(frames)] for i in range(args.frames)]
    pixels = [h * w for _, (h, w, _) in backlog]
    rows = []
    for processes in settings:
        with tempfile.TemporaryDirectory() as tmp:
            row = _drain(Path(tmp), backlog, pixels, processes, args)
        row["processes"] = usable_cores() if processes is None else processes
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| entropy processes | frames | to first batch s | after it: frames/s | MP/s | failed |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes'] or '0 (in the worker)'} | {r['frames']} | {r['first_batch_s']:.1f} | "
              f"{r['frames_per_s']:.2f} | {r['mp_per_s']:.2f} | {r['failed']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


def _bitstreams(args: argparse.Namespace) -> list[tuple[bytes, tuple[int, int, int]]]:
    """(bitstream, (height, width, 3)) of each frame the backlog repeats."""
    from lsic.codec.bitstream import parse

    if args.streams:
        datas = [f.read_bytes() for f in sorted(Path(args.streams).glob("*.lsic"))]
    elif args.data:
        from lsic.codec.encoder import Encoder
        from lsic.codec.image_io import list_images, read_rgb

        encoder = Encoder("default")
        datas = [encoder.encode(read_rgb(f, quiet=True), args.quality) for f in list_images(Path(args.data))]
    else:
        raise UsageError("give --data or --streams")
    if not datas:
        raise UsageError(f"no images or bitstreams in {args.streams or args.data}")
    grids = [parse(d).header.grid for d in datas]
    return [(d, (g.height, g.width, 3)) for d, g in zip(datas, grids, strict=True)]


def _settings(spec: str) -> list[int | None]:
    out: list[int | None] = []
    for item in spec.split(","):
        if item != "auto" and not item.isdigit():
            raise UsageError(f"--processes: {item!r} is neither a number nor auto")
        out.append(None if item == "auto" else int(item))
    return out


def _drain(tmp: Path, backlog: list, pixels: list[int], processes: int | None, args: argparse.Namespace) -> dict:
    cloud = CloudProcess(tmp / "cloud", extra=["--no-decode", "--max-fps-per-device", "100000"]).start()
    worker = None
    try:
        _store(cloud, backlog)
        cmd = [*cloud_command(), "decode", "--data", str(cloud.data), "--owner", "bench",
               "--batch-frames", str(args.batch_frames), "--decode-device", args.decode_device,
               "--store-overlap", args.store_overlap]
        if processes is not None:
            cmd += ["--decode-processes", str(processes)]
        t0 = time.perf_counter()
        worker = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        first = None
        while True:
            states = [f.decode_state for f in _frames(cloud, len(backlog))]
            done = sum(s != "waiting" for s in states)
            now = time.perf_counter()
            if first is None and done >= min(args.batch_frames, len(backlog)):  # the first batch is stored
                first = (now, done)
            if done == len(backlog):
                break
            if worker.poll() is not None:
                raise RuntimeError(f"the decode worker exited with {worker.returncode}")
            time.sleep(POLL_S)
        t_first, n_first = first
        later = sum(pixels[n_first:])
        span = max(now - t_first, 1e-9)
        return {
            "frames": len(backlog),
            "first_batch_s": t_first - t0,
            "frames_per_s": (len(backlog) - n_first) / span,
            "mp_per_s": later / span / 1e6,
            "failed": sum(s != "decoded" for s in states),
        }
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(30)
        cloud.stop()


def _store(cloud: CloudProcess, backlog: list) -> None:
    token = cloud.add_device("bench")

    def records():
        for seq, (data, (h, w, c)) in enumerate(backlog):
            yield pb.FrameRecord(stream_id="backlog", sequence=seq, capture_time_us=time.time_ns() // 1000,
                                 bitstream=data, raw_bytes=h * w * c)

    with grpc.insecure_channel(cloud.address) as ch:
        acks = list(pb_grpc.IngestStub(ch).StreamFrames(records(), metadata=(("authorization", f"Bearer {token}"),)))
    stored = sum(a.status == pb.FrameAck.STORED for a in acks)
    if stored != len(backlog):
        raise RuntimeError(f"the service stored {stored} of {len(backlog)} frames")


def _frames(cloud: CloudProcess, count: int) -> list:
    req = pb.ListFramesRequest(device_id="bench", stream_id="backlog", limit=count)
    return list(cloud._archive("ListFrames", req).frames)
