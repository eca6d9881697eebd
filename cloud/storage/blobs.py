"""Blob stores for bitstreams and reconstructions: a local folder (default) or S3-compatible.

Writes are atomic: a reader sees the whole blob or none of it. The local store writes a
temporary file, fsyncs it, renames it into place and fsyncs the folder; S3 puts are atomic.
Failures leave as typed errors: StorageFullError when there is no room (retry later),
BlobStoreError for the rest.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from lsic.cloud.errors import BlobStoreError, ConfigError, StorageFullError
from lsic.fsutil import atomic_write


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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFullError("blob store is full") from exc
            raise BlobStoreError(f"blob store write failed: {exc.strerror or exc}") from exc

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BlobStoreError(f"blob store read failed: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise BlobStoreError(f"blob store delete failed: {exc.strerror or exc}") from exc

    def free_bytes(self) -> int | None:
        """Room left on the store's file system (None where unknown, as for S3)."""
        return shutil.disk_usage(self.root).free

    def ping(self) -> str | None:
        """None when blobs can be written here, else why not (a readiness check)."""
        if not self.root.is_dir():
            return f"blob folder {self.root} is gone"
        if not os.access(self.root, os.W_OK | os.X_OK):
            return f"blob folder {self.root} is not writable by this user"
        return None


class S3BlobStore:
    """S3 or any S3-compatible service (MinIO, Ceph, moto) through boto3."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None) -> None:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        self.s3 = boto3.client("s3", endpoint_url=endpoint_url)
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self._errors = (BotoCoreError, ClientError)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _code(exc: Exception) -> str:
        """The S3 error code of a botocore error ('' for one without a response)."""
        return getattr(exc, "response", {}).get("Error", {}).get("Code", "")

    def _typed(self, exc: Exception, what: str) -> Exception:
        code = self._code(exc)
        if code in ("EntityTooLarge", "QuotaExceeded", "XMinioStorageFull"):
            return StorageFullError(f"object store is full ({code})")
        return BlobStoreError(f"object store {what} failed: {exc}")

    def put(self, key: str, data: bytes) -> None:
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except self._errors as exc:
            raise self._typed(exc, "write") from exc

    def get(self, key: str) -> bytes | None:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        except self._errors as exc:
            raise self._typed(exc, "read") from exc

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as exc:
            if self._code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._typed(exc, "read") from exc
        return True

    def delete(self, key: str) -> None:
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as exc:
            raise self._typed(exc, "delete") from exc

    def free_bytes(self) -> int | None:
        return None

    def ping(self) -> str | None:
        """None when the bucket answers, else why not (a readiness check)."""
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except self._errors as exc:
            return f"bucket {self.bucket!r} does not answer: {exc}"
        return None


def open_blobs(url: str, data_dir: Path, keyring=None):
    """'' (default: DATA/blobs), a folder path, or s3://bucket/prefix (endpoint from $LSIC_S3_ENDPOINT);
    with a keyring (lsic.cloud.storage.encryption), every blob is encrypted at rest. Raises
    ConfigError for any other scheme, and BlobStoreError when the store cannot be used now."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError(f"blob store {url!r} names no bucket: give s3://BUCKET[/PREFIX]")
        store = S3BlobStore(bucket, prefix, os.environ.get("LSIC_S3_ENDPOINT") or None)
    elif "://" in url:
        raise ConfigError(f"unknown blob store {url!r}: give a folder or s3://BUCKET[/PREFIX]")
    else:
        store = LocalBlobStore(Path(url) if url else data_dir / "blobs")
    problem = store.ping()
    if problem is not None:
        raise BlobStoreError(f"cannot use the blob store: {problem}")
    if keyring is None:
        return store
    from lsic.cloud.storage.encryption import EncryptedBlobStore

    return EncryptedBlobStore(store, keyring)
