"""The `lsic` command as a user runs it: outputs, JSON, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from lsic.codec.errors import ChecksumError, InputImageError, TruncatedBitstreamError, UnknownModelError

from ..conftest import natural_image

LSIC = [sys.executable, "-m", "lsic.codec.cli"]


def run(*args, ok=True):
    r = subprocess.run([*LSIC, *map(str, args)], capture_output=True, text=True, timeout=300)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "photo.png"
    cv2.imwrite(str(p), cv2.cvtColor(natural_image(200, 300), cv2.COLOR_RGB2BGR))
    return p


def test_encode_info_decode(photo, tmp_path):
    out = tmp_path / "p.lsic"
    r = json.loads(run("encode", photo, "-o", out, "--quality", 3).stdout)
    assert r["bytes"] == out.stat().st_size and r["bpp"] > 0
    info = json.loads(run("info", out, "--tiles").stdout)
    assert info["width"] == 300 and info["height"] == 200 and info["quality"] == 3 and info["model_id"] == "default"
    assert len(info["tile_table"]) == 2
    png = tmp_path / "p.png"
    run("decode", out, "-o", png, "--backend", "onnx")
    assert cv2.imread(str(png)).shape == (200, 300, 3)
    run("decode", out, "-o", tmp_path / "r.jpg", "--region", "10,10,50,40", "--backend", "onnx")
    assert cv2.imread(str(tmp_path / "r.jpg")).shape == (40, 50, 3)


def test_output_into_a_closed_pipe_ends_quietly(photo, tmp_path):
    """`lsic info x.lsic --tiles | head -1`: the reader leaves early; no error line, no traceback."""
    out = tmp_path / "p.lsic"
    run("encode", photo, "-o", out)
    proc = subprocess.Popen(
        [*LSIC, "info", str(out), "--tiles"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    proc.stdout.close()  # closed before the command writes anything
    stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 141 and stderr == "", stderr


def test_grayscale_and_rgba_are_converted_with_a_notice(tmp_path):
    gray = tmp_path / "g.png"
    cv2.imwrite(str(gray), np.full((40, 50), 90, np.uint8))
    r = run("encode", gray, "-o", tmp_path / "g.lsic")
    assert "grayscale converted" in r.stderr
    rgba = tmp_path / "a.png"
    cv2.imwrite(str(rgba), np.full((40, 50, 4), 90, np.uint8))
    assert "alpha channel dropped" in run("encode", rgba, "-o", tmp_path / "a.lsic").stderr


def test_errors_are_one_line_with_their_own_exit_codes(photo, tmp_path):
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), np.full((8, 8, 3), 4000, np.uint16))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image")
    good = tmp_path / "good.lsic"
    run("encode", photo, "-o", good)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.lsic"
    trunc.write_bytes(data[:-7])
    flipped = tmp_path / "flipped.lsic"
    flipped.write_bytes(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])
    cases = [
        (("encode", deep), InputImageError.exit_code, "8-bit only"),
        (("encode", empty), InputImageError.exit_code, "empty"),
        (("encode", junk), InputImageError.exit_code, "not a readable image"),
        (("encode", photo, "-m", "nonexistent"), UnknownModelError.exit_code, "unknown model"),
        (("decode", trunc), TruncatedBitstreamError.exit_code, "truncated"),
        (("decode", flipped, "--backend", "onnx"), ChecksumError.exit_code, "checksum"),
        (("info", junk), 4, "bad magic"),
        (("decode", good, "--device", "tpu"), 2, "device must be auto, cpu, cuda or cuda:N"),
        (("decode", good, "--device", "cuda:7"), 2, "CUDA devices"),  # no machine here has eight
    ]
    for args, code, text in cases:
        r = run(*args, ok=False)
        assert r.returncode == code, (args, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("lsic: error")]
        assert len(lines) == 1 and text in lines[0], r.stderr
        assert "Traceback" not in r.stderr


@pytest.mark.parametrize("cmd", ["lsic.codec.cli", "lsic.edge.cli", "lsic.cloud.cli"])
def test_help_is_complete_and_exits_0(cmd):
    r = subprocess.run([sys.executable, "-m", cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "usage" in r.stdout


def test_latent_ceiling_bench_ranks_widths(tmp_path):
    """`lsic bench ceiling`: a wider latent holds more; every number of a block holds everything."""
    for folder, size in (("train", (160, 240)), ("eval", (128, 192))):
        (tmp_path / folder).mkdir()
        img = cv2.cvtColor(natural_image(*size), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(tmp_path / folder / "a.png"), img)
        cv2.imwrite(str(tmp_path / folder / "b.png"), img[:, ::-1])
    out = run("bench", "ceiling", "--train", tmp_path / "train", "--data", tmp_path / "eval", "--M", "16,96,768").stdout
    rows = {
        int(line.split("|")[1]): float(line.split("|")[3])
        for line in out.splitlines()
        if line[:3] in ("| 1", "| 9", "| 7")
    }
    assert rows[16] < rows[96] < rows[768], out
    assert rows[768] > 100, "all 768 numbers of a 16x16 RGB block reconstruct it exactly"
    bad = run("bench", "ceiling", "--train", tmp_path / "train", "--data", tmp_path / "eval", "--M", "0", ok=False)
    assert bad.returncode == 2 and "widths must be between 1 and 768" in bad.stderr
    bad = run("bench", "ceiling", "--train", tmp_path / "train", "--data", tmp_path / "eval", "--M", "abc", ok=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "comma-separated integers" in bad.stderr


@pytest.mark.parametrize(("points", "message"), [("0,1", "numbered 1..8"), ("9", "numbered 1..8"), ("a", "like 1,2,3")])
def test_train_points_outside_the_trained_ones_are_a_usage_error(tmp_path, points, message):
    bad = run("train", "--data", tmp_path, "--out", tmp_path / "run", "--points", points, ok=False)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and message in bad.stderr


def test_the_mistakes_users_make_get_one_clear_line(photo, tmp_path):
    good = tmp_path / "good.lsic"
    run("encode", photo, "-o", good)
    cases = [
        (("decode", good, "--region", "a,b,c,d"), 2, "expected x,y,w,h"),
        (("decode", good, "--region", "1,2,3"), 2, "expected x,y,w,h"),
        (("decode", good, "--region", "0,0,0,5"), 2, "w and h positive"),
        (("decode", good, "-o", tmp_path / "out.xyz"), 2, "cannot write .xyz images"),
        (("decode", tmp_path), 2, "is a folder"),
        (("decode", tmp_path / "missing.lsic"), 2, "no such file"),
        (("info", tmp_path), 2, "is a folder"),
        (("encode", tmp_path), InputImageError.exit_code, "is a folder"),
    ]
    for args, code, text in cases:
        r = run(*args, ok=False)
        assert r.returncode == code, (args, r.stderr)
        assert r.stderr.startswith("lsic: error") or "lsic decode: error" in r.stderr, r.stderr
        assert text in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert not (tmp_path / "out.xyz").exists(), "refused before any decoding"


def test_decode_from_the_command_line_starts_fast(photo, tmp_path, kodak):
    """The default backend (ONNX Runtime) does not import torch: one Kodak image decodes from the
    command line in well under 2 s here."""
    import time

    data = tmp_path / "k.lsic"
    run("encode", kodak[0], "-o", data)
    t0 = time.perf_counter()
    run("decode", data, "-o", tmp_path / "k.png")
    assert time.perf_counter() - t0 < 2.0
    code = "import sys, lsic.codec.cli as c; c.main(sys.argv[1:]); print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code, "decode", str(data), "-o", str(tmp_path / "k2.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().endswith("False"), "no torch import on the default path"


def test_models_is_a_short_table_unless_json():
    table = run("models").stdout.splitlines()
    assert len(table) == 4 and table[0].split()[:2] == ["model", "latent"]
    rows = json.loads(run("models", "--json").stdout)
    assert {r["id"] for r in rows} == {"default", "hq", "lite"} and "retired_builds" in rows[0]


def test_argument_fuzz_never_ends_in_a_traceback(tmp_path):
    """Random argument lists for every command of the three CLIs, parsed as a user's shell would
    pass them: each ends in a usage error (2) or a clean exit, never an exception."""
    import random

    from lsic.cloud.cli import build_parser as cloud_parser
    from lsic.codec.cli import build_parser as codec_parser
    from lsic.edge.cli import build_parser as edge_parser

    rng = random.Random(7)
    words = ["--quality", "-q", "--region", "--seq", "--device", "-o", "--model", "--tile-size", "--threads",
             "--backend", "--max-frames", "--lr", "--points", "--batch-size", "--limit", "--downscale", "--timeout",
             "1", "-1", "0", "1,2,3,4", "a,b", "x", "", "9" * 40, "nan", "--", "-", "--help-me", "\n", "é",
             str(tmp_path)]
    for parser in (codec_parser(), cloud_parser(), edge_parser()):
        subcommands = [a for a in parser._subparsers._group_actions[0].choices]
        for _ in range(400):
            argv = [rng.choice(subcommands)] + [rng.choice(words) for _ in range(rng.randrange(0, 6))]
            if "--help" in argv or "-h" in argv:
                continue
            try:
                parser.parse_args(argv)
            except SystemExit as exc:
                assert exc.code in (0, 2), argv


def test_bench_entropy_reports_what_the_context_saves_and_costs(photo):
    """The context's gain on its own: the same tiles coded with and without it, really coded."""
    out = run("bench", "entropy", "--data", photo.parent, "--qualities", "4").stdout
    row = next(line for line in out.splitlines() if line.startswith("| all |"))
    with_context, _, _, without, saves = (c.strip() for c in row.strip("|").split("|")[1:])
    assert int(with_context) < int(without) and float(saves.rstrip("%")) > 0
    assert "ms with the context" in out


def test_builds_a_retired_build_decoded_as_its_own_resolve_to_that_retired_copy():
    """A build whose tables were replaced keeps decoding, through its retired copy, the earlier
    builds it decoded as its own (`decodes_builds`): the current build no longer claims them."""
    from lsic.codec.package import load_package

    current = load_package("default")
    for retired in sorted((current.root.parent / "retired").glob("default-*/model.json")):
        earlier = json.loads(retired.read_text()).get("decodes_builds", [])
        for build in (bytes.fromhex(h)[:8] for h in earlier):
            assert not current.decodes(build)
            pkg = load_package("default", build)
            assert pkg.decode_only and pkg.decodes(build)


def test_bench_options_naming_nothing_known_are_refused_by_name(photo):
    """A misspelt baseline or analysis precision is a usage error that names what is known, not
    a traceback, nor a silent fp32 run."""
    bad = run("bench", "rd", "--data", photo.parent, "--baselines", "WebP,png", "--out", photo.parent / "rd", ok=False)
    assert bad.returncode == 2 and "unknown baseline png" in bad.stderr and "JPEG XL" in bad.stderr
    assert "Traceback" not in bad.stderr
    bad = run("bench", "rd", "--data", photo.parent, "--baselines", "", "--precision", "int4", "--limit", "1",
              "--out", photo.parent / "rd", ok=False)
    assert bad.returncode == 2 and "unknown analysis precision 'int4'" in bad.stderr
