"""Training loop for the variable-rate hyperprior: resumable, logged, evaluated as it goes.

Training on this project's machines runs for hours in the background, so everything here is
built around interruption: a checkpoint every few minutes (atomic rename), resume from the last
one, a JSONL log of steps and evaluations that the learning-curve plot reads back.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from lsic.codec.errors import UsageError
from lsic.codec.image_io import list_images, read_rgb
from lsic.codec.networks.model import DISTORTIONS, MSSSIM_MIN_SIDE, Architecture, GainedHyperprior, rd_loss
from lsic.codec.networks.qat import prepare_qat
from lsic.codec.networks.widen import hold_analysis, widen_state_dict

log = logging.getLogger("lsic.train")


@dataclass
class History:
    """What a run has been through so far; carried by checkpoints and packages into model.json."""

    step: int = 0
    wall_seconds: float = 0.0
    lr_schedule: list[list[float]] = field(default_factory=list)  # [first step, learning rate] per change
    qat_from_step: int | None = None  # first step of quantization-aware fine-tuning
    widened: list[list[int]] = field(default_factory=list)  # [step, old M, new M] per latent widening
    bf16_steps: int = 0  # steps trained with the transforms in bfloat16 autocast
    decoder_only_from_step: int | None = None  # first step that trained the synthesis alone
    context_from_step: int | None = None  # first step with the checkerboard context (context.py)
    context_only_from_step: int | None = None  # first step that trained the context alone
    # [first step, "mse" or "ms-ssim"] per change of the loss's distortion; runs from before
    # the option have none and were MSE throughout
    distortion_schedule: list[list] = field(default_factory=list)
    # [first step, last step, machine] per stretch of training on one machine
    hardware: list[list] = field(default_factory=list)

    def record_hardware(self, first_step: int, machine: str) -> None:
        """This run trained from first_step to the current step on `machine`."""
        if self.step <= first_step:
            return
        if self.hardware and self.hardware[-1][0] == first_step:
            self.hardware[-1] = [first_step, self.step, machine]
        else:
            self.hardware.append([first_step, self.step, machine])

    @property
    def distortion(self) -> str:
        return self.distortion_schedule[-1][1] if self.distortion_schedule else "mse"

    def use_distortion(self, name: str) -> None:
        """Record the distortion trained from the current step on (a change keeps the old rows)."""
        schedule = self.distortion_schedule or [[0, "mse"]]
        if schedule[-1][1] != name:
            if schedule[-1][0] == self.step:
                schedule.pop()
            schedule.append([self.step, name])
        self.distortion_schedule = schedule

    @classmethod
    def from_record(cls, record: dict) -> History:
        """From a checkpoint (step, wall_seconds) or model.json's "training" (steps, wall_seconds)."""
        qat = record.get("qat_from_step")
        return cls(
            step=int(record.get("step", record.get("steps", 0))),
            wall_seconds=float(record.get("wall_seconds", 0.0)),
            lr_schedule=[list(row) for row in record.get("lr_schedule") or []],
            qat_from_step=None if qat is None else int(qat),
            widened=[list(row) for row in record.get("widened") or []],
            bf16_steps=int(record.get("bf16_steps", 0)),
            decoder_only_from_step=None
            if record.get("decoder_only_from_step") is None
            else int(record["decoder_only_from_step"]),
            distortion_schedule=[list(row) for row in record.get("distortion_schedule") or []],
            context_from_step=_optional_int(record.get("context_from_step")),
            context_only_from_step=_optional_int(record.get("context_only_from_step")),
            hardware=[list(row) for row in record.get("hardware_phases") or []],
        )


def describe_machine(device: str) -> str:
    """What a training step ran on: the GPU's name, or the CPU's, and the threads and torch."""
    import platform

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} (CUDA), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _optional_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[arg-type]


@dataclass
class TrainConfig:
    data: Path
    out: Path
    eval_data: Path | None = None
    N: int = 64
    M: int = 96
    hyper_widths: tuple[int, int] | None = None  # None: CompressAI's (M, 3M/2)
    refine_width: int | None = None  # cloud decoder's residual branch (refine.py); None: g_s alone
    points: tuple[int, ...] | None = None  # trained operating points (1-based) sampled; None: all
    batch_size: int = 12
    crop: int = 160
    lr: float = 2e-4
    max_steps: int = 1_000_000
    max_minutes: float = 0.0
    checkpoint_minutes: float = 5.0
    eval_every: int = 2000
    threads: int = 2
    device: str = "cpu"
    seed: int = 0
    init: Path | None = None  # model package (or checkpoint) to start from when the run is new
    qat: bool = False  # simulate the int8 analysis from now on (quantization-aware fine-tuning)
    bf16: bool = False  # transforms in bfloat16 autocast (entropy models stay float32)
    widen_warmup: int = 2000  # steps after a widening with g_a and the gains held (widen.py)
    decoder_only: bool = False  # train the synthesis alone; bitstreams and the edge stay unchanged
    context: str | None = None  # "checkerboard": add (or keep) the checkerboard context
    context_only: bool = False  # train the context alone; the edge's analysis stays unchanged
    distortion: str | None = None  # "mse" or "ms-ssim"; None: the run's own (MSE for a new run)
    log_every: int = 100  # steps between log lines: the only steps that wait for the device
    channels_last: bool | None = None  # NHWC activations; None: on CUDA only (cuDNN's bf16 layout)
    compile: bool = False  # torch.compile the transforms (each module in place: checkpoint keys unchanged)
    final_lr: float | None = None  # the learning rate of the run's last final_minutes (a decay)
    final_minutes: float = 0.0


def load_images(folder: Path, min_side: int) -> list[np.ndarray]:
    """Decode every training image once; crops are then cut from memory at no I/O cost."""
    images = []
    for path in list_images(folder):
        img = read_rgb(path, quiet=True)
        if min(img.shape[:2]) >= min_side:
            images.append(img)
    if not images:
        raise UsageError(f"no usable training images (>= {min_side}px) in {folder}")
    return images


class CropSampler:
    """Random training crops cut where the network runs.

    The images are held once as uint8 tensors on the training device; a batch is cut, flipped
    and converted to float there, so a GPU step moves no pixels over PCIe and waits on nothing
    the CPU computes (the host only draws offsets). On a CPU the same slicing costs what the
    numpy version did.
    """

    def __init__(self, images: list[np.ndarray], device: str) -> None:
        self.images = [torch.from_numpy(np.ascontiguousarray(img)).to(device) for img in images]
        self.device = device

    def batch(self, n: int, crop: int, rng: random.Random) -> torch.Tensor:
        patches = []
        for _ in range(n):
            img = self.images[rng.randrange(len(self.images))]
            h, w = img.shape[:2]
            y, x = rng.randrange(h - crop + 1), rng.randrange(w - crop + 1)
            patch = img[y : y + crop, x : x + crop]
            flips = [d for d, flip in ((1, rng.random() < 0.5), (0, rng.random() < 0.5)) if flip]
            patches.append(patch.flip(flips) if flips else patch)
        return torch.stack(patches).permute(0, 3, 1, 2).float().div_(255.0)


def start_phase(history: History, phase: str, requested: bool) -> bool:
    """Start a training phase ("decoder_only", "context_only") at this step when asked; once
    started, a run stays in it, flag or not (its first step is in the history)."""
    attr = f"{phase}_from_step"
    if requested and getattr(history, attr) is None:
        setattr(history, attr, history.step)
    return getattr(history, attr) is not None


def train_only(net: GainedHyperprior, module: torch.nn.Module) -> None:
    """Freeze every parameter of the network but `module`'s."""
    ids = {id(p) for p in module.parameters()}
    for p in net.parameters():
        p.requires_grad_(id(p) in ids)


def make_optimizers(net: GainedHyperprior, lr: float):
    """Adam for the network, and for the entropy bottleneck's quantiles apart (CompressAI's aux
    loss); fused into one kernel per step on CUDA."""
    main = [p for n, p in net.named_parameters() if p.requires_grad and not n.endswith(".quantiles")]
    aux = [p for n, p in net.named_parameters() if n.endswith(".quantiles")]
    fused = next(net.parameters()).is_cuda
    return torch.optim.Adam(main, lr=lr, fused=fused), torch.optim.Adam(aux, lr=1e-3, fused=fused)


def freeze_all_but_synthesis(net: GainedHyperprior) -> None:
    """Decoder-only training: g_a, the hyperprior, the gains and the entropy tables stay fixed,
    so every bitstream an edge device writes today decodes with the retrained synthesis.

    With a residual branch, only the branch trains: g_s is converged, and a fresh Adam at a
    learning rate a new branch needs shakes it (measured: -0.3 dB on Kodak after 1,000 steps
    at 2e-4 with g_s trainable, -0.6 dB after the first 35 steps).
    """
    train_only(net, net.g_s_refine if net.g_s_refine is not None else net.g_s)


def freeze_all_but_context(net: GainedHyperprior) -> None:
    """Context-only training: the transforms, gains and hyperprior stay as trained, so the
    edge's int8 analysis is unchanged; only the probabilities of y's second half improve."""
    if net.context is None:
        raise UsageError("--context-only needs a context: --context checkerboard")
    train_only(net, net.context)


def decoder_loss(net: GainedHyperprior, x: torch.Tensor, q: int) -> dict[str, torch.Tensor]:
    """Distortion alone, in dB (10 log10 MSE), on the latents the real coder sends.

    The rate is fixed, so lambda no longer trades anything; a loss in dB weighs a gain of
    0.1 dB at the lowest operating point as much as at the highest. The network runs in eval
    mode: z is rounded around its medians as the entropy coder does, not noised.
    """
    net.eval()
    with torch.no_grad():
        y_hat, likelihoods = net.latent(x, q)
    mse = torch.mean((net.synthesize(y_hat) - x) ** 2)
    bits = sum(torch.log2(lk).sum() for lk in likelihoods.values())
    bpp = -bits / (x.shape[0] * x.shape[2] * x.shape[3])
    return {"loss": 10 * torch.log10(mse), "bpp": bpp, "mse": mse}


def context_loss(net: GainedHyperprior, x: torch.Tensor, q: int) -> dict[str, torch.Tensor]:
    """Rate alone: with the transforms fixed, the context changes no reconstruction (rounding
    around a better mean moves pixels, but its gradient through the straight-through rounding
    is zero), so the synthesis is not run at all."""
    _, likelihoods = net.latent(x, q)
    bits = sum(torch.log2(lk).sum() for lk in likelihoods.values())
    bpp = -bits / (x.shape[0] * x.shape[2] * x.shape[3])
    return {"loss": bpp, "bpp": bpp}


@torch.no_grad()
def evaluate(net: GainedHyperprior, images: list[np.ndarray], device: str) -> list[dict]:
    """Estimated rate (likelihoods) and PSNR per operating point on held-out images.

    Always in float32, so runs trained with and without --bf16 share one learning curve.
    MS-SSIM is added for images large enough for its five scales.
    """
    from pytorch_msssim import ms_ssim

    net.eval()
    dtype, net.transform_dtype = net.transform_dtype, None
    rows = []
    for q in range(net.arch.n_rates):
        bpps, psnrs, similarities = [], [], []
        for img in images:
            h, w = (img.shape[0] // 64) * 64, (img.shape[1] // 64) * 64
            x = torch.from_numpy(img[:h, :w].copy()).permute(2, 0, 1)[None].float().div(255).to(device)
            out = net(x, q)
            bpps.append(float(rd_loss(out, x, 0.0)["bpp"]))
            mse = float(torch.mean((out["x_hat"].clamp(0, 1) - x) ** 2))
            psnrs.append(10 * math.log10(1.0 / max(mse, 1e-12)))
            if min(h, w) >= MSSSIM_MIN_SIDE:
                similarities.append(float(ms_ssim(out["x_hat"].clamp(0, 1), x, data_range=1.0)))
        row = {"q": q, "bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))}
        if similarities:
            row["ms_ssim"] = float(np.mean(similarities))
        rows.append(row)
    net.transform_dtype = dtype
    net.train()
    return rows


def save_checkpoint(path: Path, net, opt, aux_opt, history: History, cfg: TrainConfig) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "state_dict": net.state_dict(),
            "optimizer": opt.state_dict(),
            "aux_optimizer": aux_opt.state_dict(),
            "step": history.step,
            "wall_seconds": history.wall_seconds,
            "lr_schedule": history.lr_schedule,
            "qat_from_step": history.qat_from_step,
            "widened": history.widened,
            "bf16_steps": history.bf16_steps,
            "decoder_only_from_step": history.decoder_only_from_step,
            "distortion_schedule": history.distortion_schedule,
            "context_from_step": history.context_from_step,
            "context_only_from_step": history.context_only_from_step,
            "hardware_phases": history.hardware,
            "arch": net.arch.to_dict(),
            "config": {k: str(v) for k, v in vars(cfg).items()},
        },
        tmp,
    )
    os.replace(tmp, path)


def source_context(source: Path) -> str | None:
    """The context kind of a package or checkpoint that a new run starts from (--init)."""
    if (source / "model.json").is_file():
        return json.loads((source / "model.json").read_text())["architecture"].get("context")
    return torch.load(source, map_location="cpu", weights_only=False)["arch"].get("context")


def init_from(net: GainedHyperprior, source: Path) -> History:
    """Weights from a model package (network.pt + model.json) or a checkpoint, and its history.

    A source with fewer latent channels than `net` is widened into it (lsic.codec.networks.widen);
    a source without the decoder's residual branch gets a new one, zero at the start (refine.py).
    """
    if (source / "model.json").is_file():
        meta = json.loads((source / "model.json").read_text())
        weights = torch.load(source / "network.pt", map_location="cpu", weights_only=True)
        arch = meta["architecture"]
        history = History.from_record(meta["training"])
    else:
        state = torch.load(source, map_location="cpu", weights_only=False)
        weights, arch = state["state_dict"], state["arch"]
        history = History.from_record(state)
    old = Architecture.from_dict(arch)
    if replace(old, refine_width=net.arch.refine_width, context=net.arch.context) != net.arch:
        weights = widen_state_dict(weights, old, net.arch)
        history.widened.append([history.step, old.M, net.arch.M])
        log.info("widened the latent from %d to %d channels", old.M, net.arch.M)
    if old.refine_width != net.arch.refine_width:
        weights = {k: v for k, v in weights.items() if not k.startswith("g_s_refine.")}
        if net.g_s_refine is not None:
            weights.update({f"g_s_refine.{k}": v for k, v in net.g_s_refine.state_dict().items()})
        log.info("decoder branch: %s -> %s channels", old.refine_width, net.arch.refine_width)
    if old.context != net.arch.context:
        weights = {k: v for k, v in weights.items() if not k.startswith("context.")}
        if net.context is not None:
            weights.update({f"context.{k}": v for k, v in net.context.state_dict().items()})
        log.info("context: %s -> %s", old.context, net.arch.context)
    net.load_state_dict(weights)
    return history


def train(cfg: TrainConfig, stop: threading.Event | None = None) -> Path:
    """Train (or resume) until max_steps, max_minutes or `stop` is set; returns the checkpoint path.

    Every way out saves the checkpoint, so a stopped run resumes where it stopped.
    """
    torch.set_num_threads(cfg.threads)
    cfg.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = cfg.out / "checkpoint.pt"
    log_path = cfg.out / "log.jsonl"
    torch.manual_seed(cfg.seed)

    state = torch.load(ckpt_path, map_location=cfg.device, weights_only=False) if ckpt_path.exists() else None
    context = cfg.context or (state["arch"].get("context") if state is not None else None)  # kept on resume
    if context is None and state is None and cfg.init is not None:
        context = source_context(cfg.init)  # a network with a context keeps it
    arch = Architecture(
        N=cfg.N, M=cfg.M, hyper_widths=cfg.hyper_widths, refine_width=cfg.refine_width, context=context
    )
    net = GainedHyperprior(arch).to(cfg.device)
    history = History()
    if cfg.decoder_only and state is None and cfg.init is None:
        raise UsageError(
            "--decoder-only needs a trained network to start from: --init PACKAGE or a checkpoint in --out"
        )
    if state is not None:
        net.load_state_dict(state["state_dict"])
        history = History.from_record(state)
    elif cfg.init is not None:
        history = init_from(net, cfg.init)
        # A new run picks its own phase: a context trained alone in one run folder is then
        # trained with the whole network by a run started from its checkpoint.
        history.context_only_from_step = None
        log.info("initialized from %s (step %d, %.1f h trained)", cfg.init, history.step, history.wall_seconds / 3600)
    if arch.context is not None and history.context_from_step is None:
        history.context_from_step = history.step
    context_only = start_phase(history, "context_only", cfg.context_only)
    if context_only:
        freeze_all_but_context(net)
        log.info("context only: the checkerboard context trains alone since step %d", history.context_only_from_step)
    decoder_only = start_phase(history, "decoder_only", cfg.decoder_only)
    if decoder_only:
        freeze_all_but_synthesis(net)
        log.info("decoder only: the synthesis trains alone since step %d", history.decoder_only_from_step)
    opt, aux_opt = make_optimizers(net, cfg.lr)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        aux_opt.load_state_dict(state["aux_optimizer"])
        history.lr_schedule = history.lr_schedule or [[0, float(state["config"].get("lr", cfg.lr))]]
        log.info("resumed from %s at step %d (%.1f h trained)", ckpt_path, history.step, history.wall_seconds / 3600)
    rng = random.Random(cfg.seed + history.step)
    for group in opt.param_groups:
        group["lr"] = cfg.lr
    if not history.lr_schedule or history.lr_schedule[-1][1] != cfg.lr:
        history.lr_schedule.append([history.step, cfg.lr])
    history.use_distortion(cfg.distortion or history.distortion)
    distortion, lambdas = history.distortion, DISTORTIONS[history.distortion]
    if distortion == "ms-ssim" and cfg.crop < MSSSIM_MIN_SIDE:
        raise UsageError(
            f"--distortion ms-ssim needs --crop 192 or more (five scales need {MSSSIM_MIN_SIDE}), got {cfg.crop}"
        )
    if distortion != "mse":
        log.info("distortion: %s since step %d", distortion, history.distortion_schedule[-1][0])
    if cfg.qat and history.qat_from_step is None:
        history.qat_from_step = history.step
    if history.qat_from_step is not None:  # once started, a run stays quantization-aware
        prepare_qat(net.g_a).to(cfg.device)
        log.info("quantization-aware: g_a simulates the int8 analysis since step %d", history.qat_from_step)
    if cfg.bf16:
        net.transform_dtype = torch.bfloat16
        log.info("transforms in bfloat16 autocast, entropy models in float32")
    step, wall = history.step, history.wall_seconds
    qat = history.qat_from_step is not None
    release_at = history.widened[-1][0] + cfg.widen_warmup if history.widened else 0
    held = step < release_at
    if held:
        hold_analysis(net, True)
        log.info("widened: analysis and gains held until step %d", release_at)

    points = [p - 1 for p in cfg.points] if cfg.points else list(range(arch.n_rates))
    if cfg.points:
        log.info("training operating points %s only", ",".join(map(str, cfg.points)))
    sampler = CropSampler(load_images(cfg.data, cfg.crop), cfg.device)
    channels_last = cfg.device.startswith("cuda") if cfg.channels_last is None else cfg.channels_last
    if channels_last:
        net.to(memory_format=torch.channels_last)
    if cfg.compile:
        for module in (net.g_a, net.g_s, net.h_a, net.h_s):
            module.compile()
        log.info("transforms compiled with torch.compile")
    eval_images = load_images(cfg.eval_data, 64)[:6] if cfg.eval_data else []
    log.info(
        "training on %d images from %s, %d threads, device %s", len(sampler.images), cfg.data, cfg.threads, cfg.device
    )

    try:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=step, mininterval=30, unit="step")
    except ImportError:  # pragma: no cover - tqdm ships with the train extra
        bar = None
    session_start = time.monotonic()
    first_step, machine = step, describe_machine(cfg.device)
    decay_at = cfg.max_minutes - cfg.final_minutes if cfg.final_lr and cfg.max_minutes else None
    last_ckpt = time.monotonic()
    running: dict[str, torch.Tensor] = {}
    last_log = (step, time.monotonic())
    with log_path.open("a") as log_file:
        while step < cfg.max_steps:
            if cfg.max_minutes and time.monotonic() - session_start > cfg.max_minutes * 60:
                break
            if stop is not None and stop.is_set():
                log.info("stop requested")
                break
            if decay_at is not None and time.monotonic() - session_start > decay_at * 60:
                for group in opt.param_groups:
                    group["lr"] = cfg.final_lr
                history.lr_schedule.append([step, cfg.final_lr])
                log.info("learning rate %g from step %d", cfg.final_lr, step)
                decay_at = None
            if held and step >= release_at:
                hold_analysis(net, False)
                held = False
                log.info("widened: analysis and gains released at step %d", step)
            t0 = time.monotonic()
            q = rng.choice(points)
            x = sampler.batch(cfg.batch_size, cfg.crop, rng)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            aux_opt.zero_grad(set_to_none=True)
            if decoder_only:
                losses = decoder_loss(net, x, q)
            elif context_only:
                losses = context_loss(net, x, q)
            else:
                losses = rd_loss(net(x, q), x, lambdas[q], distortion)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            if not (decoder_only or context_only):  # the quantiles shape the z tables: fixed with the encoder
                aux = net.aux_loss()
                aux.backward()
                aux_opt.step()
            step += 1
            history.bf16_steps += cfg.bf16
            wall += time.monotonic() - t0
            with torch.no_grad():  # running means stay on the device until a log line reads them
                for k in ("loss", "bpp", "mse"):
                    if k in losses:
                        value = losses[k].detach().float()
                        running[k] = value if k not in running else running[k].lerp(value, 0.02)
            if bar is not None:
                bar.update(1)
            if step % cfg.log_every == 0:
                means = {k: round(float(v), 6) for k, v in running.items()}
                steps_per_s = (step - last_log[0]) / max(time.monotonic() - last_log[1], 1e-9)
                last_log = (step, time.monotonic())
                if bar is not None:
                    bar.set_postfix(loss=f"{means['loss']:.3f}", bpp=f"{means['bpp']:.3f}", refresh=False)
                log_file.write(
                    json.dumps(
                        {
                            "step": step,
                            "wall_s": round(wall, 1),
                            "q": q,
                            "lr": opt.param_groups[0]["lr"],
                            "qat": qat,
                            "bf16": cfg.bf16,
                            **means,
                            "aux": None if decoder_only or context_only else float(aux.detach()),
                            "steps_per_s": round(steps_per_s, 2),
                            "samples_per_s": round(steps_per_s * cfg.batch_size, 1),
                            **({"decoder_only": True} if decoder_only else {}),
                        }
                    )
                    + "\n"
                )
                log_file.flush()
            if eval_images and step % cfg.eval_every == 0:
                rows = evaluate(net, eval_images, cfg.device)
                log_file.write(
                    json.dumps(
                        {
                            "step": step,
                            "wall_s": round(wall, 1),
                            "lr": opt.param_groups[0]["lr"],
                            "qat": qat,
                            "bf16": cfg.bf16,
                            "eval": rows,
                        }
                    )
                    + "\n"
                )
                log_file.flush()
            if time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60:
                history.step, history.wall_seconds = step, wall
                history.record_hardware(first_step, machine)
                save_checkpoint(ckpt_path, net, opt, aux_opt, history, cfg)
                last_ckpt = time.monotonic()
    history.step, history.wall_seconds = step, wall
    history.record_hardware(first_step, machine)
    save_checkpoint(ckpt_path, net, opt, aux_opt, history, cfg)
    if bar is not None:
        bar.close()
    log.info("stopped at step %d; checkpoint %s", step, ckpt_path)
    return ckpt_path
