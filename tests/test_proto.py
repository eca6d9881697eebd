"""The committed gRPC code matches proto/ (regenerate with `make proto`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Lines that name the protoc/grpcio-tools release that generated the code, not what the code is.
VERSION_STAMPS = (
    re.compile(r"GRPC_GENERATED_VERSION = '[^']*'"),
    re.compile(r"# Protobuf Python Version: \S+"),
    re.compile(r"ValidateProtobufRuntimeVersion\([^)]*\)"),
)


def without_version_stamps(code: str) -> str:
    for stamp in VERSION_STAMPS:
        code = stamp.sub("<version>", code)
    return code


def test_generated_code_is_fresh(tmp_path):
    pytest.importorskip("grpc_tools")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{REPO / 'proto'}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            str(REPO / "proto/lsic/v1/lsic.proto"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    for name in ("lsic_pb2.py", "lsic_pb2_grpc.py", "lsic_pb2.pyi"):
        fresh = without_version_stamps((tmp_path / "lsic" / "v1" / name).read_text())
        committed = without_version_stamps((REPO / "proto" / "lsic" / "v1" / name).read_text())
        assert fresh == committed, f"proto/lsic/v1/{name} is stale: run `make proto`"
