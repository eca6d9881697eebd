"""`lsic bench ...`: heavy measurements kept out of the test suite (results in docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import importlib

BENCHES = {
    "rd": ("lsic.codec.bench.rd", "rate-distortion on an image folder against JPEG, WebP, AVIF, JPEG XL"),
    "speed": ("lsic.codec.bench.speed", "encode/decode megapixels per second"),
    "fuzz": ("lsic.codec.bench.fuzz", "mutated/truncated/random bitstreams through the decoder"),
    "ceiling": ("lsic.codec.bench.ceiling", "quality ceiling of an M-channel latent (linear bound, no training)"),
    "curve": ("lsic.codec.bench.curve", "learning curve of a training run (from its log.jsonl)"),
    "entropy": ("lsic.codec.bench.entropy", "rate cost of the integer hyper-synthesis against the float one"),
    "decode": ("lsic.codec.bench.decode", "cloud decoder MP/s: entropy path in 1..N processes, synthesis, end to end"),
    "roi": ("lsic.codec.bench.roi", "a region of interest against uniform quality at equal file size"),
    "roi-video": ("lsic.edge.roi_study", "people on a fixed camera as regions of interest, at equal total bitrate"),
    "video": ("lsic.edge.video_study", "temporal coding on a fixed camera against x264 and x265"),
    "half": ("lsic.codec.bench.half", "quality cost of fp16 synthesis (the cloud's GPU default)"),
    "tiling": ("lsic.codec.bench.tiling", "rate and PSNR cost of tiling, large-image memory, region decode speed"),
    "edge": ("lsic.edge.bench", "edge agent frames/s, kbps and RSS against a local cloud service"),
    "ingest": ("lsic.cloud.bench", "concurrent simulated devices against the cloud service"),
    "chaos": ("lsic.cloud.chaos", "devices streaming through service kills, a full disk and hostile clients"),
    "drain": ("lsic.cloud.drain_bench", "a decode worker emptying a backlog, per setting of its entropy processes"),
}


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True)
    for name, (module, help_text) in BENCHES.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(bench_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ImportError as exc:  # an extra that is not installed (e.g. torch on the edge)
            p.set_defaults(bench_missing=str(exc))


def run_bench(args: argparse.Namespace) -> int:
    missing = getattr(args, "bench_missing", None)
    if missing:
        print(f"lsic: error: this benchmark needs an extra that is not installed ({missing})")
        return 2
    return int(importlib.import_module(args.bench_module).run(args) or 0)
