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
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from lsic.codec.errors import UsageError
from lsic.codec.image_io import read_folder
from lsic.codec.networks.entropy_fit import (
    EXTRAPOLATED,
    WINDOW,
    LatentSampler,
    entropy_loss,
    freeze_all_but_entropy,
    training_gains,
)
from lsic.codec.networks.history import History, describe_machine
from lsic.codec.networks.model import DISTORTIONS, MSSSIM_MIN_SIDE, Architecture, GainedHyperprior, rd_loss
from lsic.codec.networks.qat import OBSERVE_EVERY, observe_ranges, prepare_qat
from lsic.codec.networks.widen import hold_analysis, widen_state_dict
from lsic.codec.windows import LATENT

log = logging.getLogger("lsic.train")
COMPILED_GRAPHS = 32  # graphs torch.compile may keep per function (--compile)


@dataclass
class TrainConfig:
    data: Path
    out: Path
    eval_data: Path | None = None
    N: int | None = None  # None: the resumed or --init network's, else 64
    M: int | None = None  # None: the resumed or --init network's, else 96
    hyper_widths: tuple[int, int] | None = None  # None: the source's with its M, else CompressAI's (M, 3M/2)
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
    entropy_only: bool = False  # train h_a, h_s, the z prior and the context on rate alone (entropy_fit.py)
    distortion: str | None = None  # "mse" or "ms-ssim"; None: the run's own (MSE for a new run)
    log_every: int = 100  # steps between log lines: the only steps that wait for the device
    channels_last: bool | None = None  # NHWC activations; None: on CUDA only (cuDNN's bf16 layout)
    compile: bool = False  # torch.compile the transforms (each module in place: checkpoint keys unchanged)
    final_lr: float | None = None  # the learning rate of the run's last final_minutes (a decay)
    final_minutes: float = 0.0


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
    """Start a training phase ("decoder_only", "context_only", "entropy_only") at this step when asked; once
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
    observe_ranges(net.g_a, False)  # held-out images never move the int8 ranges
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
            **history.to_record(),
            "arch": net.arch.to_dict(),
            "config": {k: str(v) for k, v in vars(cfg).items()},
        },
        tmp,
    )
    os.replace(tmp, path)


def source_arch(source: Path) -> dict:
    """The architecture of a package or checkpoint that a new run starts from (--init)."""
    if (source / "model.json").is_file():
        return json.loads((source / "model.json").read_text())["architecture"]
    return torch.load(source, map_location="cpu", weights_only=False)["arch"]


def run_architecture(cfg: TrainConfig, source: dict, context: str | None) -> Architecture:
    """The network a run trains: what the flags set, the rest as the network it resumes or
    starts from has it (so `--init shared/models/hq` needs no --M), else the defaults."""
    M = cfg.M or source.get("M", 96)
    hyper_widths = cfg.hyper_widths
    if hyper_widths is None and source.get("M") == M and source.get("hyper_widths"):
        hyper_widths = tuple(source["hyper_widths"])
    return Architecture(
        N=cfg.N or source.get("N", 64), M=M, hyper_widths=hyper_widths, refine_width=cfg.refine_width, context=context
    )


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
        try:
            weights = widen_state_dict(weights, old, net.arch)
        except ValueError as exc:
            raise UsageError(f"--init {source}: {exc}") from None
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


class Run:
    """One `lsic train` invocation, in its phases: the network and its history (new, resumed or
    initialized from a package), the training phases the history says it is in, the optimizers,
    the data, then the loop."""

    def __init__(self, cfg: TrainConfig) -> None:
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        cfg.out.mkdir(parents=True, exist_ok=True)
        self.cfg = cfg
        self.ckpt_path = cfg.out / "checkpoint.pt"
        state = torch.load(self.ckpt_path, map_location=cfg.device, weights_only=False) if self.ckpt_path.exists() else None
        self.net, self.history = self._network(state)
        self._enter_phases()
        self.opt, self.aux_opt = self._optimizers(state)
        self._data()

    # --- the phases of setting up ---
    def _network(self, state: dict | None) -> tuple[GainedHyperprior, History]:
        cfg = self.cfg
        source = state["arch"] if state is not None else source_arch(cfg.init) if cfg.init is not None else {}
        context = cfg.context or source.get("context")  # kept on resume; a network with a context keeps it
        arch = run_architecture(cfg, source, context)
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
            history.context_only_from_step = history.entropy_only_from_step = None
            log.info("initialized from %s (step %d, %.1f h trained)", cfg.init, history.step, history.wall_seconds / 3600)
        if arch.context is not None and history.context_from_step is None:
            history.context_from_step = history.step
        return net, history

    def _enter_phases(self) -> None:
        """Context-only, decoder-only, distortion, QAT, bfloat16, a widening's hold: each starts
        at a recorded step and, once started, lasts for the rest of the run."""
        cfg, net, history = self.cfg, self.net, self.history
        self.context_only = start_phase(history, "context_only", cfg.context_only)
        if self.context_only:
            freeze_all_but_context(net)
            log.info("context only: the checkerboard context trains alone since step %d", history.context_only_from_step)
        if cfg.entropy_only and (cfg.context_only or cfg.decoder_only):
            raise UsageError("--entropy-only trains the context already and leaves the synthesis; drop --context-only/--decoder-only")
        self.entropy_only = start_phase(history, "entropy_only", cfg.entropy_only)
        if self.entropy_only:
            freeze_all_but_entropy(net)
            log.info("entropy only: h_a, h_s, the z prior and the context train on rate alone since step %d", history.entropy_only_from_step)
        self.decoder_only = start_phase(history, "decoder_only", cfg.decoder_only)
        if self.decoder_only:
            freeze_all_but_synthesis(net)
            log.info("decoder only: the synthesis trains alone since step %d", history.decoder_only_from_step)
        history.use_distortion(cfg.distortion or history.distortion)
        self.distortion, self.lambdas = history.distortion, DISTORTIONS[history.distortion]
        if self.distortion == "ms-ssim" and cfg.crop < MSSSIM_MIN_SIDE:
            raise UsageError(
                f"--distortion ms-ssim needs --crop 192 or more (five scales need {MSSSIM_MIN_SIDE}), got {cfg.crop}"
            )
        if self.distortion != "mse":
            log.info("distortion: %s since step %d", self.distortion, history.distortion_schedule[-1][0])
        if cfg.qat and history.qat_from_step is None:
            history.qat_from_step = history.step
        self.qat = history.qat_from_step is not None
        self.qat_steps = 0  # this process's QAT steps: the first moves the int8 ranges, then one in OBSERVE_EVERY
        if self.qat:  # once started, a run stays quantization-aware
            prepare_qat(net.g_a).to(cfg.device)
            log.info("quantization-aware: g_a simulates the int8 analysis since step %d", history.qat_from_step)
        if cfg.bf16:
            net.transform_dtype = torch.bfloat16
            log.info("transforms in bfloat16 autocast, entropy models in float32")
        self.release_at = history.widened[-1][0] + cfg.widen_warmup if history.widened else 0
        self.held = history.step < self.release_at
        if self.held:
            hold_analysis(net, True)
            log.info("widened: analysis and gains held until step %d", self.release_at)
        self.channels_last = cfg.device.startswith("cuda") if cfg.channels_last is None else cfg.channels_last
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        if cfg.compile:
            # The four transforms share nn.Sequential.forward, and dynamo's recompile limit counts
            # per function: their graphs (train and eval, QAT observing or not) exceed its default 8.
            torch._dynamo.config.recompile_limit = COMPILED_GRAPHS
            for module in (net.g_a, net.g_s, net.h_a, net.h_s):
                module.compile()
            log.info("transforms compiled with torch.compile")

    def _optimizers(self, state: dict | None):
        cfg, history = self.cfg, self.history
        opt, aux_opt = make_optimizers(self.net, cfg.lr)
        if state is not None:
            opt.load_state_dict(state["optimizer"])
            aux_opt.load_state_dict(state["aux_optimizer"])
            history.lr_schedule = history.lr_schedule or [[0, float(state["config"].get("lr", cfg.lr))]]
            log.info("resumed from %s at step %d (%.1f h trained)", self.ckpt_path, history.step, history.wall_seconds / 3600)
        for group in opt.param_groups:
            group["lr"] = cfg.lr
        if not history.lr_schedule or history.lr_schedule[-1][1] != cfg.lr:
            history.lr_schedule.append([history.step, cfg.lr])
        return opt, aux_opt

    def _data(self) -> None:
        cfg = self.cfg
        self.rng = random.Random(cfg.seed + self.history.step)
        self.points = [p - 1 for p in cfg.points] if cfg.points else list(range(self.net.arch.n_rates))
        if cfg.points:
            log.info("training operating points %s only", ",".join(map(str, cfg.points)))
        self.eval_images = read_folder(cfg.eval_data, 64)[:6] if cfg.eval_data else []
        if self.entropy_only:
            self.latents = LatentSampler(self.net, read_folder(cfg.data, WINDOW * LATENT), cfg.device)
            self.gains = training_gains(self.net)
            count = len(self.latents.latents)
        else:
            self.sampler = CropSampler(read_folder(cfg.data, cfg.crop), cfg.device)
            count = len(self.sampler.images)
        log.info("training on %d images from %s, %d threads, device %s", count, cfg.data, cfg.threads, cfg.device)

    # --- the loop ---
    def step(self) -> tuple[int, dict[str, torch.Tensor], torch.Tensor | None]:
        """One optimizer step on one random batch at one random operating point."""
        cfg, net = self.cfg, self.net
        if self.entropy_only:
            return self._entropy_step()
        q = self.rng.choice(self.points)
        x = self.sampler.batch(cfg.batch_size, cfg.crop, self.rng)
        if self.qat:
            observe_ranges(net.g_a, self.qat_steps % OBSERVE_EVERY == 0)
            self.qat_steps += 1
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.opt.zero_grad(set_to_none=True)
        self.aux_opt.zero_grad(set_to_none=True)
        if self.decoder_only:
            losses = decoder_loss(net, x, q)
        elif self.context_only:
            losses = context_loss(net, x, q)
        else:
            losses = rd_loss(net(x, q), x, self.lambdas[q], self.distortion)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        self.opt.step()
        aux = None
        if not (self.decoder_only or self.context_only):  # the quantiles shape the z tables: fixed with the encoder
            aux = net.aux_loss()
            aux.backward()
            self.aux_opt.step()
        return q, losses, aux

    def _entropy_step(self) -> tuple[int, dict[str, torch.Tensor], torch.Tensor]:
        """One step of rate-only training over latents, at one point (trained or extrapolated;
        logged by its position, negative below the trained points)."""
        point = self.rng.randrange(len(self.gains))
        y, top, left = self.latents.batch(self.cfg.batch_size, self.rng)
        self.opt.zero_grad(set_to_none=True)
        self.aux_opt.zero_grad(set_to_none=True)
        losses = entropy_loss(self.net, y, top, left, self.gains[point])
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt.step()
        aux = self.net.aux_loss()  # the quantiles shape the z tables, which this phase retrains
        aux.backward()
        self.aux_opt.step()
        return point - EXTRAPOLATED, losses, aux

    def _record(self, log_file, entry: dict, q: int | None = None) -> None:
        """A line of log.jsonl (what `lsic bench curve` reads): step, time, settings, then `entry`."""
        line = {
            "step": self.history.step,
            "wall_s": round(self.history.wall_seconds, 1),
            **({"q": q} if q is not None else {}),
            "lr": self.opt.param_groups[0]["lr"],
            "qat": self.qat,
            "bf16": self.cfg.bf16,
            **entry,
        }
        log_file.write(json.dumps(line) + "\n")
        log_file.flush()

    def save(self) -> None:
        save_checkpoint(self.ckpt_path, self.net, self.opt, self.aux_opt, self.history, self.cfg)

    def loop(self, stop: threading.Event | None = None) -> Path:
        """Train until max_steps, max_minutes or `stop`; every way out saves the checkpoint."""
        cfg, history = self.cfg, self.history
        try:
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_steps, initial=history.step, mininterval=30, unit="step")
        except ImportError:  # pragma: no cover - tqdm ships with the train extra
            bar = None
        start = last_ckpt = time.monotonic()
        first_step, machine = history.step, describe_machine(cfg.device)
        decay_at = cfg.max_minutes - cfg.final_minutes if cfg.final_lr and cfg.max_minutes else None
        running: dict[str, torch.Tensor] = {}
        last_log = (history.step, time.monotonic())
        with (cfg.out / "log.jsonl").open("a") as log_file:
            while history.step < cfg.max_steps:
                now = time.monotonic()
                if cfg.max_minutes and now - start > cfg.max_minutes * 60:
                    break
                if stop is not None and stop.is_set():
                    log.info("stop requested")
                    break
                if decay_at is not None and now - start > decay_at * 60:
                    for group in self.opt.param_groups:
                        group["lr"] = cfg.final_lr
                    history.lr_schedule.append([history.step, cfg.final_lr])
                    log.info("learning rate %g from step %d", cfg.final_lr, history.step)
                    decay_at = None
                if self.held and history.step >= self.release_at:
                    hold_analysis(self.net, False)
                    self.held = False
                    log.info("widened: analysis and gains released at step %d", history.step)
                q, losses, aux = self.step()
                history.step += 1
                history.bf16_steps += cfg.bf16
                history.wall_seconds += time.monotonic() - now
                with torch.no_grad():  # running means stay on the device until a log line reads them
                    for k in ("loss", "bpp", "mse"):
                        if k in losses:
                            value = losses[k].detach().float()
                            running[k] = value if k not in running else running[k].lerp(value, 0.02)
                if bar is not None:
                    bar.update(1)
                if history.step % cfg.log_every == 0:
                    means = {k: round(float(v), 6) for k, v in running.items()}
                    steps_per_s = (history.step - last_log[0]) / max(time.monotonic() - last_log[1], 1e-9)
                    last_log = (history.step, time.monotonic())
                    if bar is not None:
                        bar.set_postfix(loss=f"{means['loss']:.3f}", bpp=f"{means['bpp']:.3f}", refresh=False)
                    entry = {
                        **means,
                        "aux": None if aux is None else float(aux.detach()),
                        "steps_per_s": round(steps_per_s, 2),
                        "samples_per_s": round(steps_per_s * cfg.batch_size, 1),
                        **({"decoder_only": True} if self.decoder_only else {}),
                    }
                    self._record(log_file, entry, q)
                if self.eval_images and history.step % cfg.eval_every == 0:
                    self._record(log_file, {"eval": evaluate(self.net, self.eval_images, cfg.device)})
                if time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60:
                    history.record_hardware(first_step, machine)
                    self.save()
                    last_ckpt = time.monotonic()
        history.record_hardware(first_step, machine)
        self.save()
        if bar is not None:
            bar.close()
        log.info("stopped at step %d; checkpoint %s", history.step, self.ckpt_path)
        return self.ckpt_path


def train(cfg: TrainConfig, stop: threading.Event | None = None) -> Path:
    """Train (or resume) until max_steps, max_minutes or `stop` is set; returns the checkpoint path.

    Every way out saves the checkpoint, so a stopped run resumes where it stopped.
    """
    return Run(cfg).loop(stop)
