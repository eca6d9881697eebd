"""Training on a borrowed GPU machine that takes 64 MiB a call and returns 16 MiB a file.

`lsic gpu pack` writes what such a machine needs into an ignored folder (default `.gpu/`), in
two halves that two calls in a row carry:
- `a/`: wheels the machine lacks (the cloud service's too), the training images' first half, and
  for `lsic bench decode` and `lsic bench drain` a decode-only copy of the model and its
  bitstreams (Kodak and a 3840x2160 frame);
- `b/`: the wheels again, the other half of the images, the held-out images, and the checkpoint
  to resume, split into weights and an Adam state in bfloat16 (each under 16 MiB).
`deploy/gpu/run.sh bench` (and `drain`) then `deploy/gpu/run.sh train MINUTES` run there (the second also
runs alone, on whatever images it was given); `lsic gpu unpack` joins the checkpoint it returns
into a run folder that `lsic train` resumes and `lsic export` reads, and the next pack starts
from it.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from lsic.codec.image_io import list_images, read_rgb

log = logging.getLogger("lsic.gpu")

# What the GPU machine lacks (../shared/gpu-training.md), as wheels for its CPython 3.12.
WHEELS = ("compressai==1.2.8", "constriction==0.5.0", "google-crc32c==1.9.0", "pytorch-msssim==1.0.0",
          "threadpoolctl==3.8.0")
# And for the cloud service there (`deploy/gpu/run.sh drain`), in a/ only: versions whose generated
# code runs on protobuf 4.21 and later.
CLOUD_WHEELS = ("grpcio-health-checking==1.62.3", "grpcio-reflection==1.62.3", "prometheus-client==0.26.0",
                "cryptography==51.0.1", "cffi==2.1.1", "pycparser==3.12")
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
JPEG_QUALITY = 95  # 4:4:4: 40-47 dB against the originals, far above any operating point's PSNR
MIB = 1 << 20
OPTIMIZER_KEYS = ("optimizer", "aux_optimizer")


def split_checkpoint(state: dict) -> tuple[dict, dict]:
    """(weights, history and config; the Adam states in bfloat16), each small enough to return."""
    weights = {k: v for k, v in state.items() if k not in OPTIMIZER_KEYS}
    optimizer = {k: _cast(state[k], torch.float32, torch.bfloat16) for k in OPTIMIZER_KEYS if k in state}
    return weights, optimizer


def join_checkpoint(weights: dict, optimizer: dict) -> dict:
    return {**weights, **_cast(optimizer, torch.bfloat16, torch.float32)}


def _cast(x, src: torch.dtype, dst: torch.dtype):
    if isinstance(x, torch.Tensor):
        return x.to(dst) if x.dtype == src and x.dim() > 0 else x
    if isinstance(x, dict):
        return {k: _cast(v, src, dst) for k, v in x.items()}
    if isinstance(x, list):
        return [_cast(v, src, dst) for v in x]
    return x


def save_split(state: dict, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    weights, optimizer = split_checkpoint(state)
    paths = [folder / "checkpoint.weights.pt", folder / "checkpoint.adam.pt"]
    torch.save(weights, paths[0])
    torch.save(optimizer, paths[1])
    return paths


def load_split(folder: Path) -> dict:
    weights = torch.load(folder / "checkpoint.weights.pt", map_location="cpu", weights_only=False)
    optimizer = torch.load(folder / "checkpoint.adam.pt", map_location="cpu", weights_only=False)
    return join_checkpoint(weights, optimizer)


def download_wheels(folder: Path, wheels: tuple[str, ...] = WHEELS) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           "3.12", "--implementation", "cp", *platforms, "-d", str(folder), *wheels]
    subprocess.run(cmd, check=True)


def write_training_images(data: Path, halves: tuple[Path, Path], first_half_mib: float) -> None:
    """The training images as JPEG (4:4:4): the first `first_half_mib` into halves[0], the rest
    into halves[1]."""
    for h in halves:
        h.mkdir(parents=True, exist_ok=True)
    total = 0
    for path in list_images(data):
        rgb = read_rgb(path, quiet=True)
        params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), params)
        if not ok:
            raise OSError(f"{path}: JPEG encoding failed")
        dest = halves[0] if total + len(buf) <= first_half_mib * MIB else halves[1]
        (dest / f"{path.stem}.jpg").write_bytes(buf.tobytes())
        total += len(buf)


def write_decode_bench(model: str, kodak: Path, folder: Path) -> None:
    """A decode-only copy of `model` and its bitstreams for `lsic bench decode --streams`."""
    from lsic.codec.networks.export import retire_build
    from lsic.codec.package import load_package

    pkg = load_package(model)
    staging = folder / "staging" / pkg.id
    shutil.copytree(pkg.root, staging)
    retired = retire_build(staging)
    if retired is None:
        raise RuntimeError(f"could not make a decode-only copy of {model}")
    shutil.move(str(retired.parent), folder / "models" / "retired")
    shutil.rmtree(folder / "staging")
    subprocess.run(
        [sys.executable, "-m", "lsic.codec.cli", "bench", "decode", "--data", str(kodak), "--model", model,
         "--save-streams", str(folder / "streams"), "--encode-only"],
        check=True,
    )


def training_state(source: Path, data: Path) -> dict:
    """The training checkpoint a GPU run starts from. `source`: a checkpoint, a run folder, a
    folder holding checkpoint.weights.pt and checkpoint.adam.pt, or a model package (its
    network and training record, with a fresh optimizer, as `lsic train --init` starts)."""
    if (source / "checkpoint.weights.pt").is_file():
        return load_split(source)
    if (source / "model.json").is_file():
        from lsic.codec.networks.train import TrainConfig, train

        with tempfile.TemporaryDirectory() as run:  # a run that stops before its first step
            path = train(TrainConfig(data=data, out=Path(run), init=source, max_steps=0))
            return torch.load(path, map_location="cpu", weights_only=False)
    path = source / "checkpoint.pt" if source.is_dir() else source
    return torch.load(path, map_location="cpu", weights_only=False)


def pack(source: Path, data: Path, eval_data: Path, kodak: Path, out: Path, model: str = "default") -> None:
    """Write `out`/a and `out`/b (module docstring), training from `source` (training_state)."""
    if out.exists():
        shutil.rmtree(out)
    a, b = out / "a", out / "b"
    download_wheels(a / "wheels")
    shutil.copytree(a / "wheels", b / "wheels")
    download_wheels(a / "wheels", CLOUD_WHEELS)
    write_decode_bench(model, kodak, a)
    state = training_state(source, data)
    save_split(state, b / "init")
    (b / "eval").mkdir(parents=True)
    for path in list_images(eval_data)[:6]:
        shutil.copy2(path, b / "eval" / path.name)
    # Each call carries at most 64 MiB, the code included. b fills first: a call on a fresh
    # machine (the first one's files gone) still trains, on b's images alone.
    write_training_images(data, (b / "data", a / "data"), 60 - _mib(b))
    if _mib(a) > 60:
        raise RuntimeError(f"{out}/a holds {_mib(a):.0f} MiB: more than a call can carry")
    log.info("packed %s: a %.1f MiB, b %.1f MiB (step %d)", out, _mib(a), _mib(b), state["step"])
    print(json.dumps({"a_mib": round(_mib(a), 1), "b_mib": round(_mib(b), 1), "step": state["step"]}))


def unpack(returned: Path, run: Path) -> Path:
    """Join a returned checkpoint into `run`/checkpoint.pt and append the returned log."""
    state = load_split(returned)
    run.mkdir(parents=True, exist_ok=True)
    torch.save(state, run / "checkpoint.pt")
    if (returned / "log.jsonl").is_file():
        with (run / "log.jsonl").open("a") as f:
            f.write((returned / "log.jsonl").read_text())
    print(json.dumps({"run": str(run), "step": state["step"]}))
    return run / "checkpoint.pt"


def _mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / MIB
