"""Model packages: loaded by id, refused on hash mismatch or unknown id."""

from __future__ import annotations

import json
import shutil

import pytest

from lsic.codec.errors import ModelHashError, UnknownModelError
from lsic.codec.package import available_models, load_package, load_package_dir


def test_shipped_packages_load_and_describe_themselves():
    assert "default" in available_models()
    pkg = load_package("default")
    meta = pkg.meta
    assert meta["id"] == "default" and meta["training"]["steps"] > 0
    assert len(pkg.hash) == 32 and pkg.n_rates >= 6


def test_tampered_package_is_refused(tmp_path):
    src = load_package("default").root
    dst = tmp_path / "default"
    shutil.copytree(src, dst)
    with (dst / "network.pt").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelHashError, match=r"network\.pt"):
        load_package_dir(dst)


def test_unknown_model_is_refused():
    with pytest.raises(UnknownModelError, match="available"):
        load_package("no-such-model")


def test_bitstream_from_another_build_is_refused(tmp_path, encoder, decoder, monkeypatch):
    from lsic.codec import package as P

    src = load_package("default").root
    dst = tmp_path / "models" / "default"
    shutil.copytree(src, dst)
    meta = json.loads((dst / "model.json").read_text())
    meta["files"]["extra"] = "0" * 64  # changes the package hash
    (dst / "model.json").write_text(json.dumps(meta))
    monkeypatch.setenv("LSIC_MODELS", str(dst.parent))
    monkeypatch.setattr(P, "_LOADED", {})
    import numpy as np

    data = encoder.encode(np.zeros((64, 64, 3), np.uint8), 1)
    with pytest.raises(ModelHashError, match="hash mismatch"):
        decoder.decode(data)
