"""`edgefold run` against a real GenICam stack (issue 22): Aravis' fake camera in process (Fake_1) and over the
GigE Vision protocol on loopback (arv-fake-gv-camera-0.8, Debian aravis-tools). The camera is set to what the
engine reads; every recorded output equals the folded model on the recorded buffer and the original on OpenCV's
conversion of it; a camera killed mid-stream, Ctrl-C and a camera that cannot deliver the format are tested."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from edgefold.cli.main import main
from edgefold.runtime.sinks import recorded
from tests.camera_engines import check_recorded, fold_for
from tests.run_subprocess import cli, intact, wait_for_lines

pytest.importorskip("cv2")
try:
    from edgefold.runtime.sources.aravis import _aravis

    _aravis()
except Exception as err:  # noqa: BLE001 - skipped with the reason where Aravis is not installed
    pytest.skip(f"Aravis unavailable ({err}); ./run test installs it", allow_module_level=True)

FAKE_GV = shutil.which("arv-fake-gv-camera-0.8")
GV_ID = "Aravis-Fake-GV01"
FORMATS = ["BayerRG8", "BayerBG8", "BayerGR8", "BayerGB8", "Mono8", "Mono16"]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    folder = tmp_path_factory.mktemp("engines")
    return {fmt: fold_for(fmt, folder) for fmt in FORMATS}


def _run_and_check(engine, source: str, fmt: str, tmp_path: Path, frames: int = 3) -> list[dict]:
    folded, original = engine
    out, rec = tmp_path / "out.jsonl", tmp_path / "rec"
    assert main(["run", str(folded), "--source", source, "--frames", str(frames), "--fps", "200", "--out", str(out),
                 "--record", str(rec)]) == 0
    files = sorted(rec.glob("*.npz"))
    assert len(files) == frames
    for f in files:
        raw, outputs = recorded(f)
        assert raw.shape == (48, 64) and raw.dtype == ("uint16" if fmt == "Mono16" else "uint8")
        check_recorded(raw, outputs, folded, original, fmt)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == frames and all(line["camera"] == source for line in lines)
    assert all(len(line["outputs"][next(iter(line["outputs"]))]["top"]) == 5 for line in lines)
    return lines


@pytest.mark.parametrize("fmt", FORMATS)
def test_fake_camera_in_process_every_format_matches_the_folded_and_the_original_model(fmt, engines, tmp_path, capsys):
    lines = _run_and_check(engines[fmt], "aravis:Fake_1", fmt, tmp_path)
    assert len({line["frame_id"] for line in lines}) == 3 and all(line["timestamp_ns"] for line in lines)
    summary = capsys.readouterr().out
    assert f"camera set to {fmt} 64x48 (WxH) at (992,1000)" in summary and "stopped by frames" in summary


def test_a_format_the_camera_does_not_offer_is_one_line_exit_2_and_nothing_written(tmp_path, capsys):
    folded, _ = fold_for("Mono12", tmp_path)
    out = tmp_path / "out.jsonl"
    assert main(["run", str(folded), "--source", "aravis:Fake_1", "--frames", "2", "--out", str(out),
                 "--record", str(tmp_path / "rec")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "offers BayerBG8" in err and "Mono16" in err and "engine reads Mono12" in err
    assert not out.exists() and not (tmp_path / "rec").exists()


def test_an_unknown_camera_names_the_ones_found(engines, capsys):
    assert main(["run", str(engines["Mono8"][0]), "--source", "aravis:Fake_9", "--frames", "1"]) == 2
    err = capsys.readouterr().err
    assert "no such camera" in err and "Fake_1" in err


def test_an_unknown_camera_lists_every_camera_that_can_be_opened_the_simulated_one_too(engines):
    """A fresh process (Aravis' simulated camera not switched on by an earlier open): one line, exit 2, naming
    aravis:Fake_1 beside the real cameras found."""
    proc = cli(str(engines["Mono8"][0]), "--source", "aravis:NoSuch", "--frames", "1")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and stderr.count("\n") == 1, stderr
    assert "aravis:NoSuch: no such camera; cameras found: " in stderr and "simulated camera is aravis:Fake_1" in stderr


def test_a_video_beside_a_camera_runs_every_frame_by_default(engines, tmp_path, capsys):
    """--drop defaults per source: the camera's newest frame, every frame of the file. It was latest for both once
    one source was live: a 50-frame video beside Fake_1 ran 3 frames and counted 47 drops."""
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(30):
        writer.write(np.full((48, 64, 3), 8 * i, np.uint8))
    writer.release()
    out = tmp_path / "o.jsonl"
    assert main(["run", str(engines["Mono8"][0]), "--source", "aravis:Fake_1", "--source", str(video),
                 "--fps", "200", "--seconds", "2", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [x["frame_id"] for x in lines if x["camera"] == str(video)] == list(range(30))
    assert "--drop latest (cameras, streams) / none (files)" in capsys.readouterr().out


def test_the_frame_rate_the_camera_runs_at_is_said_and_a_bad_one_refused(engines, capsys):
    """--fps outside the camera's range was clamped (1e9 -> 1000) or ignored (-5, 0: it stayed at 25) without a
    word, and 'nan' was the camera's parsing error blamed on the region ('check --roi')."""
    model = str(engines["Mono8"][0])
    assert main(["run", model, "--source", "aravis:Fake_1", "--frames", "1", "--fps", "50"]) == 0
    assert "camera set to Mono8 64x48 (WxH) at (" in (out := capsys.readouterr().out) and "), 50 fps\n" in out, out
    assert main(["run", model, "--source", "aravis:Fake_1", "--frames", "1", "--fps", "1e9"]) == 0
    assert ", 1000 fps (--fps 1e+09 is outside the camera's 0.1..1000)" in capsys.readouterr().out
    for bad in ("0", "-5", "nan"):
        with pytest.raises(SystemExit) as exit_:
            main(["run", model, "--source", "aravis:Fake_1", "--frames", "1", f"--fps={bad}"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and "argument --fps: expected a" in err, err


def test_the_first_camera_is_a_real_one_never_the_simulated_one(engines, tmp_path, capsys):
    """``aravis:`` alone, in a process that opened Fake_1 before (Aravis' switch for it is process-wide)."""
    assert main(["run", str(engines["Mono8"][0]), "--source", "aravis:Fake_1", "--frames", "1"]) == 0
    capsys.readouterr()
    code = main(["run", str(engines["Mono8"][0]), "--source", "aravis:", "--frames", "1", "--out",
                 str(tmp_path / "o.jsonl")])
    if code == 0:  # a GigE camera on this host's networks (another test's fake GigE camera)
        assert "aravis:Fake_1" not in (tmp_path / "o.jsonl").read_text()
    else:
        err = capsys.readouterr().err
        assert code == 2 and "aravis: no camera found" in err and "simulated camera is aravis:Fake_1" in err, err


@pytest.fixture
def gige_camera():
    if FAKE_GV is None:
        pytest.skip("arv-fake-gv-camera-0.8 missing (Debian aravis-tools; ./run test installs it)")
    proc = subprocess.Popen([FAKE_GV, "-i", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    yield proc
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.parametrize("fmt", ["BayerGB8", "Mono16"])
def test_gige_vision_on_loopback_sets_the_camera_and_matches_the_models(fmt, engines, gige_camera, tmp_path):
    _run_and_check(engines[fmt], f"aravis:{GV_ID}", fmt, tmp_path)


def test_a_camera_killed_mid_stream_is_one_line_exit_7_with_the_results_kept(engines, gige_camera, tmp_path):
    out, rec = tmp_path / "out.jsonl", tmp_path / "rec"
    proc = cli(str(engines["BayerRG8"][0]), "--source", f"aravis:{GV_ID}", "--seconds", "60", "--fps", "50",
                "--out", str(out), "--record", str(rec))
    wait_for_lines(out, 5, proc)
    gige_camera.kill()
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 7, stderr
    assert stderr.count("\n") == 1 and f"aravis:{GV_ID}" in stderr and "results up to then are kept" in stderr
    lines = intact(out)
    assert len(lines) >= 5 and "stopped by error" in stdout and f"{len(lines):>6}" in stdout
    assert len(list(rec.glob("*.npz"))) == len(lines) and not list(rec.glob("*.part"))


def test_ctrl_c_flushes_prints_the_summary_and_exits_130(engines, tmp_path):
    out = tmp_path / "out.jsonl"
    proc = cli(str(engines["Mono8"][0]), "--source", "aravis:Fake_1", "--seconds", "60", "--fps", "50",
                "--out", str(out))
    wait_for_lines(out, 3, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    lines = intact(out)
    assert "stopped by Ctrl-C" in stdout and f"{len(lines):>6}" in stdout


def test_sigterm_is_handled_like_ctrl_c_flushes_prints_the_summary_and_exits_143(engines, tmp_path):
    """``kill``, ``docker stop``, systemd: SIGTERM flushes --out and --record, prints the summary, exits 143."""
    out, rec = tmp_path / "out.jsonl", tmp_path / "rec"
    proc = cli(str(engines["Mono8"][0]), "--source", "aravis:Fake_1", "--seconds", "60", "--fps", "50",
                "--out", str(out), "--record", str(rec))
    wait_for_lines(out, 3, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    lines = intact(out)
    assert "stopped by SIGTERM" in stdout and f"{len(lines):>6}" in stdout and not stderr
    assert len(list(rec.glob("*.npz"))) == len(lines) and not list(rec.glob("*.part"))


def test_failed_buffers_are_counted_and_skipped(engines):
    from edgefold.runtime import Engine
    from edgefold.runtime.sources import open_source

    with Engine(engines["BayerRG8"][0]) as engine:
        source = open_source("aravis:Fake_1", engine.contract, frame_rate=200)
        source.start()
        try:
            for _ in range(2):  # buffers too small for the payload come back with an error status
                source.stream.push_buffer(source.Aravis.Buffer.new_allocate(100))
            frames = [source.read() for _ in range(6)]
        finally:
            source.close()
    assert source.skipped >= 2 and all(f.raw.shape == (48, 64) for f in frames)


def test_roi_places_the_region_and_a_frame_larger_than_the_sensor_is_refused(tmp_path, capsys):
    from tests.camera_engines import bare_model

    folded, _ = fold_for("Mono8", tmp_path, bare_model("h", "w"))
    assert main(["run", str(folded), "--source", "aravis:Fake_1", "--size", "48x64", "--roi", "10,20",
                 "--frames", "1"]) == 0
    assert "camera set to Mono8 64x48 (WxH) at (10,20)" in capsys.readouterr().out
    assert main(["run", str(folded), "--source", "aravis:Fake_1", "--size", "4096x4096", "--frames", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "at most 2048x2048" in err and "4096x4096" in err


def test_two_cameras_feed_one_batch_where_the_contract_takes_two(gige_camera, tmp_path, capsys):
    from tests.camera_engines import bare_model

    folded, original = fold_for("BayerBG8", tmp_path, bare_model(batch="N"))
    rec = tmp_path / "rec"
    assert main(["run", str(folded), "--source", "aravis:Fake_1", "--source", f"aravis:{GV_ID}", "--frames", "4",
                 "--fps", "100", "--record", str(rec)]) == 0
    out = capsys.readouterr().out
    assert "batch" in out and "round-robin" not in out
    files = sorted(rec.glob("*.npz"))
    assert {f.name.split("-0")[0] for f in files} == {"aravis_Fake_1", f"aravis_{GV_ID}"} and len(files) == 4
    for f in files:
        raw, outputs = recorded(f)
        check_recorded(raw, outputs, folded, original, "BayerBG8")


def test_with_drop_none_a_camera_faster_than_the_engine_shows_its_driver_losses_as_drops(engines):
    from edgefold.runtime import Engine
    from edgefold.runtime.pipeline import RunOptions, stream
    from edgefold.runtime.sources import open_source

    class Slow:
        def add(self, result, stats):
            time.sleep(0.05)

        def close(self):
            pass

    with Engine(engines["Mono8"][0]) as engine:
        source = open_source("aravis:Fake_1", engine.contract, frame_rate=500)
        summary = stream(engine, [source], RunOptions(drop="none", frames=6), [Slow()])
    cam = summary.cameras[0]
    assert cam.frames == 6 and cam.drops > 0 and cam.drops == source.missed  # nothing replaced in the queue


def test_a_camera_that_fails_a_setting_is_one_usage_line(engines, monkeypatch):
    """A GenICam error while the camera is being set (a GigE control timeout under load, here injected into the
    real fake camera's first setting) is one line naming what was asked - it was an UnboundLocalError (exit 5)."""
    from edgefold.errors import UsageError
    from edgefold.runtime import Engine
    from edgefold.runtime.sources import open_source

    Aravis, GLib = _aravis()

    def refuse(self, name):  # noqa: ANN001
        raise GLib.Error("timeout")

    monkeypatch.setattr(Aravis.Camera, "set_pixel_format_from_string", refuse)
    with Engine(engines["BayerRG8"][0]) as engine, pytest.raises(UsageError) as err:
        open_source("aravis:Fake_1", engine.contract)
    assert "the camera refused BayerRG8" in str(err.value) and "\n" not in str(err.value)
