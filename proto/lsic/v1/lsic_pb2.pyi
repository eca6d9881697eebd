from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StreamStateRequest(_message.Message):
    __slots__ = ("stream_id",)
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    def __init__(self, stream_id: _Optional[str] = ...) -> None: ...

class StreamState(_message.Message):
    __slots__ = ("stream_id", "exists", "next_sequence")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    exists: bool
    next_sequence: int
    def __init__(self, stream_id: _Optional[str] = ..., exists: _Optional[bool] = ..., next_sequence: _Optional[int] = ...) -> None: ...

class FrameRecord(_message.Message):
    __slots__ = ("stream_id", "sequence", "capture_time_us", "bitstream", "raw_bytes", "device_id", "regions")
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_US_FIELD_NUMBER: _ClassVar[int]
    BITSTREAM_FIELD_NUMBER: _ClassVar[int]
    RAW_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    stream_id: str
    sequence: int
    capture_time_us: int
    bitstream: bytes
    raw_bytes: int
    device_id: str
    regions: _containers.RepeatedCompositeFieldContainer[Region]
    def __init__(self, stream_id: _Optional[str] = ..., sequence: _Optional[int] = ..., capture_time_us: _Optional[int] = ..., bitstream: _Optional[bytes] = ..., raw_bytes: _Optional[int] = ..., device_id: _Optional[str] = ..., regions: _Optional[_Iterable[_Union[Region, _Mapping]]] = ...) -> None: ...

class Region(_message.Message):
    __slots__ = ("x", "y", "width", "height", "kind", "masked")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MASKED_FIELD_NUMBER: _ClassVar[int]
    x: int
    y: int
    width: int
    height: int
    kind: str
    masked: bool
    def __init__(self, x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., kind: _Optional[str] = ..., masked: _Optional[bool] = ...) -> None: ...

class FrameAck(_message.Message):
    __slots__ = ("stream_id", "sequence", "status", "code", "message")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[FrameAck.Status]
        STORED: _ClassVar[FrameAck.Status]
        DUPLICATE: _ClassVar[FrameAck.Status]
        REJECTED: _ClassVar[FrameAck.Status]
        CONFLICT: _ClassVar[FrameAck.Status]
    STATUS_UNSPECIFIED: FrameAck.Status
    STORED: FrameAck.Status
    DUPLICATE: FrameAck.Status
    REJECTED: FrameAck.Status
    CONFLICT: FrameAck.Status
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
    def __init__(self, stream_id: _Optional[str] = ..., sequence: _Optional[int] = ..., status: _Optional[_Union[FrameAck.Status, str]] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class BitsMapResponse(_message.Message):
    __slots__ = ("png", "max_bits_per_pixel", "mean_bits_per_pixel")
    PNG_FIELD_NUMBER: _ClassVar[int]
    MAX_BITS_PER_PIXEL_FIELD_NUMBER: _ClassVar[int]
    MEAN_BITS_PER_PIXEL_FIELD_NUMBER: _ClassVar[int]
    png: bytes
    max_bits_per_pixel: float
    mean_bits_per_pixel: float
    def __init__(self, png: _Optional[bytes] = ..., max_bits_per_pixel: _Optional[float] = ..., mean_bits_per_pixel: _Optional[float] = ...) -> None: ...

class FrameKey(_message.Message):
    __slots__ = ("device_id", "stream_id", "sequence")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    stream_id: str
    sequence: int
    def __init__(self, device_id: _Optional[str] = ..., stream_id: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class FrameInfo(_message.Message):
    __slots__ = ("key", "capture_time_us", "received_time_us", "width", "height", "quality", "model_id", "bytes", "raw_bytes", "tiles", "reference_tiles", "decoded", "decode_state", "decode_error", "regions")
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
    DECODE_STATE_FIELD_NUMBER: _ClassVar[int]
    DECODE_ERROR_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
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
    decode_state: str
    decode_error: str
    regions: _containers.RepeatedCompositeFieldContainer[Region]
    def __init__(self, key: _Optional[_Union[FrameKey, _Mapping]] = ..., capture_time_us: _Optional[int] = ..., received_time_us: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., quality: _Optional[int] = ..., model_id: _Optional[str] = ..., bytes: _Optional[int] = ..., raw_bytes: _Optional[int] = ..., tiles: _Optional[int] = ..., reference_tiles: _Optional[int] = ..., decoded: _Optional[bool] = ..., decode_state: _Optional[str] = ..., decode_error: _Optional[str] = ..., regions: _Optional[_Iterable[_Union[Region, _Mapping]]] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Device(_message.Message):
    __slots__ = ("device_id", "revoked", "created_us", "frames")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    CREATED_US_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    revoked: bool
    created_us: int
    frames: int
    def __init__(self, device_id: _Optional[str] = ..., revoked: _Optional[bool] = ..., created_us: _Optional[int] = ..., frames: _Optional[int] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class ListStreamsRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class StreamInfo(_message.Message):
    __slots__ = ("device_id", "stream_id", "frames", "first_sequence", "last_sequence")
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
    def __init__(self, device_id: _Optional[str] = ..., stream_id: _Optional[str] = ..., frames: _Optional[int] = ..., first_sequence: _Optional[int] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class ListStreamsResponse(_message.Message):
    __slots__ = ("streams",)
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    streams: _containers.RepeatedCompositeFieldContainer[StreamInfo]
    def __init__(self, streams: _Optional[_Iterable[_Union[StreamInfo, _Mapping]]] = ...) -> None: ...

class ListFramesRequest(_message.Message):
    __slots__ = ("device_id", "stream_id", "from_time_us", "to_time_us", "limit", "after_sequence", "newest_first")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_TIME_US_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_US_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    stream_id: str
    from_time_us: int
    to_time_us: int
    limit: int
    after_sequence: int
    newest_first: bool
    def __init__(self, device_id: _Optional[str] = ..., stream_id: _Optional[str] = ..., from_time_us: _Optional[int] = ..., to_time_us: _Optional[int] = ..., limit: _Optional[int] = ..., after_sequence: _Optional[int] = ..., newest_first: _Optional[bool] = ...) -> None: ...

class ListFramesResponse(_message.Message):
    __slots__ = ("frames",)
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[FrameInfo]
    def __init__(self, frames: _Optional[_Iterable[_Union[FrameInfo, _Mapping]]] = ...) -> None: ...

class ReconstructRequest(_message.Message):
    __slots__ = ("key", "x", "y", "width", "height", "downscale")
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
    def __init__(self, key: _Optional[_Union[FrameKey, _Mapping]] = ..., x: _Optional[int] = ..., y: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., downscale: _Optional[int] = ...) -> None: ...

class ReconstructResponse(_message.Message):
    __slots__ = ("png", "width", "height", "tiles_decoded", "decode_seconds")
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
    def __init__(self, png: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., tiles_decoded: _Optional[int] = ..., decode_seconds: _Optional[float] = ...) -> None: ...

class BitstreamResponse(_message.Message):
    __slots__ = ("bitstream",)
    BITSTREAM_FIELD_NUMBER: _ClassVar[int]
    bitstream: bytes
    def __init__(self, bitstream: _Optional[bytes] = ...) -> None: ...

class RegisterDeviceRequest(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class DeviceRef(_message.Message):
    __slots__ = ("device_id",)
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    def __init__(self, device_id: _Optional[str] = ...) -> None: ...

class DeviceToken(_message.Message):
    __slots__ = ("device_id", "token")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    token: str
    def __init__(self, device_id: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...
