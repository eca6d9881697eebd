"""`lsic gpu pack --init shared/models/NAME`: a GPU run can start from a shipped package."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lsic.codec.image_io import write_rgb  # noqa: E402
from lsic.codec.networks.gpu_recipe import load_split, save_split, training_state  # noqa: E402

pytestmark = pytest.mark.torch
MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"


def test_a_package_becomes_a_training_state_that_splits_and_joins(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        write_rgb(data / f"{i}.png", rng.integers(0, 256, (320, 320, 3), dtype=np.uint8))
    state = training_state(MODELS / "lite", data)
    record = json.loads((MODELS / "lite" / "model.json").read_text())["training"]
    assert state["step"] == record["steps"], "the package's own training record carries on"
    assert state["optimizer"]["state"] == {}, "a fresh optimizer: a package ships no Adam moments"
    save_split(state, tmp_path / "split")
    joined = load_split(tmp_path / "split")
    assert joined["step"] == state["step"]
    for key, value in state["state_dict"].items():
        assert torch.equal(joined["state_dict"][key].float(), value.float()), key
