"""A training run's history: every field a checkpoint carries and model.json reports, in one place."""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class History:
    """What a run has been through so far; carried by checkpoints, and by packages into model.json."""

    step: int = 0
    wall_seconds: float = 0.0
    lr_schedule: list[list[float]] = field(default_factory=list)  # [first step, learning rate] per change
    qat_from_step: int | None = None  # first step of quantization-aware fine-tuning
    widened: list[list[int]] = field(default_factory=list)  # [step, old M, new M] per latent widening
    bf16_steps: int = 0  # steps trained with the transforms in bfloat16 autocast
    decoder_only_from_step: int | None = None  # first step that trained the synthesis alone
    context_from_step: int | None = None  # first step with the checkerboard context (context.py)
    context_only_from_step: int | None = None  # first step that trained the context alone
    entropy_only_from_step: int | None = None  # first step that trained the entropy models alone on rate
    # [first step, "mse" or "ms-ssim"] per change of the loss's distortion; runs without one
    # were MSE throughout
    distortion_schedule: list[list] = field(default_factory=list)
    # [first step, last step, machine] per stretch of training on one machine
    hardware_phases: list[list] = field(default_factory=list)

    def record_hardware(self, first_step: int, machine: str) -> None:
        """This run trained from first_step to the current step on `machine`."""
        if self.step <= first_step:
            return
        if self.hardware_phases and self.hardware_phases[-1][0] == first_step:
            self.hardware_phases[-1] = [first_step, self.step, machine]
        else:
            self.hardware_phases.append([first_step, self.step, machine])

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

    def to_record(self) -> dict:
        """The fields as a checkpoint stores them."""
        return dataclasses.asdict(self)

    def to_model_json(self) -> dict:
        """The fields as model.json's "training" reports them ("steps", not "step")."""
        record = self.to_record()
        return {"steps": record.pop("step"), **record}

    @classmethod
    def from_record(cls, record: dict) -> History:
        """From a checkpoint or model.json's "training"; fields a record lacks keep their defaults."""
        values = {}
        for f in dataclasses.fields(cls):
            value = record.get(f.name, record.get("steps") if f.name == "step" else None)
            if value is None:
                continue
            if isinstance(value, list):
                value = [list(row) if isinstance(row, list | tuple) else row for row in value]
            elif f.name == "wall_seconds":
                value = float(value)
            else:
                value = int(value)
            values[f.name] = value
        if "hardware_phases" not in values and record.get("hardware"):  # one machine, before phases were kept
            values["hardware_phases"] = [[0, values.get("step", 0), str(record["hardware"])]]
        return cls(**values)


def describe_machine(device: str) -> str:
    """What a training step ran on: the GPU's name, or the CPU's, and the threads and torch."""
    import torch

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


