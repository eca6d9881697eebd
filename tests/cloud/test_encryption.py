"""Encryption at rest: AES-GCM per blob, keys by id, checked on every read; and the service
running with it."""

from __future__ import annotations

import os
import subprocess

import grpc
import pytest

from lsic.cloud.errors import BlobIntegrityError, BlobKeyError, ConfigError
from lsic.cloud.storage.blobs import LocalBlobStore
from lsic.cloud.storage.encryption import EncryptedBlobStore, Keyring, new_key_line
from lsic.testing import CloudProcess, cloud_command
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc

from ..conftest import natural_image


def test_blobs_are_sealed_checked_and_keys_rotate(tmp_path):
    plain = LocalBlobStore(tmp_path / "b")
    old = Keyring.parse(new_key_line("k1"), "test")
    store = EncryptedBlobStore(plain, old)
    store.put("frames/a.lsic", b"LSIC secret frame")
    raw = plain.get("frames/a.lsic")
    assert raw.startswith(b"LSE1\x02k1") and b"secret" not in raw
    assert store.get("frames/a.lsic") == b"LSIC secret frame"
    rotated = Keyring.parse(new_key_line("k2") + "\n" + new_key_line("k3"), "test")
    assert rotated.current == "k2", "the first line encrypts"
    both = Keyring({**old.keys, "k2": rotated.keys["k2"]}, "k2")
    store2 = EncryptedBlobStore(plain, both)
    store2.put("frames/b.lsic", b"new frame")
    assert plain.get("frames/b.lsic").startswith(b"LSE1\x02k2")
    assert store2.get("frames/a.lsic") == b"LSIC secret frame", "blobs under the old key still read"
    with pytest.raises(BlobKeyError, match="k2"):
        store.get("frames/b.lsic")
    tampered = bytearray(raw)
    tampered[-1] ^= 1
    plain.put("frames/c.lsic", bytes(tampered))
    with pytest.raises(BlobIntegrityError):
        store.get("frames/c.lsic")
    plain.put("frames/d.lsic", raw)  # a sealed blob copied under another name
    with pytest.raises(BlobIntegrityError):
        store.get("frames/d.lsic")
    plain.put("frames/legacy.lsic", b"LSIC written before encryption")
    assert store.get("frames/legacy.lsic") == b"LSIC written before encryption"


def test_key_files_are_checked(tmp_path):
    path = tmp_path / "keys"
    path.write_text(new_key_line("2026-12") + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Keyring.from_file(path)
    os.chmod(path, 0o600)
    assert Keyring.from_file(path).current == "2026-12"
    for bad in ("nokey", "k=short", "bad id=" + "A" * 43):
        with pytest.raises(ConfigError):
            Keyring.parse(bad, "test")
    with pytest.raises(ConfigError, match="appears twice"):
        Keyring.parse(new_key_line("k1") + "\n" + new_key_line("k1"), "test")


def test_keygen_refuses_an_id_the_file_has(tmp_path):
    """Two keys under one id: the blobs of one of them would never read again."""
    import subprocess

    from lsic.testing import cloud_command

    path = tmp_path / "keys"
    keygen = [*cloud_command(), "keygen", str(path), "--key-id"]
    assert subprocess.run([*keygen, "2026-11"], capture_output=True, timeout=60).returncode == 0
    again = subprocess.run([*keygen, "2026-11"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 25 and "already has a key '2026-11'" in again.stderr
    assert subprocess.run([*keygen, "2026-12"], capture_output=True, timeout=60).returncode == 0
    assert sorted(Keyring.from_file(path).keys) == ["2026-11", "2026-12"]


def test_the_service_stores_bitstreams_encrypted(tmp_path, encoder):
    keys = tmp_path / "blob.keys"
    subprocess.run([*cloud_command(), "keygen", str(keys), "--key-id", "k1"], check=True, capture_output=True)
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    cloud = CloudProcess(tmp_path / "data", extra=["--decode-backend", "onnx", "--blob-key-file", str(keys)]).start()
    try:
        token = cloud.add_device("cam-enc")
        frame = encoder.encode(natural_image(128, 192), 3)
        with grpc.insecure_channel(cloud.address) as ch:
            md = (("authorization", f"Bearer {token}"),)
            rec = pb.FrameRecord(stream_id="main", sequence=0, bitstream=frame)
            assert pb_grpc.IngestStub(ch).PutFrame(rec, metadata=md, timeout=30).status == pb.FrameAck.STORED
            (blob,) = (tmp_path / "data" / "blobs" / "frames").rglob("*.lsic")
            assert blob.read_bytes().startswith(b"LSE1") and frame[16:64] not in blob.read_bytes()
            omd = (("authorization", f"Bearer {cloud.operator_token()}"),)
            archive = pb_grpc.ArchiveStub(ch)
            key = pb.FrameKey(device_id="cam-enc", stream_id="main", sequence=0)
            assert archive.GetBitstream(key, metadata=omd, timeout=30).bitstream == frame
            data = bytearray(blob.read_bytes())
            data[40] ^= 1
            blob.write_bytes(bytes(data))
            with pytest.raises(grpc.RpcError) as exc:
                archive.GetBitstream(key, metadata=omd, timeout=30)
            assert exc.value.code() == grpc.StatusCode.DATA_LOSS
    finally:
        cloud.stop()
