"""Windows of tiles: the latents and pixels are those of the whole frame, wherever it is cut."""

from __future__ import annotations

import numpy as np

from lsic.codec.bitstream import parse
from lsic.codec.decoder import dequantized_tiles
from lsic.codec.encoder import Encoder
from lsic.codec.metrics import psnr
from lsic.codec.package import STRIDE
from lsic.codec.tiling import Grid, Tile, cut
from lsic.codec.windows import analysis_windows, cut_window, padded_frame, span, tile_latents

from ..conftest import natural_image

# 6 x 3 tiles of 256 px: two blocks of 4 x 4 tiles side by side, a short last row and column
H, W = 700, 1400


def test_windows_cover_every_tile_once_and_split_for_the_workers():
    grid = Grid(W, H, 256)
    windows = analysis_windows(grid, grid.tiles(), STRIDE, workers=2)
    assert sorted(t.index for w in windows for t in w.tiles) == list(range(len(grid)))
    assert len(windows) == 2 and all(len({t.x for t in w.tiles}) <= span(grid) == 4 for w in windows)
    assert span(Grid(W, H, 1024)) == 1
    small = Grid(640, 480, 256)  # one block: cut into bands of tile rows so both workers get one
    assert [len(w.tiles) for w in analysis_windows(small, small.tiles(), STRIDE, workers=2)] == [3, 3]
    assert all(w.x1 <= padded_frame(grid, STRIDE)[1] and w.y1 <= padded_frame(grid, STRIDE)[0] for w in windows)


def test_windowed_analysis_gives_the_whole_frames_latents():
    enc = Encoder("default", threads=1, precision="fp32")
    img = natural_image(H, W)
    grid = Grid(W, H, 256)
    ph, pw = padded_frame(grid, STRIDE)
    whole = cut(img, Tile(0, 0, 0, W, H), STRIDE)
    assert whole.shape[:2] == (ph, pw)
    y_all, _ = enc.analyse_tile(whole, 3)
    for window in analysis_windows(grid, grid.tiles(), STRIDE, workers=2):
        y, z = enc.analyse_tile(cut_window(img, window), 3)
        for t in window.tiles:
            yt, zt = tile_latents(window, y, z, t, STRIDE)
            expect = y_all[:, t.y // 16 : t.y // 16 + yt.shape[1], t.x // 16 : t.x // 16 + yt.shape[2]]
            assert yt.shape == expect.shape and zt.shape == (zt.shape[0], yt.shape[1] // 4, yt.shape[2] // 4)
            np.testing.assert_allclose(yt, expect, atol=1e-3 * np.abs(expect).max())


def test_decoded_frame_is_the_whole_frames_synthesis_and_has_no_seams(encoder, decoder):
    img = natural_image(H, W)
    data = encoder.encode(img, 5)
    out = decoder.decode(data).rgb
    parsed = parse(data)
    pkg = decoder.package_for(parsed)
    tiles = parsed.header.grid.tiles()
    ph, pw = padded_frame(parsed.header.grid, STRIDE)
    latent = np.zeros((pkg.architecture["M"], ph // 16, pw // 16), np.float32)
    for t, y_hat in zip(tiles, dequantized_tiles(pkg, parsed, tiles), strict=True):
        latent[:, t.y // 16 : t.y // 16 + y_hat.shape[1], t.x // 16 : t.x // 16 + y_hat.shape[2]] = y_hat
    synth = decoder.synthesis(pkg)
    whole = synth.run_rgb8(latent[None])[0][:H, :W]
    assert np.abs(out.astype(int) - whole).max() <= 1
    # each tile synthesized from its own latents alone (no halo) leaves seams at the borders
    alone = np.zeros_like(out)
    for t, y_hat in zip(tiles, dequantized_tiles(pkg, parsed, tiles), strict=True):
        alone[t.y : t.y + t.h, t.x : t.x + t.w] = synth.run_rgb8(y_hat[None])[0][: t.h, : t.w]
    border = np.zeros((H, W), bool)
    for b in range(256, W, 256):
        border[:, b - 4 : b + 4] = True
    for b in range(256, H, 256):
        border[b - 4 : b + 4] = True
    assert psnr(out[border], img[border]) > psnr(alone[border], img[border]) + 3.0
    assert psnr(out, img) > psnr(alone, img)


def test_frame_latents_are_the_ones_the_encoder_codes():
    """Measurements (`lsic bench entropy`) take the latents from Encoder.frame_latents: coded,
    they must give the encoder's own tile payloads, byte for byte."""
    from lsic.codec.entropy.latents import encode_tile

    enc = Encoder("default", threads=2)
    img = natural_image(H, W)
    parsed = parse(enc.encode(img, 4))
    latents = enc.frame_latents(img, 4)
    assert len(latents) == len(Grid(W, H, 256))
    assert [encode_tile(enc.pkg, y, z) for y, z in latents] == [parsed.tile_payload(i) for i in range(len(latents))]
