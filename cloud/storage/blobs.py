"""Blob stores for bitstreams and reconstructions: a local folder (default) or S3-compatible.

Writes are atomic: a reader sees the whole blob or none of it. The local store writes a
temporary file, fsyncs it, renames it into place and fsyncs the folder; S3 puts are atomic.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from lsic.codec.errors import LsicError
from lsic.fsutil import atomic_write


class StorageFullError(LsicError):
    """The blob store has no room left; nothing was written."""

    exit_code = 13
    grpc_status = "RESOURCE_EXHAUSTED"


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError(f"invalid blob key {key!r}")
        return p

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write(path, data)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StorageFullError("blob store is full") from exc
            raise

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


class S3BlobStore:
    """S3 or any S3-compatible service (MinIO, Ceph, moto) through boto3."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        import boto3

        self.s3 = boto3.client("s3", endpoint_url=endpoint_url)
        self.bucket, self.prefix = bucket, prefix.strip("/")

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None

    def exists(self, key: str) -> bool:
        return self.get(key) is not None


def open_blobs(url: str, data_dir: Path):
    """'' (default: DATA/blobs), a folder path, or s3://bucket/prefix (endpoint from $LSIC_S3_ENDPOINT)."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return S3BlobStore(bucket, prefix, os.environ.get("LSIC_S3_ENDPOINT") or None)
    return LocalBlobStore(Path(url) if url else data_dir / "blobs")
