"""`lsic train` then `lsic export` as a user runs them: a tiny model trains, resumes with a new
learning rate, fine-tunes quantization-aware (in bfloat16 mixed precision), exports to a package, and that package encodes and
decodes through the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import pytest
from skimage import data

pytestmark = [pytest.mark.torch, pytest.mark.slow]
LSIC = [sys.executable, "-m", "lsic.codec.cli"]


def run(*args, env=None):
    r = subprocess.run([*LSIC, *map(str, args)], capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR))
    return folder


def test_train_resume_export_and_use_the_package(photos, tmp_path):
    run_dir = tmp_path / "run"
    common = ["train", "--data", photos, "--out", run_dir, "--N", 16, "--M", 16, "--batch-size", 2, "--crop", 64]
    run(*common, "--max-steps", 30, "--eval-data", photos, "--eval-every", 20)
    run(*common, "--max-steps", 40, "--lr", "5e-5")
    run(*common, "--max-steps", 60, "--lr", "5e-5", "--qat", "--bf16", "--eval-data", photos, "--eval-every", 20)
    resumed = run(*common, "--max-steps", 65, "--lr", "5e-5", "--points", "7,8")
    assert "quantization-aware" in resumed.stderr, "a quantization-aware run stays so when resumed without --qat"
    assert "training operating points 7,8 only" in resumed.stderr

    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert any("eval" in r and len(r["eval"]) == 8 for r in rows), "held-out evaluation per operating point"
    curve = run("bench", "curve", "--log", run_dir / "log.jsonl", "--out", tmp_path / "curve.png").stdout
    assert "| 20 |" in curve and "5e-05 QAT" in curve, "the learning curve shows the lr step and the QAT phase"
    assert (tmp_path / "curve.png").stat().st_size > 0

    models = tmp_path / "models"
    run(
        "export",
        run_dir / "checkpoint.pt",
        "--out",
        models / "tiny",
        "--id",
        "tiny",
        "--calibration",
        photos,
        "--extrapolate-below",
        2,
    )
    meta = json.loads((models / "tiny" / "model.json").read_text())
    points = meta["operating_points"]
    assert [p["trained"] for p in points] == [False, False] + [True] * 8, "two points extrapolated below the 8 trained"
    assert points[0]["lambda"] is None and points[2]["lambda"] == meta["lambdas"][0]
    assert meta["training"]["steps"] == 65, "resumed from its checkpoint, not restarted"
    assert meta["training"]["lr_schedule"] == [[0, 2e-4], [30, 5e-5]]
    assert meta["training"]["qat_from_step"] == 40
    assert meta["training"]["bf16_steps"] == 20, "mixed-precision steps are recorded"
    assert (models / "tiny" / "analysis.int8.onnx").is_file()

    env = {**os.environ, "LSIC_MODELS": str(models)}
    assert "tiny" in run("models", env=env).stdout
    coded, out = tmp_path / "a.lsic", tmp_path / "a.png"
    sizes = {}
    for quality in (1, 3):  # an extrapolated point, the lowest trained one
        run("encode", photos / "coffee.png", "-o", coded, "--model", "tiny", "--quality", quality, env=env)
        sizes[quality] = coded.stat().st_size
    assert sizes[1] < sizes[3], "the extrapolated point codes at a lower rate than any trained one"
    run("encode", photos / "coffee.png", "-o", coded, "--model", "tiny", "--quality", 10, env=env)
    assert json.loads(run("info", coded, env=env).stdout)["model_id"] == "tiny"
    run("decode", coded, "-o", out, "--backend", "onnx", env=env)
    assert cv2.imread(str(out)).shape == (400, 600, 3)


def test_interrupted_training_saves_its_checkpoint(photos, tmp_path):
    """Ctrl-C (SIGINT) or SIGTERM ends the run at the next step with the checkpoint saved."""
    run_dir = tmp_path / "run"
    args = ["train", "--data", photos, "--out", run_dir, "--N", 16, "--M", 16, "--batch-size", 2, "--crop", 64]
    proc = subprocess.Popen([*LSIC, *map(str, args)], stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the loop starts right after this line
        if "training on" in line:
            break
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 0, rest[-3000:]
    assert "stop requested" in rest
    import torch

    state = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    assert state["step"] > 0, "the steps trained before the signal are kept"


def test_decoder_only_training_keeps_the_edge_bitstream(photos, tmp_path):
    """A heavier cloud decoder (`--refine-width`, `--decoder-only`) trained from a package: the
    edge writes the same bits as before, and the new package decodes them better."""
    from lsic.codec.bitstream import parse
    from lsic.codec.metrics import psnr

    models = tmp_path / "models"
    tiny = ["--data", photos, "--N", 16, "--M", 16, "--batch-size", 2, "--crop", 64]
    run("train", *tiny, "--out", tmp_path / "base", "--max-steps", 20)
    run(
        "export", tmp_path / "base" / "checkpoint.pt", "--out", models / "base", "--id", "base", "--calibration", photos
    )
    refine = ["train", *tiny, "--out", tmp_path / "dec", "--init", models / "base", "--lr", "1e-3"]
    first = run(*refine, "--refine-width", 8, "--decoder-only", "--max-steps", 40)
    assert "decoder only: the synthesis trains alone since step 20" in first.stderr
    resumed = run(*refine, "--refine-width", 8, "--max-steps", 60)
    assert "decoder only" in resumed.stderr, "a decoder-only run stays so when resumed without the flag"
    run("export", tmp_path / "dec" / "checkpoint.pt", "--out", models / "dec", "--id", "dec", "--calibration", photos)
    meta = json.loads((models / "dec" / "model.json").read_text())
    assert meta["architecture"]["refine_width"] == 8
    assert meta["training"]["decoder_only_from_step"] == 20 and meta["training"]["steps"] == 60

    env = {**os.environ, "LSIC_MODELS": str(models)}
    source = cv2.cvtColor(cv2.imread(str(photos / "coffee.png")), cv2.COLOR_BGR2RGB)
    payloads, quality = {}, {}
    for model in ("base", "dec"):
        coded = tmp_path / f"{model}.lsic"
        run("encode", photos / "coffee.png", "-o", coded, "--model", model, "--quality", 4, env=env)
        parsed = parse(coded.read_bytes())
        payloads[model] = [parsed.tile_payload(i) for i in range(len(parsed.lengths))]
        decoded = {}
        for backend in ("torch", "onnx"):
            out = tmp_path / f"{model}-{backend}.png"
            run("decode", coded, "-o", out, "--backend", backend, env=env)
            decoded[backend] = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
        assert psnr(decoded["torch"], decoded["onnx"]) > 45, "the branch is in both the torch and the ONNX decoder"
        quality[model] = psnr(source, decoded["torch"])
    assert payloads["dec"] == payloads["base"], "the edge's entropy-coded tiles are bit-identical"
    assert quality["dec"] > quality["base"] + 0.1, quality


def test_context_only_training_keeps_the_edge_analysis_and_codes_in_two_passes(photos, tmp_path, monkeypatch):
    """A checkerboard context added to a package (`--context checkerboard --context-only`): the
    int8 analysis is the package's own, the run stays context-only on resume, and the new
    package's two-pass bitstreams decode the same in this process, with torch and with ONNX."""
    from lsic.codec.decoder import Decoder
    from lsic.codec.encoder import Encoder
    from lsic.codec.entropy.latents import coding_passes
    from lsic.codec.metrics import psnr
    from lsic.codec.package import load_package

    models = tmp_path / "models"
    tiny = ["--data", photos, "--N", 16, "--M", 16, "--batch-size", 2, "--crop", 64]
    run("train", *tiny, "--out", tmp_path / "base", "--max-steps", 20)
    run("export", tmp_path / "base" / "checkpoint.pt", "--out", models / "base", "--id", "base", "--calibration", photos)
    ctx = ["train", *tiny, "--out", tmp_path / "ctx", "--init", models / "base", "--lr", "1e-3"]
    first = run(*ctx, "--context", "checkerboard", "--context-only", "--max-steps", 40)
    assert "context only: the checkerboard context trains alone since step 20" in first.stderr
    resumed = run(*ctx, "--max-steps", 50)
    assert "context only" in resumed.stderr, "a context-only run stays so when resumed without the flags"
    joint = run("train", *tiny, "--out", tmp_path / "joint", "--init", tmp_path / "ctx" / "checkpoint.pt", "--max-steps", 52)
    assert "context only" not in joint.stderr, "a new run from a context-only checkpoint trains the whole network"
    assert "context: " not in joint.stderr, "and keeps the context it starts from"
    run("export", tmp_path / "ctx" / "checkpoint.pt", "--out", models / "ctx", "--id", "ctx", "--calibration", photos)
    meta = json.loads((models / "ctx" / "model.json").read_text())
    assert meta["architecture"]["context"] == "checkerboard"
    assert meta["training"]["context_only_from_step"] == 20 and meta["training"]["steps"] == 50
    base_meta = json.loads((models / "base" / "model.json").read_text())
    assert meta["files"]["analysis.int8.onnx"] == base_meta["files"]["analysis.int8.onnx"], "same edge analysis"

    monkeypatch.setenv("LSIC_MODELS", str(models))
    pkg = load_package(models / "ctx")
    assert len(pkg.context_layers) == 4 and len(coding_passes(pkg, 4, 4)) == 2
    assert not load_package(models / "base").context_layers
    source = cv2.cvtColor(cv2.imread(str(photos / "coffee.png")), cv2.COLOR_BGR2RGB)
    data = Encoder(pkg).encode(source, quality=5)
    decoded = {b: Decoder(backend=b).decode(data).rgb for b in ("torch", "onnx")}
    assert psnr(decoded["torch"], decoded["onnx"]) > 45
    base = Decoder(backend="torch").decode(Encoder("base").encode(source, quality=5)).rgb
    assert abs(psnr(source, decoded["torch"]) - psnr(source, base)) < 0.5, "same analysis, same synthesis"
    env = {**os.environ, "LSIC_MODELS": str(models)}
    coded, out = tmp_path / "c.lsic", tmp_path / "c.png"
    run("encode", photos / "coffee.png", "-o", coded, "--model", "ctx", "--quality", 5, env=env)
    run("decode", coded, "-o", out, "--backend", "torch", env=env)
    assert psnr(decoded["torch"], cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)) > 45, "the CLI agrees"


def test_entropy_only_training_lowers_the_rate_and_keeps_the_synthesis(photos, tmp_path, monkeypatch):
    """`--entropy-only` from a package: the hyper-analysis, hyper-synthesis, z prior and context
    train on rate alone over the package's frozen analysis; the run stays so on resume, the
    synthesis and the gains are the package's own, and the new package codes the same picture
    in fewer bits at the same quality."""
    import numpy as np

    from lsic.codec.decoder import Decoder
    from lsic.codec.encoder import Encoder
    from lsic.codec.metrics import psnr
    from lsic.codec.package import load_package

    models = tmp_path / "models"
    tiny = ["--data", photos, "--N", 16, "--M", 16, "--batch-size", 2, "--crop", 64]
    run("train", *tiny, "--out", tmp_path / "base", "--max-steps", 20, "--context", "checkerboard")
    run("export", tmp_path / "base" / "checkpoint.pt", "--out", models / "base", "--id", "base", "--calibration", photos)
    # no --N/--M: a run takes the architecture of the network it starts from
    ent = ["train", "--data", photos, "--batch-size", 2, "--out", tmp_path / "ent", "--init", models / "base", "--lr", "1e-3"]
    first = run(*ent, "--entropy-only", "--max-steps", 80)
    assert "entropy only: h_a, h_s, the z prior and the context train on rate alone since step 20" in first.stderr
    assert "training on 3 images" in first.stderr, "photos under one tile and its halo (384 px) are left out"
    resumed = run(*ent, "--max-steps", 100)
    assert "entropy only" in resumed.stderr, "an entropy-only run stays so when resumed without the flag"
    run("export", tmp_path / "ent" / "checkpoint.pt", "--out", models / "ent", "--id", "ent", "--calibration", photos)
    meta = json.loads((models / "ent" / "model.json").read_text())
    base_meta = json.loads((models / "base" / "model.json").read_text())
    assert meta["training"]["entropy_only_from_step"] == 20 and meta["training"]["steps"] == 100
    assert meta["files"]["synthesis.fp32.onnx"] == base_meta["files"]["synthesis.fp32.onnx"], "same synthesis"
    assert meta["files"]["tables.npz"] != base_meta["files"]["tables.npz"], "new entropy tables"

    monkeypatch.setenv("LSIC_MODELS", str(models))
    base, ent_pkg = load_package(models / "base"), load_package(models / "ent")
    assert np.array_equal(base.arrays["gain"], ent_pkg.arrays["gain"]), "the gains are the package's own"
    source = cv2.cvtColor(cv2.imread(str(photos / "coffee.png")), cv2.COLOR_BGR2RGB)
    sizes, quality = {}, {}
    for name, pkg in (("base", base), ("ent", ent_pkg)):
        coded = Encoder(pkg).encode(source, quality=6)
        sizes[name] = len(coded)
        quality[name] = psnr(source, Decoder(backend="onnx").decode(coded).rgb)
    assert sizes["ent"] < sizes["base"] * 0.97, sizes
    assert abs(quality["ent"] - quality["base"]) < 0.3, quality


def test_ms_ssim_fine_tuning_is_recorded_in_the_package(photos, tmp_path):
    """`--distortion ms-ssim` switches a run's loss to CompressAI's MS-SSIM ladder; the run keeps
    it when resumed, and model.json says what the lambdas mean and from which step."""
    run_dir = tmp_path / "run"
    common = ["train", "--data", photos, "--out", run_dir, "--N", 16, "--M", 16, "--batch-size", 1, "--crop", 192]
    run(*common, "--max-steps", 3)
    switched = run(*common, "--max-steps", 5, "--distortion", "ms-ssim", "--eval-data", photos, "--eval-every", 5)
    assert "distortion: ms-ssim since step 3" in switched.stderr
    resumed = run(*common, "--max-steps", 6)
    assert "distortion: ms-ssim since step 3" in resumed.stderr, "resumed without the flag, the run stays MS-SSIM"
    evals = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if '"eval"' in line]
    assert all(0 < row["ms_ssim"] < 1 for row in evals[-1]["eval"]), "evaluations report MS-SSIM per point"

    run("export", run_dir / "checkpoint.pt", "--out", tmp_path / "pkg", "--id", "ssim", "--calibration", photos)
    meta = json.loads((tmp_path / "pkg" / "model.json").read_text())
    assert meta["distortion"] == "ms-ssim"
    assert meta["lambdas"][0] == 2.40 and meta["lambdas"][-1] == 220.0, "CompressAI's MS-SSIM ladder"
    assert meta["training"]["distortion_schedule"] == [[0, "mse"], [3, "ms-ssim"]]

    small = subprocess.run(
        [*LSIC, "train", "--data", photos, "--out", tmp_path / "small", "--crop", "64", "--distortion", "ms-ssim"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert small.returncode != 0 and "--distortion ms-ssim needs --crop 192 or more" in small.stderr
    assert "Traceback" not in small.stderr


def test_retrained_package_keeps_decoding_the_previous_builds_bitstreams(photos, tmp_path, monkeypatch):
    """Re-exporting a package under its id retires the old build decode-only: archived tiles and
    devices that have not upgraded keep decoding and ingesting; only encoding needs the new build."""
    import grpc
    import numpy as np

    from lsic.testing import CloudProcess
    from lsic.v1 import lsic_pb2 as pb
    from lsic.v1 import lsic_pb2_grpc as pb_grpc

    models, run_dir = tmp_path / "models", tmp_path / "run"
    monkeypatch.setenv("LSIC_MODELS", str(models))
    tiny = ["train", "--data", photos, "--out", run_dir, "--N", 16, "--M", 16, "--batch-size", 2, "--crop", 64]
    export = ["export", run_dir / "checkpoint.pt", "--out", models / "tiny", "--id", "tiny", "--calibration", photos]
    run(*tiny, "--max-steps", 10)
    run(*export)
    old, new = tmp_path / "old.lsic", tmp_path / "new.lsic"
    run("encode", photos / "coffee.png", "-o", old, "--model", "tiny", "--quality", 5)
    before = tmp_path / "before.png"
    run("decode", old, "-o", before, "--backend", "onnx")

    run(*tiny, "--max-steps", 15)  # retrained: a new build under the same id
    run(*export)
    listed = {row["id"]: row for row in json.loads(run("models", "--json").stdout)}["tiny"]
    (retired,) = listed["retired_builds"]
    assert retired["hash"] != listed["hash"] and (models / "retired").is_dir()
    assert sum(f.stat().st_size for f in (models / "retired").rglob("*") if f.is_file()) < sum(
        f.stat().st_size for f in (models / "tiny").iterdir()
    ), "a retired build keeps only what decoding needs"

    for backend in ("onnx", "torch"):
        out = tmp_path / f"old-{backend}.png"
        run("decode", old, "-o", out, "--backend", backend)
        if backend == "onnx":
            assert np.array_equal(cv2.imread(str(out)), cv2.imread(str(before))), "same build, same pixels"
    run("encode", photos / "coffee.png", "-o", new, "--model", "tiny", "--quality", 5)
    assert json.loads(run("info", new).stdout)["model_hash"] != json.loads(run("info", old).stdout)["model_hash"]
    run("decode", new, "-o", tmp_path / "new.png", "--backend", "onnx")
    refused = subprocess.run(
        [*LSIC, "encode", str(photos / "coffee.png"), "-o", str(tmp_path / "x.lsic"), "--model", retired["path"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 8 and "retired build of model 'tiny'" in refused.stderr

    cloud = CloudProcess(tmp_path / "cloud", extra=["--decode-backend", "onnx"]).start()
    try:
        token = cloud.add_device("cam")
        with grpc.insecure_channel(cloud.address) as ch:
            put = pb_grpc.IngestStub(ch).PutFrame
            md = (("authorization", f"Bearer {token}"),)
            for seq, path in enumerate((old, new)):
                ack = put(
                    pb.FrameRecord(stream_id="s", sequence=seq, bitstream=path.read_bytes()), metadata=md, timeout=60
                )
                assert ack.status == pb.FrameAck.STORED, "a device still on the previous build is not turned away"
    finally:
        cloud.stop()


def test_requantize_redoes_the_int8_analysis_and_keeps_old_bitstreams_decoding(photos, tmp_path, monkeypatch):
    """`lsic requantize` rebuilds a package's int8 analysis from its fp32 graph (no checkpoint):
    a new build with 7-bit weights, the replaced one retired, its bitstreams decoding to the same pixels."""

    models, run_dir = tmp_path / "models", tmp_path / "run"
    monkeypatch.setenv("LSIC_MODELS", str(models))
    run(
        "train",
        "--data",
        photos,
        "--out",
        run_dir,
        "--N",
        16,
        "--M",
        16,
        "--batch-size",
        2,
        "--crop",
        64,
        "--max-steps",
        5,
    )
    run("export", run_dir / "checkpoint.pt", "--out", models / "tiny", "--id", "tiny", "--calibration", photos)
    _downgrade_to_8bit_weights(models / "tiny", photos, monkeypatch)  # as 8-bit-weight packages were exported
    old = tmp_path / "old.lsic"
    run("encode", photos / "coffee.png", "-o", old, "--model", "tiny", "--quality", 5)
    before = tmp_path / "before.png"
    run("decode", old, "-o", before, "--backend", "onnx")
    synthesis = (models / "tiny" / "synthesis.fp32.onnx").read_bytes()

    run("requantize", models / "tiny", "--calibration", photos)
    meta = json.loads((models / "tiny" / "model.json").read_text())
    assert meta["int8_analysis"]["weights"] == "7-bit (reduce_range)" and "requantized" in meta["int8_analysis"]
    assert (models / "tiny" / "synthesis.fp32.onnx").read_bytes() == synthesis, "only the analysis changes"
    _rebuilt_and_retired(photos, tmp_path, old, before)
    bad = subprocess.run(
        [*LSIC, "requantize", str(tmp_path / "nothing"), "--calibration", str(photos)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_requantize_entropy_halves_the_gemm_digits_and_keeps_old_bitstreams_decoding(photos, tmp_path, monkeypatch):
    """`lsic requantize --entropy` rounds a package's integer hyper-synthesis and context to one
    digit per GEMM column: a new build whose every layer runs half the 8-bit products, the one it
    replaces retired, whose bitstreams still decode to the same pixels."""

    from lsic.codec.entropy.context import _context_weights
    from lsic.codec.package import load_package

    models, run_dir = tmp_path / "models", tmp_path / "run"
    monkeypatch.setenv("LSIC_MODELS", str(models))
    run("train", "--data", photos, "--out", run_dir, "--N", 16, "--M", 16, "--batch-size", 2, "--crop", 64,
        "--max-steps", 5, "--context", "checkerboard")
    run("export", run_dir / "checkpoint.pt", "--out", models / "tiny", "--id", "tiny", "--calibration", photos)
    assert json.loads(run("requantize", models / "tiny", "--entropy").stdout)["entropy"] is False, "exports are one-digit"
    _as_two_digit_entropy(models / "tiny")
    old = tmp_path / "old.lsic"
    run("encode", photos / "coffee.png", "-o", old, "--model", "tiny", "--quality", 5)
    before = tmp_path / "before.png"
    run("decode", old, "-o", before, "--backend", "onnx")

    assert json.loads(run("requantize", models / "tiny", "--entropy").stdout)["entropy"] is True
    pkg = load_package(models / "tiny")
    assert pkg.context_layers, "the test package has a context"
    gemms = [layer.gemm.weights for layer in pkg.hyper_layers + pkg.context_layers[1:]]
    assert all(g.n_digits == 1 for g in [*gemms, _context_weights(pkg.context_layers[0])])
    new = _rebuilt_and_retired(photos, tmp_path, old, before)
    assert json.loads(run("info", new).stdout)["model_hash"] != json.loads(run("info", old).stdout)["model_hash"]
    bad = subprocess.run([*LSIC, "requantize", str(models / "tiny")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--entropy" in bad.stderr and "Traceback" not in bad.stderr


def _rebuilt_and_retired(photos, tmp_path, old, before):
    """After a package `tiny` was rebuilt: one retired build beside it, decoding the bitstream
    `old` to the same pixels `before`; the new build encodes and decodes. Its bitstream's path."""
    import numpy as np

    listed = {row["id"]: row for row in json.loads(run("models", "--json").stdout)}["tiny"]
    (retired,) = listed["retired_builds"]
    assert retired["hash"] != listed["hash"]
    after = tmp_path / "after.png"
    run("decode", old, "-o", after, "--backend", "onnx")
    assert np.array_equal(cv2.imread(str(after)), cv2.imread(str(before))), "the old build's bitstream still decodes"
    new = tmp_path / "new.lsic"
    run("encode", photos / "coffee.png", "-o", new, "--model", "tiny", "--quality", 5)
    run("decode", new, "-o", tmp_path / "new.png", "--backend", "onnx")
    return new


def _as_two_digit_entropy(package):
    """Move every nonzero integer entropy weight one step toward zero, off its column's factor:
    the 11-bit, two-digit weights packages were exported with before."""
    import numpy as np

    from lsic.codec.networks.export import write_selftest
    from lsic.codec.package import FILES, sha256_file

    arrays = dict(np.load(package / "tables.npz"))
    for k in [k for k in arrays if k.startswith(("hs", "cx")) and k.endswith("_w")]:
        arrays[k] = arrays[k] - np.sign(arrays[k])
    np.savez_compressed(package / "tables.npz", **arrays)
    write_selftest(package / "selftest.npz", arrays)
    meta = json.loads((package / "model.json").read_text())
    meta["files"] = {name: sha256_file(package / name) for name in FILES}
    (package / "model.json").write_text(json.dumps(meta))


def _downgrade_to_8bit_weights(package, photos, monkeypatch):
    """Rewrite a package's int8 analysis with full 8-bit weights, as older exports wrote it."""
    import numpy as np
    import onnxruntime.quantization as oq

    from lsic.codec.image_io import read_folder as load_images
    from lsic.codec.networks import export
    from lsic.codec.package import FILES, sha256_file

    quantize = oq.quantize_static
    monkeypatch.setattr(oq, "quantize_static", lambda *a, **k: quantize(*a, **{**k, "reduce_range": False}))
    export.quantize_analysis(package, load_images(photos, 256), np.load(package / "tables.npz")["gain"])
    monkeypatch.setattr(oq, "quantize_static", quantize)
    meta = json.loads((package / "model.json").read_text())
    meta["files"] = {name: sha256_file(package / name) for name in FILES}
    (package / "model.json").write_text(json.dumps(meta))


def test_a_package_from_before_hardware_phases_keeps_its_machine_when_training_goes_on():
    """model.json of older packages names one machine for all steps; a run continuing from it
    must report those steps on that machine, not drop them from hardware_phases."""
    from lsic.codec.networks.history import History

    history = History.from_record({"steps": 69000, "hardware": "x86_64 CPUs, 2 threads"})
    history.step = 70000
    history.record_hardware(69000, "AMD EPYC, 2 threads")
    assert history.hardware_phases == [[0, 69000, "x86_64 CPUs, 2 threads"], [69000, 70000, "AMD EPYC, 2 threads"]]
