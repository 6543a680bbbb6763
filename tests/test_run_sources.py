"""`edgefold run` with folders, videos and several sources (issue 22): the pipeline's batch and round robin, drop
counting with bounded memory, output summaries, and refusals before anything is written."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edgefold.cli.main import main
from edgefold.errors import UsageError
from edgefold.runtime import Engine
from edgefold.runtime.pipeline import RunOptions, stream
from edgefold.runtime.sinks import recorded, summarise
from edgefold.runtime.sources import Frame, open_source
from tests.camera_engines import H, W, bare_model, check_recorded, fold_for

cv2 = pytest.importorskip("cv2")


def _mosaics(folder, n, seed=0):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (H, W), dtype=np.uint8) for _ in range(n)]
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"f{i:02d}.png")
    return frames


def test_image_folder_runs_every_frame_in_order_and_matches_the_models(tmp_path, capsys):
    folded, original = fold_for("BayerGR8", tmp_path)
    frames = _mosaics(tmp_path / "imgs", 4)
    rec, out = tmp_path / "rec", tmp_path / "o.jsonl"
    assert main(["run", str(folded), "--source", str(tmp_path / "imgs"), "--record", str(rec), "--out", str(out)]) == 0
    files = sorted(rec.glob("*.npz"))
    assert len(files) == 4
    for f, frame in zip(files, frames):
        raw, outputs = recorded(f)
        np.testing.assert_array_equal(raw, frame)
        check_recorded(raw, outputs, folded, original, "BayerGR8")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["frame_id"] for x in lines] == [0, 1, 2, 3] and lines[0]["timestamp_ns"] is None
    summary = capsys.readouterr().out
    assert "--drop none, stopped by end" in summary and "resized" not in summary  # the frames are the engine's size


def test_an_image_folder_of_another_size_is_resized_and_says_so_in_h_by_w(tmp_path, capsys):
    from PIL import Image

    folded, _ = fold_for("Mono8", tmp_path)
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((H + 10, W + 20), np.uint8)).save(tmp_path / "imgs" / "a.png")
    assert main(["run", str(folded), "--source", str(tmp_path / "imgs")]) == 0
    assert f"resized {H + 10}x{W + 20} -> {H}x{W} (HxW)" in capsys.readouterr().out


def test_raw_buffer_folder_feeds_the_bytes_as_the_camera_sent_them(tmp_path, capsys):
    folded, original = fold_for("Mono16", tmp_path)
    (tmp_path / "raw").mkdir()
    buf = np.random.default_rng(1).integers(0, 65536, (H, W)).astype("<u2")
    buf.tofile(tmp_path / "raw" / "a.raw")
    rec = tmp_path / "rec"
    assert main(["run", str(folded), "--source", str(tmp_path / "raw"), "--record", str(rec)]) == 0
    assert f"Mono16 buffers {H}x{W} (HxW)" in capsys.readouterr().out
    raw, outputs = recorded(next(rec.glob("*.npz")))
    np.testing.assert_array_equal(raw, buf)
    check_recorded(raw, outputs, folded, original, "Mono16")


def _video(path, n=5, h=60, w=80):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    rng = np.random.default_rng(2)
    for _ in range(n):
        writer.write(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    writer.release()


def test_video_is_converted_only_where_the_engine_differs_and_says_so(tmp_path, capsys):
    folded, _ = fold_for("Mono8", tmp_path)
    _video(tmp_path / "v.avi")
    rec = tmp_path / "rec"
    assert main(["run", str(folded), "--source", str(tmp_path / "v.avi"), "--record", str(rec)]) == 0
    summary = capsys.readouterr().out
    assert "BGR -> Mono8 (BT.601 weights)" in summary and "resized 60x80 -> 48x64 (HxW)" in summary
    cap = cv2.VideoCapture(str(tmp_path / "v.avi"))
    for f in sorted(rec.glob("*.npz")):
        ok, bgr = cap.read()
        want = cv2.cvtColor(cv2.resize(bgr, (W, H), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        np.testing.assert_array_equal(recorded(f)[0], want)
    assert len(list(rec.glob("*.npz"))) == 5


def test_a_video_files_frames_carry_their_times_the_first_at_0(tmp_path):
    folded, _ = fold_for("Mono8", tmp_path)
    _video(tmp_path / "v.avi")
    out = tmp_path / "o.jsonl"
    assert main(["run", str(folded), "--source", str(tmp_path / "v.avi"), "--frames", "3", "--out", str(out)]) == 0
    stamps = [json.loads(line)["timestamp_ns"] for line in out.read_text().splitlines()]
    assert stamps == [0, 100_000_000, 200_000_000]  # 10 fps; the first frame was null before


def test_a_missing_video_file_is_no_such_file(tmp_path, capsys):
    folded, _ = fold_for("Mono8", tmp_path)
    out = tmp_path / "o.jsonl"
    assert main(["run", str(folded), "--source", str(tmp_path / "nope.mp4"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.mp4: no such file" in err and not out.exists()


def test_a_video_file_without_frames_is_refused_before_anything_is_written(tmp_path, capsys):
    # it ran '0 frames ... stopped by end', exit 0, and --out was never written
    folded, _ = fold_for("Mono8", tmp_path)
    _video(tmp_path / "empty.avi", n=0)
    out = tmp_path / "o.jsonl"
    assert main(["run", str(folded), "--source", str(tmp_path / "empty.avi"), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "empty.avi: no frames" in captured.err and not out.exists()
    assert "edgefold run:" not in captured.out


def test_a_video_cannot_feed_a_mosaic_engine_and_nothing_is_written(tmp_path, capsys):
    folded, _ = fold_for("BayerRG8", tmp_path)
    _video(tmp_path / "v.avi")
    out = tmp_path / "o.jsonl"
    assert main(["run", str(folded), "--source", str(tmp_path / "v.avi"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "BayerRG8" in err and not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--source", "nowhere"], "no such file or folder"), (["--source", "{imgs}", "--roi", "2,2"], "--roi applies"),
    (["--source", "{imgs}", "--frames", "0"], "--frames must be at least 1"),
    (["--source", "{imgs}", "--size", "10x10"], "takes 48x64"),
    (["--source", "{imgs}", "--out", "{tmp}/no/o.jsonl"], "does not exist"),
    (["--source", "{imgs}", "--record", "{imgs}/f00.png"], "not a folder"),
    # it ran both; their records overwrote each other (4 frames, 2 files) and their JSONL lines were the same
    (["--source", "{imgs}", "--source", "{imgs}", "--record", "{tmp}/rec"], "is given twice"),
    # it was ignored: a folder or video ran as fast as the engine whatever --fps said
    (["--source", "{imgs}", "--fps", "5"], "--fps sets an aravis: camera's frame rate"),
])
def test_bad_run_flags_are_one_line_exit_2(args, words, tmp_path, capsys):
    folded, _ = fold_for("BayerRG8", tmp_path)
    _mosaics(tmp_path / "imgs", 1)
    args = [a.replace("{imgs}", str(tmp_path / "imgs")).replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["run", str(folded), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err


@pytest.mark.parametrize("args, words", [
    # a port out of range was exit 5 'internal error' (OverflowError from bind); --top 0/-1 wrote 0 / K-1 classes
    (["--view", "99999"], "--view: a TCP port is 1..65535"), (["--view", "-1"], "--view: a TCP port is 1..65535"),
    (["--top", "0"], "--top: expected at least 1"), (["--top", "-1"], "--top: expected at least 1"),
])
def test_bad_view_port_and_top_k_are_argparse_errors_exit_2(args, words, tmp_path, capsys):
    folded, _ = fold_for("Mono8", tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(folded), "--source", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and words in err, err


def test_several_sources_are_one_batch_where_the_contract_takes_them_else_round_robin(tmp_path):
    (tmp_path / "b").mkdir()
    batched, _ = fold_for("BayerRG8", tmp_path / "b", bare_model(batch="N"))
    single, _ = fold_for("BayerRG8", tmp_path)
    a, b = _mosaics(tmp_path / "a", 3, seed=1), _mosaics(tmp_path / "c", 2, seed=2)
    class Collect:
        def __init__(self):
            self.seen = []

        def add(self, result, stats):
            self.seen.append((result.frame.camera, result.frame.frame_id, result.outputs))

        def close(self):
            pass

    for model, mode, frames in ((batched, "batch", 4), (single, "round-robin", 5)):
        sink = Collect()
        with Engine(model) as engine:
            sources = [open_source(str(tmp_path / n), engine.contract) for n in ("a", "c")]
            summary = stream(engine, sources, RunOptions(drop="none"), [sink])
            assert summary.mode == mode and summary.frames == frames, (mode, summary.to_json())
            for camera, index, outputs in sink.seen:  # each row is that camera's frame alone
                frame = (a if camera.endswith("a") else b)[index]
                alone = engine.infer(frame)
                for k, v in outputs.items():
                    np.testing.assert_allclose(v, alone[k], rtol=1e-5, atol=1e-5)


class FastSource:
    """A camera faster than the engine: frames as fast as the thread can make them."""

    live = True

    def __init__(self, limit: int) -> None:
        self.name, self.notes, self.skipped, self.missed, self.made, self.limit = "fast", [], 0, 0, 0, limit

    def start(self) -> None:
        pass

    def read(self) -> Frame | None:
        if self.made >= self.limit:
            return None
        self.made += 1
        return Frame(self.name, self.made, None, np.zeros((H, W), np.uint8), time.monotonic())

    def close(self) -> None:
        pass


class SlowSink:
    """A sink slower than the sources: ``seconds`` per result."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def add(self, result, stats) -> None:
        time.sleep(self.seconds)

    def close(self) -> None:
        pass


def test_a_source_faster_than_the_engine_shows_as_drops_never_as_memory(tmp_path):
    folded, _ = fold_for("BayerRG8", tmp_path)
    source = FastSource(3000)
    with Engine(folded) as engine:
        summary = stream(engine, [source], RunOptions(drop="latest"), [SlowSink(0.01)])
    cam = summary.cameras[0]
    assert cam.drops > 0 and cam.frames + cam.drops == source.made  # every frame is run or counted
    assert cam.frames < source.made / 2


def test_by_default_each_source_drops_as_its_kind_a_file_beside_a_camera_loses_nothing(tmp_path):
    # --drop defaulted to latest for every source once one was live: a 50-frame video beside Aravis' fake camera
    # ran 3 frames and counted 47 drops, where the README says none is the default for files
    folded, _ = fold_for("BayerRG8", tmp_path)
    camera, file = FastSource(3000), FastSource(40)
    file.live, file.name = False, "file"
    with Engine(folded) as engine:
        summary = stream(engine, [camera, file], RunOptions(drop=None), [SlowSink(0.002)])
    by_name = {c.name: c for c in summary.cameras}
    assert by_name["file"].frames == 40 and by_name["file"].drops == 0
    assert by_name["fast"].drops > 0 and by_name["fast"].frames + by_name["fast"].drops == camera.made


def test_frames_and_seconds_stop_the_run(tmp_path):
    folded, _ = fold_for("BayerRG8", tmp_path)
    with Engine(folded) as engine:
        assert stream(engine, [FastSource(10**6)], RunOptions(frames=7), []).frames == 7
        t = time.monotonic()
        summary = stream(engine, [FastSource(10**7)], RunOptions(seconds=0.3), [])
        assert summary.stopped_by == "seconds" and time.monotonic() - t < 5


def test_output_summaries_fit_the_output():
    scores = np.array([[0.1, 0.7, 0.2]])
    assert summarise(scores, top=2) == {"top": [[1, 0.7], [2, 0.2]]}
    plane = np.zeros((1, 1, 16, 20))
    plane[0, 0, 2:5, 3:9] = 0.9
    plane[0, 0, 10:12, 15:16] = 0.8
    s = summarise(plane)
    assert s["positive"] == pytest.approx((18 + 2) / 320) and s["boxes"] == [[3, 2, 6, 3], [15, 10, 1, 2]]
    other = summarise(np.arange(6.0).reshape(1, 2, 3))
    assert other["min"] == 0 and other["max"] == 5 and other["shape"] == [1, 2, 3]


def test_run_options_are_checked():
    with pytest.raises(UsageError, match="--drop"):
        RunOptions(drop="oldest")


def test_progress_bar_shows_fps_latency_and_drops(tmp_path, capsys):
    folded, _ = fold_for("BayerRG8", tmp_path)
    _mosaics(tmp_path / "imgs", 3)
    assert main(["run", str(folded), "--source", str(tmp_path / "imgs"), "--progress"]) == 0
    captured = capsys.readouterr()
    assert "frame" in captured.err and "fps, p50" in captured.err and "drops 0" in captured.err
    assert "edgefold run: 3 frames" in captured.out and "p99 ms" in captured.out


def test_outputs_never_overwrite_the_model_or_a_source(tmp_path, capsys):
    folded, _ = fold_for("BayerRG8", tmp_path)
    _mosaics(tmp_path / "imgs", 1)
    before = folded.read_bytes()
    for flags, words in ((["--out", str(folded)], "refusing to overwrite an input"),
                         (["--out", str(tmp_path / "imgs" / "f00.png")], "refusing to overwrite an input"),
                         (["--record", str(tmp_path / "imgs")], "that is a source")):
        assert main(["run", str(folded), "--source", str(tmp_path / "imgs"), *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
    assert folded.read_bytes() == before and sorted(p.name for p in (tmp_path / "imgs").iterdir()) == ["f00.png"]


def test_the_view_shows_what_the_model_sees_with_the_map_in_red():
    from edgefold.core.contract import pixel_format
    from edgefold.runtime.sinks.view import overlay

    rgb = np.zeros((8, 10, 3), np.uint8) + np.array([200, 100, 50], np.uint8)
    mosaic = np.zeros((8, 10), np.uint8)
    for py, px, c in ((0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 2)):  # RGGB
        mosaic[py::2, px::2] = rgb[py::2, px::2, c]
    shown = overlay(mosaic, {}, pixel_format("BayerRG8"))
    assert (shown == rgb).all()  # demosaiced, not a gray checkerboard
    deep = overlay(np.full((4, 4), 65535, np.uint16), {}, pixel_format("Mono16"))
    assert (deep == 255).all()
    on = np.zeros((1, 1, 4, 5))
    on[0, 0, :2] = 1.0  # top half of the map positive (logits > 0)
    heat = overlay(mosaic, {"map": on}, pixel_format("BayerRG8")).astype(int)
    assert (heat[:4] == np.round(rgb[:4] * 0.5 + [127.5, 0, 0])).all() and (heat[4:] == rgb[4:]).all()


def test_a_broken_first_image_says_no_frame_was_processed(tmp_path, capsys):
    """It said 'results up to then are kept' with nothing written."""
    folded, _ = fold_for("Mono8", tmp_path)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"notapng")
    out = tmp_path / "o.jsonl"
    assert main(["run", str(folded), "--source", str(tmp_path / "imgs"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "a.png" in err and "no frame was processed" in err and "kept" not in err
