"""The RD bench's BD-rate table reads every codec against the baselines and the shipped default."""

from __future__ import annotations

import numpy as np

from lsic.codec.bench.rd import bd_table


def curve(bpp: list[float], psnr: list[float]) -> dict:
    return {"bpp": bpp, "psnr-rgb": psnr, "ms-ssim-rgb": [1 - 10 ** (-p / 20) for p in psnr]}


def row(table: str, label: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")][1:]


def test_other_packages_are_read_against_the_default():
    psnr = [26.0, 28.0, 30.0, 32.0]
    base = [0.2, 0.35, 0.6, 1.0]
    table = bd_table(
        {
            "JPEG": curve([2 * b for b in base], psnr),
            "LSIC default": curve(base, psnr),
            "LSIC hq": curve([0.9 * b for b in base], psnr),
        }
    )
    header = next(x for x in table.splitlines() if x.startswith("| codec |"))
    assert header == "| codec | vs JPEG | vs LSIC default |"
    assert row(table, "LSIC default") == ["-50.0", "—"]
    vs_jpeg, vs_default = (float(v) for v in row(table, "LSIC hq"))
    assert np.isclose(vs_jpeg, -55.0) and np.isclose(vs_default, -10.0), "10% fewer bits than default at equal PSNR"


def test_no_default_column_without_the_default():
    table = bd_table({"JPEG": curve([0.4, 0.8, 1.6, 3.2], [25.0, 28.0, 31.0, 34.0])})
    assert "vs LSIC default" not in table
