"""Encryption at rest for blobs: AES-256-GCM per blob, keys by id so they can rotate.

A blob written through EncryptedBlobStore is `LSE1 | key-id length | key id | 12-byte nonce |
ciphertext and tag`, with the blob's own name as associated data: a blob copied under another
name, altered, or cut short fails its tag on read (BlobIntegrityError), and a blob whose key id
is not in the keyring is refused by name (BlobKeyError). New blobs use the keyring's first key;
older keys stay listed to read what they wrote. Blobs written before encryption was switched on
(no LSE1 prefix) are read as they are, so an archive can be encrypted going forward.

Keys come from a key file (`lsic-cloud keygen`: one `id=base64url(32 bytes)` per line, mode
0600) or from $LSIC_BLOB_KEYS (the same lines, comma separated). The cryptography package does
the cryptography.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lsic.cloud.errors import BlobIntegrityError, BlobKeyError, ConfigError

MAGIC = b"LSE1"
NONCE = 12
KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
KEYS_ENV = "LSIC_BLOB_KEYS"


@dataclass(frozen=True)
class Keyring:
    """Keys by id; `current` encrypts new blobs."""

    keys: dict[str, bytes]
    current: str

    @classmethod
    def parse(cls, text: str, source: str) -> Keyring:
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for n, line in enumerate(re.split(r"[\n,]", text), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key_id, sep, value = line.partition("=")
            if not sep or not KEY_ID_RE.fullmatch(key_id.strip()):
                raise ConfigError(f"{source}: entry {n} is not `id=base64key` with an id of [A-Za-z0-9._-]")
            try:
                key = base64.urlsafe_b64decode(value.strip() + "=" * (-len(value.strip()) % 4))
            except ValueError:
                key = b""
            if len(key) != 32:
                raise ConfigError(f"{source}: key {key_id.strip()!r} is not 32 bytes of base64")
            if key_id.strip() in keys:  # blobs written under one of the two would not read
                raise ConfigError(f"{source}: key id {key_id.strip()!r} appears twice; each key needs its own id")
            keys[key_id.strip()] = key
            order.append(key_id.strip())
        if not keys:
            raise ConfigError(f"{source}: no keys")
        return cls(keys, order[0])

    @classmethod
    def from_file(cls, path: Path) -> Keyring:
        try:
            mode = path.stat().st_mode
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the blob key file {path}: {exc.strerror}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"blob key file {path} is readable by others: chmod 600 it")
        return cls.parse(text, str(path))

    @classmethod
    def from_settings(cls, key_file: str | None) -> Keyring | None:
        """The key file if one is named, else $LSIC_BLOB_KEYS, else None (no encryption)."""
        if key_file:
            return cls.from_file(Path(key_file))
        if os.environ.get(KEYS_ENV):
            return cls.parse(os.environ[KEYS_ENV], f"${KEYS_ENV}")
        return None


def new_key_line(key_id: str, existing: Path | None = None) -> str:
    """A new key's line for a key file; `existing`, when it has keys, must not hold its id."""
    if not KEY_ID_RE.fullmatch(key_id):
        raise ConfigError(f"key id must be 1-64 of [A-Za-z0-9._-], got {key_id[:64]!r}")
    has_keys = existing is not None and existing.is_file() and existing.read_text().strip()
    if has_keys and key_id in Keyring.from_file(existing).keys:
        raise ConfigError(f"{existing} already has a key {key_id!r}; give the new key its own id")
    return f"{key_id}={base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip('=')}"


def encrypt(keyring: Keyring, name: str, data: bytes) -> bytes:
    kid = keyring.current.encode()
    nonce = secrets.token_bytes(NONCE)
    sealed = AESGCM(keyring.keys[keyring.current]).encrypt(nonce, data, name.encode())
    return MAGIC + bytes([len(kid)]) + kid + nonce + sealed


def decrypt(keyring: Keyring, name: str, blob: bytes) -> bytes:
    if not blob.startswith(MAGIC):
        return blob  # written before encryption was switched on
    n = blob[len(MAGIC)] if len(blob) > len(MAGIC) else 0
    start = len(MAGIC) + 1
    kid = blob[start : start + n].decode(errors="replace")
    key = keyring.keys.get(kid)
    if key is None:
        raise BlobKeyError(f"blob {name} is encrypted with key {kid!r}, which this service does not have")
    nonce = blob[start + n : start + n + NONCE]
    try:
        return AESGCM(key).decrypt(nonce, blob[start + n + NONCE :], name.encode())
    except (InvalidTag, ValueError) as exc:
        raise BlobIntegrityError(f"blob {name} fails its authentication tag (altered, truncated or misplaced)") from exc


class EncryptedBlobStore:
    """Any blob store, with every blob encrypted on put and checked and decrypted on get."""

    def __init__(self, inner, keyring: Keyring) -> None:
        self.inner, self.keyring = inner, keyring

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(key, encrypt(self.keyring, key, data))

    def get(self, key: str) -> bytes | None:
        blob = self.inner.get(key)
        return None if blob is None else decrypt(self.keyring, key, blob)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def free_bytes(self) -> int | None:
        return self.inner.free_bytes()

    def ping(self) -> str | None:
        return self.inner.ping()
