"""Edge settings: flags over LSIC_EDGE_* environment variables over the config file over defaults."""

from __future__ import annotations

import pytest

from lsic.codec.errors import UsageError
from lsic.edge.cli import build_parser, resolve


def parse(*argv):
    return build_parser().parse_args(["run", *argv])


def test_precedence(tmp_path, monkeypatch):
    cfg = tmp_path / "edge.toml"
    cfg.write_text(
        '[edge]\ndevice_id = "from-file"\ntoken = "t:file"\nquality = 2\ntarget_kbps = 300.0\nsource = "/videos/cam.mp4"\n'
    )
    monkeypatch.setenv("LSIC_EDGE_QUALITY", "5")
    monkeypatch.setenv("LSIC_EDGE_INSECURE", "true")
    s = resolve(parse("--config", str(cfg), "--target-kbps", "800"))
    assert s["device_id"] == "from-file" and s["source"] == "/videos/cam.mp4"
    assert s["quality"] == 5 and s["insecure"] is True
    assert s["target_kbps"] == 800.0
    assert s["tile_size"] == 256  # default


def test_missing_identity_and_unknown_settings_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("LSIC_EDGE_DEVICE_ID", raising=False)
    with pytest.raises(UsageError, match="--device-id is required"):
        resolve(parse("--token", "a:b"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"devic_id": "typo"}')
    with pytest.raises(UsageError, match="unknown settings"):
        resolve(parse("--config", str(bad)))
