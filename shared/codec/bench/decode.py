"""`lsic bench decode`: where the cloud decoder's time goes, and how it scales.

Three measurements on the same bitstreams, in one run:
- the entropy path alone (rANS + integer hyper-synthesis + context), in 1..N worker processes,
  with its scaling against N times one process;
- the synthesis alone, per device, backend, precision and batch size;
- end to end (Decoder.decode_many with a TilePool, the backend and batch the decoder picks):
  bitstreams in, stitched RGB out, with the CPU time the calling process spends per tile (on a
  GPU node, what bounds it once the entropy processes and the GPU keep up).

Inputs are an image folder (Kodak) and a 3840x2160 mosaic cut from the same images, encoded
once at the start with the edge's int8 analysis. On a machine with CUDA the GPU rows are added.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from lsic.codec.errors import UsageError
from lsic.codec.image_io import list_images, read_rgb
from lsic.codec.tile_pool import usable_cores

UHD = (2160, 3840)


def default_processes(n: int) -> list[int]:
    out = [1]
    while out[-1] * 2 <= n:
        out.append(out[-1] * 2)
    return out if out[-1] == n else [*out, n]


def mosaic(images: list[np.ndarray], h: int, w: int) -> np.ndarray:
    """An h x w frame tiled from the images, row by row (real photo content at every position)."""
    out = np.zeros((h, w, 3), dtype=np.uint8)
    y = x = 0
    row_h = 0
    for img in images * (1 + (h * w) // sum(i.shape[0] * i.shape[1] for i in images)):
        ih, iw = min(img.shape[0], h - y), min(img.shape[1], w - x)
        out[y : y + ih, x : x + iw] = img[:ih, :iw]
        row_h = max(row_h, ih)
        x += iw
        if x >= w:
            x, y, row_h = 0, y + row_h, 0
            if y >= h:
                break
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="image folder (e.g. ../shared/data/eval/kodak)")
    p.add_argument("--model", default="default")
    p.add_argument("--quality", type=int, default=6)
    p.add_argument("--processes", help="worker counts for the entropy path, e.g. 1,2,4 (default: 1, 2, 4 .. cores)")
    p.add_argument("--batches", default="1,4,16,64", help="synthesis batch sizes (tiles of 256x256)")
    p.add_argument("--devices", default="auto", help="cpu, cuda or both (auto: cpu, and cuda when present)")
    p.add_argument("--seconds", type=float, default=2.0, help="least time each measurement runs")
    p.add_argument(
        "--end-to-end", default="auto",
        help="synthesis settings of the end-to-end rows, BACKEND[:BATCH] (auto, torch, onnx), e.g. auto,torch:16"
        " (default auto: what the decoder picks for the device)",
    )
    p.add_argument("--no-uhd", action="store_true", help="skip the 3840x2160 frame")
    p.add_argument("--out", help="write the JSON results here")
    p.add_argument("--save-streams", help="also write the encoded bitstreams here (SET/NN.lsic)")
    p.add_argument("--streams", help="decode these bitstreams (SET/NN.lsic, from --save-streams) instead of --data")
    p.add_argument("--encode-only", action="store_true", help="stop after encoding (with --save-streams)")


def _repeat(fn, seconds: float) -> float:
    """Calls fn until `seconds` have passed (at least twice, the first a warm-up); seconds per call."""
    fn()
    n, t0 = 0, time.perf_counter()
    while n < 1 or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def run(args: argparse.Namespace) -> int:
    from lsic.codec.bitstream import parse
    from lsic.codec.decoder import DecodeJob, Decoder
    from lsic.codec.tile_pool import TilePool

    end_to_end = _end_to_end_settings(args.end_to_end)  # refused before any work
    if args.streams:
        sets = {d.name: [f.read_bytes() for f in sorted(d.glob("*.lsic"))] for d in sorted(Path(args.streams).iterdir())}
    elif args.data:
        sets = encode_sets(Path(args.data), args.model, args.quality, uhd=not args.no_uhd)
    else:
        print("lsic: error: bench decode needs --data or --streams")
        return 2
    if not any(sets.values()):
        print("lsic: error: no images or bitstreams to decode")
        return 2
    if args.save_streams:
        for name, streams in sets.items():
            (Path(args.save_streams) / name).mkdir(parents=True, exist_ok=True)
            for i, data in enumerate(streams):
                (Path(args.save_streams) / name / f"{i:02d}.lsic").write_bytes(data)
    if args.encode_only:
        return 0
    pixels = {name: sum(_pixels(d) for d in streams) for name, streams in sets.items()}
    first = next(iter(sets.values()))
    header = parse(first[0]).header
    pkg = Decoder().package_for(parse(first[0]))
    n_cores = usable_cores()
    processes = [int(v) for v in args.processes.split(",")] if args.processes else default_processes(n_cores)
    devices = _devices(args.devices)
    report: dict = {
        "model": pkg.id,
        "quality": header.quality,
        "machine": f"{platform.machine()} {platform.processor()} {n_cores} cores".strip(),
        "devices": devices,
        "bytes": {k: sum(map(len, v)) for k, v in sets.items()},
        "entropy": [],
        "synthesis": [],
        "end_to_end": [],
    }
    print(json.dumps({k: report[k] for k in ("model", "quality", "machine", "devices", "bytes")}), flush=True)

    # The entropy path alone: tiles to y_hat, in-process (one core) and in pools.
    local = Decoder(backend="onnx")
    for name, streams in sets.items():
        t = _repeat(lambda streams=streams: [local.symbols(d) for d in streams], args.seconds)
        row = {"set": name, "processes": 0, "mp_per_s": pixels[name] / t / 1e6}
        report["entropy"].append(row)
        print(json.dumps({"entropy": row}), flush=True)
    for p in processes:
        with TilePool(p) as pool:
            pool.warm_up()
            for name, streams in sets.items():

                def pooled(streams=streams, pool=pool) -> None:
                    futures = [f for d in streams for f in _all_tiles(pool, d)]
                    for f in futures:
                        f.result()

                t = _repeat(pooled, args.seconds)
                row = {"set": name, "processes": p, "mp_per_s": pixels[name] / t / 1e6}
                report["entropy"].append(row)
                print(json.dumps({"entropy": row}), flush=True)
    for row in report["entropy"]:
        one = next((r["mp_per_s"] for r in report["entropy"] if r["set"] == row["set"] and r["processes"] == 1), None)
        if one and row["processes"]:
            row["scaling"] = row["mp_per_s"] / (one * row["processes"])

    # The synthesis alone, on real latents (the Kodak tiles, repeated to fill a batch).
    latents = [y for d in first for y in _tile_latents(local, d)]
    for device, backend, half in _synthesis_settings(devices):
        dec = Decoder(backend=backend, device=device, half=half, threads=0 if device == "cuda" else n_cores)
        synth = dec.synthesis(pkg)
        for b in [int(v) for v in args.batches.split(",")]:
            if device == "cpu" and b > 16:
                continue
            batch = np.stack([latents[i % len(latents)] for i in range(b)])
            t = _repeat(lambda synth=synth, batch=batch: synth.run_rgb8(batch), args.seconds)
            row = {"device": device, "backend": backend, "precision": "fp16" if half else "fp32", "batch": b,
                   "mp_per_s": b * 256 * 256 / t / 1e6}
            report["synthesis"].append(row)
            print(json.dumps({"synthesis": row}), flush=True)

    # End to end: bitstreams -> RGB, the entropy path in a pool beside the synthesis, the
    # backend and batch size the decoder picks for the device (as the service runs it).
    for device in devices:
        workers = max(1, n_cores - 1) if device == "cuda" else n_cores
        with TilePool(workers) as pool:
            pool.warm_up()
            for name, streams in sets.items():
                for backend, batch in end_to_end:
                    dec = Decoder(backend, device, pool=pool, threads=0 if device == "cuda" else n_cores)
                    synth = dec.synthesis(pkg)
                    jobs = [DecodeJob(d) for d in streams]
                    t = _repeat(lambda dec=dec, jobs=jobs, b=batch: dec.decode_many(jobs, b), args.seconds)
                    cpu = time.process_time()
                    tiles = sum(len(f.tiles) for f in dec.decode_many(jobs, batch))
                    row = {"set": name, "device": device, "backend": synth.name, "batch": batch or synth.batch,
                           "processes": workers, "mp_per_s": pixels[name] / t / 1e6,
                           "parent_cpu_ms_per_tile": (time.process_time() - cpu) / tiles * 1e3}
                    report["end_to_end"].append(row)
                    print(json.dumps({"end_to_end": row}), flush=True)

    print_tables(report)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


def encode_sets(folder: Path, model: str, quality: int, uhd: bool) -> dict[str, list[bytes]]:
    """The benchmark's bitstreams: every image of the folder, and a 3840x2160 mosaic of them."""
    from lsic.codec.encoder import Encoder

    images = [read_rgb(f, quiet=True) for f in list_images(folder)]
    enc = Encoder(model, threads=min(usable_cores(), 8))
    sets = {"kodak": [enc.encode(img, quality) for img in images]}
    if uhd and images:
        sets["uhd"] = [enc.encode(mosaic(images, *UHD), quality)]
    return sets


def _pixels(data: bytes) -> int:
    from lsic.codec.bitstream import parse

    grid = parse(data).header.grid
    return grid.width * grid.height


def _end_to_end_settings(spec: str) -> list[tuple[str, int | None]]:
    """'auto,torch:16' -> [('auto', None), ('torch', 16)]."""
    out = []
    for item in spec.split(","):
        backend, _, batch = item.partition(":")
        if backend not in ("auto", "torch", "onnx") or (batch and not batch.isdigit()):
            raise UsageError(f"--end-to-end: {item!r} is not BACKEND[:BATCH] with BACKEND auto, torch or onnx")
        out.append((backend, int(batch) if batch else None))
    return out


def _synthesis_settings(devices: list[str]) -> list[tuple[str, str, bool]]:
    """(device, backend, half) of the synthesis rows: both backends on a CPU, fp32 and fp16 on CUDA."""
    rows = []
    for device in devices:
        if device == "cuda":
            rows += [(device, "torch", False), (device, "torch", True)]
        else:
            rows += [(device, "onnx", False), (device, "torch", False)]
    return rows


def _devices(spec: str) -> list[str]:
    import torch

    if spec == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return spec.split(",")


def _all_tiles(pool, data: bytes):
    from lsic.codec.bitstream import TILE_SAME_AS_PREVIOUS, parse
    from lsic.codec.tile_pool import CHUNK

    parsed = parse(data)
    indexes = [t.index for t in parsed.header.grid.tiles() if parsed.kinds[t.index] != TILE_SAME_AS_PREVIOUS]
    return [pool.submit_chunk(data, indexes[i : i + CHUNK]) for i in range(0, len(indexes), CHUNK)]


def _tile_latents(decoder, data: bytes) -> list[np.ndarray]:
    """The 256x256 tiles' y_hat of one bitstream (inverse gain applied), as the synthesis takes them."""
    from lsic.codec.bitstream import TILE_CODED, parse
    from lsic.codec.decoder import dequantized_tiles

    parsed = parse(data)
    pkg = decoder.package_for(parsed)
    tiles = [t for t in parsed.header.grid.tiles() if parsed.kinds[t.index] == TILE_CODED and (t.w, t.h) == (256, 256)]
    return dequantized_tiles(pkg, parsed, tiles)


def print_tables(report: dict) -> None:
    print(f"\nmodel {report['model']}, quality {report['quality']}, {report['machine']}")
    print("\n| entropy path | processes | MP/s | scaling |\n|---|---|---|---|")
    for r in report["entropy"]:
        scaling = f"{r['scaling']:.2f}" if "scaling" in r else "-"
        print(f"| {r['set']} | {r['processes'] or '1 (in-process)'} | {r['mp_per_s']:.1f} | {scaling} |")
    print("\n| synthesis | backend | precision | batch | MP/s |\n|---|---|---|---|---|")
    for r in report["synthesis"]:
        print(f"| {r['device']} | {r['backend']} | {r['precision']} | {r['batch']} | {r['mp_per_s']:.1f} |")
    print("\n| end to end | device | backend, batch | processes | MP/s | parent CPU ms per tile |")
    print("|---|---|---|---|---|---|")
    for r in report["end_to_end"]:
        print(f"| {r['set']} | {r['device']} | {r['backend']}, {r['batch']} | {r['processes']} | {r['mp_per_s']:.1f} | "
              f"{r['parent_cpu_ms_per_tile']:.2f} |")
