"""`lsic bench chaos`: devices stream while the service is hurt on purpose, and nothing is lost.

Real edge agents (`lsic-edge run`, each its own process) stream a fixed number of frames to a
real service on loopback. Meanwhile, on a schedule:
- the service is SIGKILLed and restarted on the same port and data;
- its decode worker is SIGKILLed (the service restarts it);
- the disk fills and is freed again (the data folder is a tmpfs; skipped where none can be mounted);
and hostile clients run throughout: headers claiming enormous frames, a flood of anonymous
reflection streams, and racing writers of one key with different content.

A probe device sends one frame every half second and records how long each took to answer.
The report: frames acknowledged, stored, decoded, failed with a reason, lost and duplicated
(the last two must be 0), and the probe's latency outside the service's down time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from lsic.codec.bitstream import TILE_SAME_AS_PREVIOUS, Container, TileEntry
from lsic.testing import CloudProcess, fill_disk, free_port
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

NO_ANSWER = ("DEADLINE_EXCEEDED", "UNAVAILABLE", "UNKNOWN", "CANCELLED")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int, default=4, help="edge agents streaming at once")
    p.add_argument("--frames", type=int, default=120, help="frames each agent sends")
    p.add_argument("--fps", type=float, default=4.0, help="frames per second per agent")
    p.add_argument("--out", help="write the JSON report here")


def md(token: str):
    return (("authorization", f"Bearer {token}"),)


class Chaos:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args, self.root = args, root
        self.disk = self._mount(root / "disk")
        self.metrics_port = free_port()
        self.cloud = CloudProcess(
            (self.disk or root) / "data",
            extra=["--decode-backend", "onnx", "--metrics-port", str(self.metrics_port), "--disk-reserve-mb", "4",
                   "--recon-cache-mb", "16"],
            log=root / "cloud.log",
        )
        self.stop = threading.Event()
        self.down: list[tuple[float, float]] = []  # (from, to) when the service was killed
        self.events: list[dict] = []
        self.probe: list[tuple[float, float, str]] = []  # (sent at, seconds to answer, status)
        self.hostile: dict[str, int] = {"oversized_refused": 0, "flood_refused": 0, "race_conflicts": 0}
        self.t0 = time.monotonic()

    # --- set-up ---
    @staticmethod
    def _mount(path: Path) -> Path | None:
        path.mkdir(parents=True)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(path)], capture_output=True)
        return path if r.returncode == 0 else None

    def event(self, what: str, **kw) -> None:
        self.events.append({"t": round(time.monotonic() - self.t0, 1), "event": what, **kw})
        print(json.dumps(self.events[-1]), flush=True)

    def agents(self, tokens: dict[str, str]) -> list[subprocess.Popen]:
        procs = []
        for device, token in tokens.items():
            cmd = [sys.executable, "-m", "lsic.edge.cli", "run", "--server", self.cloud.address, "--insecure",
                   "--device-id", device, "--token", token, "--spool", str(self.root / "spool"), "--source",
                   "builtin", "--loop", "--resize", "320x240", "--max-fps", str(self.args.fps), "--max-frames",
                   str(self.args.frames), "--timeout", str(self.args.frames / self.args.fps + 180)]
            log = (self.root / f"{device}.log").open("wb")
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True))
        return procs

    # --- faults ---
    def kill_service(self) -> None:
        self.event("service SIGKILL")
        start = time.monotonic()
        self.cloud.kill()
        time.sleep(3)
        self.cloud.start()
        self.down.append((start, time.monotonic()))
        self.event("service restarted")

    def kill_decode_worker(self) -> None:
        pid = self.cloud.decode_worker_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            self.event("decode worker SIGKILL", pid=pid)

    def fill_disk(self, seconds: float) -> None:
        if self.disk is None:
            self.event("disk full skipped (no tmpfs can be mounted here)")
            return
        filler = self.disk / "filler"
        fill_disk(filler)
        self.event("disk full")
        time.sleep(seconds)
        filler.unlink()
        self.event("disk space back")

    # --- hostile clients ---
    def hostile_oversized(self, token: str) -> None:
        from lsic.codec.package import load_package

        pkg = load_package("default")
        claim = Container(1 << 20, 1 << 20, 65472, 3, pkg.id, pkg.hash, [TileEntry(TILE_SAME_AS_PREVIOUS)] * 289,
                          version=2).to_bytes()
        seq = 0
        while not self.stop.wait(0.2):
            try:
                with grpc.insecure_channel(self.cloud.address) as ch:
                    rec = pb.FrameRecord(stream_id="huge", sequence=seq, bitstream=claim)
                    ack = next(pb_grpc.IngestStub(ch).StreamFrames(iter([rec]), metadata=md(token), timeout=5))
                    self.hostile["oversized_refused"] += ack.status == pb.FrameAck.REJECTED
                    seq += 1
            except grpc.RpcError:
                pass

    def hostile_flood(self) -> None:
        from grpc_reflection.v1alpha import reflection_pb2_grpc

        def silent():
            self.stop.wait(5)
            yield from ()

        def one():
            try:
                with grpc.insecure_channel(self.cloud.address) as ch:
                    list(reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(silent(), timeout=20))
            except grpc.RpcError as exc:
                self.hostile["flood_refused"] += exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

        while not self.stop.is_set():
            threads = [threading.Thread(target=one, daemon=True) for _ in range(256)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)

    def hostile_race(self, token: str, frames: list[bytes]) -> None:
        """Every second, one sequence number written at once with each of several contents."""
        from concurrent.futures import ThreadPoolExecutor

        def put(seq: int, data: bytes):
            try:
                with grpc.insecure_channel(self.cloud.address) as ch:
                    rec = pb.FrameRecord(stream_id="race", sequence=seq, bitstream=data)
                    return next(pb_grpc.IngestStub(ch).StreamFrames(iter([rec]), metadata=md(token), timeout=10))
            except grpc.RpcError:
                return None

        seq = 0
        with ThreadPoolExecutor(len(frames)) as pool:
            while not self.stop.wait(1.0):
                acks = list(pool.map(lambda data, seq=seq: put(seq, data), frames))
                self.hostile["race_conflicts"] += sum(a is not None and a.status == pb.FrameAck.CONFLICT for a in acks)
                seq += 1

    def probe_device(self, token: str, frame: bytes) -> None:
        seq = 0
        while not self.stop.wait(0.5):
            sent = time.monotonic()
            try:
                with grpc.insecure_channel(self.cloud.address) as ch:
                    rec = pb.FrameRecord(stream_id="probe", sequence=seq, bitstream=frame)
                    pb_grpc.IngestStub(ch).PutFrame(rec, metadata=md(token), timeout=5)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            self.probe.append((sent, time.monotonic() - sent, code))
            seq += 1

    # --- the run ---
    def run(self) -> dict:
        from lsic.codec.encoder import Encoder
        from lsic.codec.sample_frames import builtin_frames

        self.cloud.start()
        devices = {f"chaos-{i}": self.cloud.add_device(f"chaos-{i}") for i in range(self.args.devices)}
        hostile = {name: self.cloud.add_device(name) for name in ("hostile", "racer", "probe")}
        enc = Encoder("default")
        small = [enc.encode(img[:128, :192], 3) for img in list(builtin_frames(320, 240, 8))]
        threads = [
            threading.Thread(target=self.hostile_oversized, args=(hostile["hostile"],), daemon=True),
            threading.Thread(target=self.hostile_flood, daemon=True),
            threading.Thread(target=self.hostile_race, args=(hostile["racer"], small), daemon=True),
            threading.Thread(target=self.probe_device, args=(hostile["probe"], small[0]), daemon=True),
        ]
        for t in threads:
            t.start()
        agents = self.agents(devices)
        span = self.args.frames / self.args.fps
        schedule = [(0.2, self.kill_service), (0.45, self.kill_decode_worker), (0.6, lambda: self.fill_disk(5.0))]
        for at, fault in schedule:
            time.sleep(max(0.0, self.t0 + at * span - time.monotonic()))
            fault()
        summaries = []
        for proc in agents:
            out, _ = proc.communicate(timeout=span + 300)
            lines = [json.loads(x)["summary"] for x in out.splitlines() if x.startswith('{"summary"')]
            summaries.append({"exit": proc.returncode, **(lines[0] if lines else {})})
        self.stop.set()
        self.event("agents done")
        return self.report(devices, summaries)

    def report(self, devices: dict[str, str], summaries: list[dict]) -> dict:
        with grpc.insecure_channel(self.cloud.address) as ch:
            archive = pb_grpc.ArchiveStub(ch)
            omd = md(self.cloud.operator_token())
            deadline = time.monotonic() + 300
            while True:
                frames = {
                    d: list(archive.ListFrames(pb.ListFramesRequest(device_id=d, limit=10000), metadata=omd).frames)
                    for d in devices
                }
                waiting = sum(f.decode_state == "waiting" for fs in frames.values() for f in fs)
                if not waiting or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
        acked = sum(s.get("acknowledged", 0) for s in summaries)
        stored = sum(len(fs) for fs in frames.values())
        lost = sum(max(0, self.args.frames - len({f.key.sequence for f in fs})) for fs in frames.values())
        duplicated = sum(len(fs) - len({f.capture_time_us for f in fs}) for fs in frames.values())
        states = [f.decode_state for fs in frames.values() for f in fs]
        up = [(lat, code) for sent, lat, code in self.probe if not any(a <= sent <= b + 2.0 for a, b in self.down)]
        # An answer is an answer, a refusal too (RESOURCE_EXHAUSTED while the disk is full);
        # unanswered is a call that timed out or found no service.
        answered = [lat for lat, code in up if code not in NO_ANSWER]
        codes: dict[str, int] = {}
        for _, code in up:
            codes[code] = codes.get(code, 0) + 1
        report = {
            "devices": len(devices),
            "frames_per_device": self.args.frames,
            "acknowledged": acked,
            "stored": stored,
            "decoded": sum(s in ("decoded", "evicted") for s in states),
            "failed_with_reason": sum(s in ("failed", "quarantined") for s in states),
            "still_waiting": sum(s == "waiting" for s in states),
            "lost": lost,
            "duplicated": duplicated,
            "agent_exit_codes": [s["exit"] for s in summaries],
            "probe": {
                "sent_while_up": len(up),
                "unanswered_while_up": len(up) - len(answered),
                "answers": codes,
                "p50_ms": round(1000 * float(np.percentile(answered, 50)), 1) if answered else None,
                "p99_ms": round(1000 * float(np.percentile(answered, 99)), 1) if answered else None,
                "max_ms": round(1000 * max(answered), 1) if answered else None,
            },
            "hostile": self.hostile,
            "events": self.events,
            "disk_full_phase": self.disk is not None,
        }
        return report

    def close(self) -> None:
        self.stop.set()
        self.cloud.stop()
        if self.disk is not None:
            subprocess.run(["umount", "-l", str(self.disk)], check=False)


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="lsic-chaos-") as tmp:
        chaos = Chaos(args, Path(tmp))
        try:
            report = chaos.run()
        finally:
            chaos.close()
    print(json.dumps({k: v for k, v in report.items() if k != "events"}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    ok = report["lost"] == 0 and report["duplicated"] == 0 and report["probe"]["unanswered_while_up"] == 0
    print("PASS: nothing lost or duplicated, the probe answered throughout" if ok else "FAIL")
    return 0 if ok else 1
