"""Archive and Admin services: operators list, reconstruct and fetch frames, manage devices."""

from __future__ import annotations

import time

import grpc

from lsic.cloud.auth import DEVICE_ID_RE, OPERATOR, Authenticator, hash_token, new_token, shown
from lsic.cloud.frames import frame_info
from lsic.cloud.reconstruct import Reconstructor
from lsic.cloud.storage.metadata import FrameRow, SqlMetadataStore
from lsic.codec.image_io import encode_image
from lsic.v1 import lsic_pb2 as pb
from lsic.v1 import lsic_pb2_grpc as pb_grpc


class ArchiveService(pb_grpc.ArchiveServicer):
    """Operators' reads of the archive. An LsicError a handler raises reaches the client as its
    own status (cloud.call_errors)."""

    def __init__(self, store: SqlMetadataStore, recon: Reconstructor, auth: Authenticator) -> None:
        self.store, self.recon, self.auth = store, recon, auth

    def _row(self, key: pb.FrameKey, context: grpc.ServicerContext) -> FrameRow:
        row = self.store.get_frame(key.device_id, key.stream_id, key.sequence)
        if row is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no frame {key.device_id}/{key.stream_id}/{key.sequence}")
        return row

    def ListDevices(self, request, context):
        self.auth.operator(context)
        return pb.ListDevicesResponse(
            devices=[
                pb.Device(device_id=d.device_id, revoked=bool(d.revoked), created_us=d.created_us, frames=n)
                for d, n in self.store.list_devices()
            ]
        )

    def _known_device(self, device_id: str, context: grpc.ServicerContext) -> None:
        if self.store.get_device(device_id) is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no device {shown(device_id)} is registered")

    def ListStreams(self, request, context):
        self.auth.operator(context)
        self._known_device(request.device_id, context)
        return pb.ListStreamsResponse(
            streams=[
                pb.StreamInfo(device_id=request.device_id, stream_id=s, frames=n, first_sequence=a, last_sequence=b)
                for s, n, a, b in self.store.list_streams(request.device_id)
            ]
        )

    def ListFrames(self, request, context):
        self.auth.operator(context)
        self._known_device(request.device_id, context)
        rows = self.store.list_frames(
            request.device_id,
            request.stream_id,
            request.from_time_us,
            request.to_time_us,
            min(request.limit or 1000, 10000),
            int(request.after_sequence) if request.after_sequence else -1,
            newest_first=request.newest_first,
        )
        return pb.ListFramesResponse(frames=[frame_info(r) for r in rows])

    def GetFrame(self, request, context):
        self.auth.operator(context)
        return frame_info(self._row(request, context))

    def GetBitstream(self, request, context):
        self.auth.operator(context)
        return pb.BitstreamResponse(bitstream=self.recon.bitstream(self._row(request, context)))

    def GetBitsMap(self, request, context):
        self.auth.operator(context)
        png, scale, mean = self.recon.bits_map(self._row(request, context))
        return pb.BitsMapResponse(png=png, max_bits_per_pixel=scale, mean_bits_per_pixel=mean)

    def Reconstruct(self, request, context):
        self.auth.operator(context)
        row = self._row(request.key, context)
        region = (request.x, request.y, request.width, request.height) if request.width and request.height else None
        t0 = time.perf_counter()
        rgb, tiles = self.recon.render(row, region, request.downscale or 1)
        return pb.ReconstructResponse(
            png=encode_image(rgb, ".png"),
            width=rgb.shape[1],
            height=rgb.shape[0],
            tiles_decoded=tiles,
            decode_seconds=time.perf_counter() - t0,
        )


class AdminService(pb_grpc.AdminServicer):
    def __init__(self, store: SqlMetadataStore, auth: Authenticator) -> None:
        self.store, self.auth = store, auth

    def RegisterDevice(self, request, context):
        self.auth.operator(context)
        if not DEVICE_ID_RE.fullmatch(request.device_id) or request.device_id == OPERATOR:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid device id {shown(request.device_id)}")
        token = new_token(request.device_id)
        if not self.store.add_device(request.device_id, hash_token(token)):
            context.abort(
                grpc.StatusCode.ALREADY_EXISTS, f"device {request.device_id} exists (a new token: `lsic-cloud device token {request.device_id}`)"
            )
        return pb.DeviceToken(device_id=request.device_id, token=token)

    def IssueToken(self, request, context):
        self.auth.operator(context)
        token = new_token(request.device_id)
        if not self.store.set_token(request.device_id, hash_token(token)):
            context.abort(grpc.StatusCode.NOT_FOUND, f"no device {request.device_id}")
        return pb.DeviceToken(device_id=request.device_id, token=token)

    def RevokeDevice(self, request, context):
        self.auth.operator(context)
        if not self.store.revoke(request.device_id):
            context.abort(grpc.StatusCode.NOT_FOUND, f"no device {request.device_id}")
        d = self.store.get_device(request.device_id)
        return pb.Device(device_id=d.device_id, revoked=True, created_us=d.created_us)
