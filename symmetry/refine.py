"""Image-based refinement of measured points between a rest and an expression photo.

The landmark model is a prior, not a ruler: trained on healthy faces, it pulls
an asymmetric face toward symmetry and couples the two sides (a smile squints
both eyes in the model's eyes). When the same patient's rest photo is
available, symmetry therefore measures movement from the image itself: the
points measured at rest (model positions) are tracked into the expression
photo with pyramidal Lucas-Kanade optical flow, started from the model's own
expression positions. The movement of a point is then the displacement of the
skin feature under it, not the model's opinion of it.

Upper lids get one more piece of evidence: a lid that droops or closes
slides over the eye, so the band of lid tissue just beyond each margin point
is searched for along the across-margin line over a full closure's range
(normalised cross-correlation, the points' shifts chosen jointly so that the
margin moves smoothly; never past the lower lid). Where Lucas-Kanade fails its
gates, that answer stands if the model agrees on its direction and, within a
factor of three, its size. An eye closed in the expression hides its pupil:
its iris stays where it was at rest relative to the stable points.

Tracking runs on a crop of the face upsampled so that the iris is about
:data:`_TARGET_IRIS_PX` pixels wide, with a window size proportional to the
iris; a point whose forward-backward tracking error is too large, or whose
tracked position strays too far from the model's, keeps the model's position
and is not reported as refined.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .calibration import LOW_RES_IRIS_PX
from .frame import inter_pupil_px
from .landmarks import CONTOURS, Side

__all__ = ["REFINED_POINTS", "RefineOptions", "RefineResult", "similarity_fit", "track_points"]


def _group(*chains: tuple[int, ...]) -> tuple[int, ...]:
    seen: dict[int, None] = {}
    for chain in chains:
        for i in chain:
            seen[int(i)] = None
    return tuple(seen)


_R, _L = CONTOURS[Side.RIGHT], CONTOURS[Side.LEFT]

#: Point groups tracked, each with its window size in iris diameters.
_GROUPS: dict[str, tuple[tuple[int, ...], float]] = {
    "iris": (_group((_R.iris_center, _R.iris_medial, _R.iris_lateral, _L.iris_center, _L.iris_medial, _L.iris_lateral)), 1.0),
    "eyelids": (_group(_R.upper_lid[1:-1], _R.lower_lid[1:-1], _L.upper_lid[1:-1], _L.lower_lid[1:-1]), 0.1),
    "brows": (_group(_R.brow, _L.brow), 0.8),
    "commissures": ((_R.commissure, _L.commissure), 0.4),
    "lips": (
        _group(
            _R.outer_upper_lip[:-1], _R.outer_lower_lip[:-1], _L.outer_upper_lip[:-1], _L.outer_lower_lip[:-1],
            _R.inner_upper_lip, _R.inner_lower_lip, _L.inner_upper_lip, _L.inner_lower_lip,
        ),
        0.6,
    ),
}

#: Every landmark index refinement may move, by group name.
REFINED_POINTS: dict[str, tuple[int, ...]] = {name: idx for name, (idx, _) in _GROUPS.items()}

#: The points of each moving feature that :meth:`RefineResult.untracked_warning` checks, per side.
_FEATURE_POINTS = {
    "mouth corner": lambda c: [c.commissure],
    "upper lid": lambda c: list(c.upper_lid[1:-1]),
    "brow": lambda c: list(c.brow),
}

_TARGET_IRIS_PX = 48.0
_MAX_UPSAMPLE = 8.0


@dataclass(frozen=True)
class RefineOptions:
    """Tuning of :func:`track_points`.

    Attributes
    ----------
    max_fb_error : float
        Largest forward-backward error accepted, in iris diameters.
    max_departure : float
        Largest distance from the model's expression position accepted, in
        iris diameters (guards against locking onto the wrong feature).
    pyramid_levels : int
        Pyramid levels of the Lucas-Kanade tracker.
    """

    max_fb_error: float = 0.04
    max_departure: float = 0.8
    pyramid_levels: int = 3


@dataclass(frozen=True)
class RefineResult:
    """Tracked expression landmarks.

    Attributes
    ----------
    points_px : ndarray of shape (478, 3)
        Expression landmarks, image pixels: tracked where accepted; a lid point
        that was not accepted takes the displacement interpolated along its
        margin from the accepted ones; model positions elsewhere.
    refined : ndarray of bool, shape (478,)
        Which points were moved by tracking.
    fb_error_px : ndarray of shape (478,)
        Forward-backward tracking error, pixels (NaN where not tracked).
    """

    points_px: np.ndarray
    refined: np.ndarray
    fb_error_px: np.ndarray

    def refined_groups(self) -> list[str]:
        """Names of the point groups with at least one refined point."""
        return [name for name, idx in REFINED_POINTS.items() if self.refined[list(idx)].any()]

    def untracked_warning(self, mirrored: bool = False, rest: str = "rest photo") -> str | None:
        """A warning naming the moving features (mouth corner, upper lid, brow of each patient side)
        of which no point was refined, so that their movement is the model's; ``None`` if there are none.
        ``mirrored``: the photo is a mirror image (sides named anatomically); ``rest``: what the
        rest image is called."""
        features = []
        for label, points in _FEATURE_POINTS.items():
            sides = [(side.other if mirrored else side).value for side in (Side.RIGHT, Side.LEFT)
                     if not self.refined[points(CONTOURS[side])].any()]
            if len(sides) == 2:
                features.append(f"both {label}s")
            elif sides:
                features.append(f"the {sides[0]} {label}")
        if not features:
            return None
        return (f"{' and '.join(features)} not tracked from the {rest} (the skin there looks too different, "
                "e.g. teeth showing in a broad smile): the movement there is the landmark model's, which "
                "under-reports a one-sided movement")


#: Landmarks that move little with expression, for the coarse alignment of the two photos.
_STABLE = (168, 6, 197, 195, 5, 4, 133, 362, 33, 263, 468, 473, 1, 2, 98, 327)
#: Points tied to the skull whatever the expression (nose bridge; inner canthi, held by their
#: tendons): where a rest point would be in the expression had it not moved (:func:`_lid_drag`).
_BONE = (168, 6, 197, 195, 133, 362)


#: Lid margins tracked as chains (canthus ... canthus): upper and lower lid of each eye.
_LID_CHAINS: tuple[tuple[int, ...], ...] = (_R.upper_lid, _R.lower_lid, _L.upper_lid, _L.lower_lid)
#: Largest distance (iris diameters, about 1.8 mm) of a tracked lid point from the model's position.
#: A lid margin has the crease, lashes and the iris edge within a few pixels of it: on a real smile
#: clip, 0.2 let chained and direct tracking of the upper lids disagree by 4 mm (2 mm at 0.15).
_LID_DEPARTURE = 0.15
#: Largest disagreement (iris diameters) of a lid point's movement across the margin with a
#: smooth bow between the canthi fitted through the other accepted points.
_LID_KINK = 0.06
#: ... plus, for an upper lid (which can close), this fraction of the larger of the two displacements.
_LID_KINK_REL = 0.25
#: Lid tissue tracking (for a lid sliding over the eye, which hides what is under it): a window
#: this many times the margin window, moved off the margin onto the lid by half its size.
_LID_TISSUE_WIN = 2.0
#: Largest distance (iris diameters) of a tissue-tracked lid point from the model's position
#: (from the margin search's, where that found the lid).
_LID_TISSUE_DEPARTURE = 0.4
#: A lid's tissue window counts with a forward-backward error up to this many times the limit
#: (its window holds skin that follows the lid less and less, which the backward track does not undo).
#: 2 -> 3 on 24 faces: lid slides under 85% recovered 9 -> 5 of 288, no other case changed by 5 points;
#: 6 fixed two more but lets a track through whose backward error exceeds its movement.
_LID_TISSUE_FB_LOOSE = 3.0
#: Below this iris width (image px) a lower lid's skin has too little texture to track: no tissue
#: tracking there (and the photo is measured with a low-resolution warning). An upper lid's tissue
#: window is always one of its estimates: the furthest-moving one stands, and on half-size copies of 23
#: faces (8-14 px iris) lid slides under 85% recovered fell from 66 to 39 of 276 with it.
_MIN_TISSUE_IRIS_PX = LOW_RES_IRIS_PX
#: Largest change of the inter-pupil distance against the stable points' (relative) that tracking
#: may report; on a real smile clip it changed by up to 3%.
_IRIS_TRACK_MAX_IPD_CHANGE = 0.05


#: Lid-side template of the margin search (iris diameters): width, height beyond the margin, and
#: how far it reaches across the margin into the eye.
_SEARCH_W, _SEARCH_H, _SEARCH_OVER = 0.30, 0.15, 0.02
#: Search range of an upper-lid margin (iris diameters) toward the eye (a lid closing) and away from it.
_SEARCH_RANGE = (1.0, 0.60)
#: Search range along the margin (iris diameters).
_SEARCH_ALONG = 0.06
#: Smallest normalised cross-correlation of a confident margin search.
_SEARCH_MIN_NCC = 0.75
#: Cost (in correlation) of a 1-iris jump of the margin's shift between neighbouring points.
_SEARCH_SMOOTH = 0.5


def _search_margin(rest_img, expr_img, p0, outward, iris_canvas, reach, limit=None):  # type: ignore[no-untyped-def]
    """Where each lid-margin point went, by exhaustive template search (canvas pixels).

    A lid that closes or droops slides over the eye: what moves with the margin
    is the lid itself, not the eye under it. So the template is the band of lid
    just beyond the margin (``outward`` of it, reaching a little across it), and
    it is searched for along the across-margin line in the expression image
    over a range that covers a full closure, by normalised cross-correlation
    (no basin of attraction to miss, unlike Lucas-Kanade started from a guess);
    the peak is refined to a sub-pixel shift by a parabola. ``limit`` (n,) bounds
    each point's shift toward the eye (canvas px: the lid cannot pass the other
    lid). Returns the found positions (n, 2) and the peak correlation of each
    (NaN where not searched).
    """
    import cv2

    n = len(p0)
    found = np.full((n, 2), np.nan)
    score = np.full(n, np.nan)
    out = np.asarray(outward, float) / max(float(np.hypot(*outward)), 1e-9)
    # eye coordinates: columns along the margin, rows across it, row + = toward the eye (``-outward``)
    along = np.array([-out[1], out[0]])
    w = max(5, int(round(_SEARCH_W * iris_canvas)))
    h = max(5, int(round(_SEARCH_H * iris_canvas)))
    over = max(1, int(round(_SEARCH_OVER * iris_canvas)))
    r_in, r_out = (int(round(r * iris_canvas)) for r in reach)
    r_along = max(2, int(round(_SEARCH_ALONG * iris_canvas)))
    n_rows = r_out + r_in + 1
    curves = np.zeros((n, n_rows))  # best correlation over the along-margin shifts, per across shift
    cols = np.zeros((n, n_rows))
    textured = np.zeros(n, dtype=bool)
    for k, p in enumerate(np.asarray(p0, float)):
        if k in (0, n - 1):
            continue  # the canthi are not searched

        def patch(img, rows, cols_):  # type: ignore[no-untyped-def]
            (r0, r1), (c0, c1) = rows, cols_
            # destination (col, row) -> canvas p + (c0 + col) * along - (r0 + row) * out (WARP_INVERSE_MAP)
            m = np.array([[along[0], -out[0], p[0]], [along[1], -out[1], p[1]]])
            m[:, 2] += m[:, :2] @ np.array([c0, r0], float)
            return cv2.warpAffine(img, m, (c1 - c0, r1 - r0), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)

        # template: rows -h .. over (the lid band, crossing the margin a little), cols -w/2 .. w/2
        tmpl = patch(rest_img, (-h, over), (-(w // 2), w // 2 + 1)).astype(np.float32)
        if float(tmpl.std()) < 2.0:
            continue  # no texture to match
        region = patch(expr_img, (-h - r_out, over + r_in), (-(w // 2) - r_along, w // 2 + 1 + r_along)).astype(np.float32)
        ncc = cv2.matchTemplate(region, tmpl, cv2.TM_CCOEFF_NORMED)
        curves[k] = ncc.max(axis=1)
        cols[k] = ncc.argmax(axis=1)
        if limit is not None:  # an upper margin cannot pass the lower one
            curves[k, np.arange(n_rows) - r_out > limit[k]] = -1.0
        textured[k] = True
    # One shift per point, jointly: the best correlations with a margin that moves smoothly along
    # the lid (dynamic programming; a jump of 0.1 iris between neighbours costs 0.05 of correlation),
    # so a wrong peak at one point (the crease, a lash) gives way to its neighbours' agreement.
    inner = list(range(1, n - 1))
    if not any(textured[inner]):
        return found, score
    rows = np.arange(n_rows)
    jump = _SEARCH_SMOOTH * np.abs(rows[:, None] - rows[None, :]) / iris_canvas
    total = -curves[inner[0]].copy()
    back = []
    for k in inner[1:]:
        step = total[:, None] + jump  # previous row -> this row
        back.append(step.argmin(axis=0))
        total = step.min(axis=0) - curves[k]
    path = [int(total.argmin())]
    for b_ in reversed(back):
        path.append(int(b_[path[-1]]))
    path.reverse()

    def vertex(a: float, b: float, c: float) -> float:
        den = a - 2 * b + c
        return 0.0 if abs(den) < 1e-9 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))

    for k, r in zip(inner, path):
        if not textured[k] or r in (0, n_rows - 1):
            continue  # no texture, or the best match at the end of the range (the true one may lie beyond)
        cv = curves[k]
        dr = vertex(cv[r - 1], cv[r], cv[r + 1])
        row, col = r + dr - r_out, cols[k, r] - r_along  # shift of the template, eye coordinates
        found[k] = np.asarray(p0[k], float) + col * along - row * out
        score[k] = cv[r]
    return found, score


def _track_lid(chain, rest_c, expr_c, lk, win, max_fb_px, iris_canvas, outward, tissue_ok=True, searched=None,  # type: ignore[no-untyped-def]
               kink_rel=0.0):
    """Track one lid margin (canthus to canthus), canvas pixels.

    Each inner point is tracked from several starts (the model's expression
    position, no movement, and where the margin search found it (``searched``,
    (n, 2), NaN where it did not), or else the model's movement tripled, since
    the model under-reports one-sided lid movement); the start with the
    smallest forward-backward error wins. A window centred on the margin
    follows a lid that stretches; a lid that slides over the eye (ptosis, the
    narrowing of synkinesis) hides what was under the margin, and there the
    centred window locks onto the still eye. So the lid's own tissue is also
    tracked, through a larger window moved onto the lid (``outward``: the
    canvas direction from the margin into the lid), where ``tissue_ok``.
    Every estimate under-reads (each window and the search hold, besides the
    margin, what moves less: the still eye, the skin beyond the lid), so of
    those that passed their gates the one that moved furthest the model's way
    across the margin stands. The search's answer counts only where the model
    agrees with it (direction, size within 3x): there it is the gates'
    reference.
    Tracking fixes a margin's movement across the edge only; along the edge
    (the aperture problem) the model's movement is kept.
    A point is kept when its forward-backward error is small, it lies within
    :data:`_LID_DEPARTURE` of the model (of the search's answer where there
    is one), and its movement across the margin agrees with a smooth bow
    between the canthi through the other kept points (allowance
    :data:`_LID_KINK` plus ``kink_rel`` of the movement). Rejected inner points
    follow that bow (linear interpolation with fewer than three kept points);
    with fewer than two kept points the model's margin stands. The canthi keep
    the model's. Returns positions, the accepted mask and the forward-backward
    errors (canvas px) of the chain.
    """
    ids = np.asarray(chain)
    p0 = rest_c[ids]
    model = expr_c[ids]
    n = len(ids)
    if searched is not None:
        # The search's answer counts only where the model agrees on its direction and, within 3x, its
        # size (the model under-reports a lid's one-sided movement about threefold, never more than that,
        # nor does it reverse it): a search that locked onto the crease above a lid that came down would
        # otherwise be the gates' reference and reject the right answers of both windows.
        moved = np.hypot(*(model - p0).T)
        plausible = np.hypot(*(searched - model).T) <= _LID_DEPARTURE * iris_canvas + 2.0 * moved
        searched = np.where(plausible[:, None], searched, np.nan)
    # where the margin search found the lid (confident, plausible points), else the model: the gates' reference
    ref = model.copy() if searched is None else np.where(np.isfinite(searched).all(axis=1)[:, None], searched, model)
    starts = [model, p0] + ([ref] if searched is not None else [p0 + 3.0 * (model - p0)])

    def track(shift: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        best = model.copy()
        best_fb = np.full(n, np.inf)
        for guess in starts:
            p1, fb, _ = lk((p0 + shift).astype(np.float32), guess + shift, size)
            better = fb < best_fb
            best[better], best_fb[better] = p1[better] - shift, fb[better]
        return best, best_fb

    # (position, passed its gates, forward-backward error) of each estimate
    margin, margin_fb = track(np.zeros(2), win)
    estimates = [(margin, (margin_fb <= max_fb_px) & (np.hypot(*(margin - ref).T) <= _LID_DEPARTURE * iris_canvas),
                  margin_fb)]
    if tissue_ok:
        size = int(max(7, round(win * _LID_TISSUE_WIN)) | 1)
        tissue, tissue_fb = track(outward * 0.5 * size, size)
        t_near = np.hypot(*(tissue - ref).T) <= _LID_TISSUE_DEPARTURE * iris_canvas
        estimates.append((tissue, t_near & (tissue_fb <= _LID_TISSUE_FB_LOOSE * max_fb_px), tissue_fb))
    if searched is not None:
        s_ok = np.isfinite(searched).all(axis=1)
        estimates.append((np.where(s_ok[:, None], searched, p0), s_ok, margin_fb))
    # Each estimate averages the margin's movement with what moves less: the margin window the still
    # eye under a lid that slides over it (an upper lid closing, a lower lid pushed up by the cheek in
    # a smile), the tissue window and the search the skin beyond a lid that stretches (it follows the
    # margin less and less). So of the estimates that passed their gates (the tissue window's with a
    # looser forward-backward error, the upper lid's search where it is plausible), the one that moved
    # furthest the model's way across the margin stands. On 24 faces' upper-lid drops, cases under 85%
    # recovered: 14 -> 4 of 149, lid slides 18 -> 16 of 288, the other eye unchanged; on a real smile
    # clip the lower lid no longer stays put from some rest frames (the left eye's narrowing at the
    # smile read 2-21% or 13-22% from two neutral frames 67 ms apart, now 17-21% and 18-22%).
    way = np.sign(np.sum((model - p0) @ outward))
    best, best_fb = margin.copy(), margin_fb.copy()
    score = np.full(n, -np.inf)
    for pos, valid, err_fb in estimates:
        gain = np.where(valid, way * ((pos - p0) @ outward), -np.inf)
        better = gain > score
        best[better], best_fb[better], score[better] = pos[better], err_fb[better], gain[better]
    ok = np.isfinite(score)
    ok[0] = ok[-1] = False  # the canthi are not tracked
    # A lid margin is an edge: tracking fixes its movement across the edge (along ``outward``), not
    # along it, so the along-edge component is the model's.
    along = np.array([outward[1], -outward[0]])
    best = best - np.outer((best - model) @ along, along)
    # the margin's movement across itself, per point (canvas px, + = outward); the canthi keep the model's
    across = (best - p0) @ outward
    model_across = (model - p0) @ outward
    pos = (p0 - p0[0]) @ along  # where each point lies between the canthi
    t = np.clip(pos / pos[-1], 0.0, 1.0) if abs(pos[-1]) > 1e-9 else np.linspace(0.0, 1.0, n)
    basis = np.stack([np.ones(n), t, np.sin(np.pi * t)], axis=1)  # a closing lid bows between the canthi

    def fit(use: np.ndarray) -> np.ndarray:
        idx = np.r_[0, np.flatnonzero(use), n - 1]
        vals = np.r_[model_across[0], across[use], model_across[-1]]
        coef, *_ = np.linalg.lstsq(basis[idx], vals, rcond=None)
        return basis @ coef

    # drop the point that departs most from a smooth bow through the others until all agree
    # (the allowance grows with the movement: a large closure is not a perfect sine)
    for _ in range(n):
        acc = np.flatnonzero(ok)
        if len(acc) < 2:
            break
        excess = np.full(n, -np.inf)
        for k in acc:
            others = ok.copy()
            others[k] = False
            smooth = fit(others)[k]
            excess[k] = abs(across[k] - smooth) - kink_rel * max(abs(across[k]), abs(smooth))
        worst = int(np.argmax(excess))
        if excess[worst] <= _LID_KINK * iris_canvas:
            break
        ok[worst] = False
    acc = np.flatnonzero(ok)
    if len(acc) < min(2, n - 2):  # too little of the margin was seen to redraw it: the model's
        return model, np.zeros(n, dtype=bool), best_fb
    if len(acc) >= 3:  # the points not accepted follow the bow through the accepted ones
        filled_across = fit(ok)
    else:
        filled_across = np.interp(np.arange(n), [0, *acc, n - 1], np.r_[model_across[0], across[acc], model_across[-1]])
    along_disp = np.outer((model - p0) @ along, along)
    pts = np.where(ok[:, None], best, p0 + along_disp + np.outer(filled_across, outward))
    pts[0], pts[-1] = model[0], model[-1]
    return pts, ok, best_fb


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Parameters
    ----------
    src, dst : ndarray of shape (n, 2)
        Corresponding points (rows with a NaN are ignored); at least 2 finite pairs.

    Returns
    -------
    ndarray of shape (2, 3)
        ``dst ~ src @ m[:, :2].T + m[:, 2]``.
    """
    a, b = np.asarray(src, float)[:, :2], np.asarray(dst, float)[:, :2]
    ok = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
    a, b = a[ok], b[ok]
    if len(a) < 2:
        raise ValueError("similarity_fit needs at least 2 finite point pairs")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    a0, b0 = a - mu_a, b - mu_b
    u, sig, vt = np.linalg.svd(b0.T @ a0)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    corr = np.diag([1.0, d])
    rot = u @ corr @ vt
    scale = float(np.trace(np.diag(sig) @ corr) / max(float((a0**2).sum()), 1e-12))
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_b - m[:, :2] @ mu_a
    return m


def _gray(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb


def _crop_box(points: list[np.ndarray], shape: tuple[int, int], margin: float) -> tuple[int, int, int, int]:
    allp = np.concatenate([p[:, :2] for p in points])
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    pad = margin * (hi - lo).max()
    x0, y0 = np.maximum(np.floor(lo - pad), 0).astype(int)
    x1 = int(min(np.ceil(hi[0] + pad), shape[1]))
    y1 = int(min(np.ceil(hi[1] + pad), shape[0]))
    return int(x0), int(y0), x1, y1


def _iris_px(points: np.ndarray) -> float:
    d = [
        np.hypot(*(points[c.iris_lateral, :2] - points[c.iris_medial, :2]))
        for c in (CONTOURS[Side.RIGHT], CONTOURS[Side.LEFT])
    ]
    return float(np.mean(d))


def _lk_region(points: np.ndarray, win: int, levels: int, shape: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int]]:
    """The canvas region (x0, y0), (x1, y1) that pyramidal Lucas-Kanade from ``points`` can read.

    Summed over the levels, a point can move about a window at the coarsest level's
    scale (``win * 2**levels`` canvas pixels) from its start, and its window reaches
    further; the pyramid's smoothing and the gradients need a few level pixels more.
    The margin allows twice the window. The region's corner sits on the coarsest
    level's grid, so its pyramid samples the canvas where the whole canvas's does:
    on 14 lid phantoms of two faces the tracked points matched the whole canvas's
    within 0.001 px (a margin of one window left 0.3 px on one).
    """
    step = 1 << levels
    margin = step * (2 * win + 8)
    lo = np.floor((points.min(axis=0) - margin) / step).astype(int) * step
    hi = np.ceil(points.max(axis=0) + margin).astype(int)
    x0, y0 = (int(max(v, 0)) for v in lo)
    x1, y1 = int(min(hi[0], shape[1])), int(min(hi[1], shape[0]))
    return (x0, y0), (x1, y1)


def track_points(
    rest_rgb: np.ndarray,
    rest_points_px: np.ndarray,
    expression_rgb: np.ndarray,
    expression_points_px: np.ndarray,
    options: RefineOptions | None = None,
) -> RefineResult:
    """Track the measured rest points into the expression photo.

    Parameters
    ----------
    rest_rgb, expression_rgb : ndarray of shape (H, W, 3), uint8
        The two photos (sizes may differ).
    rest_points_px, expression_points_px : ndarray of shape (478, 3)
        Model landmarks of each photo, image pixels (MediaPipe edge-based
        coordinates, ``x_norm * width``).

    Returns
    -------
    RefineResult
        The expression landmarks with every accepted tracked point replaced by
        its tracked position (pixels of the expression photo).
    """
    options = options or RefineOptions()
    rest_pts = np.asarray(rest_points_px, dtype=np.float64)
    expr_pts = np.asarray(expression_points_px, dtype=np.float64)
    iris = max(_iris_px(rest_pts), 1.0)
    up = float(np.clip(_TARGET_IRIS_PX / iris, 1.0, _MAX_UPSAMPLE))

    # One canvas for both photos: the rest photo's face crop, upsampled; the
    # expression photo is brought onto it by a similarity fitted on stable points.
    x0, y0, x1, y1 = _crop_box([rest_pts], rest_rgb.shape[:2], 0.15)
    size = (int(np.ceil((x1 - x0) * up)), int(np.ceil((y1 - y0) * up)))
    # centred rest pixel r -> canvas j = up * (r + 0.5 - (x0, y0)) - 0.5
    t_rest = np.array([[up, 0.0, up * (0.5 - x0) - 0.5], [0.0, up, up * (0.5 - y0) - 0.5]])
    sim = similarity_fit(expr_pts[list(_STABLE), :2], rest_pts[list(_STABLE), :2])  # expr edge -> rest edge
    # centred expression pixel e -> centred rest pixel sim(e + 0.5) - 0.5 -> canvas
    sim_c = sim.copy()
    sim_c[:, 2] += sim[:, :2] @ np.array([0.5, 0.5]) - 0.5
    t_expr = (np.vstack([t_rest, [0, 0, 1]]) @ np.vstack([sim_c, [0, 0, 1]]))[:2]
    rest_img = cv2.warpAffine(_gray(rest_rgb), t_rest, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    expr_img = cv2.warpAffine(_gray(expression_rgb), t_expr, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    t_expr_inv = cv2.invertAffineTransform(t_expr)

    def apply(t: np.ndarray, p: np.ndarray) -> np.ndarray:
        return p @ t[:, :2].T + t[:, 2]

    def to_canvas_rest(p: np.ndarray) -> np.ndarray:
        return apply(t_rest, p[:, :2] - 0.5).astype(np.float32)

    def to_canvas_expr(p: np.ndarray) -> np.ndarray:
        return apply(t_expr, p[:, :2] - 0.5).astype(np.float32)

    def from_canvas_expr(q: np.ndarray) -> np.ndarray:
        return apply(t_expr_inv, q.astype(np.float64)) + 0.5

    out = expr_pts.copy()
    refined = np.zeros(len(expr_pts), dtype=bool)
    fb_err = np.full(len(expr_pts), np.nan)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 0.003)
    iris_up = iris * up
    rest_c = to_canvas_rest(rest_pts)
    expr_c = to_canvas_expr(expr_pts)

    def lk(p0: np.ndarray, guess: np.ndarray, win: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forward track p0 -> expression from ``guess``; canvas positions, fb error (image px), patch error.

        Runs on the part of the canvas the points can reach (see :func:`_lk_region`): the pyramids
        OpenCV builds on every call are then a fraction of the canvas, with the same values there.
        """
        (x0, y0), (x1, y1) = _lk_region(np.vstack([p0, guess]), win, options.pyramid_levels, rest_img.shape)
        a, b = rest_img[y0:y1, x0:x1], expr_img[y0:y1, x0:x1]
        off = np.array([x0, y0], dtype=np.float32)
        p0c = (p0 - off).reshape(-1, 1, 2).astype(np.float32)
        p1, st1, err = cv2.calcOpticalFlowPyrLK(
            a, b, p0c, (guess - off).reshape(-1, 1, 2).astype(np.float32),
            winSize=(win, win), maxLevel=options.pyramid_levels, criteria=criteria,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        )
        back, st2, _ = cv2.calcOpticalFlowPyrLK(
            b, a, p1, p0c.copy(),
            winSize=(win, win), maxLevel=options.pyramid_levels, criteria=criteria,
            flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        )
        fb = np.hypot(*(back.reshape(-1, 2) + off - p0).T) / up
        fb[(st1.ravel() != 1) | (st2.ravel() != 1)] = np.inf
        return p1.reshape(-1, 2) + off, fb, err.ravel().astype(float)

    for name, (idx, win_iris) in _GROUPS.items():
        ids = np.array(idx)
        win = int(max(7, round(win_iris * iris_up)) | 1)
        p0 = rest_c[ids]
        if name == "eyelids":
            continue  # tracked along each lid margin below
        p1, fb, _ = lk(p0, expr_c[ids], win)
        tracked = from_canvas_expr(p1)
        departure = np.hypot(*(tracked - expr_pts[ids, :2]).T)
        ok = (fb <= options.max_fb_error * iris) & (departure <= options.max_departure * iris)
        out[ids[ok], :2] = tracked[ok]
        refined[ids[ok]] = True
        fb_err[ids] = fb
    win = int(max(7, round(_GROUPS["eyelids"][1] * iris_up)) | 1)
    pupils = rest_c[[_R.iris_center, _L.iris_center]]
    u = (pupils[1] - pupils[0]) / max(float(np.hypot(*(pupils[1] - pupils[0]))), 1e-9)
    up_c = np.array([u[1], -u[0]])  # the face's up direction on the canvas (y down)
    for k_chain, (chain, sign) in enumerate(zip(_LID_CHAINS, (1.0, -1.0, 1.0, -1.0))):
        ids = np.asarray(chain)
        searched = None
        if sign > 0:  # upper lids (a lower lid moves little, and on a real smile its skin bunches)
            # how far each point may descend: to the lower lid below it at rest (a closed eye);
            # u runs along the inter-pupil line, up_c across it
            lower = rest_c[np.asarray(_LID_CHAINS[k_chain + 1])]
            lx, ly = lower @ u, lower @ up_c
            order = np.argsort(lx)
            gap = rest_c[ids] @ up_c - np.interp(rest_c[ids] @ u, lx[order], ly[order])
            limit = np.maximum(gap, 0.0) + 0.05 * iris_up
            searched, score = _search_margin(rest_img, expr_img, rest_c[ids], sign * up_c, iris_up, _SEARCH_RANGE, limit)
            searched[~(score >= _SEARCH_MIN_NCC)] = np.nan
        pts, ok, fb = _track_lid(chain, rest_c, expr_c, lk, win, options.max_fb_error * iris, iris_up, sign * up_c,
                                 sign > 0 or iris >= _MIN_TISSUE_IRIS_PX, searched, _LID_KINK_REL if sign > 0 else 0.0)
        inner = np.array(chain[1:-1])
        out[inner, :2] = from_canvas_expr(pts[1:-1])
        refined[inner] = ok[1:-1]
        fb_err[inner] = fb[1:-1]
    # An eye closed in the expression hides its iris: neither the model nor tracking can see
    # where it is (a sliver of iris under a lowered lid drags the tracked pupil sideways), so it stays
    # where it was at rest relative to the stable points: the frame's origin and axis, the session
    # scale and the pupil's x where the lids are measured do not wander with a guess. The lid gap is
    # judged at that rest position, not at the guessed pupil.
    from .calibration import CLOSED_FRACTION, lid_gap_fraction

    iris_ids = {side: np.array([c.iris_center, c.iris_medial, c.iris_lateral, c.iris_top, c.iris_bottom])
                for side, c in CONTOURS.items()}
    at_rest = out.copy()
    for ids in iris_ids.values():
        at_rest[ids, :2] = from_canvas_expr(rest_c[ids])
    # closed: the lid gap at the rest pupil position under 15% of the iris (not judged at the
    # tracked pupil, which may be the guess). A narrowed eye keeps its tracked pupil: some faces
    # open their eyes only 40% of the iris at rest, and a smile narrows them further.
    hidden = [side for side, gap in lid_gap_fraction(at_rest).items() if not gap >= CLOSED_FRACTION]
    # Pupils that changed their distance apart by more than a smile or a gaze shift can (the stable
    # points carry the face's scale): the one that strayed further from its rest position is a guess.
    centre = {side: int(c.iris_center) for side, c in CONTOURS.items()}
    if not hidden and abs(inter_pupil_px(out) / max(inter_pupil_px(at_rest), 1e-9) - 1.0) > _IRIS_TRACK_MAX_IPD_CHANGE:
        hidden = [max(centre, key=lambda side: float(np.hypot(*(out[centre[side], :2] - at_rest[centre[side], :2]))))]
    for side in hidden:
        out[iris_ids[side], :2] = at_rest[iris_ids[side], :2]
        refined[iris_ids[side]] = False
    if not hidden:
        # where each rest point would be in the expression had it not moved against the skull, from
        # the skull-fixed points as tracked (the model's own eye points follow a drooping lid)
        q, fb, _ = lk(rest_c[list(_BONE)], expr_c[list(_BONE)], int(max(7, round(0.5 * iris_up)) | 1))
        good = fb <= options.max_fb_error * iris
        held = None
        if good.sum() >= 4 and good[[_BONE.index(_R.upper_lid[-1]), _BONE.index(_L.upper_lid[-1])]].all():
            m = similarity_fit(rest_c[list(_BONE)][good], q[good])
            held = from_canvas_expr(apply(m, rest_c.astype(np.float64)))
        drag = None if held is None else _lid_drag(out[:, :2], held, iris)
        if drag is not None:
            side, shift = drag
            out[iris_ids[side], :2] -= shift
            refined[iris_ids[side]] = False
    return RefineResult(points_px=out, refined=refined, fb_error_px=fb_err)


#: Difference (iris diameters) between the two pupils' movements across the inter-pupil line, against
#: the skull-fixed points, that :func:`_lid_drag` leaves alone (corrected fully from twice this).
#: On a real smile clip the two agreed within about this where both lids came down alike.
_GAZE_TOL = 0.01


def _lid_drag(expr: np.ndarray, held: np.ndarray, iris: float) -> tuple[Side, np.ndarray] | None:
    """The eye whose pupil a lowered upper lid dragged along, and by how much (image px), or ``None``.

    ``expr``: the expression points (n, 2), image px; ``held``: the rest points
    carried into the expression by the stable points (where they would be had
    they not moved against the skull). The eyes move up and down together
    (vertical gaze is conjugate), so both pupils move alike across the
    inter-pupil line. A lid sliding over the top of the iris drags the tracked
    (and the model's) pupil down with it: on real portraits a 2-3 mm one-sided
    lid slide moved that pupil 1-2 mm and the other not at all, and MRD1 then
    showed a third of the drop. When the two pupils' movements across the line
    differ by more than :data:`_GAZE_TOL`, the pupil of the eye whose upper lid
    came down further is the dragged one, by the difference. (Along the line
    the pupils may part: vergence, and the stable points' scale; on a real smile
    clip they parted by up to 0.2 iris.)
    """
    axis = held[CONTOURS[Side.LEFT].iris_center] - held[CONTOURS[Side.RIGHT].iris_center]
    down = np.array([-axis[1], axis[0]]) / max(float(np.hypot(*axis)), 1e-9)
    if down[1] < 0:  # image y grows downward
        down = -down
    drop = {side: float((expr[c.iris_center] - held[c.iris_center]) @ down) for side, c in CONTOURS.items()}
    descent = {side: float(np.max((expr[list(c.upper_lid[1:-1])] - held[list(c.upper_lid[1:-1])]) @ down))
               for side, c in CONTOURS.items()}
    side = max(descent, key=descent.__getitem__)
    excess = drop[side] - drop[side.other]
    lead = descent[side] - descent[side.other]
    if min(lead, excess, descent[side]) <= _GAZE_TOL * iris:
        return None  # the pupils moved alike, both lids did, or no lid came down
    # fully corrected from twice the tolerance, in proportion between (no jump in MRD1 at the threshold);
    # a lid drags the pupil at most as far as it came down
    weight = min(1.0, excess / (_GAZE_TOL * iris) - 1.0)
    return side, weight * min(excess, lead) * down
