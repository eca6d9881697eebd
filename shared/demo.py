"""`make demo`: the real edge -> cloud pipeline on one machine.

Starts the cloud service (a separate process, gRPC on loopback), registers a device, runs the
edge agent (int8 ONNX encoder, spool, gRPC stream) on the built-in drone pass or SOURCE, waits
for the cloud to decode every frame, and prints a summary with the PSNR of the reconstructions
against the captured frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import cv2
import grpc
import numpy as np

from lsic.codec.metrics import psnr
from lsic.edge.agent import Agent, AgentConfig
from lsic.edge.sources import SourceOptions
from lsic.edge.transport import LinkOptions
from lsic.logs import setup_logging
from lsic.testing import CloudProcess
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

log = logging.getLogger("lsic.demo")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lsic.demo", description=__doc__)
    p.add_argument("--source", default="builtin", help="builtin, camera index, video file, RTSP URL or image folder")
    p.add_argument("--frames", type=int, default=60, help="frames to send (default 60)")
    p.add_argument("--quality", type=int, default=6)
    p.add_argument("--out", default="demo-data", help="folder for the service data and sample outputs")
    args = p.parse_args(argv)
    setup_logging()
    for noisy in ("lsic.edge", "lsic.edge.transport", "lsic.cloud"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"[1/4] starting the cloud service (data in {out / 'cloud'}) ...", flush=True)
    cloud = CloudProcess(out / "cloud", log=out / "cloud.log").start()
    try:
        token = cloud.add_device("demo-drone")
        print(f"[2/4] registered device demo-drone at {cloud.address}", flush=True)
        captured: dict[int, np.ndarray] = {}
        link = LinkOptions(server=cloud.address, device_id="demo-drone", token=token, insecure=True)
        cfg = AgentConfig(
            source=args.source,
            link=link,
            quality=args.quality,
            max_frames=args.frames,
            timeout_s=600,
            spool_dir=out / "spool",
            status_every_s=10,
            source_opts=SourceOptions(),
        )
        agent = Agent(cfg)
        agent.on_frame = lambda seq, frame, data: captured.__setitem__(seq, frame.rgb)
        print(
            f"[3/4] edge agent: encoding {args.source} with model '{cfg.model}' quality {cfg.quality} ...", flush=True
        )
        t0 = time.monotonic()
        report = agent.run()
        wall = time.monotonic() - t0
        if len(agent.spool):
            print(f"demo: {len(agent.spool)} frames were not acknowledged", file=sys.stderr)
            return 1
        print("[4/4] waiting for the cloud to decode and reconstruct every frame ...", flush=True)
        psnrs = fetch_and_compare(cloud, captured, out)
        summary = {
            "frames": report.encoded,
            "keyframes": report.keyframes,
            "share_of_blocks_coded": round(report.coded_blocks / max(1, report.blocks), 3),
            "bytes_on_wire": report.coded_bytes,
            "raw_bytes": report.raw_bytes,
            "compression_ratio": round(report.ratio, 1),
            "bits_per_pixel": round(8 * report.coded_bytes / max(1, report.raw_bytes / 3), 3),
            "mean_psnr_db": round(float(np.mean(psnrs)), 2) if psnrs else None,
            "encode_frames_per_s": round(report.encoded / max(report.encode_seconds, 1e-9), 1),
            "end_to_end_frames_per_s": round(report.encoded / wall, 1),
        }
        print("\nLSIC demo summary")
        for k, v in summary.items():
            print(f"  {k:<24} {v}")
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"\nLook at: {out}/frame_*.png (reconstructions next to the captured frames),")
        print(f"         {out}/cloud/blobs (the archive: .lsic bitstreams and the reconstruction pyramid),")
        print(f"         lsic-cloud frames ls --device demo-drone --data {out / 'cloud'} --server <address> --insecure")
        return 0
    finally:
        cloud.stop()


def fetch_and_compare(
    cloud: CloudProcess, captured: dict[int, np.ndarray], out: Path, timeout: float = 600
) -> list[float]:
    md = (("authorization", f"Bearer {cloud.operator_token()}"),)
    with grpc.insecure_channel(cloud.address, options=[("grpc.max_receive_message_length", 64 << 20)]) as ch:
        archive = pb_grpc.ArchiveStub(ch)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = archive.ListFrames(pb.ListFramesRequest(device_id="demo-drone"), metadata=md).frames
            if frames and all(f.decoded for f in frames):
                break
            time.sleep(0.5)
        psnrs = []
        for seq, rgb in sorted(captured.items()):
            key = pb.FrameKey(device_id="demo-drone", stream_id="main", sequence=seq)
            png = archive.Reconstruct(pb.ReconstructRequest(key=key), metadata=md, timeout=120).png
            rec = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            psnrs.append(psnr(rec, rgb))
            if seq % 20 == 0:
                side = np.concatenate([rgb, rec], axis=1)
                cv2.imwrite(str(out / f"frame_{seq:04d}.png"), cv2.cvtColor(side, cv2.COLOR_RGB2BGR))
        return psnrs


if __name__ == "__main__":
    sys.exit(main())
