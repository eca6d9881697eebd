"""`lsic-edge`: run the edge agent. Settings come from flags, then LSIC_EDGE_* environment
variables, then a TOML/JSON config file (--config), then defaults."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from lsic import __version__
from lsic.cli_support import PORT, number, on_stop_signals, one_of, run_main, server_address, whole_number
from lsic.codec.errors import UsageError
from lsic.edge.regions import MASK_METHODS
from lsic.edge.spool import POLICIES

log = logging.getLogger("lsic.edge")

# name -> (type: str, bool or a parser that checks the range, default, help)
SETTINGS: dict[str, tuple[Callable, object, str]] = {
    "source": (str, "builtin", "camera index, video file, rtsp:// or http:// URL, image folder or glob, or 'builtin'"),
    "server": (server_address, "127.0.0.1:50051", "cloud service address HOST:PORT"),
    "device_id": (str, None, "this device's id (registered with `lsic-cloud device add`)"),
    "token": (str, None, "this device's token"),
    "stream_id": (str, "main", "stream id within the device"),
    "model": (str, "default", "model package id"),
    "quality": (whole_number(1), 6, "fixed operating point 1..N (higher is better)"),
    "target_kbps": (number(0), 0.0, "hold the moving-average rate under this many kbit/s (overrides --quality)"),
    "tile_size": (whole_number(64), 256, "tile size, multiple of 64"),
    "threads": (whole_number(1, 256), 2, "ONNX Runtime threads"),
    "max_frames": (whole_number(0), 0, "exit 0 once this many frames are acknowledged"),
    "timeout": (number(0), 0.0, "with --max-frames: exit 1 if not all acknowledged after this many seconds"),
    "spool": (str, ".lsic-spool", "spool folder (durable queue of unacknowledged frames)"),
    "spool_max_mb": (number(0, above=True), 512.0, "spool size limit in MiB"),
    "spool_policy": (one_of(*POLICIES), "drop-oldest", "when the spool is full: drop-oldest or pause"),
    "temporal": (one_of("auto", "on", "off"), "auto", "code only the blocks that changed since the last frame: auto (on for cameras, streams and video files), on, off"),
    "keyframe_interval": (whole_number(1), 250, "with temporal coding: a keyframe (decodable on its own) every N frames"),
    "max_fps": (number(0), 0.0, "frame-rate cap (0: none)"),
    "resize": (str, "", "resize frames to WxH"),
    "crop": (str, "", "crop frames to x,y,w,h before resizing"),
    "loop": (bool, False, "restart files and folders at their end"),
    "ca": (str, "", "CA certificate of the server (default: system roots)"),
    "client_cert": (str, "", "client certificate for mutual TLS"),
    "client_key": (str, "", "client key for mutual TLS"),
    "insecure": (bool, False, "plaintext gRPC; loopback servers only (tests, demo)"),
    "roi": (str, "", "regions of interest coded at a higher quality: any of boxes,motion,people"),
    "roi_boxes": (str, "", "boxes for --roi boxes: x,y,w,h[:steps];... (steps: qualities added, default 3)"),
    "roi_steps": (number(0, above=True), 3.0, "qualities added in motion and people regions"),
    "mask": (str, "", "privacy masks applied before encoding: any of faces,polygons"),
    "mask_polygons": (str, "", "polygons for --mask polygons: 'x,y x,y x,y;...'"),
    "mask_method": (one_of(*MASK_METHODS), "pixelate", "how masked pixels are obscured: pixelate or fill"),
    "metrics_port": (PORT, 0, "Prometheus metrics on 127.0.0.1:PORT (0: off)"),
    "status_every": (number(0, above=True), 5.0, "seconds between status lines"),
}


def load_config(path: str | None) -> dict:
    if not path:
        return {}
    p = Path(path)
    text = p.read_text()
    kind = "JSON" if p.suffix == ".json" else "TOML"
    try:
        if kind == "JSON":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise UsageError(f"{path}: not valid {kind}: {exc}") from None
    settings = data.get("edge", data) if isinstance(data, dict) else data
    if not isinstance(settings, dict):
        raise UsageError(f"{path}: expected a table of settings (name = value), got {type(settings).__name__}")
    return settings


def _setting(name: str, value: object, where: str) -> object:
    """A setting from the environment or the config file, checked as its flag would be."""
    typ = SETTINGS[name][0]
    if typ is bool:
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes")
        if isinstance(value, bool):
            return value
    elif typ is str:
        if isinstance(value, (str, int)) and not isinstance(value, bool):  # source = 0: a camera index
            return str(value)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            return typ(str(value))
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"{name} in {where}: {exc}") from None
    expected = "true or false" if typ is bool else "a string" if typ is str else "a number"
    raise UsageError(f"{name} in {where}: expected {expected}, got {value!r}")


def resolve(args: argparse.Namespace) -> dict:
    """flags > LSIC_EDGE_* > config file > defaults."""
    config = {k.replace("-", "_"): v for k, v in load_config(args.config).items()}
    unknown = set(config) - set(SETTINGS)
    if unknown:
        raise UsageError(f"unknown settings in {args.config}: {', '.join(sorted(unknown))}")
    out = {}
    for name, (_, default, _) in SETTINGS.items():
        flag = getattr(args, name)
        env = os.environ.get(f"LSIC_EDGE_{name.upper()}")
        if flag is not None and flag is not False:  # a flag given as 0 is given
            value = flag
        elif env is not None:
            value = _setting(name, env, f"LSIC_EDGE_{name.upper()}")
        elif name in config:
            value = _setting(name, config[name], args.config)
        else:
            value = default
        out[name] = value
    for required in ("device_id", "token"):
        if not out[required]:
            raise UsageError(
                f"--{required.replace('_', '-')} is required (or LSIC_EDGE_{required.upper()}, or the config file)"
            )
    return out


def _ints(text: str, n: int, sep: str, what: str) -> tuple[int, ...] | None:
    if not text:
        return None
    parts = text.lower().split(sep)
    if len(parts) != n or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"--{what} expects {n} integers separated by '{sep}'")
    return tuple(int(p) for p in parts)


def _frame_size(text: str) -> tuple[int, int] | None:
    """--resize WxH, within what the cloud accepts (FrameLimits)."""
    from lsic.codec.bitstream import DEFAULT_LIMITS as LIMITS

    size = _ints(text, 2, "x", "resize")
    if size and not (min(size) > 0 and max(size) <= LIMITS.max_side and size[0] * size[1] <= LIMITS.max_pixels):
        raise UsageError(f"--resize {text}: sides 1..{LIMITS.max_side} and at most {LIMITS.max_pixels} pixels")
    return size


def _temporal(mode: str, source: str) -> bool:
    from lsic.edge.sources import is_video_source

    return mode == "on" or (mode == "auto" and is_video_source(source))


# Exit codes of `lsic-edge run` (besides 0, and run_main's 2 for bad arguments or files):
EXIT_UNACKNOWLEDGED = 1  # frames still in the spool when --max-frames/--timeout ended the run
EXIT_CREDENTIALS = 5  # the cloud refused the device's credentials (wrong, revoked); spool kept
EXIT_CONFLICTS = 6  # frames whose numbers hold other content in the cloud; kept in spool/conflicts


def cmd_run(args: argparse.Namespace) -> int:
    from lsic.edge.agent import Agent, AgentConfig
    from lsic.edge.sources import SourceOptions
    from lsic.edge.transport import LinkOptions, is_loopback_target

    s = resolve(args)
    if s["insecure"]:
        if not is_loopback_target(s["server"]):
            raise UsageError(f"--insecure is allowed only for a loopback server, not {s['server']}")
        log.warning("sending without TLS (--insecure): for localhost and tests only")
    link = LinkOptions(
        server=s["server"],
        device_id=s["device_id"],
        token=s["token"],
        insecure=s["insecure"],
        ca=Path(s["ca"]) if s["ca"] else None,
        client_cert=Path(s["client_cert"]) if s["client_cert"] else None,
        client_key=Path(s["client_key"]) if s["client_key"] else None,
    )
    if not link.insecure:
        link.credentials()  # a bad TLS file is an error now, not a sender that cannot connect
    from lsic.edge import regions

    roi = regions.kinds(s["roi"], regions.ROI_KINDS, "--roi")
    mask = regions.kinds(s["mask"], regions.MASK_KINDS, "--mask")
    interest = (
        regions.InterestFinder(roi, regions.parse_boxes(s["roi_boxes"]), s["roi_steps"]) if roi else None
    )
    masker = regions.PrivacyMasker(mask, regions.parse_polygons(s["mask_polygons"]), s["mask_method"]) if mask else None
    cfg = AgentConfig(
        source=s["source"],
        link=link,
        stream_id=s["stream_id"],
        model=s["model"],
        quality=s["quality"],
        target_kbps=s["target_kbps"],
        tile_size=s["tile_size"],
        threads=s["threads"],
        max_frames=s["max_frames"],
        timeout_s=s["timeout"],
        spool_dir=Path(s["spool"]) / s["device_id"],
        spool_max_mb=s["spool_max_mb"],
        spool_policy=s["spool_policy"],
        temporal=_temporal(s["temporal"], s["source"]),
        keyframe_interval=s["keyframe_interval"],
        status_every_s=s["status_every"],
        source_opts=SourceOptions(
            max_fps=s["max_fps"],
            resize=_frame_size(s["resize"]),
            crop=_ints(s["crop"], 4, ",", "crop"),
            loop=s["loop"],
        ),
        interest=interest,
        masker=masker,
    )
    if s["metrics_port"]:
        from prometheus_client import start_http_server

        from lsic.edge.metrics import REGISTRY

        start_http_server(s["metrics_port"], addr="127.0.0.1", registry=REGISTRY)
    agent = Agent(cfg)
    on_stop_signals(agent.stop)
    report = agent.run()
    summary = report.as_dict()
    print(json.dumps({"summary": summary}), flush=True)
    if agent.sender.fatal:
        print(f"lsic-edge: error: {agent.sender.fatal} ({len(agent.spool)} frames kept in the spool)", file=sys.stderr)
        return EXIT_CREDENTIALS
    if report.conflicts:
        print(
            f"lsic-edge: error: {report.conflicts} frames conflict with different content the cloud holds under "
            f"their numbers; kept in {agent.spool.conflicts_dir}",
            file=sys.stderr,
        )
        return EXIT_CONFLICTS
    if agent.stopping.is_set():
        return 0
    if len(agent.spool):
        log.error("frames left unacknowledged in the spool", extra={"count": len(agent.spool)})
        return EXIT_UNACKNOWLEDGED
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lsic-edge",
        description="LSIC edge agent: capture, encode (int8 ONNX), and stream frames to the cloud with store and forward.",
    )
    p.add_argument("--version", action="version", version=f"lsic-edge {__version__}")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="capture, encode and stream frames")
    r.add_argument("--config", help="TOML or JSON file with any of the settings below")
    for name, (typ, default, help_text) in SETTINGS.items():
        flag = "--" + name.replace("_", "-")
        if typ is bool:
            r.add_argument(flag, action="store_true", default=False, help=help_text)
        else:
            r.add_argument(flag, type=typ, default=None, help=f"{help_text} (default {default})")
    r.set_defaults(func=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_main("lsic-edge", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
