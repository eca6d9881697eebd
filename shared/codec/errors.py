"""One exception hierarchy for the codec.

Every failure a user can cause is one of these types. The CLI maps each type to its own exit
code and a one-line message; the cloud service maps each to a gRPC status code. Nothing else
should reach a user.
"""

from __future__ import annotations


class LsicError(Exception):
    """Base of every error LSIC reports to a user."""

    exit_code = 1
    grpc_status = "INTERNAL"


class UsageError(LsicError):
    """A command cannot do what it was asked as given: a missing setting, a folder where a file
    belongs, an output format that cannot be written."""

    exit_code = 2
    grpc_status = "INVALID_ARGUMENT"


class InputImageError(LsicError):
    """The input image cannot be coded (unreadable, empty, unsupported depth or format)."""

    exit_code = 3
    grpc_status = "INVALID_ARGUMENT"


class BitstreamError(LsicError):
    """A .lsic bitstream is malformed."""

    exit_code = 4
    grpc_status = "INVALID_ARGUMENT"


class FrameLimitError(BitstreamError):
    """A bitstream claims a frame larger than this decoder or service accepts (pixels, side,
    tile size or tile count): refused before anything is allocated for it."""

    exit_code = 14
    grpc_status = "INVALID_ARGUMENT"


class TruncatedBitstreamError(BitstreamError):
    """The bitstream ends before the data its header announces."""

    exit_code = 5


class ChecksumError(BitstreamError):
    """A CRC32C over the header or a tile does not match: the data was corrupted."""

    exit_code = 6
    grpc_status = "DATA_LOSS"


class UnsupportedVersionError(BitstreamError):
    """The bitstream was written by a newer format version than this decoder knows."""

    exit_code = 7
    grpc_status = "FAILED_PRECONDITION"


class MissingReferenceError(BitstreamError):
    """A predicted frame's reference (the previous frame of its stream) is not available: not
    stored yet, lost, or not given to the decoder. Nothing is decoded from a wrong reference."""

    exit_code = 15
    grpc_status = "FAILED_PRECONDITION"


class ReferenceMismatchError(MissingReferenceError):
    """A predicted tile names (by checksum) another reference than the one the decoder holds:
    frames out of order, or a frame of the stream missing in between."""


class ModelError(LsicError):
    """A model package is missing, unknown or damaged."""

    exit_code = 8
    grpc_status = "FAILED_PRECONDITION"


class UnknownModelError(ModelError):
    """No installed model package has the requested id."""

    exit_code = 9
    grpc_status = "NOT_FOUND"


class ModelHashError(ModelError):
    """A model package's files do not match the hashes in its model.json or a bitstream."""

    exit_code = 10


class OperatingPointError(LsicError):
    """The requested quality / operating point does not exist in the model."""

    exit_code = 11
    grpc_status = "INVALID_ARGUMENT"


class RegionError(LsicError):
    """A requested region lies outside the image or is empty."""

    exit_code = 12
    grpc_status = "OUT_OF_RANGE"
