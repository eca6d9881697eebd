"""`lsic-cloud reprocess`: bulk work over a device's archive as Ray tasks.

Re-decoding a month of frames with a newer synthesis, exporting a time range as PNG, or
re-encoding it with another model package is too much for the decode worker's queue and needs
no ingest at all. The frames of the range are split into chunks; each chunk is one Ray task that
reads bitstreams from the blob store (reference tiles resolved through the archive, as the
decode worker does) and writes its results. Actions:
- `png`: OUT/<device>/<stream>/<seq>.png, the full-resolution reconstruction;
- `pyramid`: the reconstruction cache and pyramid in the blob store, rewritten;
- `reencode`: OUT/<device>/<stream>/<seq>.lsic, the reconstruction coded again with --model.

Resumable: OUT/done.jsonl lists every finished frame (appended as chunks finish); a run started
again skips them. Progress goes to the log as chunks finish.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from lsic.cli_support import whole_number
from lsic.codec.errors import UsageError

log = logging.getLogger("lsic.cloud.reprocess")
ACTIONS = ("png", "pyramid", "reencode")


@dataclass(frozen=True)
class Job:
    """What every task needs to open the archive itself (tasks run in other processes)."""

    data: str
    metadata: str
    blobs: str
    blob_key_file: str | None
    action: str
    out: str
    model: str
    quality: int


def frame_keys(rows) -> list[tuple[str, str, int]]:
    return [(r.device_id, r.stream_id, r.seq) for r in rows]


def process_chunk(job: Job, keys: list[tuple[str, str, int]]) -> list[dict]:
    """One task: every frame of the chunk, each result or failure reported on its own."""
    from lsic.cloud.reconstruct import Reconstructor, pyramid_pngs
    from lsic.cloud.storage.blobs import open_blobs
    from lsic.cloud.storage.encryption import Keyring
    from lsic.cloud.storage.metadata import open_metadata
    from lsic.codec.decoder import Decoder
    from lsic.codec.errors import LsicError
    from lsic.codec.image_io import encode_image

    store = open_metadata(job.metadata, Path(job.data))
    blobs = open_blobs(job.blobs, Path(job.data), Keyring.from_settings(job.blob_key_file))
    recon = Reconstructor(store, blobs, Decoder(backend="auto", threads=1))
    encoder = None
    results = []
    try:
        for device, stream, seq in keys:
            key = {"device": device, "stream": stream, "seq": seq}
            try:
                row = store.get_frame(device, stream, seq)
                if row is None:
                    raise LsicError(f"frame {device}/{stream}/{seq} is not in the archive")
                rgb = recon.decode(row).rgb
                dest = Path(job.out) / device / stream
                if job.action == "png":
                    dest.mkdir(parents=True, exist_ok=True)
                    (dest / f"{seq:012d}.png").write_bytes(encode_image(rgb, ".png"))
                elif job.action == "pyramid":
                    for key, png in pyramid_pngs(row, rgb).items():
                        blobs.put(key, png)
                else:
                    from lsic.codec.encoder import Encoder

                    encoder = encoder or Encoder(job.model, threads=1)
                    dest.mkdir(parents=True, exist_ok=True)
                    (dest / f"{seq:012d}.lsic").write_bytes(encoder.encode(rgb, job.quality))
                results.append({**key, "ok": True})
            except LsicError as exc:
                results.append({**key, "ok": False, "error": str(exc)})
    finally:
        store.close()
    return results


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A Ray head's host:port (or ray://host:port) must accept a connection: ray.init would wait
    minutes for one that never answers."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(f"no Ray cluster answers at {address} ({exc.strerror or exc})") from None


def finished_frames(manifest: Path) -> set[tuple[str, str, int]]:
    """The frames a run before this one finished. A line cut short by a crash is skipped: its
    frame is done again."""
    done: set[tuple[str, str, int]] = set()
    if manifest.is_file():
        for line in manifest.read_text().splitlines():
            try:
                entry = json.loads(line)
                done.add((entry["device"], entry["stream"], int(entry["seq"])))
            except (ValueError, KeyError, TypeError):
                log.warning("unreadable manifest line skipped", extra={"manifest": str(manifest), "line": line[:80]})
    return done


def run(args: argparse.Namespace) -> int:
    import ray

    from lsic.cloud.storage.metadata import open_metadata

    if args.action == "reencode":  # refused here, not once per frame in every task
        from lsic.codec.package import load_package

        load_package(args.model).check_quality(args.quality)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done_path = out / "done.jsonl"
    done = finished_frames(done_path)
    store = open_metadata(args.metadata, Path(args.data))
    try:
        if store.get_device(args.device) is None:
            raise UsageError(f"no device {args.device!r} is registered")
        rows = store.list_frames(args.device, args.stream or "", args.from_us, args.to_us, limit=args.limit)
    finally:
        store.close()
    keys = [k for k in frame_keys(rows) if k not in done]
    log.info("reprocess", extra={"action": args.action, "frames": len(rows), "already_done": len(rows) - len(keys)})
    if args.max_frames:
        keys = keys[: args.max_frames]
    job = Job(args.data, args.metadata, args.blobs, args.blob_key_file, args.action, str(out), args.model,
              args.quality)
    if args.ray_address:
        check_reachable(args.ray_address)
    try:
        ray.init(address=args.ray_address or None, log_to_driver=False, include_dashboard=False,
                 configure_logging=False)
    except ConnectionError as exc:
        raise UsageError(f"cannot join the Ray cluster at {args.ray_address}: {exc}") from None
    task = ray.remote(num_cpus=1)(process_chunk)
    pending = [task.remote(job, keys[i : i + args.chunk]) for i in range(0, len(keys), args.chunk)]
    finished = failed = 0
    t0 = time.monotonic()
    with done_path.open("a") as manifest:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for result in ray.get(ready):
                for entry in result:
                    if entry["ok"]:
                        manifest.write(json.dumps({k: entry[k] for k in ("device", "stream", "seq")}) + "\n")
                        finished += 1
                    else:
                        failed += 1
                        log.error("frame not reprocessed", extra=entry)
                manifest.flush()
            rate = finished / max(time.monotonic() - t0, 1e-9)
            log.info("progress", extra={"done": finished, "failed": failed, "of": len(keys),
                                        "frames_per_s": round(rate, 2)})
    summary = {"action": args.action, "frames": len(rows), "skipped": len(rows) - len(keys), "done": finished,
               "failed": failed, "seconds": round(time.monotonic() - t0, 1), "out": str(out)}
    print(json.dumps(summary))
    return 0 if not failed else 1


def add_arguments(p: argparse.ArgumentParser, default_data: str) -> None:
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("--device", required=True)
    p.add_argument("--stream", default="", help="one stream (default: all of the device's)")
    p.add_argument("--from-us", type=whole_number(0), default=0, help="capture time from (µs since the epoch, inclusive)")
    p.add_argument("--to-us", type=whole_number(0), default=0, help="capture time to (exclusive; 0: no bound)")
    p.add_argument("--out", required=True, help="output folder (and done.jsonl, the resume manifest)")
    p.add_argument("--model", default="default", help="model package for reencode")
    p.add_argument("--quality", type=whole_number(1), default=6, help="quality for reencode")
    p.add_argument("--chunk", type=whole_number(1), default=16, help="frames per Ray task")
    p.add_argument("--limit", type=whole_number(1), default=1_000_000, help="frames listed at most")
    p.add_argument("--max-frames", type=whole_number(0), default=0, help="stop after this many (0: all)")
    p.add_argument("--ray-address", help="Ray cluster address (default: a local Ray started for the run)")
    p.add_argument("--data", default=default_data, help="service data folder (local blobs, SQLite metadata)")
    p.add_argument("--metadata", default="")
    p.add_argument("--blobs", default="")
    p.add_argument("--blob-key-file")

