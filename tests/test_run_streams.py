"""`edgefold run --source rtsp://...` against a real RTSP server on loopback (GStreamer's, tests/rtsp_server.py) read
through OpenCV's VideoCapture (FFmpeg): frames arrive, BGR -> Mono8 is done and stated, every recorded output equals
the folded model on the recorded frame, and a server that stops mid-stream is the documented "source lost" exit with
the results so far flushed. And V4L2 specs (no device can exist here: v4l2loopback needs a kernel module)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgefold.cli.main import main
from edgefold.errors import UsageError
from edgefold.runtime import Engine
from edgefold.runtime.sinks import recorded
from edgefold.runtime.sources import open_source
from tests.camera_engines import H, W, check_recorded, fold_for
from tests.run_subprocess import cli, intact, wait_for_lines

cv2 = pytest.importorskip("cv2")
SERVER = Path(__file__).with_name("rtsp_server.py")


class RtspServer:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(SERVER), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.strip():
            _, err = self.proc.communicate(timeout=10)
            if self.proc.returncode == 3:  # rtsp_server.py: a package is missing here
                pytest.skip(f"no RTSP server: {err.strip()} (./run test installs it)")
            raise AssertionError(f"the RTSP server did not start (exit {self.proc.returncode}): {err}")
        self.url = f"rtsp://127.0.0.1:{int(line)}/x"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def rtsp():
    servers: list[RtspServer] = []

    def start(*args: str) -> RtspServer:
        servers.append(RtspServer(*args))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def mono8(tmp_path_factory):
    return fold_for("Mono8", tmp_path_factory.mktemp("engines"))


@pytest.mark.parametrize("codec", ["mjpeg", "h264"])
def test_an_rtsp_stream_feeds_a_mono8_engine_converted_and_said_so(codec, rtsp, mono8, tmp_path, capsys):
    folded, original = mono8
    server = rtsp("--codec", codec, "--size", f"{H}x{W}", "--fps", "30")
    out, rec = tmp_path / "o.jsonl", tmp_path / "rec"
    assert main(["run", str(folded), "--source", server.url, "--frames", "6", "--out", str(out),
                 "--record", str(rec)]) == 0
    summary = capsys.readouterr().out
    assert "BGR -> Mono8 (BT.601 weights)" in summary and "resized" not in summary
    assert "--drop latest" in summary and "stopped by frames" in summary  # a stream is live: real time
    files = sorted(rec.glob("*.npz"))
    lines = intact(out)
    assert len(files) == len(lines) == 6 and all(line["camera"] == server.url for line in lines)
    raws = []
    for f in files:
        raw, outputs = recorded(f)
        assert raw.shape == (H, W) and raw.dtype == np.uint8
        check_recorded(raw, outputs, folded, original, "Mono8")
        raws.append(raw)
    assert len({r.tobytes() for r in raws}) > 1  # the ball moves: these are frames of the stream, not one


def test_the_gray_frames_are_opencvs_bt601_conversion_of_the_decoded_stream(rtsp, mono8, tmp_path, capsys):
    """A still pattern in MJPEG (each frame coded alone): a second reader of the same stream decodes the same BGR
    frame, and what edgefold ran is its BGR -> gray (0.299 R + 0.587 G + 0.114 B, OpenCV's rounding)."""
    folded, _ = mono8
    server = rtsp("--codec", "mjpeg", "--size", f"{H}x{W}", "--pattern", "smpte75")
    rec = tmp_path / "rec"
    assert main(["run", str(folded), "--source", server.url, "--frames", "2", "--record", str(rec)]) == 0
    cap = cv2.VideoCapture(server.url)
    ok, bgr = cap.read()
    cap.release()
    assert ok and bgr.shape == (H, W, 3)
    want = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    assert np.abs(want - (0.299 * r + 0.587 * g + 0.114 * b)).max() <= 1.0
    assert len(set(np.unique(want))) > 4  # SMPTE 75% bars: several grays, not a flat frame
    for f in sorted(rec.glob("*.npz")):
        np.testing.assert_array_equal(recorded(f)[0], want)


def _interrupted_run(rtsp, engine: Path, tmp_path: Path, interrupt) -> tuple[subprocess.Popen, str, str]:
    """`edgefold run` in a subprocess on a served stream with --out/--record; ``interrupt(server, proc)`` once 5
    results are written. (proc, stdout, stderr) when it has ended."""
    server = rtsp("--codec", "mjpeg", "--size", f"{H}x{W}", "--fps", "30")
    proc = cli(str(engine), "--source", server.url, "--seconds", "120", "--out", str(tmp_path / "out.jsonl"),
               "--record", str(tmp_path / "rec"))
    try:
        wait_for_lines(tmp_path / "out.jsonl", 5, proc)
        interrupt(server, proc)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    return proc, stdout, stderr


def _kept(tmp_path: Path, stdout: str) -> None:
    """Every result up to the end is in --out (whole lines) and --record, and the summary counts them."""
    lines = intact(tmp_path / "out.jsonl")
    assert len(lines) >= 5 and f"{len(lines):>6}" in stdout
    assert len(list((tmp_path / "rec").glob("*.npz"))) == len(lines) and not list((tmp_path / "rec").glob("*.part"))


def test_an_rtsp_server_that_stops_mid_stream_is_one_line_exit_7_with_the_results_kept(rtsp, mono8, tmp_path):
    proc, stdout, stderr = _interrupted_run(rtsp, mono8[0], tmp_path, lambda server, _: server.stop())
    assert proc.returncode == 7, stderr
    assert stderr.count("\n") == 1 and "rtsp://127.0.0.1:" in stderr and "results up to then are kept" in stderr, stderr
    assert "the server ended the stream" in stderr and "stopped by error" in stdout
    _kept(tmp_path, stdout)


def test_an_rtsp_server_that_hangs_mid_stream_is_lost_after_the_read_timeout(rtsp, mono8, tmp_path):
    """The server stops sending without closing the connection (SIGSTOP): no frame for a while (4 s; FFmpeg's own
    wait is 30 s - not asserted, no timings in tests) is a lost stream, exit 7."""
    proc, stdout, stderr = _interrupted_run(rtsp, mono8[0], tmp_path,
                                            lambda server, _: server.proc.send_signal(signal.SIGSTOP))
    assert proc.returncode == 7, stderr
    assert stderr.count("\n") == 1 and "s (the server stalled" in stderr and "stopped by error" in stdout, stderr
    _kept(tmp_path, stdout)


def test_sigterm_on_an_rtsp_stream_flushes_prints_the_summary_and_exits_143(rtsp, mono8, tmp_path):
    proc, stdout, stderr = _interrupted_run(rtsp, mono8[0], tmp_path,
                                            lambda _, proc: proc.send_signal(signal.SIGTERM))
    assert proc.returncode == 143 and not stderr, stderr
    assert "stopped by SIGTERM" in stdout
    _kept(tmp_path, stdout)


def test_an_rtsp_url_nobody_serves_is_one_line_exit_2(mono8, tmp_path):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    proc = cli(str(mono8[0]), "--source", f"rtsp://127.0.0.1:{port}/x", "--out", str(tmp_path / "o.jsonl"))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and stderr.count("\n") == 1, stderr
    assert f"rtsp://127.0.0.1:{port}/x" in stderr and not (tmp_path / "o.jsonl").exists()
    assert time.monotonic() - start < 60


@pytest.mark.parametrize("spec, device", [
    ("v4l2:0", "/dev/video0"), ("v4l2:12", "/dev/video12"), ("V4L2:1", "/dev/video1"), ("/dev/video3", "/dev/video3"),
    ("v4l2:/dev/v4l/by-id/usb-cam-video-index0", "/dev/v4l/by-id/usb-cam-video-index0"),
    ("rtsp://127.0.0.1:8554/x", None), ("clip.mp4", None),
])
def test_v4l2_specs_name_their_device(spec, device):
    from edgefold.runtime.sources.video import v4l2_device

    assert v4l2_device(spec) == device


def test_a_v4l2_spec_that_names_no_device_is_one_line_exit_2(mono8, capsys):
    assert main(["run", str(mono8[0]), "--source", "v4l2:cam"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected v4l2:N" in err


@pytest.mark.parametrize("spec", ["v4l2:97", "/dev/video97"])
def test_a_missing_v4l2_device_is_one_line_exit_2_and_nothing_written(spec, mono8, tmp_path, capsys):
    """No /dev/video* exists here (v4l2loopback, the only way to make one without a camera, is a kernel module)."""
    if Path("/dev/video97").exists():
        pytest.skip("/dev/video97 exists on this machine")
    out = tmp_path / "o.jsonl"
    assert main(["run", str(mono8[0]), "--source", spec, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such V4L2 device /dev/video97; found " in err and not out.exists(), err


def test_a_v4l2_device_is_opened_through_opencvs_v4l2_backend(mono8, tmp_path, monkeypatch):
    """Which backend OpenCV is asked for (recorded; no device can exist here to be opened for real)."""
    calls = []

    class Refused:
        def __init__(self, *args):
            calls.append(args)

        def isOpened(self):  # noqa: N802 - OpenCV's name
            return False

    node = tmp_path / "video5"
    node.touch()
    monkeypatch.setattr(cv2, "VideoCapture", Refused)
    with Engine(mono8[0]) as engine, pytest.raises(UsageError, match="V4L2 backend cannot open"):
        open_source(f"v4l2:{node}", engine.contract)
    assert calls == [(str(node), cv2.CAP_V4L2)]


def test_a_file_that_is_no_capture_device_is_one_line_exit_2_without_opencvs_own_log(mono8, tmp_path):
    """OpenCV's V4L2 backend really refuses it; its own warnings stay off stderr (a subprocess: OpenCV reads its log
    level on import)."""
    node = tmp_path / "video5"
    node.write_bytes(b"not a device")
    proc = cli(str(mono8[0]), "--source", f"v4l2:{node}", "--out", str(tmp_path / "o.jsonl"))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2 and stderr.count("\n") == 1, stderr
    assert f"v4l2:{node}: OpenCV's V4L2 backend cannot open {node}" in stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_sigterm_before_the_stream_starts_is_one_line_exit_143(capsys):
    """SIGTERM while the engine loads or a source opens (before there is a summary to print)."""
    import argparse

    from edgefold.cli.main import _run
    from edgefold.cli.run import Terminated

    def opening(_args):
        raise Terminated

    assert _run(argparse.Namespace(run=opening, verb="run", verbose=False)) == 143
    assert capsys.readouterr().err == "edgefold: terminated\n"
