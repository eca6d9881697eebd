"""The RD bench's BD-rate table reads every codec against the baselines and the shipped default."""

from __future__ import annotations

import numpy as np

from lsic.codec.bench.rd import bd_rate, bd_table


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


def saturating(bpp: np.ndarray) -> np.ndarray:
    """A learned codec's curve near its latent's ceiling: PSNR flattens as the rate grows."""
    return 33.0 - 9.0 * np.exp(-8.0 * bpp)


def test_bd_rate_follows_the_points_where_a_curve_flattens():
    anchor = np.geomspace(0.1, 1.0, 10)
    other_points = np.geomspace(0.12, 1.05, 7)  # the same codec, other operating points
    same = bd_rate(list(anchor), list(saturating(anchor)), list(other_points), list(saturating(other_points)))
    assert abs(same) < 0.5, f"the same curve sampled elsewhere measured {same:+.2f}%"
    cheaper = bd_rate(list(anchor), list(saturating(anchor)), list(0.8 * anchor), list(saturating(anchor)))
    assert np.isclose(cheaper, -20.0)


def test_bd_rate_is_nan_without_a_shared_range_or_an_increasing_curve():
    assert np.isnan(bd_rate([0.1, 0.2], [20.0, 22.0], [0.5, 0.9], [30.0, 32.0]))
    assert np.isnan(bd_rate([0.1, 0.2, 0.4], [20.0, 25.0, 30.0], [0.1, 0.3, 0.5], [21.0, 21.0, 28.0]))
