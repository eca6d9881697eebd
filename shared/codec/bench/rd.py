"""`lsic bench rd`: rate-distortion of every LSIC package and operating point against JPEG
(libjpeg-turbo 4:2:0, optimized Huffman tables), WebP (method 6), AVIF (aom, speed 6) and JPEG XL
(effort 7), measured in the same run on the same images.

Rate is bits per pixel of the whole file; distortion is RGB PSNR and RGB MS-SSIM, averaged
over images as CompressAI does. BD-rates integrate a piecewise-cubic (PCHIP) interpolation of
log-rate over the PSNR range both curves cover, as the `bjontegaard` package computes it.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import time
from pathlib import Path

import numpy as np

from lsic.codec.image_io import list_images, read_rgb
from lsic.codec.metrics import ms_ssim, psnr

BASELINES = {
    "JPEG": ("JPEG", [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
    "WebP": ("WEBP", [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]),
    "AVIF": ("AVIF", [10, 20, 30, 40, 50, 60, 70, 80, 90]),
    "JPEG XL": ("JXL", [10, 20, 30, 40, 50, 60, 70, 80, 90]),
}
# The settings every comparison names, given explicitly: Pillow's own defaults are WebP method 4
# and unoptimized JPEG Huffman tables, both weaker than what users of those codecs run.
ENCODER_OPTIONS = {
    "JPEG": {"subsampling": 2, "optimize": True},  # 4:2:0
    "WEBP": {"method": 6},
    "AVIF": {"speed": 6},
    "JXL": {"effort": 7},
}


def pil_encode(fmt: str, rgb: np.ndarray, quality: int) -> bytes:
    """A baseline codec's file through Pillow with the settings of ENCODER_OPTIONS."""
    from PIL import Image

    if fmt == "AVIF":
        import pillow_avif  # noqa: F401
    if fmt == "JXL":
        import pillow_jxl  # noqa: F401
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, quality=quality, **ENCODER_OPTIONS[fmt])
    return buf.getvalue()


def pil_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def pil_codec(fmt: str, rgb: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    """(file size, decoded image) of a baseline codec."""
    data = pil_encode(fmt, rgb, quality)
    return len(data), pil_decode(data)


BD_INTERPOLATION = "pchip"  # piecewise cubic, recorded with the numbers in model.json


def bd_rate(r1: list[float], d1: list[float], r2: list[float], d2: list[float]) -> float:
    """Bjøntegaard delta rate (%) of curve 2 against curve 1 (negative: curve 2 saves bits).

    Piecewise-cubic (PCHIP) interpolation: a single cubic fitted through ten points swings
    where a curve flattens, and a learned codec's curve flattens at its top qualities. NaN
    where the curves share no distortion range or a curve's distortion is not increasing.
    """
    import bjontegaard

    curves = []
    for r, d in ((r1, d1), (r2, d2)):
        order = np.argsort(d)
        rate, dist = np.asarray(r, float)[order], np.asarray(d, float)[order]
        if len(dist) < 2 or np.any(np.diff(dist) <= 0):
            return float("nan")
        curves += [rate, dist]
    lo, hi = max(curves[1][0], curves[3][0]), min(curves[1][-1], curves[3][-1])
    if hi <= lo:
        return float("nan")
    return float(bjontegaard.bd_rate(*curves, method=BD_INTERPOLATION, require_matching_points=False, min_overlap=0))


def mean_curve(points: list[dict]) -> dict:
    return {k: [float(np.mean([p[k] for p in row])) for row in points] for k in ("bpp", "psnr-rgb", "ms-ssim-rgb")}


def measure(images: list[np.ndarray], coder, settings, with_msssim: bool) -> tuple[dict, list]:
    per_setting = []
    for s in settings:
        row = []
        for img in images:
            nbytes, out = coder(img, s)
            row.append(
                {
                    "bpp": 8.0 * nbytes / (img.shape[0] * img.shape[1]),
                    "psnr-rgb": psnr(out, img),
                    "ms-ssim-rgb": ms_ssim(out, img) if with_msssim else float("nan"),
                }
            )
        per_setting.append(row)
    return mean_curve(per_setting), per_setting


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="image folder (e.g. ../shared/data/eval/kodak)")
    p.add_argument("--models", default="all", help="comma-separated package ids (default: all installed)")
    p.add_argument("--baselines", default="JPEG,WebP,AVIF,JPEG XL")
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--precision", default="int8", help="analysis precisions to measure: int8, fp32 or int8,fp32")
    p.add_argument("--no-msssim", action="store_true")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images")
    p.add_argument("--out", default="docs/benchmarks/rd", help="folder for JSON results and the plot")
    p.add_argument(
        "--update-model-json", action="store_true", help="write the Kodak numbers into each package's model.json"
    )


def baseline_names(spec: str) -> list[str]:
    """Comma-separated baseline names, in any case ("webp", "jpeg xl") -> BASELINES' keys."""
    from lsic.codec.errors import UsageError

    known = {k.lower(): k for k in BASELINES}
    names = [b.strip() for b in spec.split(",") if b.strip()]
    unknown = [b for b in names if b.lower() not in known]
    if unknown:
        raise UsageError(f"unknown baseline {', '.join(unknown)}; known: {', '.join(BASELINES)}")
    return [known[b.lower()] for b in names]


def run(args: argparse.Namespace) -> int:
    from lsic.codec.decoder import Decoder
    from lsic.codec.encoder import Encoder
    from lsic.codec.package import available_models, load_package

    baselines = baseline_names(args.baselines)
    files = list_images(Path(args.data))[: args.limit or None]
    images = [read_rgb(f) for f in files]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    curves: dict[str, dict] = {}
    started = time.time()
    for name in baselines:
        fmt, qualities = BASELINES[name]
        curves[name], _ = measure(images, lambda img, q, fmt=fmt: pil_codec(fmt, img, q), qualities, not args.no_msssim)
        print(f"{name}: done ({time.time() - started:.0f}s)", flush=True)
    models = available_models() if args.models == "all" else args.models.split(",")
    decoder = Decoder(backend="auto")
    for mid in models:
        pkg = load_package(mid)
        for precision in args.precision.split(","):
            enc = Encoder(pkg, precision=precision)

            def coder(img, q, enc=enc):
                data = enc.encode(img, q, args.tile_size)
                return len(data), decoder.decode(data).rgb

            label = f"LSIC {mid}" + ("" if precision == "int8" else f" ({precision} analysis)")
            curves[label], _ = measure(images, coder, range(1, pkg.n_rates + 1), not args.no_msssim)
            print(f"{label}: done ({time.time() - started:.0f}s)", flush=True)
            first = first_trained(pkg.meta)
            if precision == "int8" and first:
                curves[label + TRAINED_SUFFIX] = {k: v[first:] for k, v in curves[label].items()}
    for label, c in curves.items():
        if label.endswith(TRAINED_SUFFIX):
            continue  # a slice of the curve above it, for the BD-rate table only
        slug = label.lower().replace(" ", "-").replace("(", "").replace(")", "")
        (out / f"{slug}.json").write_text(
            json.dumps({"name": label, "description": f"{len(images)} images of {args.data}", "results": c}, indent=2)
            + "\n"
        )
    table = bd_table(curves)
    (out / "bd-rate.md").write_text(table)
    print(table)
    plot(curves, out / "rd.png", len(images))
    if args.update_model_json:
        update_model_json(curves, models, len(images))
    return 0


FP32_SUFFIX = " (fp32 analysis)"
# The same curve without the points extrapolated below the trained range: BD-rate integrates over
# the PSNR range two curves share, so extending the range alone moves it; this row shows how much.
TRAINED_SUFFIX = " (trained points only)"


def first_trained(meta: dict) -> int:
    """Index of a package's lowest trained operating point (0 when none is extrapolated)."""
    return sum(1 for p in meta.get("operating_points", []) if not p.get("trained", True))


def int8_costs(curves: dict[str, dict]) -> dict[str, dict[str, float]]:
    """BD-rate of each int8 LSIC curve directly against its own fp32-analysis curve."""
    out = {}
    for label, c in curves.items():
        ref = curves.get(label + FP32_SUFFIX)
        if label.startswith("LSIC") and ref is not None:
            out[label] = {
                m: bd_rate(ref["bpp"], ref[m], c["bpp"], c[m]) if not any(map(math.isnan, c[m] + ref[m])) else math.nan
                for m in ("psnr-rgb", "ms-ssim-rgb")
            }
    return out


# The shipped default package is a reference column too: the other packages are read against it.
DEFAULT_LABEL = "LSIC default"


def bd_table(curves: dict[str, dict]) -> str:
    baselines = [b for b in ("JPEG", "WebP", "AVIF", "JPEG XL", DEFAULT_LABEL) if b in curves]
    lines = []
    for metric in ("psnr-rgb", "ms-ssim-rgb"):
        lines.append(f"\nBD-rate (%) on {metric}, negative = fewer bits than the baseline\n")
        lines.append("| codec | " + " | ".join(f"vs {b}" for b in baselines) + " |")
        lines.append("|---|" + "---|" * len(baselines))
        for label, c in curves.items():
            cells = []
            for b in baselines:
                if b == label or any(math.isnan(v) for v in c[metric]):
                    cells.append("—")
                    continue
                d = curves[b]
                cells.append(f"{bd_rate(d['bpp'], d[metric], c['bpp'], c[metric]):+.1f}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    costs = int8_costs(curves)
    if costs:
        lines.append("\nint8 analysis against the fp32 analysis, BD-rate (%) of the same package\n")
        lines.append("| codec | PSNR | MS-SSIM |\n|---|---|---|")
        lines += [f"| {k} | {v['psnr-rgb']:+.2f} | {v['ms-ssim-rgb']:+.2f} |" for k, v in costs.items()]
    lines.append("\nMean bpp / PSNR (dB) per operating point\n")
    for label, c in curves.items():
        pts = ", ".join(f"{b:.3f}/{p:.2f}" for b, p in zip(c["bpp"], c["psnr-rgb"], strict=True))
        lines.append(f"- {label}: {pts}")
    return "\n".join(lines) + "\n"


def plot(curves: dict[str, dict], path: Path, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for label, c in curves.items():
        if label.endswith(TRAINED_SUFFIX):
            continue
        ax.plot(c["bpp"], c["psnr-rgb"], marker="o", ms=3, label=label, lw=2.5 if label.startswith("LSIC") else 1.2)
    ax.set_xlabel("bits per pixel (whole file)")
    ax.set_ylabel("RGB PSNR (dB)")
    ax.set_xlim(0, 2.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")  # the empty corner: LSIC curves end lower right
    ax.set_title(f"Rate-distortion, {n} images")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def bd_psnr_vs_baselines(curves: dict[str, dict], c: dict) -> dict[str, float]:
    """BD-rate (%, PSNR) of curve c against each baseline measured in the same run."""
    return {
        b: round(bd_rate(curves[b]["bpp"], curves[b]["psnr-rgb"], c["bpp"], c["psnr-rgb"]), 2)
        for b in ("JPEG", "WebP", "AVIF", "JPEG XL")
        if b in curves
    }


def update_model_json(curves: dict[str, dict], models: list[str], n: int) -> None:
    from lsic.codec.package import load_package

    for mid in models:
        c = curves.get(f"LSIC {mid}")
        if not c:
            continue
        pkg = load_package(mid)
        meta = json.loads((pkg.root / "model.json").read_text())
        meta["kodak"] = {
            "images": n,
            "bpp": [round(v, 4) for v in c["bpp"]],
            "psnr_rgb": [round(v, 3) for v in c["psnr-rgb"]],
            "ms_ssim_rgb": [round(v, 5) for v in c["ms-ssim-rgb"]],
            "bd_rate_psnr_vs": bd_psnr_vs_baselines(curves, c),
            "bd_rate_interpolation": BD_INTERPOLATION,
        }
        trained = curves.get(f"LSIC {mid}{TRAINED_SUFFIX}")
        if trained:
            meta["kodak"]["bd_rate_psnr_vs_trained_points_only"] = bd_psnr_vs_baselines(curves, trained)
        cost = int8_costs(curves).get(f"LSIC {mid}")
        if cost:
            meta["kodak"]["int8_vs_fp32_bd_rate_psnr"] = round(cost["psnr-rgb"], 2)
        (pkg.root / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
