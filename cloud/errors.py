"""The cloud service's own failures, in the one LSIC exception hierarchy (lsic.codec.errors).

Each maps to a gRPC status at the service edge and to an exit code in `lsic-cloud`.
"""

from __future__ import annotations

from lsic.codec.errors import LsicError


class CloudError(LsicError):
    """Base of the service's own errors."""

    exit_code = 20
    grpc_status = "INTERNAL"


class StorageFullError(CloudError):
    """The blob store or the metadata database has no room left; nothing was written. Retry later."""

    exit_code = 13
    grpc_status = "RESOURCE_EXHAUSTED"


class MetadataUnavailableError(CloudError):
    """The metadata database refused or lost the connection; nothing was written. Retry later."""

    exit_code = 21
    grpc_status = "UNAVAILABLE"


class BlobStoreError(CloudError):
    """The blob store failed a read or write (I/O error, object store unreachable). Retry later."""

    exit_code = 26
    grpc_status = "UNAVAILABLE"


class FrameBusyError(CloudError):
    """Another request is storing this (device, stream, sequence) right now. Retry later."""

    exit_code = 22
    grpc_status = "UNAVAILABLE"


class BlobKeyError(CloudError):
    """An encrypted blob names a key this service does not have, or no key is configured."""

    exit_code = 23
    grpc_status = "FAILED_PRECONDITION"


class BlobIntegrityError(CloudError):
    """An encrypted blob fails its authentication tag: it was altered or stored under another name."""

    exit_code = 24
    grpc_status = "DATA_LOSS"


class BlobMissingError(CloudError):
    """A stored frame's bitstream is not in the blob store (deleted or lost underneath the service)."""

    exit_code = 27
    grpc_status = "DATA_LOSS"


class ConfigError(CloudError):
    """The service's settings cannot work (port taken, TLS files missing, bad key file)."""

    exit_code = 25
    grpc_status = "FAILED_PRECONDITION"
