"""`lsic-cloud`: run the service, and operator commands over its gRPC API."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import grpc

from lsic import __version__
from lsic.cli_support import PORT, number, on_stop_signals, region_arg, run_main, server_address, whole_number
from lsic.cloud.auth import OPERATOR_TOKEN_FILE
from lsic.codec.errors import LsicError, UsageError

DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_DATA = os.environ.get("LSIC_DATA", ".lsic-data")
log = logging.getLogger("lsic.cloud")


def operator_channel(args: argparse.Namespace):
    """(stubs, metadata) for operator calls; token from --token, $LSIC_OPERATOR_TOKEN or DATA."""
    from lsic.v1 import lsic_pb2_grpc as pb_grpc

    token = args.token or os.environ.get("LSIC_OPERATOR_TOKEN")
    if not token:
        path = Path(args.data) / OPERATOR_TOKEN_FILE
        if not path.is_file():
            raise UsageError(
                "no operator token: this command talks to a running service as its operator. Pass --data with "
                f"the folder `lsic-cloud serve --data` uses ({path} is not there), or --token, or set LSIC_OPERATOR_TOKEN"
            )
        token = path.read_text().strip()
    if args.insecure:
        channel = grpc.insecure_channel(args.server)
    else:
        from lsic.tls import channel_credentials

        channel = grpc.secure_channel(args.server, channel_credentials(args.ca, args.client_cert, args.client_key))
    md = (("authorization", f"Bearer {token}"),)
    return pb_grpc.ArchiveStub(channel), pb_grpc.AdminStub(channel), md


def frame_limits(args: argparse.Namespace):
    from lsic.codec.bitstream import FrameLimits

    return FrameLimits(max_pixels=args.max_frame_pixels, max_side=args.max_frame_side, max_tile=args.max_tile)


def cmd_serve(args: argparse.Namespace) -> int:
    from lsic.cloud.budgets import Budgets
    from lsic.cloud.ingest import IngestLimits
    from lsic.cloud.server import CloudServer, ServerConfig

    cfg = ServerConfig(
        listen=args.listen,
        data=Path(args.data),
        insecure=args.insecure,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        client_ca=Path(args.client_ca) if args.client_ca else None,
        metadata_url=args.metadata,
        blob_url=args.blobs,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        http_port=args.http_port,
        http_host=args.http_host,
        decode=not args.no_decode,
        decode_backend=args.decode_backend,
        decode_device=args.decode_device,
        decode_threads=args.decode_threads,
        decode_precision=args.decode_precision,
        decode_processes=args.decode_processes,
        max_message_bytes=args.max_message_mb * 1024 * 1024,
        workers=args.max_concurrent_calls,
        limits=IngestLimits(
            frames_per_second=args.max_fps_per_device,
            burst=int(args.max_fps_per_device * 2),
            streams_per_device=args.max_streams_per_device,
            frame=frame_limits(args),
        ),
        budgets=Budgets(
            anonymous=args.max_anonymous_calls,
            per_peer=args.max_calls_per_peer,
            idle_s={"device": args.idle_timeout, "operator": args.idle_timeout},
        ),
        blob_key_file=args.blob_key_file,
        recon_cache_mb=args.recon_cache_mb,
        disk_reserve_mb=args.disk_reserve_mb,
    )
    CloudServer(cfg).serve_forever()
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    """Decode worker: stored frames -> reconstruction cache and pyramid (started by `serve`)."""

    import socket

    from lsic.cloud.reconstruct import DecodeSettings, DecodeWorker, Reconstructor
    from lsic.cloud.storage.blobs import open_blobs
    from lsic.cloud.storage.encryption import Keyring
    from lsic.cloud.storage.metadata import open_metadata

    if args.nice:
        os.nice(args.nice)
    data = Path(args.data)
    store = open_metadata(args.metadata, data)
    blobs = open_blobs(args.blobs, data, Keyring.from_settings(args.blob_key_file))
    settings = DecodeSettings(
        owner=args.owner or f"{socket.gethostname()}:{os.getpid()}",
        batch_frames=args.batch_frames,
        lease_s=args.lease_s,
        cache_bytes=args.recon_cache_mb << 20,
        reserve_bytes=args.disk_reserve_mb << 20,
        store_overlap={"auto": None, "on": True, "off": False}[args.store_overlap],
    )
    pool = _tile_pool(args.decode_processes)
    worker = DecodeWorker(store, Reconstructor(store, blobs, make_decoder(args, pool)), settings)
    if args.metrics_port:
        from lsic.cloud.metrics import REGISTRY
        from lsic.cloud.ops_http import start_ops_server

        try:
            start_ops_server(args.metrics_host, args.metrics_port, REGISTRY, live=worker.stuck, ready=[store.ping, blobs.ping])
        except LsicError as exc:  # decoding matters more than its metrics
            log.error("decode worker metrics not served", extra={"reason": str(exc)})
    on_stop_signals(worker.stop)
    try:
        worker.run()
    finally:
        if pool is not None:
            pool.close()
    return 0


def _tile_pool(processes: int | None):
    """The decode worker's entropy-decoding processes (None: one per usable core), or None for none."""
    from lsic.codec.tile_pool import TilePool, usable_cores

    n = usable_cores() if processes is None else processes
    return TilePool(n) if n > 0 else None


def cmd_keygen(args: argparse.Namespace) -> int:
    """Append a new blob encryption key to a key file (created 0600); it becomes the current key
    when it is moved to the file's first line."""
    from lsic.cloud.storage.encryption import new_key_line

    path = Path(args.key_file)
    line = new_key_line(args.key_id, path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(line + "\n")
    os.chmod(path, 0o600)
    print(json.dumps({"key_file": str(path), "key_id": args.key_id}))
    return 0


def add_decode_args(p: argparse.ArgumentParser) -> None:
    """Decoder and storage settings shared by `serve` (which passes them to its worker) and `decode`."""
    from lsic.codec.bitstream import DEFAULT_LIMITS

    p.add_argument(
        "--max-frame-pixels", type=whole_number(1), default=DEFAULT_LIMITS.max_pixels,
        help=f"largest frame accepted and decoded (default {DEFAULT_LIMITS.max_pixels}, 134 MP)",
    )
    p.add_argument("--max-frame-side", type=whole_number(1), default=DEFAULT_LIMITS.max_side)
    p.add_argument("--max-tile", type=whole_number(64), default=DEFAULT_LIMITS.max_tile, help="largest tile size accepted")
    p.add_argument(
        "--blob-key-file", help="encrypt blobs at rest with these keys (lsic-cloud keygen; default $LSIC_BLOB_KEYS)"
    )
    p.add_argument("--recon-cache-mb", type=whole_number(0), default=2048, help="cap on the reconstruction cache")
    p.add_argument(
        "--disk-reserve-mb", type=whole_number(0), default=1024, help="free space the reconstruction cache never takes"
    )
    p.add_argument("--decode-backend", choices=["auto", "torch", "onnx"], default="auto")
    p.add_argument("--decode-device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--decode-threads", type=whole_number(0), default=0)
    p.add_argument(
        "--decode-processes", type=whole_number(0), default=None,
        help="processes the decode worker entropy-decodes tiles in, beside its synthesis (default: one per "
        "usable core; 0: none, the worker decodes its tiles itself)",
    )
    p.add_argument(
        "--decode-precision",
        choices=["auto", "fp32", "fp16"],
        default="auto",
        help="synthesis precision: auto is fp16 on CUDA (measured: under 0.01 dB), fp32 elsewhere",
    )


def add_ops_args(p: argparse.ArgumentParser, note: str = "") -> None:
    p.add_argument(
        "--metrics-port", type=PORT, default=0,
        help="Prometheus /metrics and /healthz, /readyz on METRICS_HOST:PORT (0: off)" + (f"; {note}" if note else ""),
    )
    p.add_argument("--metrics-host", default="127.0.0.1", help="bind address of --metrics-port (default loopback)")


def make_decoder(args: argparse.Namespace, pool=None):
    from lsic.codec.decoder import Decoder
    from lsic.codec.synthesis import PRECISIONS

    return Decoder(
        backend=args.decode_backend,
        device=args.decode_device,
        threads=args.decode_threads,
        half=PRECISIONS[args.decode_precision],
        pool=pool,
        limits=frame_limits(args),
    )


def cmd_device(args: argparse.Namespace) -> int:
    from lsic.v1 import lsic_pb2 as pb

    archive, admin, md = operator_channel(args)
    if args.action == "add":
        r = admin.RegisterDevice(pb.RegisterDeviceRequest(device_id=args.device_id), metadata=md, timeout=args.timeout)
        print(r.token)
    elif args.action == "token":
        print(admin.IssueToken(pb.DeviceRef(device_id=args.device_id), metadata=md, timeout=args.timeout).token)
    elif args.action == "revoke":
        admin.RevokeDevice(pb.DeviceRef(device_id=args.device_id), metadata=md, timeout=args.timeout)
        print(f"revoked {args.device_id}")
    else:
        for d in archive.ListDevices(pb.ListDevicesRequest(), metadata=md, timeout=args.timeout).devices:
            print(json.dumps({"device_id": d.device_id, "revoked": d.revoked, "frames": d.frames}))
    return 0


def cmd_frames(args: argparse.Namespace) -> int:
    from lsic.v1 import lsic_pb2 as pb

    if args.action == "get":
        from lsic.codec.image_io import check_writable

        output = check_writable(args.output or "frame.png")
    archive, _, md = operator_channel(args)
    if args.action == "ls":
        frames = archive.ListFrames(
            pb.ListFramesRequest(device_id=args.device, stream_id=args.stream or "", limit=args.limit),
            metadata=md,
            timeout=args.timeout,
        ).frames
        from lsic.cloud.frames import frame_summary

        rows = [frame_summary(f) for f in frames]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'stream':<12} {'seq':>8} {'size':>11} {'bytes':>9} {'q':>2} decoded")
            for r in rows:
                print(
                    f"{r['stream']:<12} {r['seq']:>8} {r['width']:>5}x{r['height']:<5} {r['bytes']:>9} {r['quality']:>2} {r['decoded']}"
                )
        return 0
    seq = args.seq
    if seq is None:  # the newest frame of the stream (or of the device, without --stream)
        newest = archive.ListFrames(
            pb.ListFramesRequest(device_id=args.device, stream_id=args.stream, limit=1, newest_first=True),
            metadata=md,
            timeout=args.timeout,
        ).frames
        if not newest:
            raise UsageError(f"device {args.device} has no frames" + (f" in stream {args.stream}" if args.stream else ""))
        seq, stream = newest[0].key.sequence, newest[0].key.stream_id
        print(f"lsic-cloud: no --seq: the newest frame, {args.device}/{stream}/{seq}", file=sys.stderr)
    else:
        stream = args.stream or "main"
    key = pb.FrameKey(device_id=args.device, stream_id=stream, sequence=seq)
    if args.action == "bitstream":
        data = archive.GetBitstream(key, metadata=md, timeout=args.timeout).bitstream
        path = Path(args.output or "frame.lsic")
        path.write_bytes(data)
        print(json.dumps({"output": str(path), "bytes": len(data)}))
        return 0
    req = pb.ReconstructRequest(key=key, downscale=args.downscale)
    if args.region:
        req.x, req.y, req.width, req.height = args.region
    r = archive.Reconstruct(req, metadata=md, timeout=args.timeout)
    if output.suffix.lower() == ".png":
        output.write_bytes(r.png)
    else:  # the service answers PNG; any other format the codec writes is converted here
        from lsic.codec.image_io import decode_image, write_rgb

        write_rgb(output, decode_image(r.png))
    print(
        json.dumps(
            {
                "output": str(output),
                "width": r.width,
                "height": r.height,
                "tiles_decoded": r.tiles_decoded,
                "seconds": round(r.decode_seconds, 3),
            }
        )
    )
    return 0


def add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--server",
        type=server_address,
        default=os.environ.get("LSIC_SERVER", DEFAULT_SERVER),
        help=f"service address (default {DEFAULT_SERVER})",
    )
    p.add_argument(
        "--data",
        default=DEFAULT_DATA,
        help="service data folder holding operator.token (default $LSIC_DATA or .lsic-data)",
    )
    p.add_argument("--token", help="operator token (default: $LSIC_OPERATOR_TOKEN or DATA/operator.token)")
    p.add_argument("--insecure", action="store_true", help="plaintext connection (service started with --insecure)")
    p.add_argument("--ca", help="CA certificate that signed the service's TLS certificate")
    p.add_argument("--client-cert", help="client certificate, when the service requires one")
    p.add_argument("--client-key", help="client key, when the service requires one")
    p.add_argument("--timeout", type=number(0, above=True), default=60.0, help="deadline of each call in seconds")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lsic-cloud", description="LSIC cloud service: ingest, archive, decode and serve frames from edge devices."
    )
    p.add_argument("--version", action="version", version=f"lsic-cloud {__version__}")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the service")
    s.add_argument("--listen", default=DEFAULT_SERVER, help=f"gRPC address (default {DEFAULT_SERVER})")
    s.add_argument("--data", default=DEFAULT_DATA, help="data folder: SQLite metadata, blobs, operator.token")
    s.add_argument("--insecure", action="store_true", help="no TLS; allowed on loopback addresses only")
    s.add_argument("--tls-cert", help="server certificate (PEM)")
    s.add_argument("--tls-key", help="server private key (PEM)")
    s.add_argument("--client-ca", help="require client certificates signed by this CA")
    s.add_argument("--metadata", default="", help="metadata store: default SQLite in DATA, or postgresql://...")
    s.add_argument("--blobs", default="", help="blob store: default DATA/blobs, a folder, or s3://bucket/prefix")
    add_ops_args(s, "its decode worker uses PORT+1")
    s.add_argument("--http-port", type=PORT, default=0, help="web viewer on HTTP_HOST:PORT (0: off)")
    s.add_argument("--http-host", default="127.0.0.1", help="web viewer bind address (default loopback)")
    s.add_argument("--no-decode", action="store_true", help="ingest only; no background decoding")
    add_decode_args(s)
    s.add_argument("--max-message-mb", type=whole_number(1), default=32, help="largest accepted message (default 32 MiB)")
    s.add_argument("--max-fps-per-device", type=number(0, above=True), default=60.0)
    s.add_argument("--max-streams-per-device", type=whole_number(1), default=8)
    s.add_argument(
        "--max-concurrent-calls", type=whole_number(1), default=512, help="open streams and calls served at once (one thread each)"
    )
    s.add_argument(
        "--max-anonymous-calls", type=whole_number(1), default=16, help="of those, unauthenticated (health, reflection) calls"
    )
    s.add_argument("--max-calls-per-peer", type=whole_number(1), default=256, help="calls one address may hold open")
    s.add_argument(
        "--idle-timeout", type=number(0, above=True), default=300.0, help="seconds a device or operator stream may stay silent"
    )
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("decode", help="run a decode worker (serve starts one; more can run beside it)")
    w.add_argument("--data", default=DEFAULT_DATA)
    w.add_argument("--metadata", default="")
    w.add_argument("--blobs", default="")
    add_decode_args(w)
    w.add_argument("--nice", type=whole_number(0, 19), default=0, help="lower this process's CPU priority by N")
    w.add_argument(
        "--owner", help="name this worker's leases carry (default host:pid; a restarted worker under the same "
        "name takes its unfinished frames back at once)",
    )
    w.add_argument("--batch-frames", type=whole_number(1), default=16, help="frames claimed and decoded together")
    w.add_argument(
        "--store-overlap", choices=["auto", "on", "off"], default="auto",
        help="store a batch while the next decodes (auto: when the synthesis runs on a GPU)",
    )
    add_ops_args(w)
    w.add_argument("--lease-s", type=number(0, above=True), default=120.0, help="a claim not renewed this long is free for others")
    w.set_defaults(func=cmd_decode)

    k = sub.add_parser("keygen", help="add a blob encryption key to a key file (created with mode 0600)")
    k.add_argument("key_file")
    k.add_argument("--key-id", required=True, help="name stored with every blob it encrypts, e.g. 2026-12")
    k.set_defaults(func=cmd_keygen)

    from lsic.cloud import reprocess
    from lsic.cloud.storage.metadata import MAX_SEQUENCE

    rp = sub.add_parser("reprocess", help="re-decode, export or re-encode a device's time range as Ray tasks")
    reprocess.add_arguments(rp, DEFAULT_DATA)
    rp.set_defaults(func=reprocess.run)

    d = sub.add_parser("device", help="register, revoke, list devices")
    d.add_argument("action", choices=["add", "revoke", "token", "ls"])
    d.add_argument("device_id", nargs="?", default="")
    add_client_args(d)
    d.set_defaults(func=cmd_device)

    f = sub.add_parser("frames", help="list frames, reconstruct one (or a region) to PNG, fetch its bitstream")
    f.add_argument("action", choices=["ls", "get", "bitstream"])
    f.add_argument("--device", required=True)
    f.add_argument("--stream", default="", help="stream id (default: all for ls, 'main' otherwise)")
    f.add_argument("--seq", type=whole_number(0, MAX_SEQUENCE), help="sequence number (default: the newest frame)")
    f.add_argument("-o", "--output", help="file to write (default frame.png for get, frame.lsic for bitstream)")
    f.add_argument("--region", type=region_arg, help="x,y,w,h in full-resolution pixels")
    f.add_argument("--downscale", type=int, default=1, choices=[1, 2, 4, 8])
    f.add_argument("--limit", type=whole_number(1, 10000), default=1000)
    f.add_argument("--json", action="store_true")
    add_client_args(f)
    f.set_defaults(func=cmd_frames)
    return p


def check_args(args: argparse.Namespace) -> None:
    if args.command == "device" and args.action != "ls" and not args.device_id:
        raise UsageError("device add/revoke/token need a device id")


def main(argv: list[str] | None = None) -> int:
    return run_main("lsic-cloud", build_parser(), argv, check_args)


if __name__ == "__main__":
    sys.exit(main())
