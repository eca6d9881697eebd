"""Live sources that drop: an MJPEG camera over HTTP (a real socket, read by OpenCV's FFmpeg)
whose link breaks mid-stream. The agent reopens it and goes on; it stops cleanly while waiting
for a camera that does not come back."""

from __future__ import annotations

import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from lsic.testing import free_port

from .conftest import EdgeRun, archive_frames


class MjpegCamera:
    """An IP camera: each connection gets `per_connection` JPEG frames at 20 frames/s, then the
    link drops. After `connections` connections it refuses any more (the camera is gone)."""

    def __init__(self, per_connection: int, connections: int) -> None:
        self.served = 0
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                camera.served += 1
                if camera.served > connections:
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(per_connection):
                    img = np.zeros((128, 192, 3), np.uint8)
                    cv2.putText(img, f"{camera.served}:{i}", (10, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255))
                    jpg = cv2.imencode(".jpg", img)[1].tobytes()
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                     % (len(jpg), jpg))
                    time.sleep(0.05)

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}/video.mjpg"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def camera(request):
    cam = MjpegCamera(*request.param)
    yield cam
    cam.close()


@pytest.mark.parametrize("camera", [(12, 100)], indirect=True)
def test_a_dropped_camera_link_is_reopened_and_the_stream_goes_on(cloud, camera, tmp_path):
    token = cloud.add_device("cam-ip")
    run = EdgeRun(cloud, token, "cam-ip", tmp_path / "spool", "--source", camera.url, "--max-frames", "30",
                  "--timeout", "120")
    code, summary = run.wait(180)
    log = run.log.read_text()
    assert code == 0, log[-3000:]
    assert summary["acknowledged"] == 30 and camera.served >= 3, "three links or more, one stream"
    assert log.count("live source stopped delivering frames; reconnecting") >= 2
    assert [f.key.sequence for f in archive_frames(cloud, "cam-ip")] == list(range(30))


@pytest.mark.parametrize("camera", [(5, 1)], indirect=True)
def test_the_agent_stops_cleanly_while_waiting_for_a_lost_camera(cloud, camera, tmp_path):
    token = cloud.add_device("cam-gone")
    run = EdgeRun(cloud, token, "cam-gone", tmp_path / "spool", "--source", camera.url)
    deadline = time.monotonic() + 60
    while "live source still unavailable" not in run.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(archive_frames(cloud, "cam-gone")) == 5, "what the camera gave was delivered"
    t0 = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    code, summary = run.wait(30)
    assert code == 0 and summary["acknowledged"] == 5
    assert time.monotonic() - t0 < 10
