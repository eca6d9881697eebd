"""Decoder fuzzing: mutated, truncated, random and checksum-repaired bitstreams.

Every case must end in a decoded image or a typed LsicError, within a time limit. Cases that
repair the CRCs after mutating a tile reach past the checksums into the entropy decoder.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from lsic.codec.bitstream import TileEntry, parse
from lsic.codec.errors import LsicError


def _mutate(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    b = bytearray(data)
    if kind == 0:  # bit flips anywhere
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 1:  # truncation
        return bytes(b[: rng.randrange(len(b))])
    if kind == 2:  # random bytes, sometimes with a valid magic
        n = rng.randint(0, 400)
        junk = bytes(rng.getrandbits(8) for _ in range(n))
        return (b"LSIC\x01" + junk) if rng.random() < 0.5 else junk
    if kind == 3:  # inserted / deleted bytes
        i = rng.randrange(len(b))
        if rng.random() < 0.5:
            del b[i : i + rng.randint(1, 16)]
        else:
            b[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
        return bytes(b)
    # kinds 4, 5: mutate tile payloads or header fields, then repair every checksum
    p = parse(data)
    h = p.header
    tiles = [TileEntry(k, p.data[o : o + n]) for k, o, n in zip(p.kinds, p.offsets, p.lengths, strict=True)]
    if kind == 4:
        t = rng.randrange(len(tiles))
        pay = bytearray(tiles[t].payload)
        if pay and rng.random() < 0.7:
            for _ in range(rng.randint(1, 6)):
                i = rng.randrange(len(pay))
                pay[i] = rng.getrandbits(8)
        else:
            pay = pay[: rng.randrange(len(pay) + 1)]
        tiles[t] = TileEntry(tiles[t].kind, bytes(pay))
    else:
        field = rng.randrange(4)
        if field == 0:
            h.quality = rng.randrange(256)
        elif field == 1:
            h.tile_size = rng.choice([64, 128, 512, 1024])
        elif field == 2:
            h.width, h.height = rng.randint(1, 400), rng.randint(1, 400)
        else:
            h.model_id = rng.choice(["", "lite", "x" * 30])
        if len(tiles) != len(h.grid):
            tiles = (tiles * len(h.grid))[: len(h.grid)]
    h.tiles = tiles  # the header keeps its version, flags and quality map
    try:
        return h.to_bytes()
    except LsicError:
        return bytes(b)


def fuzz(
    seeds: list[bytes], cases: int, decoder, seed: int = 0, max_seconds_per_case: float = 5.0, progress=None
) -> dict:
    rng = random.Random(seed)
    report = {
        "cases": cases,
        "decoded": 0,
        "typed_errors": 0,
        "crashes": [],
        "slow": [],
        "max_seconds": 0.0,
        "by_error": {},
    }
    for i in range(cases):
        data = _mutate(rng.choice(seeds), rng)
        t0 = time.perf_counter()
        try:
            decoder.decode(data)
            report["decoded"] += 1
        except LsicError as exc:
            report["typed_errors"] += 1
            name = type(exc).__name__
            report["by_error"][name] = report["by_error"].get(name, 0) + 1
        except Exception as exc:  # anything else is a bug
            report["crashes"].append({"case": i, "error": f"{type(exc).__name__}: {exc}", "input": data[:64].hex()})
        dt = time.perf_counter() - t0
        report["max_seconds"] = max(report["max_seconds"], dt)
        if dt > max_seconds_per_case:
            report["slow"].append({"case": i, "seconds": dt})
        if progress and (i + 1) % 1000 == 0:
            progress(i + 1, report)
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="onnx", choices=["onnx", "torch", "auto"])
    p.add_argument("--workers", type=int, default=2, help="processes (cases are split between them)")
    p.add_argument("--out", help="write the JSON report here")


def _worker(job: tuple[list[bytes], int, str, int]) -> dict:
    from lsic.codec.decoder import Decoder

    seeds, cases, backend, seed = job

    def progress(done: int, report: dict) -> None:  # long runs show they are alive
        print(
            f"fuzz worker {seed % 1000}: {done}/{cases} cases, {len(report['crashes'])} crashes",
            file=sys.stderr,
            flush=True,
        )

    return fuzz(seeds, cases, Decoder(backend=backend), seed, progress=progress)


def run(args: argparse.Namespace) -> int:
    import multiprocessing as mp

    import numpy as np

    from lsic.codec.encoder import Encoder

    rng = np.random.default_rng(args.seed)
    enc = Encoder("default")
    # Small multi-tile seeds (64-pixel tiles) keep each case cheap, so 100,000 cases fit in minutes.
    seeds = [
        enc.encode(rng.integers(0, 256, size=(128, 192, 3), dtype=np.uint8), 1, tile_size=64),
        enc.encode(np.full((130, 70, 3), 200, np.uint8), 8, tile_size=64),
        enc.encode(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8), 4, tile_size=64),
    ]
    t0 = time.time()
    n = max(1, args.workers)
    jobs = [(seeds, args.cases // n + (i < args.cases % n), args.backend, args.seed * 1000 + i) for i in range(n)]
    with mp.get_context("spawn").Pool(n) as pool:
        parts = pool.map(_worker, jobs)
    report = {
        "cases": args.cases,
        "decoded": 0,
        "typed_errors": 0,
        "crashes": [],
        "slow": [],
        "max_seconds": 0.0,
        "by_error": {},
    }
    for part in parts:
        for k in ("decoded", "typed_errors"):
            report[k] += part[k]
        report["crashes"] += part["crashes"]
        report["slow"] += part["slow"]
        report["max_seconds"] = max(report["max_seconds"], part["max_seconds"])
        for name, count in part["by_error"].items():
            report["by_error"][name] = report["by_error"].get(name, 0) + count
    report["seconds"] = round(time.time() - t0, 1)
    report["workers"] = n
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 1 if report["crashes"] or report["slow"] else 0
