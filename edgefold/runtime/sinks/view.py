"""``--view PORT``: a live page on http://127.0.0.1:PORT with each camera's latest frame, its output overlaid (a
map as a red heatmap, top-k as text), frames/s and drops. Standard-library HTTP server on a daemon thread; the
page polls ``state.json`` and reloads each camera's PNG (encoded on request, so an unwatched page costs
nothing but keeping the latest frame)."""
from __future__ import annotations

import dataclasses
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from edgefold.core.contract import PixelFormat
from edgefold.core.metrics import is_dense_map
from edgefold.errors import UsageError
from edgefold.runtime.pipeline import CameraStats, Result
from edgefold.runtime.sinks import map_threshold, summarise

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>edgefold run</title>
<style>body{font-family:sans-serif;background:#111;color:#eee}.cam{display:inline-block;margin:8px;vertical-align:top}
img{image-rendering:pixelated;min-width:256px;border:1px solid #444}.stats{font-size:14px}.out{font:12px monospace}
</style></head><body><h3>edgefold run</h3><div id="cams"></div><script>
async function tick(){
  try{
    const s=await (await fetch('state.json',{cache:'no-store'})).json();
    const root=document.getElementById('cams');
    s.cameras.forEach((c,i)=>{
      let d=document.getElementById('cam-'+i);
      if(!d){d=document.createElement('div');d.className='cam';d.id='cam-'+i;
        d.innerHTML='<div class="name"></div><img><div class="stats"></div><pre class="out"></pre>';root.appendChild(d);}
      d.querySelector('.name').textContent=c.camera;
      d.querySelector('.stats').textContent=c.fps.toFixed(1)+' fps, drops '+c.drops+', frames '+c.frames;
      d.querySelector('.out').textContent=c.text;
      const img=d.querySelector('img'); const want='frame/'+i+'.png?n='+c.frames;
      if(img.getAttribute('src')!==want){img.setAttribute('src',want);}
    });
  }catch(e){}
  setTimeout(tick,250);
}
tick();
</script></body></html>"""


def overlay(raw: np.ndarray, outputs: dict[str, np.ndarray], fmt: PixelFormat | None = None) -> np.ndarray:
    """H x W x 3 uint8: the frame as the model sees it (a mosaic demosaiced, YUV converted, deep Mono scaled to 8
    bits: the format's own reference conversion), a dense one-channel map blended in red over it."""
    if fmt is not None:
        rgb = np.moveaxis(fmt.reference(fmt.frame_from_image(raw), 3), 0, 2)
    else:
        frame = raw.astype(np.float64)
        rgb = np.repeat(frame[..., None], 3, axis=2) if frame.ndim == 2 else frame[..., :3]
    for value in outputs.values():
        if is_dense_map(tuple(value.shape)) and value.shape[1] == 1:
            plane = value[0, 0].astype(np.float64)
            heat = (plane > map_threshold(plane)).astype(np.float64)
            ys = (np.arange(rgb.shape[0]) * plane.shape[0]) // rgb.shape[0]
            xs = (np.arange(rgb.shape[1]) * plane.shape[1]) // rgb.shape[1]
            heat = heat[ys][:, xs][..., None]
            rgb = rgb * (1 - 0.5 * heat) + heat * 0.5 * np.array([255.0, 0.0, 0.0])
            break
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _text(outputs: dict[str, np.ndarray]) -> str:
    lines = []
    for name, value in outputs.items():
        s = summarise(value, 5)
        if "top" in s:
            lines.append(f"{name}: " + ", ".join(f"{i}={p:.3g}" for i, p in s["top"]))
        elif "positive" in s:
            lines.append(f"{name}: {100 * s['positive']:.1f}% positive, {len(s['boxes'])} regions")
        else:
            lines.append(f"{name}: mean {s['mean']:.4g}, range {s['min']:.4g}..{s['max']:.4g}")
    return "\n".join(lines)


class ViewSink:
    def __init__(self, port: int, fmt: PixelFormat | None = None, host: str = "127.0.0.1") -> None:
        self.fmt = fmt  # the engine's pixel format: how a raw frame is shown
        self.lock = threading.Lock()
        self.latest: dict[str, tuple[Result, CameraStats]] = {}
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server hook
                status, kind, body = sink.respond(self.path.split("?")[0])
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass  # the run's output is the summary, not an access log

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as err:
            raise UsageError(f"--view {port}: cannot listen on {host}:{port} ({err.strerror}); pick another port") \
                from None
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="edgefold-view", daemon=True)
        self.thread.start()
        print(f"edgefold run: live view on http://{host}:{self.port}/", flush=True)

    def add(self, result: Result, stats: CameraStats) -> None:
        # the page is drawn later, and the frame may be a camera buffer the camera writes again: keep a copy
        frame = dataclasses.replace(result.frame, raw=result.frame.raw.copy(), release=None)
        with self.lock:
            self.latest[stats.name] = (dataclasses.replace(result, frame=frame), stats)

    def respond(self, path: str) -> tuple[int, str, bytes]:
        with self.lock:
            cams = list(self.latest.values())
        if path in ("/", "/index.html"):
            return 200, "text/html; charset=utf-8", PAGE.encode()
        if path == "/state.json":
            state = {"cameras": [{"camera": st.name, "fps": st.fps, "drops": st.drops, "frames": st.frames,
                                  "text": _text(r.outputs)} for r, st in cams]}
            return 200, "application/json", json.dumps(state).encode()
        if path.startswith("/frame/") and path.endswith(".png"):
            index = path[len("/frame/"):-len(".png")]
            if index.isdigit() and int(index) < len(cams):
                from PIL import Image

                result = cams[int(index)][0]
                buf = io.BytesIO()
                Image.fromarray(overlay(result.frame.raw, result.outputs, self.fmt)).save(buf, format="PNG")
                return 200, "image/png", buf.getvalue()
        return 404, "text/plain", b"not found"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
