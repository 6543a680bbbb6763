"""A real RTSP server on loopback for the `edgefold run --source rtsp://` tests: GStreamer's RTSP server
(Debian gir1.2-gst-rtsp-server-1.0) through GObject introspection, serving GStreamer's moving test pattern as
MJPEG (jpegenc, gstreamer1.0-plugins-good) or H.264 (openh264enc, gstreamer1.0-plugins-bad) at /x.

    python tests/rtsp_server.py --size 48x64 --fps 30 --codec mjpeg    # prints the port it listens on, serves

Where a piece is missing it prints why on stderr and exits 3 (the tests skip with that reason).
"""
from __future__ import annotations

import argparse
import sys

ENCODERS = {"mjpeg": "jpegenc ! rtpjpegpay name=pay0 pt=26",
            "h264": "openh264enc ! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1"}
PACKAGES = {"videotestsrc": "gstreamer1.0-plugins-base", "jpegenc": "gstreamer1.0-plugins-good",
            "rtpjpegpay": "gstreamer1.0-plugins-good", "openh264enc": "gstreamer1.0-plugins-bad",
            "rtph264pay": "gstreamer1.0-plugins-good"}
EXIT_MISSING = 3


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="48x64", help="HxW")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--codec", choices=tuple(ENCODERS), default="mjpeg")
    ap.add_argument("--pattern", default="ball", help="videotestsrc pattern (ball moves; smpte75 stands still)")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError) as err:
        print(f"GStreamer's RTSP server through GI is missing ({err}): Debian gir1.2-gst-rtsp-server-1.0",
              file=sys.stderr)
        return EXIT_MISSING
    Gst.init(None)
    needed = ["videotestsrc", *(e for e in PACKAGES if e in ENCODERS[args.codec])]
    absent = [e for e in needed if Gst.ElementFactory.find(e) is None]
    if absent:
        print(f"GStreamer elements missing: {', '.join(absent)} (Debian "
              f"{' '.join(sorted({PACKAGES[e] for e in absent}))})", file=sys.stderr)
        return EXIT_MISSING
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")  # any free port: printed below
    factory = GstRtspServer.RTSPMediaFactory()
    # I420: RTP/JPEG (RFC 2435) carries 4:2:0 or 4:2:2 only; is-live: frames at the stream's pace
    factory.set_launch(f"( videotestsrc pattern={args.pattern} is-live=true ! video/x-raw,format=I420,width={w},"
                       f"height={h},framerate={args.fps}/1 ! {ENCODERS[args.codec]} )")
    factory.set_shared(True)
    server.get_mount_points().add_factory("/x", factory)
    server.attach(None)
    print(server.get_bound_port(), flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
