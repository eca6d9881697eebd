"""`lsic`: the codec command line (encode, decode, info, models, train, export, bench).

Every LsicError becomes a one-line message on stderr and its own exit code; no traceback
reaches a user.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

from lsic import __version__
from lsic.cli_support import number, on_stop_signals, region_arg, run_main, whole_number
from lsic.codec.entropy.context import CONTEXT_KINDS

log = logging.getLogger("lsic")


def cmd_encode(args: argparse.Namespace) -> int:
    from lsic.codec import quality_map
    from lsic.codec.encoder import Encoder
    from lsic.codec.image_io import read_rgb

    rgb = read_rgb(args.input)
    encoder = Encoder(args.model, threads=args.threads)
    qmap = None
    h, w = rgb.shape[:2]
    if args.quality_map:
        qmap = quality_map.from_image(args.quality_map, w, h, encoder.pkg.n_rates)
    elif args.roi:
        qmap = quality_map.from_boxes(w, h, args.quality, args.roi, encoder.pkg.n_rates)
    t0 = time.perf_counter()
    data = encoder.encode(rgb, args.quality, args.tile_size, quality_map=qmap)
    dt = time.perf_counter() - t0
    out = Path(args.output or Path(args.input).with_suffix(".lsic"))
    out.write_bytes(data)
    h, w = rgb.shape[:2]
    print(
        json.dumps(
            {"output": str(out), "bytes": len(data), "bpp": round(8 * len(data) / (h * w), 4), "seconds": round(dt, 3)}
        )
    )
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from lsic.codec.decoder import Decoder
    from lsic.codec.image_io import check_writable, read_input, write_rgb

    data = read_input(args.input)
    out = check_writable(args.output or Path(args.input).with_suffix(".png"))
    backend = args.backend or ("torch" if args.device != "cpu" and args.device != "auto" else "onnx")
    t0 = time.perf_counter()
    frame = Decoder(backend=backend, device=args.device, threads=args.threads).decode(data, region=args.region)
    write_rgb(out, frame.rgb)
    print(
        json.dumps(
            {
                "output": str(out),
                "width": frame.rgb.shape[1],
                "height": frame.rgb.shape[0],
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
    )
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from lsic.codec.bitstream import parse
    from lsic.codec.image_io import read_input

    data = read_input(args.input)
    parsed = parse(data)
    info = parsed.info()
    if not args.tiles:
        info.pop("tile_table")
    if args.bits_map:
        from lsic.codec.bits_map import bits_per_pixel, heatmap
        from lsic.codec.image_io import check_writable, write_rgb

        out = check_writable(args.bits_map)
        bpp = bits_per_pixel(data)
        image, scale = heatmap(bpp, info["width"], info["height"])
        write_rgb(out, image)
        info["bits_map"] = {"output": str(out), "block": 16, "max_bpp": round(scale, 4),
                            "mean_bpp": round(float(bpp.mean()), 4)}
        if parsed.header.predicted:  # its tables need the previous frame: bytes spread per tile
            info["bits_map"]["spread_over_coded_blocks"] = True
    print(json.dumps(info, indent=2))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from lsic.codec.package import available_models, build_hash, load_package, retired_dirs

    rows = []
    for mid in available_models():
        pkg = load_package(mid)
        rows.append(
            {
                "id": mid,
                "path": str(pkg.root),
                "qualities": pkg.n_rates,
                "architecture": pkg.architecture,
                "hash": pkg.hash.hex()[:16],
                "kodak": pkg.meta.get("kodak"),
                "retired_builds": [
                    {"hash": (build_hash(d) or b"").hex()[:16], "path": str(d)} for d in retired_dirs(mid)
                ],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<10} {'latent':<24} {'qualities':>9}  {'Kodak vs JPEG':>13}  {'build':<16}  retired")
    for r in rows:
        a = r["architecture"]
        latent = f"N={a['N']} M={a['M']}" + (f" +{a['context']}" if a.get("context") else "")
        bd = (r["kodak"] or {}).get("bd_rate_psnr_vs", {}).get("JPEG")
        bd_text = f"{bd:+.1f}%" if bd is not None else "-"
        print(f"{r['id']:<10} {latent:<24} {r['qualities']:>9}  {bd_text:>13}  {r['hash']:<16}  {len(r['retired_builds'])}")
    return 0


def roi_arg(text: str) -> tuple[tuple[int, int, int, int], float]:
    """argparse type for --roi: x,y,w,h[:steps], steps the qualities added inside (default 3)."""
    box, _, steps = text.partition(":")
    try:
        weight = float(steps) if steps else 3.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected x,y,w,h[:steps], got {text!r}") from None
    if not 0 < weight <= 9:
        raise argparse.ArgumentTypeError(f"steps must be above 0 and at most 9, got {text!r}")
    return region_arg(box), weight


def width_pair(text: str) -> tuple[int, int]:
    """argparse type for --hyper-widths: two positive integers, "A,B"."""
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two widths like 96,144, got {text!r}") from None
    if a <= 0 or b <= 0:
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text!r}")
    return a, b


def count(text: str) -> int:
    """argparse type for a number of things: an integer >= 0."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {n}")
    return n


def point_list(text: str) -> tuple[int, ...]:
    """argparse type for --points: trained operating points 1..8, e.g. "1,2,3"."""
    try:
        points = tuple(sorted({int(v) for v in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected point numbers like 1,2,3, got {text!r}") from None
    if not points or points[0] < 1 or points[-1] > 8:
        raise argparse.ArgumentTypeError(f"trained points are numbered 1..8, got {text!r}")
    return points


def cmd_train(args: argparse.Namespace) -> int:
    from lsic.codec.networks.train import TrainConfig, train

    cfg = TrainConfig(
        data=Path(args.data),
        out=Path(args.out),
        eval_data=Path(args.eval_data) if args.eval_data else None,
        N=args.N,
        M=args.M,
        hyper_widths=args.hyper_widths,
        points=args.points,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        checkpoint_minutes=args.checkpoint_minutes,
        eval_every=args.eval_every,
        threads=args.threads,
        device=args.device,
        init=Path(args.init) if args.init else None,
        qat=args.qat,
        bf16=args.bf16,
        widen_warmup=args.widen_warmup,
        refine_width=args.refine_width,
        decoder_only=args.decoder_only,
        distortion=args.distortion,
        context=args.context,
        context_only=args.context_only,
        entropy_only=args.entropy_only,
        log_every=args.log_every,
        compile=args.compile,
        channels_last={"auto": None, "on": True, "off": False}[args.channels_last],
        final_lr=args.final_lr,
        final_minutes=args.final_minutes,
    )
    stop = threading.Event()
    on_stop_signals(stop.set)  # Ctrl-C or SIGTERM: finish the step, save the checkpoint, exit
    train(cfg, stop)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from lsic.codec.networks.export import export_package

    notes = {"description": args.description} if args.description else None
    export_package(
        Path(args.checkpoint),
        Path(args.out),
        args.id,
        Path(args.calibration),
        notes,
        args.extrapolate_below,
        retire=not args.no_retire,
    )
    print(json.dumps({"package": args.out}))
    return 0


def cmd_requantize(args: argparse.Namespace) -> int:
    from lsic.codec.errors import UsageError
    from lsic.codec.networks.export import requantize_entropy, requantize_package

    if not args.calibration and not args.entropy:
        raise UsageError("say what to requantize: --calibration DIR (the int8 analysis), --entropy, or both")
    if args.calibration:
        requantize_package(Path(args.package), Path(args.calibration), retire=not args.no_retire)
    entropy = requantize_entropy(Path(args.package), retire=not args.no_retire) if args.entropy else False
    print(json.dumps({"package": args.package, "analysis": bool(args.calibration), "entropy": entropy}))
    return 0


def cmd_fit_temporal(args: argparse.Namespace) -> int:
    from lsic.codec.networks.temporal_fit import fit_package

    report = fit_package(Path(args.package), Path(args.data), args.pairs, args.qualities, args.seed, args.parts)
    print(json.dumps({"package": args.package, "temporal_prior": report}))
    return 0


def cmd_gpu(args: argparse.Namespace) -> int:
    from lsic.codec.networks import gpu_recipe

    if args.gpu_command == "pack":
        gpu_recipe.pack(Path(args.init), Path(args.data), Path(args.eval_data), Path(args.kodak), Path(args.out),
                        args.model)
    else:
        gpu_recipe.unpack(Path(args.returned), Path(args.run))
    return 0


def cmd_upgrade(args: argparse.Namespace) -> int:
    from lsic.codec.networks.export import upgrade_package

    changed = upgrade_package(Path(args.package))
    print(json.dumps({"package": args.package, "upgraded": changed}))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from lsic.codec.bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lsic", description="LSIC learned image codec: encode, decode, inspect, train, export, benchmark."
    )
    p.add_argument("--version", action="version", version=f"lsic {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("encode", help="encode an image to .lsic")
    e.add_argument("input", help="8-bit image (PNG, JPEG, ...); grayscale/RGBA are converted")
    e.add_argument("-o", "--output", help="output .lsic (default: input with .lsic)")
    e.add_argument("-q", "--quality", type=int, default=6, help="operating point 1..N, higher is better (default 6)")
    e.add_argument("-m", "--model", default="default", help="model package id or folder (default: default)")
    e.add_argument("--tile-size", type=int, default=256, help="tile size in pixels, multiple of 64 (default 256)")
    e.add_argument("--threads", type=whole_number(1, 256), default=2, help="ONNX Runtime threads (default 2)")
    e.add_argument(
        "--roi", type=roi_arg, action="append",
        help="region of interest x,y,w,h[:steps]: its 64x64 blocks coded STEPS qualities above --quality "
        "(default 3; fractions in quarters, e.g. 4.5); repeatable",
    )
    e.add_argument(
        "--quality-map", help="grey image, any size: brightness 0..255 sets quality 1..n block by block"
    )
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser("decode", help="decode .lsic to an image")
    d.add_argument("input")
    d.add_argument("-o", "--output", help="output image; format by extension (default: input with .png)")
    d.add_argument("--region", type=region_arg, help="decode only x,y,w,h (touches only the tiles it needs)")
    d.add_argument(
        "--backend",
        choices=["torch", "onnx"],
        help="synthesis backend (default: onnx, which starts fast; torch with --device cuda)",
    )
    d.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda (default auto)")
    d.add_argument("--threads", type=whole_number(0, 256), default=0, help="CPU threads (0: library default)")
    d.set_defaults(func=cmd_decode)

    i = sub.add_parser("info", help="print a .lsic header as JSON")
    i.add_argument("input")
    i.add_argument("--bits-map", metavar="OUT.png", help="draw the bits spent per 16x16 block (inferno colours)")
    i.add_argument("--tiles", action="store_true", help="include the tile table")
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("models", help="list installed model packages")
    m.add_argument("--json", action="store_true", help="everything, with paths, Kodak numbers and retired builds")
    m.set_defaults(func=cmd_models)

    t = sub.add_parser("train", help="train (or resume) a variable-rate model")
    t.add_argument("--data", required=True, help="folder of training images")
    t.add_argument("--out", required=True, help="run folder (checkpoint.pt, log.jsonl); resumes if present")
    t.add_argument("--eval-data", help="held-out image folder evaluated every --eval-every steps")
    t.add_argument("--N", type=whole_number(1), help="analysis/synthesis width (default: the resumed or --init network's, else 64)")
    t.add_argument("--M", type=whole_number(1), help="latent channels (default: the resumed or --init network's, else 96)")
    t.add_argument(
        "--hyper-widths",
        type=width_pair,
        help="hidden widths of the hyper-synthesis, e.g. 96,144 (default: M,3M/2; fix them to widen M cheaply)",
    )
    t.add_argument(
        "--points",
        type=point_list,
        help="train only these of the 8 trained operating points (1 = lowest rate), e.g. 1,2,3 (default: all)",
    )
    t.add_argument(
        "--distortion",
        choices=["mse", "ms-ssim"],
        help="what the loss minimizes: mse (lambda * 255^2 * MSE, CompressAI's MSE ladder) or ms-ssim "
        "(lambda * (1 - MS-SSIM), its MS-SSIM ladder; crops of 192 or more); default: the run's own, mse for a new run",
    )
    t.add_argument("--batch-size", type=whole_number(1), default=8)
    t.add_argument("--crop", type=whole_number(64, multiple=64), default=192, help="random crop size, multiple of 64")
    t.add_argument("--lr", type=number(0, above=True), default=2e-4)
    t.add_argument("--max-steps", type=whole_number(1), default=1_000_000)
    t.add_argument("--max-minutes", type=number(0), default=0.0, help="stop after this many minutes (0: no limit)")
    t.add_argument("--checkpoint-minutes", type=number(0, above=True), default=4.0)
    t.add_argument("--eval-every", type=whole_number(1), default=2000)
    t.add_argument(
        "--log-every", type=whole_number(1), default=100, help="steps between log lines (the only steps that wait for a GPU)"
    )
    t.add_argument(
        "--compile", action="store_true", help="torch.compile the transforms (worth it for long GPU runs)"
    )
    t.add_argument(
        "--channels-last", choices=["auto", "on", "off"], default="auto",
        help="NHWC activations (auto: on CUDA, where cuDNN's bfloat16 kernels want them)",
    )
    t.add_argument("--final-lr", type=number(0, above=True), help="learning rate of the last --final-minutes (needs --max-minutes)")
    t.add_argument("--final-minutes", type=number(0), default=0.0)
    t.add_argument("--threads", type=whole_number(1, 256), default=2)
    t.add_argument("--device", default="cpu", help="cpu or cuda")
    t.add_argument(
        "--init", help="start a new run from a model package folder (e.g. shared/models/default) or a checkpoint"
    )
    t.add_argument(
        "--qat",
        action="store_true",
        help="quantization-aware fine-tuning: g_a rounds where the int8 ONNX analysis rounds (kept on resume)",
    )
    t.add_argument(
        "--bf16",
        action="store_true",
        help="run the transforms in bfloat16 autocast (about 2x faster on CPUs with AVX512-BF16 and on GPUs); "
        "entropy models stay float32",
    )
    t.add_argument(
        "--widen-warmup",
        type=int,
        default=2000,
        help="after --init widens the latent (--M above the source's), hold the analysis and gains this "
        "many steps while synthesis and hyperprior learn to use the new channels",
    )
    t.add_argument(
        "--refine-width",
        type=int,
        help="give the cloud decoder a residual branch this wide (e.g. 48) beside g_s; with --init, it "
        "starts at zero, so training starts from the source's reconstructions",
    )
    t.add_argument(
        "--decoder-only",
        action="store_true",
        help="train only the synthesis (distortion in dB): the edge encoder, entropy models and bitstreams "
        "stay exactly as in --init (kept on resume)",
    )
    t.add_argument(
        "--context",
        choices=CONTEXT_KINDS,
        help="code y in two passes, the second with a checkerboard context over the first (a parallel "
        "context model); with --init from a package without one, it starts as that package (kept on resume)",
    )
    t.add_argument(
        "--context-only",
        action="store_true",
        help="train only the context (rate alone): the edge's analysis transform, the synthesis and the "
        "hyperprior stay exactly as in --init (kept on resume)",
    )
    t.add_argument(
        "--entropy-only",
        action="store_true",
        help="train only what sets probabilities (hyper-analysis, hyper-synthesis, z prior, context) on rate "
        "alone, over latents of the frozen analysis cut into tiles as the codec cuts them; the synthesis and "
        "the gains stay as in --init (kept on resume)",
    )
    t.set_defaults(func=cmd_train)

    x = sub.add_parser("export", help="export a checkpoint to a model package")
    x.add_argument("checkpoint")
    x.add_argument("--out", required=True, help="package folder to write")
    x.add_argument("--id", required=True, help="model id (e.g. default, lite)")
    x.add_argument("--calibration", required=True, help="image folder for int8 calibration")
    x.add_argument(
        "--no-retire",
        action="store_true",
        help="replace a different build already in --out outright (default: keep it decode-only in the models "
        "folder's retired/, so its bitstreams keep decoding)",
    )
    x.add_argument("--description", help="free text stored in model.json (what the model is for, its training data)")
    x.add_argument(
        "--extrapolate-below",
        type=count,
        default=0,
        help="operating points to add under the lowest trained one by continuing the gains' line "
        "(reaches ~0.1 bpp; marked in model.json's operating_points)",
    )
    x.set_defaults(func=cmd_export)

    u = sub.add_parser(
        "upgrade", help="bring a package's files up to this version (quality maps); networks and decoding unchanged"
    )
    u.add_argument("package")
    u.set_defaults(func=cmd_upgrade)

    r = sub.add_parser(
        "requantize",
        help="redo a package's int8 analysis from its fp32 analysis, or its integer entropy networks (no checkpoint)",
    )
    r.add_argument("package", help="package folder, e.g. shared/models/hq")
    r.add_argument("--calibration", help="image folder: redo the int8 analysis, calibrated on it")
    r.add_argument("--entropy", action="store_true", help="round the integer entropy networks to one digit per column")
    r.add_argument("--no-retire", action="store_true", help="replace the build outright instead of retiring it")
    r.set_defaults(func=cmd_requantize)

    ft = sub.add_parser(
        "fit-temporal",
        help="fit a package's temporal prior (predicted frames of fixed cameras) on rate alone, from still photos",
    )
    ft.add_argument("package", help="package folder, e.g. shared/models/default")
    ft.add_argument("--data", required=True, help="photos to make synthetic frame pairs from (a fifth held out)")
    ft.add_argument("--pairs", type=count, default=1200)
    ft.add_argument("--qualities", default="all", help="qualities the predicted frames are coded at (all, or e.g. 3,5,7)")
    ft.add_argument("--seed", type=int, default=0)
    ft.add_argument("--parts", default="y,z", help="y,z: fit both; z: keep the package's prior of y, fit z's tables")
    ft.set_defaults(func=cmd_fit_temporal)

    g = sub.add_parser("gpu", help="train on a borrowed GPU machine: pack what it needs, unpack what it returns")
    gsub = g.add_subparsers(dest="gpu_command", required=True)
    gp = gsub.add_parser("pack", help="write the two halves a GPU machine's calls carry (deploy/gpu/run.sh)")
    gp.add_argument(
        "--init",
        required=True,
        help="model package (e.g. shared/models/default), checkpoint, run folder, or folder of a returned split checkpoint",
    )
    gp.add_argument("--data", required=True, help="training images")
    gp.add_argument("--eval-data", required=True, help="held-out images (the first six travel)")
    gp.add_argument("--kodak", required=True, help="images for the GPU machine's `lsic bench decode`")
    gp.add_argument("--model", default="default", help="installed model the decode benchmark runs")
    gp.add_argument("--out", default=".gpu", help="folder to write (ignored by git)")
    gu = gsub.add_parser("unpack", help="join a returned checkpoint into a run folder that lsic train resumes")
    gu.add_argument("returned", help="folder holding checkpoint.weights.pt, checkpoint.adam.pt, log.jsonl")
    gu.add_argument("--run", required=True, help="run folder (its checkpoint.pt is replaced)")
    g.set_defaults(func=cmd_gpu)

    b = sub.add_parser("bench", help="benchmarks: rd, speed, tiling, fuzz, memory")
    from lsic.codec.bench import add_bench_arguments

    add_bench_arguments(b)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    return run_main("lsic", build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
