"""Credentials: device tokens and the operator token, stored only as SHA-256 hashes.

A token reads `<device_id>:<secret>`; the device id tells whose hash to compare, the secret
is 32 random bytes. Operators use the id `operator`, whose token `serve` writes into its data
folder (mode 0600) for local command-line use.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

import grpc

from lsic.cloud.storage.metadata import SqlMetadataStore
from lsic.codec.errors import LsicError

OPERATOR = "operator"
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # matched whole (fullmatch)
OPERATOR_TOKEN_FILE = "operator.token"


def shown(text: str, limit: int = 64) -> str:
    """A client-supplied string as it may appear in an error or a log: quoted, cut to `limit`."""
    return repr(text[:limit]) + (f" (+{len(text) - limit} characters)" if len(text) > limit else "")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(device_id: str) -> str:
    return f"{device_id}:{secrets.token_urlsafe(32)}"


def load_or_create_operator_token(data_dir: Path) -> str:
    """$LSIC_OPERATOR_TOKEN (replicas sharing one token), else DATA/operator.token, created once."""
    if os.environ.get("LSIC_OPERATOR_TOKEN"):
        return os.environ["LSIC_OPERATOR_TOKEN"].strip()
    path = data_dir / OPERATOR_TOKEN_FILE
    if path.is_file():
        return path.read_text().strip()
    token = new_token(OPERATOR)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def bearer(context: grpc.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata():
        if key == "authorization" and value.startswith("Bearer "):
            return value[len("Bearer ") :].strip()
    return None


class Authenticator:
    def __init__(self, store: SqlMetadataStore, operator_token: str) -> None:
        self.store = store
        self.operator_hash = hash_token(operator_token)

    def device(self, context: grpc.ServicerContext) -> str:
        """The authenticated device id, or the call is aborted with UNAUTHENTICATED."""
        token = bearer(context)
        if not token or ":" not in token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or malformed device token")
        device_id = token.split(":", 1)[0]
        if not DEVICE_ID_RE.fullmatch(device_id):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown device or wrong token")
        try:
            row = self.store.get_device(device_id)
        except LsicError as exc:
            context.abort(grpc.StatusCode[exc.grpc_status], str(exc))
        if row is None or not hmac.compare_digest(row.token_hash, hash_token(token)):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown device or wrong token")
        if row.revoked:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"device {device_id} is revoked")
        return device_id

    def operator(self, context: grpc.ServicerContext) -> None:
        token = bearer(context)
        if not token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing operator token")
        if not hmac.compare_digest(hash_token(token), self.operator_hash):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "operator credentials required")
