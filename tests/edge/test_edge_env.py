"""The edge install runs without PyTorch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.skipif(
    os.environ.get("LSIC_EDGE_ONLY") != "1", reason="checked in the edge-only environment (make test-edge)"
)
def test_torch_is_not_installed_in_the_edge_environment():
    r = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True, text=True)
    assert r.returncode != 0 and "No module named 'torch'" in r.stderr
    r = subprocess.run([sys.executable, "-c", "import compressai"], capture_output=True, text=True)
    assert r.returncode != 0


def test_edge_modules_import_without_torch():
    code = "import sys; import lsic.edge.agent, lsic.edge.cli, lsic.codec.encoder, lsic.codec.decoder; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr


@pytest.mark.skipif(
    os.environ.get("LSIC_EDGE_ONLY") != "1", reason="checked in the edge-only environment (make test-edge)"
)
def test_edge_install_carries_only_the_encoder_and_says_so_when_asked_to_decode(tmp_path):
    import lsic
    from lsic.codec.decoder import Decoder
    from lsic.codec.encoder import Encoder
    from lsic.codec.errors import ModelError

    root = Path(lsic.__file__).parent
    assert "site-packages" in str(root), "the edge environment is a regular install, not the source tree"
    files = {p.relative_to(root / "models").as_posix() for p in (root / "models").rglob("*") if p.is_file()}
    assert files and all(f.split("/")[-1] in ("model.json", "analysis.int8.onnx", "tables.npz") for f in files), files
    assert not any(f.startswith("retired/") for f in files)
    assert sum((root / "models" / f).stat().st_size for f in files) < 15 << 20
    data = Encoder("default", threads=2).encode(np.full((64, 96, 3), 128, np.uint8), 5)
    with pytest.raises(ModelError, match="decoder files are not installed"):
        Decoder(backend="onnx").decode(data)
    (tmp_path / "x.lsic").write_bytes(data)
    r = subprocess.run([sys.executable, "-m", "lsic.codec.cli", "decode", str(tmp_path / "x.lsic"), "-o",
                        str(tmp_path / "x.png")], capture_output=True, timeout=120)
    assert r.returncode != 0 and b"lsic: error:" in r.stderr and b"Traceback" not in r.stderr
