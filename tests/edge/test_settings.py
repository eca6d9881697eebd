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


def test_a_flag_given_as_zero_wins_over_the_file(tmp_path):
    cfg = tmp_path / "edge.toml"
    cfg.write_text('device_id = "cam"\ntoken = "t:x"\nmax_fps = 5.0\nsource = 0\n')
    s = resolve(parse("--config", str(cfg), "--max-fps", "0"))
    assert s["max_fps"] == 0.0
    assert s["source"] == "0", "a camera index written as a number"


@pytest.mark.parametrize("flag", ["--quality=0", "--threads=-1", "--spool-max-mb=-1", "--keyframe-interval=0",
                                  "--max-fps=-5", "--status-every=0", "--metrics-port=70000", "--spool-max-mb=nan",
                                  "--server=http://cloud:50051", "--server=cloud:0", "--server=cloud"])
def test_out_of_range_flags_are_refused_by_name(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        parse("--device-id", "cam", "--token", "t:x", flag)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag.split('=')[0]}: " in err and ("must be" in err or "HOST:PORT" in err)


@pytest.mark.parametrize(
    "where, text, says",
    [
        ("env", "abc", "quality in LSIC_EDGE_QUALITY: expected a whole number, got 'abc'"),
        ("toml", 'quality = "abc"', "quality in .*edge.toml: expected a whole number"),
        ("toml", "quality = 0", "quality in .*edge.toml: must be 1 or more, got 0"),
        ("toml", "quality = [1", "edge.toml: not valid TOML"),
        ("toml", "insecure = 3", "insecure in .*edge.toml: expected true or false"),
        ("json", '{"quality": ', "edge.json: not valid JSON"),
        ("json", "[1, 2]", "edge.json: expected a table of settings"),
    ],
)
def test_bad_environment_and_config_values_are_clear_errors(tmp_path, monkeypatch, where, text, says):
    argv = ["--device-id", "cam", "--token", "t:x"]
    if where == "env":
        monkeypatch.setenv("LSIC_EDGE_QUALITY", text)
    else:
        cfg = tmp_path / f"edge.{where}"
        cfg.write_text(text + "\n")
        argv += ["--config", str(cfg)]
    with pytest.raises(UsageError, match=says):
        resolve(parse(*argv))


def test_named_values_are_checked_wherever_they_are_given(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        parse("--device-id", "cam", "--token", "t:x", "--spool-policy", "foo")
    assert "argument --spool-policy: must be one of drop-oldest, pause, got 'foo'" in capsys.readouterr().err
    monkeypatch.setenv("LSIC_EDGE_TEMPORAL", "sometimes")
    with pytest.raises(UsageError, match="temporal in LSIC_EDGE_TEMPORAL: must be one of auto, on, off"):
        resolve(parse("--device-id", "cam", "--token", "t:x"))


@pytest.mark.parametrize("size", ["0x0", "100000x10", "20000x20000"])
def test_a_resize_the_cloud_would_refuse_is_refused_here(size):
    from lsic.edge.cli import _frame_size

    with pytest.raises(UsageError, match=f"--resize {size}: sides 1..32768"):
        _frame_size(size)
    assert _frame_size("640x480") == (640, 480)
