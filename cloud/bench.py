"""`lsic bench ingest`: N simulated devices (real gRPC clients on loopback, in worker processes)
stream pre-encoded VGA frames at a fixed rate to one cloud service process.

Reported per N: frames/s and MB/s stored, acknowledgement latency p50/p99 (client side, send
to ack), frames decoded during the run, and lost / duplicated frames (must be zero).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from lsic.testing import CloudProcess
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc


def device_loop(address: str, device: str, token: str, frame: bytes, fps: float, seconds: float, out: list) -> None:
    interval = 1.0 / fps
    sent: dict[int, float] = {}
    n = int(seconds * fps)
    latencies = []

    def records():
        start = time.perf_counter()
        for i in range(n):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[i] = time.perf_counter()
            yield pb.FrameRecord(
                stream_id="bench",
                sequence=i,
                capture_time_us=time.time_ns() // 1000,
                bitstream=frame,
                raw_bytes=640 * 480 * 3,
            )

    acked, dup, rejected = 0, 0, 0
    with grpc.insecure_channel(address) as ch:
        stub = pb_grpc.IngestStub(ch)
        for ack in stub.StreamFrames(records(), metadata=(("authorization", f"Bearer {token}"),)):
            latencies.append(time.perf_counter() - sent[ack.sequence])
            acked += ack.status == pb.FrameAck.STORED
            dup += ack.status == pb.FrameAck.DUPLICATE
            rejected += ack.status == pb.FrameAck.REJECTED
    out.append({"device": device, "acked": acked, "duplicates": dup, "rejected": rejected, "latencies": latencies})


def worker(address: str, devices: list[tuple[str, str]], frame: bytes, fps: float, seconds: float, queue) -> None:
    results: list = []
    threads = [
        threading.Thread(target=device_loop, args=(address, d, t, frame, fps, seconds, results)) for d, t in devices
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(results)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", default="1,8,32,64")
    p.add_argument("--fps", type=float, default=5.0, help="frames per second per device")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--workers", type=int, default=2, help="client processes")
    p.add_argument("--quality", type=int, default=6)
    p.add_argument("--out", help="write JSON rows here")


def run(args: argparse.Namespace) -> int:
    from lsic.codec.encoder import Encoder
    from lsic.codec.sample_frames import builtin_frames

    frame = Encoder("default").encode(next(builtin_frames()), args.quality)
    rows = []
    ctx = mp.get_context("spawn")
    for n in (int(v) for v in args.devices.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            cloud = CloudProcess(
                Path(tmp) / "cloud", extra=["--max-fps-per-device", "1000", "--decode-backend", "onnx"]
            ).start()
            try:
                devices = [(f"dev{i:03d}", cloud.add_device(f"dev{i:03d}")) for i in range(n)]
                queue = ctx.Queue()
                chunks = [devices[i :: args.workers] for i in range(args.workers)]
                procs = [
                    ctx.Process(target=worker, args=(cloud.address, c, frame, args.fps, args.seconds, queue))
                    for c in chunks
                    if c
                ]
                t0 = time.perf_counter()
                for p in procs:
                    p.start()
                results = [r for _ in procs for r in queue.get()]
                for p in procs:
                    p.join()
                wall = time.perf_counter() - t0
                stored = decoded = 0
                with grpc.insecure_channel(cloud.address) as ch:
                    archive = pb_grpc.ArchiveStub(ch)
                    md = (("authorization", f"Bearer {cloud.operator_token()}"),)
                    for d, _ in devices:
                        frames = archive.ListFrames(pb.ListFramesRequest(device_id=d, limit=100000), metadata=md).frames
                        seqs = [f.key.sequence for f in frames]
                        stored += len(set(seqs))
                        decoded += sum(f.decoded for f in frames)
                expected = n * int(args.seconds * args.fps)
                lat = np.concatenate([r["latencies"] for r in results]) * 1000
                acked = sum(r["acked"] for r in results)
                row = {
                    "devices": n,
                    "frames_sent": expected,
                    "frames_acked": acked,
                    "frames_stored": stored,
                    "lost": expected - stored,
                    "duplicates_acked": sum(r["duplicates"] for r in results),
                    "rejected": sum(r["rejected"] for r in results),
                    "frames_per_s": round(acked / wall, 1),
                    "mb_per_s": round(acked * len(frame) / wall / 1e6, 3),
                    "ack_p50_ms": round(float(np.percentile(lat, 50)), 1),
                    "ack_p99_ms": round(float(np.percentile(lat, 99)), 1),
                    "decoded_during_run": decoded,
                    "decode_frames_per_s": round(decoded / wall, 2),
                    "frame_bytes": len(frame),
                }
            finally:
                cloud.stop()
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| devices | frames/s | MB/s | ack p50 ms | ack p99 ms | decoded frames/s | lost | duplicated |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['devices']} | {r['frames_per_s']} | {r['mb_per_s']} | {r['ack_p50_ms']} | {r['ack_p99_ms']} | {r['decode_frames_per_s']} | {r['lost']} | {r['duplicates_acked']} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0
