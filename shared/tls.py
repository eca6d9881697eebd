"""TLS material for gRPC, read once and checked before anything connects or listens: a wrong
path, a file that is not PEM, or a client certificate without its key is one clear error here
(gRPC's C core would abort the process on some, or report a bad certificate as a busy port)."""

from __future__ import annotations

from pathlib import Path

import grpc

from lsic.codec.errors import UsageError


def read_pem(path: str | Path, option: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise UsageError(f"{option} {path}: not a PEM file (no -----BEGIN line)")
    return data


def _pair(cert: str | Path | None, key: str | Path | None, cert_option: str, key_option: str):
    if bool(cert) != bool(key):
        raise UsageError(f"{cert_option} and {key_option} go together")
    return (read_pem(cert, cert_option), read_pem(key, key_option)) if cert else (None, None)


def channel_credentials(
    ca: str | Path | None, client_cert: str | Path | None = None, client_key: str | Path | None = None
) -> grpc.ChannelCredentials:
    """A client's TLS: the service's CA (None: the system's roots) and, for mutual TLS, its own pair."""
    cert, key = _pair(client_cert, client_key, "--client-cert", "--client-key")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(ca, "--ca") if ca else None, private_key=key, certificate_chain=cert
    )


def server_credentials(cert: str | Path | None, key: str | Path | None, client_ca: str | Path | None):
    """A service's TLS; with client_ca, clients must present a certificate it signed."""
    if not (cert and key):
        raise UsageError("TLS needs --tls-cert and --tls-key (or --insecure on localhost)")
    cert_pem, key_pem = _pair(cert, key, "--tls-cert", "--tls-key")
    ca = read_pem(client_ca, "--client-ca") if client_ca else None
    return grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca, require_client_auth=ca is not None)
