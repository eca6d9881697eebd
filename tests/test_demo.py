"""`make demo`, the README's first command: the whole pipeline on one machine ends in a summary."""

from __future__ import annotations

import json
import subprocess
import sys


def test_demo_streams_decodes_and_summarizes(tmp_path):
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "lsic.demo", "--frames", "6", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-1500:] + run.stderr[-1500:]
    assert "Traceback" not in run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 6 and summary["keyframes"] >= 1
    assert summary["mean_psnr_db"] > 25, "every frame came back from the cloud, close to what was captured"
    assert sorted(p.name for p in out.glob("frame_*.png")), "reconstructions are written next to the captured frames"
