"""The edge install runs without PyTorch."""

from __future__ import annotations

import os
import subprocess
import sys

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
