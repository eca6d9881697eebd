"""Export a trained checkpoint to a model package (see lsic.codec.package).

Writes: the analysis transform (g_a with the per-point gain, and h_a) as int8 ONNX, statically
quantized with ONNX Runtime and calibrated on training crops; the synthesis transform as fp32
ONNX (torch-free decoder) and as a torch state dict (GPU decoder); the integer tables (factorized
prior, Gaussian, integer hyper-synthesis, gains); and model.json with hashes and provenance.
"""

from __future__ import annotations

import copy
import json
import logging
import platform
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from compressai.layers import GDN
from torch import nn
from torch.nn import functional as F

from lsic.codec.entropy import int_hyper, tables
from lsic.codec.entropy.context import anchor_mask, anchor_taps, run_int_context
from lsic.codec.errors import LsicError, ModelError
from lsic.codec.image_io import read_folder
from lsic.codec.networks.history import History
from lsic.codec.networks.int8_layout import CALIBRATION_PERCENTILE, FLOAT_NODES
from lsic.codec.networks.model import DISTORTIONS, Architecture, GainedHyperprior
from lsic.codec.networks.operating_points import describe, extend_below
from lsic.codec.package import DECODE_FILES, FILES, RETIRED_DIR, load_package_dir, sha256_file

log = logging.getLogger("lsic.export")
FX = 1 << int_hyper.ACT_FRAC_BITS


class FastGDN(GDN):
    """GDN written with the ops ONNX Runtime runs fast: x*x, not Pow (measured: Pow alone took
    9% of the edge's analysis time), and one Div instead of Reciprocal and Mul. Same math."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        gamma = self.gamma_reparam(self.gamma).reshape(c, c, 1, 1)
        norm = F.conv2d(x * x, gamma, self.beta_reparam(self.beta))
        return x / torch.sqrt(norm)


class AnalysisGraph(nn.Module):
    """x (B,3,H,W) in [0,1], gain (1,M,1,1) -> y = g_a(x)*gain and z = h_a(y)."""

    def __init__(self, net: GainedHyperprior) -> None:
        super().__init__()
        self.g_a, self.h_a = copy.deepcopy(net.g_a), net.h_a
        for module in self.g_a.modules():
            if type(module) is GDN and not module.inverse:
                module.__class__ = FastGDN

    def forward(self, x: torch.Tensor, gain: torch.Tensor):
        y = self.g_a(x) * gain
        return y, self.h_a(y)


def load_checkpoint(path: Path) -> tuple[GainedHyperprior, dict]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    net = GainedHyperprior(Architecture.from_dict(state["arch"]))
    net.load_state_dict(state["state_dict"])
    net.update(force=True)
    net.eval()
    return net, state


def factorized_arrays(net: GainedHyperprior) -> dict[str, np.ndarray]:
    """Per-channel tables of z_int = round(z - median) from the learned factorized density."""
    eb = net.entropy_bottleneck
    q = eb.quantiles.detach()[:, 0, :].double()  # (C, 3): lower, median, upper
    medians = q[:, 1]
    medians_fx = torch.round(medians * FX)
    lo = torch.floor(q[:, 0] - medians).long()
    hi = torch.ceil(q[:, 2] - medians).long()
    pmfs, tails, origins = [], [], []
    with torch.no_grad():
        for c in range(q.shape[0]):
            v = torch.arange(int(lo[c]), int(hi[c]) + 1, dtype=torch.float32)
            values = (v + medians_fx[c].float() / FX).reshape(1, 1, -1).repeat(q.shape[0], 1, 1)
            lik = eb._likelihood(values)[0][c, 0].double().numpy()
            pmfs.append(lik)
            tails.append(max(1.0 - float(lik.sum()), 1e-9))
            origins.append(int(lo[c]))
    freqs, lengths = tables.factorized_tables(pmfs, tails)
    return {
        "z_freqs": freqs,
        "z_lengths": lengths,
        "z_origins": np.array(origins, dtype=np.int32),
        "z_medians_fx": medians_fx.long().numpy(),
    }


def _quantize_layer(
    weight: torch.Tensor, bias: torch.Tensor, transposed: bool, leaky: bool, taps: np.ndarray | None = None
) -> dict:
    """A float convolution -> integer layer arrays, its weights in the one-digit form (half the
    GEMM work of 11-bit weights; int_hyper.one_digit_layer). taps: the taps that are used."""
    w = weight.detach().double()
    if transposed:  # ConvTranspose2d (C_in, C_out, k, k) -> direct conv on zero-stuffed input
        w = w.flip(2, 3).transpose(0, 1)
    max_abs = float(w.abs().max())
    w_frac = min(16, int(np.floor(np.log2(((1 << int_hyper.WEIGHT_BITS) - 1) / max_abs))))
    upsample = 2 if transposed else 1
    w_int = torch.round(w * (1 << w_frac)).long().numpy()
    w_int = int_hyper.one_digit_layer(w_int, upsample, taps).astype(np.int32)
    b_int = torch.round(bias.detach().double() * (1 << (w_frac + int_hyper.ACT_FRAC_BITS))).long().numpy()
    layer = int_hyper.IntLayer(w_int, b_int, shift=w_frac, upsample=upsample, leaky=leaky)
    layer.check()
    return {"w": w_int, "b": b_int, "meta": np.array([w_frac, layer.upsample, int(leaky)], dtype=np.int64)}


def int_hyper_arrays(net: GainedHyperprior) -> dict[str, np.ndarray]:
    convs = [m for m in net.h_s if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    out = {}
    for i, m in enumerate(convs):
        q = _quantize_layer(m.weight, m.bias, isinstance(m, nn.ConvTranspose2d), leaky=i < len(convs) - 1)
        out.update({f"hs{i}_w": q["w"], f"hs{i}_b": q["b"], f"hs{i}_meta": q["meta"]})
    scales = tables.scale_table()
    out["scale_thresholds_fx"] = np.ceil(scales[:-1] * FX).astype(np.int64)
    out["y_freqs"], out["y_lengths"] = tables.gaussian_tables(scales)
    return out


def int_context_arrays(net: GainedHyperprior) -> dict[str, np.ndarray]:
    """The checkerboard context as integer layers "cx0".. (none for a network without one)."""
    if net.context is None:
        return {}
    convs = net.context.int_convs()
    out = {}
    for i, m in enumerate(convs):
        taps = anchor_taps(m.weight.shape[2]) if i == 0 else None  # layer 0 reads the anchors
        q = _quantize_layer(m.weight, m.bias, transposed=False, leaky=0 < i < len(convs) - 1, taps=taps)
        out.update({f"cx{i}_w": q["w"], f"cx{i}_b": q["b"], f"cx{i}_meta": q["meta"]})
    return out


def write_selftest(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Reference input/output of the integer hyper-synthesis (and context), computed on the
    export machine.

    Any machine that loads the package must reproduce the output bit for bit (tests check it).
    """
    rng = np.random.default_rng(2026)
    n = int(arrays["z_origins"].shape[0])
    z = rng.integers(-24, 25, size=(n, 3, 5)) * FX + arrays["z_medians_fx"][:, None, None]
    z[:, 0, 0] = int_hyper.ACT_LIMIT  # extremes exercise the clamps
    z[:, 0, 1] = -int_hyper.ACT_LIMIT
    out = int_hyper.run_int_hyper(z, int_hyper.layers_from_arrays(arrays))
    extra = {}
    context = int_hyper.layers_from_arrays(arrays, prefix="cx")
    if context:
        m = out.shape[0] // 2
        anchors = np.where(anchor_mask(*out.shape[1:]), rng.integers(-40, 41, size=(m, *out.shape[1:])) * FX, 0)
        anchors += np.where(anchor_mask(*out.shape[1:]), out[m:], 0)
        anchors[:, 0, 0] = int_hyper.ACT_LIMIT
        extra = {"ctx_anchors_fx": anchors, "ctx_output": run_int_context(out, anchors, context)}
    np.savez_compressed(path, z_fx=z, output=out, **extra)


def export_onnx(net: GainedHyperprior, folder: Path) -> None:
    m = net.arch.M
    x = torch.rand(1, 3, 256, 256)
    gain = torch.ones(1, m, 1, 1)
    torch.onnx.export(
        AnalysisGraph(net),
        (x, gain),
        str(folder / "analysis.fp32.onnx"),
        input_names=["x", "gain"],
        output_names=["y", "z"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={
            "x": {0: "b", 2: "h", 3: "w"},
            "gain": {2: "gh", 3: "gw"},  # (1, M, 1, 1) for one quality, (1, M, h16, w16) for a quality map
            "y": {0: "b", 2: "h16", 3: "w16"},
            "z": {0: "b", 2: "h64", 3: "w64"},
        },
    )
    y = torch.rand(1, m, 16, 16)
    torch.onnx.export(
        net.synthesis(),
        (y,),
        str(folder / "synthesis.fp32.onnx"),
        input_names=["y_hat"],
        output_names=["x_hat"],
        opset_version=17,
        dynamo=False,
        dynamic_axes={"y_hat": {0: "b", 2: "h", 3: "w"}, "x_hat": {0: "b", 2: "H", 3: "W"}},
    )




def quantize_analysis(folder: Path, calib_images: list[np.ndarray], gains: np.ndarray, n: int = 48) -> None:
    """Static int8 quantization (QDQ, per-channel weights), percentile-calibrated on training crops.

    Weights use 7 bits (reduce_range): on x86 CPUs without VNNI (AVX2, AVX-512F) ONNX Runtime's
    u8s8 convolution sums pairs of products in saturating 16-bit lanes (VPMADDUBSW), which with
    8-bit weights clipped g_a's sums and cost 57-128% BD-rate on an AVX2 host;
    7-bit weights cannot overflow there and cost nothing measurable elsewhere.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    rng = random.Random(0)
    feeds = []
    for i in range(n):
        img = calib_images[rng.randrange(len(calib_images))]
        h, w = img.shape[:2]
        yy, xx = rng.randrange(h - 255), rng.randrange(w - 255)
        x = img[yy : yy + 256, xx : xx + 256].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        feeds.append({"x": x, "gain": gains[i % len(gains)][None, :, None, None].astype(np.float32)})

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self):
            return next(self.it, None)

    pre = folder / "analysis.pre.onnx"
    quant_pre_process(str(folder / "analysis.fp32.onnx"), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(folder / "analysis.int8.onnx"),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        op_types_to_quantize=["Conv"],
        nodes_to_exclude=FLOAT_NODES,
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"CalibPercentile": CALIBRATION_PERCENTILE},
    )
    pre.unlink()


def export_package(
    checkpoint: Path,
    out: Path,
    model_id: str,
    calib_dir: Path,
    notes: dict | None = None,
    extrapolate_below: int = 0,
    retire: bool = True,
) -> Path:
    """Checkpoint -> package folder `out` (replaced atomically when complete).

    extrapolate_below: operating points added under the lowest trained one (operating_points).
    retire: a different build already in `out` is kept decode-only (retire_build) first.
    """
    net, state = load_checkpoint(checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        export_onnx(net, tmp)
        log_gains, positions = extend_below(net.log_gain.detach().numpy(), extrapolate_below)
        log_inv_gains, _ = extend_below(net.log_inv_gain.detach().numpy(), extrapolate_below)
        gains = np.exp(log_gains)
        quantize_analysis(tmp, read_folder(calib_dir, 256), gains)
        # The whole float network: the GPU decoder takes g_s from it, and training can resume
        # from a package on a machine that has no checkpoint (`lsic train --init`).
        torch.save(state["state_dict"], tmp / "network.pt")
        arrays = {**factorized_arrays(net), **int_hyper_arrays(net), **int_context_arrays(net)}
        arrays["gain"] = gains.astype(np.float32)
        arrays["inv_gain"] = np.exp(log_inv_gains).astype(np.float32)
        np.savez_compressed(tmp / "tables.npz", **arrays)
        write_selftest(tmp / "selftest.npz", arrays)
        distortion = History.from_record(state).distortion
        lambdas = DISTORTIONS[distortion][: net.arch.n_rates]
        meta = {
            "id": model_id,
            "format": 1,
            "architecture": {**net.arch.to_dict(), "family": "gained-mean-scale-hyperprior"},
            "distortion": distortion,
            "lambdas": list(lambdas),
            "operating_points": describe(positions, list(lambdas)),
            "training": {
                **History.from_record(state).to_model_json(),
                "data": str(state["config"].get("data", "")),
                "crop": state["config"].get("crop"),
                "batch_size": state["config"].get("batch_size"),
            },
            "int8_analysis": {
                "float_nodes": FLOAT_NODES,
                "calibration": f"percentile {CALIBRATION_PERCENTILE}, 48 random 256x256 training crops",
                "weights": "7-bit (reduce_range)",
            },
            "exported": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "exported_on": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}".strip(),
            "files": {name: sha256_file(tmp / name) for name in FILES},
            **(notes or {}),
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        install_package(tmp, out, retire)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s (step %d) to %s", model_id, state["step"], out)
    return out


def install_package(tmp: Path, out: Path, retire: bool) -> None:
    """Verify the package written in `tmp` and move it to `out`, retiring the build it replaces."""
    new = load_package_dir(tmp)  # verify before replacing
    if out.exists():
        if retire and (out / "model.json").is_file():
            retire_build(out, new.hash)
        shutil.rmtree(out)
    tmp.chmod(0o755)  # mkdtemp makes it private; a package is read by every user
    tmp.rename(out)


def rewrite_package(root: Path, rewrite: Callable[[Path, dict], bool], retire: bool) -> bool:
    """Rebuild the package in `root` as a new build: its files copied to a folder beside it,
    `rewrite(folder, meta)` changes some of them and model.json's fields, then the hashes are
    taken again and the result replaces `root` (install_package). False, with `root` untouched,
    when `rewrite` says nothing changed."""
    tmp = Path(tempfile.mkdtemp(prefix=".rewrite-", dir=root.parent))
    try:
        for name in FILES:
            shutil.copy2(root / name, tmp / name)
        meta = json.loads((root / "model.json").read_text())
        if not rewrite(tmp, meta):
            return False
        meta["files"] = {name: sha256_file(tmp / name) for name in FILES}
        (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        install_package(tmp, root, retire)
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def requantize_package(root: Path, calib_dir: Path, retire: bool = True) -> Path:
    """Redo a package's int8 analysis from its own fp32 analysis, with this exporter's settings.

    For packages exported with older quantization settings (8-bit weights): no checkpoint
    is needed, the networks and tables stay as they are, and the build it replaces is retired so
    the bitstreams it wrote keep decoding.
    """
    root = Path(root)
    old = load_package_dir(root)  # a clear ModelError for a missing or damaged package
    if old.decode_only:
        raise ModelError(f"{root}: a retired build has no analysis to requantize")

    def rewrite(tmp: Path, meta: dict) -> bool:
        gains = np.load(tmp / "tables.npz")["gain"]
        quantize_analysis(tmp, read_folder(calib_dir, 256), gains)
        meta["int8_analysis"] = {
            **meta.get("int8_analysis", {}),
            "float_nodes": FLOAT_NODES,
            "weights": "7-bit (reduce_range)",
            "requantized": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return True

    rewrite_package(root, rewrite, retire)
    log.info("requantized the int8 analysis of %s", root)
    return root


def one_digit_entropy_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A package's integer hyper-synthesis and context weights in the one-digit form, rounded
    from the integers they are (the other arrays as they are)."""
    out = dict(arrays)
    for prefix in ("hs", "cx"):
        for i, layer in enumerate(int_hyper.layers_from_arrays(arrays, prefix)):
            taps = anchor_taps(layer.weight.shape[2]) if prefix == "cx" and i == 0 else None
            w = int_hyper.one_digit_layer(arrays[f"{prefix}{i}_w"], layer.upsample, taps)
            out[f"{prefix}{i}_w"] = w.astype(arrays[f"{prefix}{i}_w"].dtype)
    return out


def requantize_entropy(root: Path, retire: bool = True) -> bool:
    """Round a package's integer entropy networks to the one-digit form (half the 8-bit products:
    1.3-1.5 times the entropy path's speed for about 0.2% of rate; docs/benchmarks.md).
    The tables change, so the build it replaces is retired to keep its bitstreams decoding.
    False when they are in that form already."""
    root = Path(root)
    old = load_package_dir(root)
    if old.decode_only:
        raise ModelError(f"{root}: a retired build is not requantized")
    arrays = old.arrays
    new = one_digit_entropy_arrays(arrays)
    if all(np.array_equal(new[k], arrays[k]) for k in arrays):
        return False

    def rewrite(tmp: Path, meta: dict) -> bool:
        np.savez_compressed(tmp / "tables.npz", **new)
        write_selftest(tmp / "selftest.npz", new)
        meta["entropy_networks"] = {
            "weights": "one digit per GEMM column: an integer factor times digits of at most 64",
            "requantized": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        # The builds this one decoded as its own now decode through the retired copy, which
        # keeps the tables they were coded with.
        meta.pop("decodes_builds", None)
        return True

    rewrite_package(root, rewrite, retire)
    log.info("requantized the integer entropy networks of %s", root)
    return True


def allow_gain_maps(path: Path) -> bool:
    """Let an analysis graph take a gain per latent position, (1, M, h16, w16), as well as one
    per channel: its gain input's last two dimensions become free. The arithmetic is unchanged
    (an element-wise product). False when the graph already takes them."""
    import onnx

    model = onnx.load(str(path))
    (gain,) = [i for i in model.graph.input if i.name == "gain"]
    dims = gain.type.tensor_type.shape.dim
    if dims[2].dim_param and dims[3].dim_param:
        return False
    for d, name in ((dims[2], "gh"), (dims[3], "gw")):
        d.ClearField("dim_value")
        d.dim_param = name
    onnx.save(model, str(path))
    return True


def upgrade_package(root: Path) -> bool:
    """Bring a package's files to what this version's encoder uses (gain maps in the analysis),
    its networks and tables as they are. The result is a new build whose decoding is the old
    one's to the bit (same synthesis, same tables), so model.json lists the old build as one it
    decodes (`decodes_builds`) instead of keeping a retired copy. False when nothing changed."""
    old = load_package_dir(root)
    if old.decode_only:
        raise ModelError(f"{root}: a retired build is not upgraded")

    def rewrite(tmp: Path, meta: dict) -> bool:
        changed = [allow_gain_maps(tmp / name) for name in ("analysis.fp32.onnx", "analysis.int8.onnx")]
        meta["decodes_builds"] = [*meta.get("decodes_builds", []), old.hash.hex()]
        meta["upgraded"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return any(changed)

    if not rewrite_package(root, rewrite, retire=False):
        return False
    log.info("upgraded %s: its analysis takes quality maps", root)
    return True


def retire_build(root: Path, successor: bytes | None = None) -> Path | None:
    """Keep the package in `root`, about to be replaced, as a decode-only build in the models
    folder's retired/<id>-<hash16>: its tables, selftest, ONNX synthesis and the synthesis's
    torch weights (a few MB), so the bitstreams it wrote keep decoding. Returns the folder, or
    None when there was nothing to keep (a damaged package, or the same build again).
    """
    try:
        old = load_package_dir(root)
    except LsicError as exc:
        log.warning("not retiring %s: %s", root, exc)
        return None
    if old.decode_only or old.hash == successor:
        return None
    dest = root.parent / RETIRED_DIR / f"{old.id}-{old.hash.hex()[:16]}"
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".retire-", dir=dest.parent))
    try:
        for name in DECODE_FILES:
            if name != "network.pt":
                shutil.copy2(root / name, tmp / name)
        weights = torch.load(root / "network.pt", map_location="cpu", weights_only=True)
        torch.save({k: v for k, v in weights.items() if k.startswith(("g_s.", "g_s_refine."))}, tmp / "network.pt")
        meta = dict(old.meta)
        meta["retired"] = {
            "files": {name: sha256_file(tmp / name) for name in DECODE_FILES},
            "retired_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "successor": successor.hex()[:16] if successor else None,
        }
        (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        load_package_dir(tmp)  # verify: decodes with the hash its bitstreams carry
        tmp.chmod(0o755)  # mkdtemp makes it private; a package is read by every user
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("kept the previous build of %s (%s) decode-only in %s", old.id, old.hash.hex()[:16], dest)
    return dest
