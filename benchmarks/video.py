"""Video benchmark: frames per second, x real time and peak memory on 720p30 clinic-like clips.

Run: ``python benchmarks/video.py [--minutes 1 10] [--cache DIR]``. Prints figures; asserts nothing.

The clips are made once (cached): the bundled portrait, upscaled to 1280x720,
running a loop of the clinic script (rest, smile with synkinetic eye narrowing,
brow raise) as exact phantom warps, with a slow hand-held drift, encoded as
H.264 at 30 fps with a 2 s keyframe interval like a phone. Each measurement
runs in a fresh process, so its peak resident memory (ru_maxrss) is its own.

Figures printed:
* components on the 1-minute clip: decode only, decode + RGB conversion,
  Face Landmarker alone (one thread, VIDEO mode, pre-decoded frames) and
  decode + FaceTracker (symmetry.tracking: the same bundle's landmark and
  blendshape models on LiteRT, reading its face crop from the decoded planes
  as a worker of the pass does), with the CPU milliseconds per frame; from
  those, the machine's ceiling for the per-frame pass with each engine: every
  core busy decoding (and converting) and running the model and nothing else
  (cores x 1000 / CPU ms per frame). The model's own cost varies
  between machines (8-10.5 ms per frame for the Face Landmarker on the 2-core
  VMs seen so far), so the ``% ceil`` column (fps against that ceiling) is the
  figure to compare across machines;
* per clip and engine (``--engines``; VideoOptions.engine): ``frames`` (the
  streaming per-frame pass) and ``measure`` (the whole summary: series,
  events, peak tracking, indicators): wall time, frames per second, x real
  time, CPU seconds per frame, peak memory.
The machine's load average is printed first: other work on the two cores
slows every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FPS = 30
SIZE = (1280, 720)


def make_clip(path: Path, seconds: float) -> Path:
    """Write a 720p30 clinic-like clip of ``seconds`` (cached by name)."""
    if path.exists():
        return path
    import av
    import cv2
    import numpy as np

    from symmetry.calibration import calibrate_from_iris
    from symmetry.frame import pupil_frame
    from symmetry.images import read_image
    from symmetry.landmarks import CONTOURS, Landmarker, Side
    from symmetry.phantom import STABLE_FIXED, warp_landmarks

    src = read_image(ROOT / "sample_media" / "obama.jpg")
    base = cv2.resize(src[19:531, :910], SIZE, interpolation=cv2.INTER_CUBIC)
    with Landmarker() as lm:
        pts = lm.detect(base).points_px
    frame = pupil_frame(pts, calibrate_from_iris(pts).mm_per_px)
    r, l = CONTOURS[Side.RIGHT], CONTOURS[Side.LEFT]
    mid = len(r.upper_lid) // 2

    def smile(k: float):
        img = warp_landmarks(base, pts, frame, {r.commissure: (-4 * k, 4 * k), l.commissure: (1.5 * k, 1.5 * k)}, sigma_mm=8.0).image
        moves = {i: (0.0, -0.75 * k) for i in r.upper_lid[mid - 1 : mid + 2]}
        moves.update({i: (0.0, 0.75 * k) for i in r.lower_lid[mid - 1 : mid + 2]})
        fixed = (r.upper_lid[0], r.upper_lid[-1], *l.upper_lid[mid - 1 : mid + 2], *l.lower_lid[mid - 1 : mid + 2], *STABLE_FIXED)
        return warp_landmarks(img, pts, frame, moves, fixed=fixed, sigma_mm=2.5).image

    def brow(k: float):
        moves = {i: (0.0, 3.0 * k) for i in r.brow}
        moves.update({i: (0.0, 1.0 * k) for i in l.brow})
        fixed = (*r.upper_lid[mid - 1 : mid + 2], *l.upper_lid[mid - 1 : mid + 2], *STABLE_FIXED)
        return warp_landmarks(base, pts, frame, moves, fixed=fixed, sigma_mm=6.0).image

    levels = (1 / 3, 2 / 3, 1.0)
    s, b = [smile(k) for k in levels], [brow(k) for k in levels]
    cycle = [base] * 60 + [s[0]] * 3 + [s[1]] * 3 + [s[2]] * 45 + [s[1]] * 3 + [s[0]] * 3 + [base] * 60
    cycle += [b[0]] * 3 + [b[1]] * 3 + [b[2]] * 45 + [b[1]] * 3 + [b[0]] * 3
    n = int(round(seconds * FPS))
    tmp = path.with_suffix(".part.mp4")
    out = av.open(str(tmp), "w")
    stream = out.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
    stream.options = {"preset": "veryfast", "crf": "23", "g": str(2 * FPS)}
    for i in range(n):
        dx, dy = 4.0 * np.sin(i / 47.0), 3.0 * np.sin(i / 61.0)  # slow hand-held drift
        img = cv2.warpAffine(cycle[i % len(cycle)], np.float32([[1, 0, dx], [0, 1, dy]]), SIZE, borderMode=cv2.BORDER_REFLECT)
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    tmp.rename(path)
    return path


def run_child(mode: str, clip: Path, workers: int, engine: str) -> dict:
    """Analyse ``clip`` in this process and return the figures (called in a child process)."""
    from symmetry.video import VideoAnalyser, VideoOptions

    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    with VideoAnalyser(VideoOptions(workers=workers, engine=engine)) as va:
        if mode == "frames":
            series = va.frames(clip)
            n, events = series.n_frames, len(series.segmentation.events)
            duration = series.info.duration_s
        else:
            result = va.measure(clip)
            n, events = result.series.n_frames, len(result.events)
            duration = result.duration_s
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"mode": mode, "frames": n, "events": events, "duration_s": duration, "wall_s": wall,
            "cpu_s": cpu, "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include the forking parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def components(clip: Path, n: int = 300) -> dict[str, float]:
    """Print the per-frame components; return the machine's ceiling (fps) for the per-frame pass, per engine."""
    import av
    import numpy as np

    from symmetry.landmarks import Landmarker, LandmarkerOptions, RunningMode
    from symmetry.tracking import FaceTracker
    from symmetry.video import _TRACKED_BATCH, _planes, _to_rgb

    def decode(convert: bool, threads: bool) -> tuple[float, float]:
        """(frames per second, CPU ms per frame)."""
        with av.open(str(clip)) as c:
            s = c.streams.video[0]
            if threads:
                s.thread_type = "AUTO"
            else:
                s.codec_context.thread_count = 1  # as each worker of the pass decodes
            t0, c0, k = time.perf_counter(), time.process_time(), 0
            for frame in c.decode(s):
                if convert:
                    _to_rgb(frame, 0)
                k += 1
                if k >= 3 * n:
                    break
            return k / (time.perf_counter() - t0), 1000 * (time.process_time() - c0) / k

    print(f"  decode only: {decode(False, False)[0]:.0f} fps (1 thread), {decode(False, True)[0]:.0f} fps (threads)")
    rgb_fps, rgb_cpu = decode(True, False)
    print(f"  decode + RGB: {rgb_fps:.0f} fps (1 thread, {rgb_cpu:.2f} ms CPU/frame), {decode(True, True)[0]:.0f} fps (threads)")
    with av.open(str(clip)) as c:
        frames = []
        for k, f in enumerate(c.decode(video=0)):
            frames.append((_to_rgb(f, 0), int(round(f.time * 1000))))
            if k + 1 >= n:
                break
    with Landmarker(LandmarkerOptions(running_mode=RunningMode.VIDEO, num_faces=1)) as lm:
        first = lm.detect_for_video(frames[0][0], frames[0][1])
        t0, c0 = time.perf_counter(), time.process_time()
        for rgb, ts in frames[1:]:
            lm.detect_for_video(rgb, ts)
        fps = (len(frames) - 1) / (time.perf_counter() - t0)
        lm_cpu = 1000 * (time.process_time() - c0) / (len(frames) - 1)
    del frames
    print(f"  Face Landmarker alone (VIDEO mode, 1 thread, incl. conversion to symmetry arrays): {fps:.0f} fps, "
          f"{lm_cpu:.2f} ms CPU/frame")
    with av.open(str(clip)) as c, FaceTracker() as tr:
        # as a worker of the pass runs it: one decoding thread, the face crop read from the decoded
        # planes (no whole-frame RGB), blendshapes and head pose in batches of _TRACKED_BATCH frames
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        previous, batch, k = first.points_px, [], 0
        for frame in c.decode(s):
            if k == 30:  # after a warm-up (the first runs prepare the model's kernels)
                t0, c0 = time.perf_counter(), time.process_time()
            points = tr.landmarks(_planes(frame, 0), previous)
            previous = points if points is not None else first.points_px
            batch.append(previous)
            if len(batch) == _TRACKED_BATCH:
                tr.blendshapes(np.stack(batch)), tr.head_pose(np.stack(batch))
                batch = []
            k += 1
            if k == 30 + 2 * _TRACKED_BATCH * (n // (2 * _TRACKED_BATCH)):
                break
        tr_fps = (k - 30) / (time.perf_counter() - t0)
        tr_cpu = 1000 * (time.process_time() - c0) / (k - 30)
    print(f"  decode + FaceTracker (its landmark and blendshape models on LiteRT, 1 thread, head pose): {tr_fps:.0f} fps, "
          f"{tr_cpu:.2f} ms CPU/frame")
    cores = len(os.sched_getaffinity(0))
    ceiling = {"mediapipe": cores * 1000.0 / (lm_cpu + rgb_cpu), "tracker": cores * 1000.0 / tr_cpu}
    print(f"  ceiling on {cores} cores (every core busy with decoding and landmarks only, nothing else): "
          + ", ".join(f"{v:.0f} fps ({k})" for k, v in ceiling.items()))
    return ceiling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "symmetry-bench"))
    parser.add_argument("--workers", type=int, default=0, help="parallel landmarkers (0 = one per core)")
    parser.add_argument("--modes", nargs="+", default=["frames", "measure"], choices=["frames", "measure"])
    parser.add_argument("--engines", nargs="+", default=["tracker", "mediapipe"], choices=["tracker", "mediapipe"],
                        help="per-frame engines to time (VideoOptions.engine)")
    parser.add_argument("--no-components", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CLIP", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("GLOG_minloglevel", "2")

    if args.child:
        print(json.dumps(run_child(args.child[0], Path(args.child[1]), args.workers, args.child[2])))
        return

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    print(f"cores: {len(os.sched_getaffinity(0))}, load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    clips = []
    for minutes in args.minutes:
        path = cache / f"clinic_720p30_{minutes:g}min.mp4"
        t0 = time.perf_counter()
        existed = path.exists()
        make_clip(path, minutes * 60)
        if not existed:
            print(f"made {path.name} in {time.perf_counter() - t0:.0f} s")
        clips.append((minutes, path))
    ceiling = None
    if not args.no_components:
        print(f"components ({clips[0][1].name}):")
        ceiling = components(clips[0][1])
    print(f"{'clip':<28}{'mode':<9}{'engine':<10}{'frames':>7}{'events':>7}{'wall s':>8}{'fps':>7}{'x real':>8}{'cpu ms/f':>9}{'peak MB':>9}"
          + (f"{'% ceil':>8}" if ceiling else ""))
    for minutes, path in clips:
        for mode in args.modes:
            for engine in args.engines:
                cmd = [sys.executable, __file__, "--child", mode, str(path), engine, "--workers", str(args.workers)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if proc.returncode != 0 or not lines:
                    print(f"{path.name:<28}{mode:<9}{engine:<10} failed: {proc.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(lines[-1])
                fps = r["frames"] / r["wall_s"]
                print(f"{path.name:<28}{mode:<9}{engine:<10}{r['frames']:>7}{r['events']:>7}{r['wall_s']:>8.1f}{fps:>7.0f}"
                      f"{r['duration_s'] / r['wall_s']:>8.2f}{1000 * r['cpu_s'] / r['frames']:>9.2f}{r['peak_rss_mb']:>9.0f}"
                      + (f"{100 * fps / ceiling[engine]:>8.0f}" if ceiling else ""))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
