from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper

DESCRIPTOR: _descriptor.FileDescriptor

class FrameRecord(_message.Message):
    __slots__ = ("bitstream", "capture_time_us", "device_id", "raw_bytes", "sequence", "stream_id")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    BITSTREAM_FIELD_NUMBER: _ClassVar[int]
    RAW_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    sequence: int
    capture_time_us: int
    bitstream: bytes
    raw_bytes: int
    device_id: str
    def __init__(
        self,
        stream_id: str | None = ...,
        sequence: int | None = ...,
        capture_time_us: int | None = ...,
        bitstream: bytes | None = ...,
        raw_bytes: int | None = ...,
        device_id: str | None = ...,
    ) -> None: ...

class FrameAck(_message.Message):
    __slots__ = ("code", "message", "sequence", "status", "stream_id")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[FrameAck.Status]
        STORED: _ClassVar[FrameAck.Status]
        DUPLICATE: _ClassVar[FrameAck.Status]
        REJECTED: _ClassVar[FrameAck.Status]

    STATUS_UNSPECIFIED: FrameAck.Status
    STORED: FrameAck.Status
    DUPLICATE: FrameAck.Status
    REJECTED: FrameAck.Status
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    sequence: int
    status: FrameAck.Status
    code: int
    message: str
    def __init__(
        self,
        stream_id: str | None = ...,
        sequence: int | None = ...,
        status: FrameAck.Status | str | None = ...,
        code: int | None = ...,
        message: str | None = ...,
    ) -> None: ...

class FrameKey(_message.Message):
    __slots__ = ("device_id", "sequence", "stream_id")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    stream_id: str
    sequence: int
    def __init__(
        self, device_id: str | None = ..., stream_id: str | None = ..., sequence: int | None = ...
    ) -> None: ...

class FrameInfo(_message.Message):
    __slots__ = (
        "bytes",
        "capture_time_us",
        "decoded",
        "height",
        "key",
        "model_id",
        "quality",
        "raw_bytes",
        "received_time_us",
        "reference_tiles",
        "tiles",
        "width",
    )
    KEY_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_TIME_US_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    RAW_BYTES_FIELD_NUMBER: _ClassVar[int]
    TILES_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_TILES_FIELD_NUMBER: _ClassVar[int]
    DECODED_FIELD_NUMBER: _ClassVar[int]
    key: FrameKey
    capture_time_us: int
    received_time_us: int
    width: int
    height: int
    quality: int
    model_id: str
    bytes: int
    raw_bytes: int
    tiles: int
    reference_tiles: int
    decoded: bool
    def __init__(
        self,
        key: FrameKey | _Mapping | None = ...,
        capture_time_us: int | None = ...,
        received_time_us: int | None = ...,
        width: int | None = ...,
        height: int | None = ...,
        quality: int | None = ...,
        model_id: str | None = ...,
        bytes: int | None = ...,
        raw_bytes: int | None = ...,
        tiles: int | None = ...,
        reference_tiles: int | None = ...,
        decoded: bool | None = ...,
    ) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Device(_message.Message):
    __slots__ = ("created_us", "device_id", "frames", "revoked")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    CREATED_US_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    revoked: bool
    created_us: int
    frames: int
    def __init__(
        self,
        device_id: str | None = ...,
        revoked: bool | None = ...,
        created_us: int | None = ...,
        frames: int | None = ...,
    ) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Iterable[Device | _Mapping] | None = ...) -> None: ...

class ListStreamsRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: str | None = ...) -> None: ...

class StreamInfo(_message.Message):
    __slots__ = ("device_id", "first_sequence", "frames", "last_sequence", "stream_id")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    stream_id: str
    frames: int
    first_sequence: int
    last_sequence: int
    def __init__(
        self,
        device_id: str | None = ...,
        stream_id: str | None = ...,
        frames: int | None = ...,
        first_sequence: int | None = ...,
        last_sequence: int | None = ...,
    ) -> None: ...

class ListStreamsResponse(_message.Message):
    __slots__ = ("streams",)
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    streams: _containers.RepeatedCompositeFieldContainer[StreamInfo]
    def __init__(self, streams: _Iterable[StreamInfo | _Mapping] | None = ...) -> None: ...

class ListFramesRequest(_message.Message):
    __slots__ = ("after_sequence", "device_id", "from_time_us", "limit", "stream_id", "to_time_us")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_US_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_US_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    stream_id: str
    from_time_us: int
    to_time_us: int
    limit: int
    after_sequence: int
    def __init__(
        self,
        device_id: str | None = ...,
        stream_id: str | None = ...,
        from_time_us: int | None = ...,
        to_time_us: int | None = ...,
        limit: int | None = ...,
        after_sequence: int | None = ...,
    ) -> None: ...

class ListFramesResponse(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[FrameInfo]
    def __init__(self, frames: _Iterable[FrameInfo | _Mapping] | None = ...) -> None: ...

class ReconstructRequest(_message.Message):
    __slots__ = ("downscale", "height", "key", "width", "x", "y")
    KEY_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DOWNSCALE_FIELD_NUMBER: _ClassVar[int]
    key: FrameKey
    x: int
    y: int
    width: int
    height: int
    downscale: int
    def __init__(
        self,
        key: FrameKey | _Mapping | None = ...,
        x: int | None = ...,
        y: int | None = ...,
        width: int | None = ...,
        height: int | None = ...,
        downscale: int | None = ...,
    ) -> None: ...

class ReconstructResponse(_message.Message):
    __slots__ = ("decode_seconds", "height", "png", "tiles_decoded", "width")
    PNG_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    TILES_DECODED_FIELD_NUMBER: _ClassVar[int]
    DECODE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    png: bytes
    width: int
    height: int
    tiles_decoded: int
    decode_seconds: float
    def __init__(
        self,
        png: bytes | None = ...,
        width: int | None = ...,
        height: int | None = ...,
        tiles_decoded: int | None = ...,
        decode_seconds: float | None = ...,
    ) -> None: ...

class BitstreamResponse(_message.Message):
    __slots__ = ("bitstream",)
    BITSTREAM_FIELD_NUMBER: _ClassVar[int]
    bitstream: bytes
    def __init__(self, bitstream: bytes | None = ...) -> None: ...

class RegisterDeviceRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: str | None = ...) -> None: ...

class DeviceRef(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: str | None = ...) -> None: ...

class DeviceToken(_message.Message):
    __slots__ = ("device_id", "token")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    token: str
    def __init__(self, device_id: str | None = ..., token: str | None = ...) -> None: ...
