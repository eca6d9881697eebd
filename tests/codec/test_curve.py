"""`lsic bench curve` continues a learning curve from its committed table when the run folder
that made it stayed on another machine."""

from __future__ import annotations

import json
import subprocess
import sys


def evaluation(step: int, lr: float, qat: bool, psnr: float) -> dict:
    return {
        "step": step,
        "wall_s": step * 0.36,
        "lr": lr,
        "qat": qat,
        "eval": [{"q": q, "bpp": 0.1 * (q + 1), "psnr": psnr + q} for q in range(8)],
    }


def curve(tmp_path, *logs) -> str:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "lsic.codec.cli",
            "bench",
            "curve",
            "--log",
            *map(str, logs),
            "--out",
            tmp_path / "c.png",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_curve_continues_from_its_own_table(tmp_path):
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text("\n".join(json.dumps(evaluation(s, 2e-4, False, 25.0)) for s in (2000, 4000)) + "\n")
    second.write_text(
        json.dumps({"step": 4100, "wall_s": 1500.0, "lr": 1e-4, "qat": True, "loss": 1.0})
        + "\n"
        + json.dumps(evaluation(6000, 1e-4, True, 26.0))
        + "\n"
    )
    table = tmp_path / "learning-curve.txt"
    table.write_text(curve(tmp_path, first))
    assert curve(tmp_path, table) == table.read_text(), "a table reads back as the evaluations it shows"

    stitched = curve(tmp_path, table, second).splitlines()
    assert [line.split("|")[1].strip() for line in stitched[2:]] == ["2000", "4000", "6000"]
    assert "| 6000 | 0.60 | 0.0001 QAT | 0.100/26.00 |" in stitched[-1]
    assert (tmp_path / "c.png").stat().st_size > 0


def test_overlapping_table_and_log_show_each_step_once(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(evaluation(s, 1e-4, True, 26.0)) for s in (2000, 4000)) + "\n")
    table = tmp_path / "learning-curve.txt"
    table.write_text(curve(tmp_path, log))
    log.write_text(log.read_text() + json.dumps(evaluation(6000, 1.5e-5, True, 27.0)) + "\n")

    stitched = curve(tmp_path, table, log).splitlines()
    assert [line.split("|")[1].strip() for line in stitched[2:]] == ["2000", "4000", "6000"]
