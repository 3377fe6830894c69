"""Photo engine benchmark: model load time, warm per-photo latency, peak memory.

Run: ``python benchmarks/photo.py [--repeat N]``. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = [ROOT / "sample_media" / "astronaut.png", ROOT / "sample_media" / "obama.jpg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    t0 = time.perf_counter()
    import symmetry
    from symmetry.images import read_image

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    landmarker = symmetry.Landmarker()
    t_load = time.perf_counter() - t0
    print(f"import symmetry: {t_import * 1000:.0f} ms")
    print(f"model load (hash check + FaceLandmarker): {t_load * 1000:.0f} ms")

    with landmarker as lm:
        for path in PHOTOS:
            rgb = read_image(path)
            symmetry.measure_photo(rgb, landmarker=lm)  # warm-up
            t_read, t_det, t_all, t_rest = [], [], [], []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                read_image(path)
                t_read.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                lm.detect(rgb)
                t_det.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                symmetry.measure_photo(rgb, landmarker=lm)
                t_all.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                symmetry.measure_photo(rgb, rest=rgb, landmarker=lm)
                t_rest.append(time.perf_counter() - t0)
            h, w = rgb.shape[:2]
            med = lambda xs: statistics.median(xs) * 1000  # noqa: E731
            print(
                f"{path.name} ({w}x{h}): read {med(t_read):.1f} ms, landmarks {med(t_det):.1f} ms, "
                f"measure {med(t_all):.1f} ms, measure with rest + refinement {med(t_rest):.1f} ms "
                f"(median of {args.repeat})"
            )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
