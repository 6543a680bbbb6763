"""`edgefold run --view PORT` in a real headless browser (issue 22): Debian's Chromium and chromedriver driven by
selenium show each camera's latest frame with the map overlaid, frames/s and drops, while the fake camera
streams; Ctrl-C then ends the run with its summary (exit 130)."""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.camera_engines import bare_model, fold_for

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("chromium/chromedriver missing (Debian chromium chromium-driver; ./run test installs them)",
                allow_module_level=True)
try:
    from edgefold.runtime.sources.aravis import _aravis

    _aravis()
except Exception as err:  # noqa: BLE001 - skipped with the reason where Aravis is not installed
    pytest.skip(f"Aravis unavailable ({err}); ./run test installs it", allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]


def test_live_view_shows_frames_overlay_fps_and_drops_in_headless_chromium(tmp_path):
    from PIL import Image
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    folded, _ = fold_for("BayerRG8", tmp_path, bare_model(dense=True))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "edgefold", "run", str(folded), "--source", "aravis:Fake_1",
                             "--fps", "20", "--seconds", "120", "--view", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "live view on http://127.0.0.1:" in line, (line, proc.poll())
        url = line.split(" on ")[1].strip()
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(DRIVER), options=options)
        try:
            browser.get(url)
            wait = WebDriverWait(browser, 30, poll_frequency=0.2)
            stats = wait.until(lambda b: b.execute_script(
                "const s=document.querySelector('#cam-0 .stats');"
                " return s && / fps, drops /.test(s.textContent) && parseFloat(s.textContent) > 0 ? s.textContent : null"))
            assert "drops" in stats and "frames" in stats
            size = wait.until(lambda b: b.execute_script(
                "const i=document.querySelector('#cam-0 img'); return i && i.complete && i.naturalWidth ?"
                " [i.naturalWidth, i.naturalHeight] : null"))
            assert size == [64, 48]
            text = browser.execute_script("return document.querySelector('#cam-0 .out').textContent")
            name = browser.execute_script("return document.querySelector('#cam-0 .name').textContent")
            assert "% positive" in text and name == "aravis:Fake_1"
        finally:
            browser.quit()
        with urllib.request.urlopen(url + "frame/0.png", timeout=10) as r:  # the overlay: red where the map is on
            img = np.asarray(Image.open(io.BytesIO(r.read())).convert("RGB")).astype(int)
        assert img.shape == (48, 64, 3) and (img[..., 0] > img[..., 1]).any()
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "stopped by Ctrl-C" in stdout
