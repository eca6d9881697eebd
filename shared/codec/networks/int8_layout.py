"""Where the edge's int8 analysis stays float: export writes this layout, QAT trains against it."""

from __future__ import annotations

# Kept in float: the last two convolutions of g_a and all of h_a. The last one's output is the
# latent itself and h_a's picks the z symbols (8-bit activations there cost 5-15% rate at equal
# PSNR); rounding g_a.4's output to 8 bits was the largest single int8 cost left after
# quantization-aware fine-tuning (lite: +1.5% -> +1.0% BD-rate on 8 Kodak images) for 0.5 ms per
# 256x256 tile. The rest, most of the work, is int8: the first two 5x5 convolutions and GDN's 1x1
# convolutions. Calibration clips each activation range to its 0.01-99.99th percentile: min-max
# ranges, stretched by rare outliers (GDN's inputs are squares), cost 0.3-0.5 dB
# (docs/benchmarks.md). lsic.codec.networks.qat simulates exactly this layout in training.
FLOAT_G_A_LAYERS = (4, 6)
FLOAT_NODES = [f"/g_a/g_a.{i}/Conv" for i in FLOAT_G_A_LAYERS] + [
    "/h_a/h_a.0/Conv",
    "/h_a/h_a.2/Conv",
    "/h_a/h_a.4/Conv",
]
CALIBRATION_PERCENTILE = 99.99
