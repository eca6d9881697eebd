"""The decode worker in-process over real SQLite and blob folders: leases, quarantine, the
reconstruction cache's cap, and a full disk."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lsic.cloud.ingest import blob_key
from lsic.cloud.reconstruct import MAX_ATTEMPTS, DecodeSettings, DecodeWorker, Reconstructor
from lsic.cloud.storage.blobs import LocalBlobStore
from lsic.cloud.storage.metadata import (
    DECODED,
    EVICTED,
    FAILED,
    QUARANTINED,
    WAITING,
    FrameRow,
    SqliteMetadataStore,
    now_us,
)
from lsic.codec.decoder import Decoder

from ..conftest import natural_image


@pytest.fixture()
def archive(tmp_path, encoder):
    """A store with six stored frames of one stream, and their blobs."""
    store = SqliteMetadataStore(tmp_path / "m.db")
    blobs = LocalBlobStore(tmp_path / "blobs")
    for seq in range(6):
        data = encoder.encode(natural_image(256, 384), 2 + seq % 3)
        sha = hashlib.sha256(data).hexdigest()
        row = FrameRow("dev", "main", seq, seq, now_us() + seq, 384, 256, 3, "default", len(data), 0, 6, 0,
                       blob_key("dev", "main", seq, sha), content_sha256=sha)
        blobs.put(row.blob_key, data)
        assert store.claim_frame(row) is None
        store.mark_stored(row)
    yield store, blobs
    store.close()


def worker(store, blobs, **kw) -> DecodeWorker:
    return DecodeWorker(store, Reconstructor(store, blobs, Decoder(backend="onnx")), DecodeSettings(owner="w", **kw))


def test_a_frame_that_stopped_two_workers_is_quarantined(archive):
    store, blobs = archive
    for crashed in range(MAX_ATTEMPTS):  # two workers die while holding frame 0
        rows = store.claim_decode(f"dead-{crashed}", 1, lease_s=60)
        assert [r.seq for r in rows] == [0]
        with store._tx() as cur:
            cur.execute("UPDATE frames SET decode_lease_us = 1 WHERE seq = 0")
    w = worker(store, blobs, batch_frames=6)
    w.step(store.claim_decode("w", 6, lease_s=60))
    states = {r.seq: (r.decoded, r.decode_error) for r in store.list_frames("dev")}
    assert states[0][0] == QUARANTINED and "set aside" in states[0][1]
    assert all(states[s][0] == DECODED for s in range(1, 6)), "the others are decoded"


def test_the_reconstruction_cache_keeps_to_its_cap(archive):
    store, blobs = archive
    w = worker(store, blobs, cache_bytes=300_000, reserve_bytes=0)
    w.step(store.claim_decode("w", 6, lease_s=60))
    assert store.cache_bytes() <= 300_000
    states = [r.decoded for r in store.list_frames("dev")]
    assert EVICTED in states and states[-1] == DECODED, "the oldest reconstructions make room"
    for r in store.list_frames("dev"):
        cached = w.recon.cached(r)
        assert (cached is not None) == (r.decoded == DECODED)
        rgb, tiles = w.recon.render(r, None)
        assert rgb.shape == (256, 384, 3) and (tiles == 0) == (r.decoded == DECODED), "evicted ones decode on demand"


def test_a_full_disk_pauses_the_worker_and_keeps_the_frames_waiting(archive):
    """Under its free-space reserve with nothing left to evict, the worker hands the batch back
    undecoded (the attempt not counted) and waits."""
    store, blobs = archive
    w = worker(store, blobs, reserve_bytes=1 << 62)
    w.settings.poll_s = 0
    rows = store.claim_decode("w", 6, lease_s=60)
    w.step(rows)
    after = store.list_frames("dev")
    assert all(r.decoded == WAITING and r.decode_attempts == 0 for r in after)
    assert w._pause > 1.0, "it backs off"


def store_stream(store, blobs, datas: list[bytes], seqs: list[int], stream: str = "cam") -> None:
    for data, seq in zip(datas, seqs, strict=True):
        sha = hashlib.sha256(data).hexdigest()
        row = FrameRow("dev", stream, seq, seq, now_us(), 320, 192, 6, "default", len(data), 0, 1, 0,
                       blob_key("dev", stream, seq, sha), content_sha256=sha)
        blobs.put(row.blob_key, data)
        assert store.claim_frame(row) is None
        store.mark_stored(row)


@pytest.fixture(scope="module")
def temporal_stream(encoder):
    from lsic.codec.video import VideoEncoder, VideoSettings

    from ..codec.test_temporal import scene

    video = VideoEncoder(encoder, tile_size=128, settings=VideoSettings(keyframe_interval=5))
    return [video.encode(f, 6).data for f in scene(8)]


def test_predicted_frames_decode_in_batches_and_on_their_own_alike(tmp_path, temporal_stream):
    """The worker decodes a temporal stream split over batches (the reference of a batch's first
    frame rebuilt from the archive); any frame rendered alone, by a fresh reconstructor, is the same."""
    store, blobs = SqliteMetadataStore(tmp_path / "m.db"), LocalBlobStore(tmp_path / "blobs")
    store_stream(store, blobs, temporal_stream, list(range(8)))
    w = worker(store, blobs, batch_frames=3)
    while rows := store.claim_decode("w", 3, lease_s=60):
        w.step(rows)
    rows = store.list_frames("dev")
    assert [r.decoded for r in rows] == [DECODED] * 8
    fresh = Reconstructor(store, blobs, Decoder(backend="onnx"))
    for r in (rows[7], rows[3], rows[6]):
        alone, _ = fresh.render(r, None)
        assert (alone == w.recon.cached(r)).all()
    store.close()


def test_a_missing_reference_waits_then_fails_saying_which_frame(tmp_path, temporal_stream):
    from lsic.codec.errors import MissingReferenceError

    store, blobs = SqliteMetadataStore(tmp_path / "m.db"), LocalBlobStore(tmp_path / "blobs")
    store_stream(store, blobs, [temporal_stream[0], temporal_stream[2]], [0, 2])  # frame 1 never arrived
    w = worker(store, blobs, reference_wait_s=3600)
    w.step(store.claim_decode("w", 4, lease_s=60))
    states = {r.seq: r.decoded for r in store.list_frames("dev")}
    assert states == {0: DECODED, 2: WAITING}, "it waits for its reference"
    assert store.claim_decode("w", 4, lease_s=60) == [], "and is not claimed again at once"
    with pytest.raises(MissingReferenceError, match="predicted from frame 1"):
        w.recon.render(store.list_frames("dev")[1], None)
    w.settings.reference_wait_s = 0
    with store._tx() as cur:
        cur.execute("UPDATE frames SET decode_lease_us = 0")
    w.step(store.claim_decode("w", 4, lease_s=60))
    row = store.list_frames("dev")[1]
    assert row.decoded == FAILED and "frame 1, which is not in the archive" in row.decode_error
    store.close()


def test_a_reused_tile_of_a_predicted_frame_is_rebuilt_with_its_latents(tmp_path, encoder, temporal_stream):
    """A frame that keeps one tile's pixels from a predicted frame: a fresh reconstructor decodes
    that reference through its chain of latents back to the keyframe, and shows its pixels."""
    from lsic.codec.bitstream import parse

    from ..codec.test_temporal import scene

    store, blobs = SqliteMetadataStore(tmp_path / "m.db"), LocalBlobStore(tmp_path / "blobs")
    last = scene(4)[3]
    reusing = encoder.encode(last, 6, tile_size=128, unchanged={0})
    assert parse(temporal_stream[3]).header.predicted and parse(reusing).reuses_pixels(0)
    store_stream(store, blobs, [*temporal_stream[:4], reusing], list(range(5)))
    rows = store.list_frames("dev")
    fresh = Reconstructor(store, blobs, Decoder(backend="onnx"))
    predicted = fresh.decode(rows[3]).tiles[0]
    shown = Reconstructor(store, blobs, Decoder(backend="onnx")).decode(rows[4]).tiles[0]
    # pixel for pixel, away from the seams smoothed beside the reused tile
    assert np.array_equal(shown[:-5, :-5], predicted[:-5, :-5])
    store.close()


def test_the_bits_map_of_a_predicted_frame_is_read_against_its_reference(tmp_path, temporal_stream):
    store, blobs = SqliteMetadataStore(tmp_path / "m.db"), LocalBlobStore(tmp_path / "blobs")
    store_stream(store, blobs, temporal_stream[:3], [0, 1, 2])
    rows = store.list_frames("dev")
    recon = Reconstructor(store, blobs, Decoder(backend="onnx"))
    png, scale, mean = recon.bits_map(rows[2])
    assert png.startswith(b"\x89PNG") and scale > 0 and 0 < mean < recon.bits_map(rows[0])[2]
    store.close()


def pooled_worker(store, blobs, pool, **kw) -> DecodeWorker:
    recon = Reconstructor(store, blobs, Decoder(backend="onnx", pool=pool))
    return DecodeWorker(store, recon, DecodeSettings(owner="w", **kw))


def test_a_worker_with_a_tile_pool_decodes_what_one_without_decodes(tmp_path, archive, temporal_stream):
    """Tiles entropy-decoded in worker processes: stills and a temporal stream (its keyframes'
    latents come back from the pool for the predicted frames after them) come out pixel for
    pixel as a worker that decodes its tiles itself makes them."""
    from lsic.codec.tile_pool import TilePool

    stills_store, stills_blobs = archive
    store, blobs = SqliteMetadataStore(tmp_path / "t.db"), LocalBlobStore(tmp_path / "tblobs")
    store_stream(store, blobs, temporal_stream, list(range(8)))
    with TilePool(2) as pool:
        for st, bl, batch in ((store, blobs, 3), (stills_store, stills_blobs, 6)):
            w = pooled_worker(st, bl, pool, batch_frames=batch)
            while rows := st.claim_decode("w", batch, lease_s=60):
                w.step(rows)
            rows = st.list_frames("dev")
            assert [r.decoded for r in rows] == [DECODED] * len(rows)
            alone = Reconstructor(st, bl, Decoder(backend="onnx"))
            for r in rows:
                assert np.array_equal(w.recon.cached(r), alone.decode(r).rgb), r.seq
    store.close()


def test_a_killed_tile_process_costs_no_frame(archive):
    """A pool process that dies (killed, out of memory) breaks the pool: the batch is decoded
    again frame by frame in a new pool, and every frame is decoded."""
    import multiprocessing
    import os
    import signal

    from lsic.codec.tile_pool import TilePool

    store, blobs = archive
    with TilePool(2) as pool:
        pool.warm_up()
        w = pooled_worker(store, blobs, pool, batch_frames=6)
        victim = multiprocessing.active_children()[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        w.step(store.claim_decode("w", 6, lease_s=60))
        assert [r.decoded for r in store.list_frames("dev")] == [DECODED] * 6
        assert victim.pid not in {p.pid for p in multiprocessing.active_children()}


def test_tile_processes_end_with_the_process_that_owns_them(tmp_path):
    """A decode worker killed outright leaves no tile process behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    code = ("from lsic.codec.tile_pool import TilePool\nimport multiprocessing, time\n"
            "p = TilePool(2)\np.warm_up()\nprint(*[c.pid for c in multiprocessing.active_children()], flush=True)\n"
            "time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    children = [int(v) for v in owner.stdout.readline().split()]
    assert len(children) == 2
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 10
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in children)


def test_the_running_worker_stores_a_batch_while_it_decodes_the_next(tmp_path, temporal_stream):
    """`run`, as the service runs it: batches of three over a temporal stream, each stored while
    the next decodes (a frame's reference may be in the batch still being stored). Every frame is
    decoded, as a fresh reconstructor renders it alone, and the worker stops cleanly."""
    import threading
    import time

    store, blobs = SqliteMetadataStore(tmp_path / "m.db"), LocalBlobStore(tmp_path / "blobs")
    store_stream(store, blobs, temporal_stream, list(range(8)))
    w = worker(store, blobs, batch_frames=3, poll_s=0.05, store_overlap=True)
    loop = threading.Thread(target=w.run)
    loop.start()
    deadline = time.monotonic() + 120
    while any(r.decoded == WAITING for r in store.list_frames("dev")) and time.monotonic() < deadline:
        time.sleep(0.05)
    w.stop()
    loop.join(30)
    assert not loop.is_alive()
    rows = store.list_frames("dev")
    assert [r.decoded for r in rows] == [DECODED] * 8
    fresh = Reconstructor(store, blobs, Decoder(backend="onnx"))
    for r in rows:
        assert np.array_equal(fresh.decode(r).rgb, w.recon.cached(r)), r.seq
    store.close()
