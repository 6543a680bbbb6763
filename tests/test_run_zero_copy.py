"""Zero copy from camera to engine (issue 22): the fake GenICam camera's buffers are made over the engine's host
memory, the frame the engine reads is a view of its buffer, the buffer goes back to the camera only when the
pipeline is done with the frame, and the copying path stays where the memory does not allow it."""
from __future__ import annotations

import time

import numpy as np
import pytest

from edgefold.cli.main import main
from edgefold.runtime import Engine
from edgefold.runtime.ort_backend import aligned
from edgefold.runtime.pipeline import RunOptions, stream
from edgefold.runtime.sinks import recorded
from edgefold.runtime.sources import open_source
from edgefold.runtime.trt_backend import copies_in_place, lies_in
from tests.camera_engines import bare_model, check_recorded, fold_for
from tests.models import run

pytest.importorskip("cv2")
try:
    from edgefold.runtime.sources.aravis import _aravis

    _aravis()
except Exception as err:  # noqa: BLE001 - skipped with the reason where Aravis is not installed
    pytest.skip(f"Aravis unavailable ({err}); ./run test installs it", allow_module_level=True)


@pytest.fixture(scope="module")
def bayer(tmp_path_factory):
    return fold_for("BayerRG8", tmp_path_factory.mktemp("engines"))


class Spy:
    """The real backend, watched: the host memory it hands out and the inputs it is given."""

    def __init__(self, engine: Engine) -> None:
        self.backend = engine._backend
        self.blocks: list[np.ndarray] = []
        self.feeds: list[np.ndarray] = []
        engine._backend = self

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else is the backend's own
        return getattr(self.backend, name)

    def host_memory(self, nbytes: int) -> np.ndarray:
        block = self.backend.host_memory(nbytes)
        self.blocks.append(block)
        return block

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.feeds.extend(feeds.values())
        return self.backend.run(feeds)


class Checked:
    """A slow sink that checks the frame it is given stays intact while it works, and equals what the engine
    read: the folded model on a copy of the buffer gives the outputs the pipeline got."""

    def __init__(self, folded, original, pause: float = 0.0) -> None:  # noqa: ANN001
        self.folded, self.original, self.pause = folded, original, pause
        self.frames: list[np.ndarray] = []

    def add(self, result, stats) -> None:  # noqa: ANN001
        before = result.frame.raw.copy()
        time.sleep(self.pause)  # the camera meanwhile fills every buffer it has
        np.testing.assert_array_equal(result.frame.raw, before)
        check_recorded(before, result.outputs, self.folded, self.original, "BayerRG8")
        self.frames.append(before)

    def close(self) -> None:
        pass


def test_the_frame_the_engine_reads_is_the_camera_buffer_in_the_backends_memory(bayer):
    folded, original = bayer
    with Engine(folded) as engine:
        spy = Spy(engine)
        source = open_source("aravis:Fake_1", engine.contract, frame_rate=200)
        sink = Checked(folded, original)
        summary = stream(engine, [source], RunOptions(frames=5), [sink])
    assert summary.frames == 5 and summary.error is None
    assert len(spy.blocks) == 4 + 1 + 2  # the driver's 4, the slot's, the acquisition thread's, the engine's
    assert len(spy.feeds) == 5
    for feed in spy.feeds:
        assert sum(np.shares_memory(feed, block) for block in spy.blocks) == 1
        assert lies_in(feed, spy.blocks)
    assert "zero-copy: the camera writes into memory onnxruntime reads in place" in summary.cameras[0].notes
    assert len({f.tobytes() for f in sink.frames}) == 5  # five distinct frames


def test_frames_held_by_the_pipeline_are_never_written_by_the_camera(bayer):
    """Three frames held, the camera at 1000 fps filling its other buffers meanwhile: the held frames keep their
    content; a buffer handed back is written again."""
    with Engine(bayer[0]) as engine:
        source = open_source("aravis:Fake_1", engine.contract, frame_rate=1000)
        assert source.map_buffers(aligned, held=3) is None
        source.start()
        try:
            held = [source.read() for _ in range(3)]
            copies = [f.raw.copy() for f in held]
            later = []
            for _ in range(20):
                frame = source.read()
                later.append(frame.raw.copy())
                assert not any(np.shares_memory(frame.raw, h.raw) for h in held)
                frame.done()
            for frame, copy in zip(held, copies):
                np.testing.assert_array_equal(frame.raw, copy)
            assert len({c.tobytes() for c in copies + later}) == 23  # the fake camera's frames all differ
            buffer = held[0].raw
            held[0].done()
            reused = False
            for _ in range(20):
                frame = source.read()
                reused |= np.shares_memory(frame.raw, buffer)
                frame.done()
            assert reused  # a buffer handed back is the camera's again
        finally:
            source.close()


def test_with_drop_latest_a_slow_pipeline_counts_drops_and_its_frames_stay_intact(bayer):
    """The camera outruns the engine: replaced frames go back to the camera (else it would run out of buffers and
    stop delivering), are counted as drops, and the frame in the sink is never overwritten."""
    folded, original = bayer
    with Engine(folded) as engine:
        source = open_source("aravis:Fake_1", engine.contract, frame_rate=1000)
        sink = Checked(folded, original, pause=0.03)
        summary = stream(engine, [source], RunOptions(drop="latest", frames=15), [sink])
    cam = summary.cameras[0]
    assert summary.error is None and cam.frames == 15 and cam.drops > 15
    assert any(n.startswith("zero-copy") for n in cam.notes)


def test_recorded_frames_are_the_buffers_the_engine_read(bayer, tmp_path, capsys):
    folded, original = bayer
    rec = tmp_path / "rec"
    assert main(["run", str(folded), "--source", "aravis:Fake_1", "--frames", "6", "--fps", "1000", "--drop", "none",
                 "--record", str(rec)]) == 0
    assert "zero-copy" in capsys.readouterr().out
    files = sorted(rec.glob("*.npz"))
    assert len(files) == 6
    raws = []
    for f in files:
        raw, outputs = recorded(f)
        check_recorded(raw, outputs, folded, original, "BayerRG8")
        raws.append(raw.tobytes())
    assert len(set(raws)) == 6


def test_an_engine_that_does_not_read_the_raw_buffer_takes_one_copy(tmp_path, capsys):
    """A bare float32 NCHW model on an RGB8 camera: frames are arranged (cast, transposed) into a new tensor; the
    camera's buffers are then the source's own memory, and the outputs are the model's on the recorded frame."""
    import onnx

    model = bare_model()
    path = tmp_path / "bare.onnx"
    onnx.save(model, str(path))
    rec = tmp_path / "rec"
    assert main(["run", str(path), "--source", "aravis:Fake_1", "--frames", "3", "--fps", "200",
                 "--record", str(rec)]) == 0
    out = capsys.readouterr().out
    assert "one copy: the engine reads float32 NCHW ('image'), not the camera's uint8 buffer" in out
    for f in sorted(rec.glob("*.npz")):
        raw, outputs = recorded(f)
        assert raw.shape == (48, 64, 3)
        expected = run(model, {"image": raw.transpose(2, 0, 1)[None].astype(np.float32)})[0]
        np.testing.assert_allclose(list(outputs.values())[0], expected, rtol=1e-5, atol=1e-6)


def test_zero_copy_off_copies_each_buffer_and_gives_the_same_outputs(bayer):
    folded, original = bayer
    with Engine(folded) as engine:
        spy = Spy(engine)
        source = open_source("aravis:Fake_1", engine.contract, frame_rate=200)
        summary = stream(engine, [source], RunOptions(frames=3, zero_copy=False), [Checked(folded, original)])
    assert summary.frames == 3 and not spy.blocks
    assert "one copy: PyGObject copies each buffer out (zero copy turned off)" in summary.cameras[0].notes


def test_without_libaravis_for_ctypes_each_buffer_is_copied_out(bayer, monkeypatch):
    from edgefold.runtime.sources.aravis import _ImageData

    monkeypatch.setattr(_ImageData, "library", staticmethod(lambda: None))
    folded, original = bayer
    with Engine(folded) as engine:
        spy = Spy(engine)
        source = open_source("aravis:Fake_1", engine.contract, frame_rate=200)
        summary = stream(engine, [source], RunOptions(frames=3), [Checked(folded, original)])
    assert summary.frames == 3 and not spy.blocks
    assert "one copy: PyGObject copies each buffer out: libaravis-0.8 not found for ctypes" in summary.cameras[0].notes


def test_a_frame_replaced_in_the_slot_or_left_at_the_end_goes_back_to_its_camera():
    import threading

    from edgefold.runtime.pipeline import Slot
    from edgefold.runtime.sources import Frame

    back: list[int] = []
    frames = [Frame("cam", i, None, np.zeros(2), release=lambda i=i: back.append(i)) for i in range(4)]
    slot, stop = Slot(1, replace=True), threading.Event()
    for frame in frames[:3]:
        slot.put(frame, stop)
    assert back == [0, 1] and slot.drops == 2
    assert slot.get(0.0) is frames[2] and back == [0, 1]  # taken by the engine: its own to hand back
    slot.put(frames[3], stop)
    slot.clear()
    frames[3].done()  # once only
    assert back == [0, 1, 3]


def test_the_live_view_keeps_a_copy_of_the_frame_it_draws_later():
    from edgefold.runtime.pipeline import CameraStats, Result
    from edgefold.runtime.sinks.view import ViewSink
    from edgefold.runtime.sources import Frame

    buffer = np.full((4, 6), 7, np.uint8)
    sink = ViewSink(0)
    try:
        sink.add(Result(Frame("cam", 1, None, buffer, release=lambda: None), {"y": np.zeros((1, 2))}, 0.0),
                 CameraStats("cam"))
        buffer[...] = 9  # the camera writes the next frame into the buffer
        kept = sink.latest["cam"][0].frame
        assert (kept.raw == 7).all() and kept.release is None
    finally:
        sink.close()


def test_lies_in_checks_every_byte():
    block = np.zeros(100, np.uint8)
    assert lies_in(block[10:90], [block]) and lies_in(block, [np.zeros(3, np.uint8), block])
    assert not lies_in(np.zeros(10, np.uint8), [block])
    assert not lies_in(block[10:90].copy(), [block])


def test_a_strided_view_of_pinned_memory_is_staged_not_copied_in_place():
    block = np.arange(100, dtype=np.uint8)
    assert copies_in_place(block[10:90].reshape(8, 10), [block])
    assert lies_in(block[10:90:2], [block]) and not copies_in_place(block[10:90:2], [block])


@pytest.mark.gpu
def test_tensorrt_reads_the_camera_buffer_from_its_pinned_memory(bayer, tmp_path):
    """TensorRT: the camera's buffers are the backend's pinned memory, each input is copied to the GPU from there
    (no staging copy), and the outputs equal onnxruntime's on the same frame."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    folded, original = bayer
    engine_path = tmp_path / "bayer.engine"
    assert main(["build", str(folded), "--fp32", "-o", str(engine_path)]) == 0
    results = []

    class Keep:
        def add(self, result, stats) -> None:  # noqa: ANN001
            results.append((result.frame.raw.copy(), result.outputs))

        def close(self) -> None:
            pass

    with Engine(engine_path) as engine:
        spy = Spy(engine)
        source = open_source("aravis:Fake_1", engine.contract, frame_rate=200)
        summary = stream(engine, [source], RunOptions(frames=4), [Keep()])
        assert all(lies_in(feed, spy.backend.frame_memory) for feed in spy.feeds)
    assert summary.frames == 4 and "pinned host memory" in " ".join(summary.cameras[0].notes)
    with Engine(folded) as reference:
        for raw, outputs in results:
            for got, want in zip(outputs.values(), reference.infer(raw).values()):
                np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
