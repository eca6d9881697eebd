"""`make cluster-demo`: the scaled-out topology of deploy/k8s, as processes on one machine.

PostgreSQL (metadata) and an S3-compatible server (blobs), two ingest replicas sharing them,
two decode workers leasing frames from them, and eight edge agents, four on each replica. It
waits until every frame is stored and decoded, then reports who did what, and that nothing was
lost or stored twice.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import boto3
import grpc

from lsic.logs import setup_logging
from lsic.testing import CloudProcess, PostgresServer, S3Server, cloud_command
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lsic.cluster_demo", description=__doc__)
    p.add_argument("--devices", type=int, default=8)
    p.add_argument("--frames", type=int, default=30, help="frames each device sends")
    p.add_argument("--out", default="demo-data/cluster", help="folder for logs and the summary")
    args = p.parse_args(argv)
    setup_logging()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update(AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo", AWS_DEFAULT_REGION="us-east-1")
    os.environ["LSIC_OPERATOR_TOKEN"] = "operator:cluster-demo-" + os.urandom(16).hex()
    started: list = []
    try:
        print("[1/5] PostgreSQL and an S3-compatible server ...", flush=True)
        pg = PostgresServer().start()
        started.append(pg)
        s3 = S3Server().start()
        started.append(s3)
        boto3.client("s3", endpoint_url=s3.endpoint).create_bucket(Bucket="lsic")
        os.environ["LSIC_S3_ENDPOINT"] = s3.endpoint
        shared = ["--metadata", pg.dsn, "--blobs", "s3://lsic/archive"]
        print("[2/5] two ingest replicas ...", flush=True)
        work = Path(tempfile.mkdtemp(prefix="lsic-cluster-"))
        replicas = []
        for i in range(2):
            r = CloudProcess(work / f"ingest-{i}", extra=[*shared, "--no-decode"], log=out / f"ingest-{i}.log")
            replicas.append(r.start())
            started.append(r)
        print("[3/5] two decode workers ...", flush=True)
        for i in range(2):
            cmd = [*cloud_command(), "decode", "--data", str(work / f"decode-{i}"), *shared, "--owner", f"decode-{i}"]
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=(out / f"decode-{i}.log").open("wb"))
            started.append(proc)
        print(f"[4/5] {args.devices} edge agents, {args.frames} frames each, half on each replica ...", flush=True)
        agents = []
        for d in range(args.devices):
            device, replica = f"camera-{d:02d}", replicas[d % 2]
            token = replica.add_device(device)
            cmd = [sys.executable, "-m", "lsic.edge.cli", "run", "--server", replica.address, "--insecure",
                   "--device-id", device, "--token", token, "--spool", str(work / "spool"), "--source", "builtin",
                   "--resize", "320x240", "--max-fps", "5", "--max-frames", str(args.frames), "--timeout", "600"]
            agents.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=(out / f"{device}.log").open("wb"),
                                           text=True))
        acked = 0
        for a in agents:
            stdout, _ = a.communicate(timeout=900)
            acked += sum(json.loads(x)["summary"]["acknowledged"] for x in stdout.splitlines() if x.startswith("{"))
        print("[5/5] waiting for the decode workers ...", flush=True)
        summary = wait_and_summarize(replicas[1], args.devices, args.frames, acked, pg.dsn)
        print("\nLSIC cluster demo summary")
        for k, v in summary.items():
            print(f"  {k:<26} {v}")
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        ok = summary["lost"] == 0 and summary["duplicated"] == 0 and summary["waiting"] == 0
        return 0 if ok else 1
    finally:
        for s in reversed(started):
            if isinstance(s, subprocess.Popen):
                s.terminate()
                s.wait(15)
            else:
                s.stop()


def wait_and_summarize(replica: CloudProcess, devices: int, frames: int, acked: int, dsn: str) -> dict:
    from lsic.cloud.storage.metadata import PostgresMetadataStore

    md = (("authorization", f"Bearer {os.environ['LSIC_OPERATOR_TOKEN']}"),)
    with grpc.insecure_channel(replica.address) as ch:
        archive = pb_grpc.ArchiveStub(ch)
        deadline = time.monotonic() + 600
        while True:
            listed = {
                f"camera-{d:02d}": list(
                    archive.ListFrames(pb.ListFramesRequest(device_id=f"camera-{d:02d}"), metadata=md).frames
                )
                for d in range(devices)
            }
            states = Counter(f.decode_state for fs in listed.values() for f in fs)
            if not states["waiting"] or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    store = PostgresMetadataStore(dsn)
    try:
        with store._tx() as cur:
            cur.execute("SELECT decode_owner, COUNT(*) FROM frames WHERE decoded = 1 GROUP BY decode_owner")
            by_worker = dict(cur.fetchall())
    finally:
        store.close()
    return {
        "devices": devices,
        "frames_acknowledged": acked,
        "frames_stored": sum(len(fs) for fs in listed.values()),
        "decoded_by_worker": by_worker,
        "waiting": states["waiting"],
        "failed": states["failed"] + states["quarantined"],
        "lost": sum(frames - len({f.key.sequence for f in fs}) for fs in listed.values()),
        "duplicated": sum(len(fs) - len({f.key.sequence for f in fs}) for fs in listed.values()),
    }


if __name__ == "__main__":
    sys.exit(main())
