"""Stimulation mapping: what each stimulated facial-nerve branch moves (selective denervation).

In a selective denervation (modified selective neurectomy) the surgeon finds
the facial-nerve branches and stimulates them one at a time; the movement
each one elicits on the operated side is what the keep-or-cut judgement rests
on. This module measures that movement from the video of the session.
**Decision support only**: it ranks the branches and explains the numbers; it
never says which branch to cut or keep.

Input
-----
* one video of the session and a stimulation log, a CSV with the header
  ``branch,time_s`` (the stimulation instant) or ``branch,start_s,end_s``
  (the stimulation and the end of its response window); see
  :func:`read_stim_log`;
* or one short clip per branch: the branch name is the file stem, or the
  log's ``branch`` (matched by a ``clip`` column naming the file, else by
  order) with ``time_s`` the stimulation instant within the clip. Without a
  log the first ``baseline_s`` of a clip is the baseline and the stimulation
  time is unknown (no latency).

Per branch
----------
1. **Baseline**: the still face just before the stimulation: the frames in
   ``[stim - baseline_s, stim)``; after aligning them (below), those whose
   mobile points stay within :data:`STILL_MM` of the window's median are
   *still*, and the baseline is the median of the still frames.
2. **Head motion removed**: each frame's landmarks are mapped onto the
   baseline by a least-squares similarity (rotation, scale, translation)
   fitted on :func:`stable_points` (the irises, the nose bridge and tip of
   :data:`symmetry.phantom.STABLE_FIXED` that the video series keeps, both
   medial canthi and the healthy side's lateral canthus). What is left is the
   movement of the face itself.
3. **Movement per region** of the operated side (:data:`MOVEMENTS`), in mm in
   the baseline's pupil frame (x toward the patient's left, y up; see
   :mod:`symmetry.frame`), each with its direction ``direction_deg`` above
   the horizontal, lateral positive (0 = straight out, 90 = up, 180 = toward
   the midline, -90 = down). Points follow the skin: a region's displacement
   is the landmarks' displacement interpolated at the baseline position.
4. **Peak** in the response window ``[stim, end]`` (``end_s`` of the log,
   else ``stim + response_s``, cut at the next stimulation): the frame where
   the largest normalised region activation (the classifier's, below) peaks
   (from the tracked points, see 5; without refinement from the model's,
   smoothed by a 3-frame running median).
   **Onset latency**: the first frame after the stimulation from which the
   dominant activation stays at or above ``onset_fraction`` (20%) of its peak
   for two frames, in ms after the stimulation (resolution: one frame).
5. **Refinement** (default): the landmark model pulls the two sides of a face
   together and under-reports one-sided movement, which a stimulation is
   (on the phantom clips the model alone reports 15-67% of the true
   movement). So the operated side's points are tracked in the image, from
   the baseline frame into every frame of the response window, with
   pyramidal Lucas-Kanade optical flow as in :mod:`symmetry.refine` (an
   upsampled face crop, one window size per point group, forward-backward
   check) but without refine's limit on the distance from the model's
   position (that limit pins the points to the under-reporting model). Each
   frame is first aligned on the image itself: points the branch cannot move
   (:func:`_image_anchors`: nasal midline, medial canthi, the other side's
   lateral canthus and brow) are tracked and the similarity refitted on them.
   The peak and the onset then come from the tracked time course; points that
   cannot be tracked keep the model's displacement.
6. **Quality**: fraction of frames without a face, head yaw / pitch beyond
   :data:`YAW_LIMIT_DEG` / :data:`PITCH_LIMIT_DEG`, the head's own motion that
   was removed (mm at the face) and the residual misfit of the stable points
   after alignment (mm); ``quality`` is ``good``, ``check`` (a flag was
   raised) or ``unusable`` (no baseline or no face).

Classes
-------
Each region group has an activation = movement / threshold (so 1 = just
detectable):

================== ================================================= ===============
group              movement (operated side)                          threshold
================== ================================================= ===============
smile              smile vector (commissure up / lateral) or upper     1.5 mm
                   lip elevation, the larger
antagonist         commissure depression or lip pucker (commissure     1.5 mm
                   toward the midline), the larger
ocular             eye closure (fissure narrowing) or |brow            15 % / 1.5 mm
                   movement|, the larger activation
lower_lip          lower-lip depression or chin (mentalis) motion      1.5 mm
================== ================================================= ===============

The class is ``none`` when no activation reaches 1; the group's class
(``smile_agonist``, ``smile_antagonist``, ``ocular``, ``lower_lip``) when
one group reaches 1 and is at least :data:`DOMINANCE` (2) times every other
group that does; else ``mixed``. ``preserve`` marks branches whose lower-lip
group is active (the depressor labii inferioris and mentalis serve oral
competence: up to a quarter of patients lose some after the surgery).
Branches are ranked by smile vector magnitude (1 = largest).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .calibration import DEFAULT_IRIS_MM
from .errors import InputError
from .frame import lateral_sign, pupil_frame
from .landmarks import CONTOURS, LM, Side
from .phantom import STABLE_FIXED
from .refine import similarity_fit

__all__ = [
    "CLASSES",
    "MOVEMENTS",
    "THRESHOLDS",
    "DOMINANCE",
    "GROUP_CLASS",
    "CHIN_POINTS",
    "FRAME_COLUMNS",
    "StimLogError",
    "Stimulation",
    "StimOptions",
    "Movement",
    "BranchResponse",
    "StimResult",
    "read_stim_log",
    "stable_points",
    "similarity_fit",
    "apply_similarity",
    "region_movements",
    "activations",
    "classify",
    "onset_time",
    "analyse_stimulation",
    "analyse_clips",
    "stim_keyframe",
]

#: Movement classes of a branch (stable names, snake_case in JSON and the database).
CLASSES: tuple[str, ...] = ("smile_agonist", "smile_antagonist", "ocular", "lower_lip", "mixed", "none")

#: Movements measured per branch on the operated side: name -> unit.
#: Signed values: + up for elevations, + down for depressions, + lateral, + narrowing.
MOVEMENTS: dict[str, str] = {
    "brow_elevation": "mm",  # brow at the pupil's x, + up
    "eye_closure": "%",  # fissure narrowing at the pupil's x, 100 * (1 - PFH / PFH_baseline)
    "upper_lid_descent": "mm",  # upper lid at the pupil's x, + down
    "smile_vector": "mm",  # commissure displacement's up and lateral parts, length
    "commissure_elevation": "mm",  # + up
    "commissure_lateral": "mm",  # + away from the midline
    "commissure_depression": "mm",  # downward part of the commissure displacement
    "upper_lip_elevation": "mm",  # outer upper lip halfway between midline and commissure, + up
    "lower_lip_depression": "mm",  # outer lower lip halfway between midline and commissure, + down
    "lip_pucker": "mm",  # commissure toward the midline
    "chin_motion": "mm",  # chin pad (CHIN_POINTS) mean displacement length (mentalis; the mesh sees little)
}

#: Activation thresholds (the unit of each group's driving movements).
THRESHOLDS: dict[str, float] = {
    "smile": 1.5,  # mm
    "antagonist": 1.5,  # mm
    "eye_closure": 15.0,  # %
    "brow": 1.5,  # mm
    "lower_lip": 1.5,  # mm
}
#: A group is the branch's class when its activation is at least this many times every other active group's.
DOMINANCE = 2.0
#: Group -> class name.
GROUP_CLASS: dict[str, str] = {
    "smile": "smile_agonist",
    "antagonist": "smile_antagonist",
    "ocular": "ocular",
    "lower_lip": "lower_lip",
}
#: A baseline frame is still when its mobile points stay within this distance (mm) of the window's median.
STILL_MM = 0.6
#: Pose limits for the quality flag, degrees.
YAW_LIMIT_DEG = 10.0
PITCH_LIMIT_DEG = 15.0
#: Quality flags: face missing in more than this fraction of frames; residual misfit of the stable points (mm).
MAX_FACE_LOST = 0.2
MAX_RESIDUAL_MM = 1.0
#: Head motion (mm at the face) worth reporting, though it is removed.
HEAD_MOTION_NOTE_MM = 1.0
#: Directions of displacements shorter than this (mm) are not given (NaN).
MIN_DIRECTION_MM = 0.2

_CLASS_LABELS = {
    "smile_agonist": "smile agonist",
    "smile_antagonist": "smile antagonist / depressor",
    "ocular": "ocular (periocular)",
    "lower_lip": "lower lip",
    "mixed": "mixed",
    "none": "no movement",
}


class StimLogError(InputError):
    """The stimulation log cannot be used: ``source`` names the log, the reason names the line."""


# --------------------------------------------------------------------------- the log
@dataclass(frozen=True)
class Stimulation:
    """One row of the stimulation log.

    Attributes
    ----------
    branch : str
        The branch's name as noted during surgery.
    time_s : float
        Stimulation instant, seconds from the start of the video (or clip).
    end_s : float or None
        End of the response window, s (None: ``time_s + response_s``).
    clip : str or None
        The clip (file name) this row belongs to, for one clip per branch.
    line : int
        Line of the log (1 = header), for messages.
    """

    branch: str
    time_s: float
    end_s: float | None = None
    clip: str | None = None
    line: int = 0


def _number(text: str, column: str, source: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise StimLogError(source, f"line {line}: {column} {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise StimLogError(source, f"line {line}: {column} must be 0 or more seconds, got {text}")
    return value


def read_stim_log(path: str | os.PathLike[str]) -> list[Stimulation]:
    """Read a stimulation log: ``branch,time_s`` or ``branch,start_s,end_s`` (header required).

    ``time_s`` and ``start_s`` are synonyms; ``end_s`` may be left empty on a
    row; an optional ``clip`` column names the clip of each row (one clip per
    branch); other columns (e.g. ``current_mA``, ``notes``) are ignored.
    Rows are returned in time order (clips: in file order).

    Raises
    ------
    StimLogError
        Missing or unreadable file, no rows, a missing column, an empty
        branch name, a time that is not a number or negative, ``end_s <=
        start_s``, or (within one video) two rows at the same time or a
        response window that runs past the next stimulation. The message
        names the line.
    """
    source = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = [(reader.line_num, row) for row in reader]  # line_num: the file's line (blank lines skipped)
            header = [str(h).strip().lower() for h in (reader.fieldnames or [])]
    except FileNotFoundError:
        raise StimLogError(source, "stimulation log not found") from None
    except IsADirectoryError:
        raise StimLogError(source, "is a directory, not a stimulation log") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StimLogError(source, f"cannot read the stimulation log ({exc})") from None
    expected = "expected the header branch,time_s or branch,start_s,end_s"
    if not header:
        raise StimLogError(source, f"stimulation log is empty; {expected}")
    time_col = "time_s" if "time_s" in header else "start_s" if "start_s" in header else None
    if "branch" not in header or time_col is None:
        missing = [c for c in ("branch", "time_s") if c not in header and not (c == "time_s" and "start_s" in header)]
        raise StimLogError(source, f"line 1: no column {' or '.join(missing)}; {expected}")
    if not rows:
        raise StimLogError(source, f"stimulation log has a header but no rows; {expected}")
    out: list[Stimulation] = []
    for line, raw in rows:
        row = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue  # blank line
        branch = row.get("branch", "")
        if not branch:
            raise StimLogError(source, f"line {line}: empty branch name")
        if len(branch) > 64:
            raise StimLogError(source, f"line {line}: branch name longer than 64 characters")
        t = _number(row.get(time_col, ""), time_col, source, line)
        end_text = row.get("end_s", "")
        end = _number(end_text, "end_s", source, line) if end_text else None
        if end is not None and end <= t:
            raise StimLogError(source, f"line {line}: end_s ({end:g}) must be after {time_col} ({t:g})")
        out.append(Stimulation(branch, t, end, row.get("clip") or None, line))
    if not out:
        raise StimLogError(source, f"stimulation log has no rows; {expected}")
    if any(s.clip for s in out):
        return out
    out.sort(key=lambda s: s.time_s)
    for a, b in zip(out, out[1:]):
        if b.time_s - a.time_s < 1e-6:
            raise StimLogError(source, f"line {b.line}: same time as line {a.line} ({a.time_s:g} s)")
        if a.end_s is not None and a.end_s > b.time_s + 1e-9:
            raise StimLogError(source, f"line {a.line}: end_s {a.end_s:g} runs past the next stimulation "
                                       f"(line {b.line}, {b.time_s:g} s)")
    return out


# --------------------------------------------------------------------------- options and results
@dataclass(frozen=True)
class StimOptions:
    """How to analyse a stimulation session.

    Attributes
    ----------
    side : {"left", "right"}
        The operated side (the patient's).
    baseline_s : float
        Length of the baseline window before each stimulation, s.
    response_s : float
        Response window after a stimulation without ``end_s``, s.
    onset_fraction : float
        Onset = first crossing of this fraction of the peak activation.
    mirrored : bool
        Selfie (mirrored) video: the patient's left is on the image's left.
    refine : bool
        Track the baseline frame's points into the peak frame (recommended).
    mm_per_px : float or None
        Manual scale; otherwise the iris scale of the video.
    iris_mm : float
        Assumed horizontal iris diameter, mm.
    frame_stride : int
        Analyse every n-th frame.
    workers : int
        Parallel landmarkers for the video pass (0 = automatic, 1.5 per core).
    model_path : path or None
        Another ``face_landmarker.task``.
    """

    side: str = "left"
    baseline_s: float = 1.0
    response_s: float = 2.0
    onset_fraction: float = 0.2
    mirrored: bool = False
    refine: bool = True
    mm_per_px: float | None = None
    iris_mm: float = DEFAULT_IRIS_MM
    frame_stride: int = 1
    workers: int = 0
    model_path: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        if self.side not in ("left", "right"):
            raise ValueError(f"`side` must be 'left' or 'right' (the patient's operated side), got {self.side!r}")
        for name in ("baseline_s", "response_s"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"`{name}` must be a positive number of seconds, got {v!r}")
        if not 0 < self.onset_fraction < 1:
            raise ValueError(f"`onset_fraction` must be between 0 and 1, got {self.onset_fraction!r}")

    @property
    def model_side(self) -> Side:
        """The landmark model's label of the operated side (swapped in a mirrored video)."""
        side = Side(self.side)
        return side.other if self.mirrored else side


@dataclass(frozen=True)
class Movement:
    """One movement of one branch: ``name`` is ``value`` ``unit``, toward ``direction_deg``.

    ``direction_deg``: direction of the underlying displacement above the
    horizontal, lateral positive (0 out, 90 up, 180 toward the midline, -90
    down); NaN when the displacement is under :data:`MIN_DIRECTION_MM`.
    """

    name: str
    value: float
    unit: str
    direction_deg: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": _num(self.value), "unit": self.unit,
                "direction_deg": _num(self.direction_deg)}


def _num(v: float, digits: int = 3) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)


@dataclass
class BranchResponse:
    """What one stimulated branch moved.

    Attributes
    ----------
    branch : str
    source : str
        The video or clip.
    stim_s, end_s : float
        Stimulation instant and end of the response window, s from the start of ``source``.
    stim_time_known : bool
        False for a clip without a log (the stimulation is assumed at ``baseline_s``; no latency).
    movement_class : str
        One of :data:`CLASSES` (``class`` in JSON).
    rank : int
        1 = largest smile vector.
    preserve : bool
        The lower-lip group (oral competence) is active.
    movements : list of Movement
        Peak movements (tracked from the baseline frame when refined).
    model_movements : list of Movement
        The same from the landmark model alone (before refinement).
    activations : dict
        Group -> movement / threshold at the peak.
    peak_s : float
    onset_s, onset_latency_ms : float
        Onset time (s) and latency after the stimulation (ms); NaN when there is no movement.
    quality : str
        ``good``, ``check`` or ``unusable``.
    quality_flags : list of str
    face_lost_fraction : float
    max_abs_yaw_deg, max_abs_pitch_deg : float
    head_motion_mm : float
        Largest head motion removed by the alignment, mm at the face.
    residual_motion_mm : float
        RMS misfit of the stable points after alignment at the peak, mm.
    refined : list of str
        Point groups tracked from the baseline frame.
    explanation : str
    """

    branch: str
    source: str
    stim_s: float
    end_s: float
    stim_time_known: bool = True
    movement_class: str = "none"
    rank: int = 0
    preserve: bool = False
    movements: list[Movement] = field(default_factory=list)
    model_movements: list[Movement] = field(default_factory=list)
    activations: dict[str, float] = field(default_factory=dict)
    peak_s: float = math.nan
    onset_s: float = math.nan
    onset_latency_ms: float = math.nan
    quality: str = "good"
    quality_flags: list[str] = field(default_factory=list)
    face_lost_fraction: float = 0.0
    max_abs_yaw_deg: float = math.nan
    max_abs_pitch_deg: float = math.nan
    head_motion_mm: float = math.nan
    residual_motion_mm: float = math.nan
    refined: list[str] = field(default_factory=list)
    explanation: str = ""

    def value(self, name: str) -> float:
        """The peak value of one movement (NaN when absent)."""
        for m in self.movements:
            if m.name == name:
                return m.value
        return math.nan

    def movement(self, name: str) -> Movement | None:
        return next((m for m in self.movements if m.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "branch": self.branch,
            "source": self.source,
            "rank": self.rank,
            "class": self.movement_class,
            "preserve": self.preserve,
            "explanation": self.explanation,
            "stim_s": _num(self.stim_s),
            "end_s": _num(self.end_s),
            "stim_time_known": self.stim_time_known,
            "peak_s": _num(self.peak_s),
            "onset_s": _num(self.onset_s),
            "onset_latency_ms": _num(self.onset_latency_ms, 1),
            "activations": {k: _num(v) for k, v in self.activations.items()},
            "movements": [m.to_dict() for m in self.movements],
            "quality": self.quality,
            "quality_flags": list(self.quality_flags),
            "face_lost_fraction": _num(self.face_lost_fraction),
            "max_abs_yaw_deg": _num(self.max_abs_yaw_deg, 1),
            "max_abs_pitch_deg": _num(self.max_abs_pitch_deg, 1),
            "head_motion_mm": _num(self.head_motion_mm),
            "residual_motion_mm": _num(self.residual_motion_mm),
            "refined_points": list(self.refined),
        }


#: Columns of :meth:`StimResult.to_frame`.
FRAME_COLUMNS = (
    "source", "branch", "rank", "class", "preserve", "movement", "value", "unit", "direction_deg",
    "stim_s", "peak_s", "onset_latency_ms", "quality", "explanation",
)


@dataclass
class StimResult:
    """The branch table of one stimulation session (the JSON contract of ``symmetry stim``).

    Attributes
    ----------
    sources : list of str
        The video, or the clips.
    log : str or None
        The stimulation log.
    side : str
        The operated side (the patient's).
    mirrored : bool
    mm_per_px : float
        Scale at the first baseline, mm per pixel.
    source_sha256 : str
        SHA-256 of the video (of the clips' hashes in order, for clips).
    branches : list of BranchResponse
        In log (or clip) order; ``rank`` orders them by smile vector.
    warnings : list of str
    keyframes : dict of str to ndarray
        Side-by-side baseline | peak RGB image per branch (when asked for; not in JSON).
    """

    sources: list[str]
    log: str | None
    side: str
    mirrored: bool
    mm_per_px: float
    source_sha256: str
    branches: list[BranchResponse]
    warnings: list[str] = field(default_factory=list)
    keyframes: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def source(self) -> str:
        return self.sources[0] if len(self.sources) == 1 else ", ".join(self.sources)

    def branch(self, name: str) -> BranchResponse:
        """The response of the branch named ``name`` (the first one, if stimulated twice).

        Raises
        ------
        KeyError
        """
        for b in self.branches:
            if b.branch == name:
                return b
        raise KeyError(name)

    def ranked(self) -> list[BranchResponse]:
        return sorted(self.branches, key=lambda b: b.rank)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": list(self.sources),
            "log": self.log,
            "side": self.side,
            "mirrored": self.mirrored,
            "mm_per_px": _num(self.mm_per_px, 6),
            "source_sha256": self.source_sha256,
            "decision_support_only": True,
            "classes": list(CLASSES),
            "branches": [b.to_dict() for b in self.ranked()],
            "warnings": list(self.warnings),
        }

    def to_frame(self) -> pd.DataFrame:
        """Tidy rows, one per branch x movement: :data:`FRAME_COLUMNS`, by rank."""
        rows = []
        for b in self.ranked():
            for m in b.movements:
                rows.append({
                    "source": b.source, "branch": b.branch, "rank": b.rank, "class": b.movement_class,
                    "preserve": b.preserve, "movement": m.name, "value": m.value, "unit": m.unit,
                    "direction_deg": m.direction_deg, "stim_s": b.stim_s, "peak_s": b.peak_s,
                    "onset_latency_ms": b.onset_latency_ms, "quality": b.quality, "explanation": b.explanation,
                })
        return pd.DataFrame(rows, columns=list(FRAME_COLUMNS))

    def save_keyframes(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write each branch's key frame as ``<rank>_<branch>.png``; returns the paths.

        Raises
        ------
        OSError
            The folder or a file cannot be written.
        """
        import cv2

        out_dir = Path(directory)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for k, b in enumerate(self.branches):
            img = self.keyframes.get(_key(k, b.branch))
            if img is None:
                continue
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in b.branch)[:60] or "branch"
            path = out_dir / f"{b.rank:02d}_{safe}.png"
            if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                raise OSError(f"{path}: cannot write image")
            paths.append(path)
        return paths

    def keyframe(self, branch: BranchResponse) -> np.ndarray | None:
        """The key frame of one branch (None when none was made)."""
        k = self.branches.index(branch)
        return self.keyframes.get(_key(k, branch.branch))


def _key(k: int, branch: str) -> str:
    return f"{k:03d}:{branch}"


# --------------------------------------------------------------------------- geometry (pure)
def stable_points(side: Side | str, available: Iterable[int] | None = None) -> tuple[int, ...]:
    """Landmarks that the branches of ``side`` do not move: the alignment's anchors.

    :data:`symmetry.phantom.STABLE_FIXED` (iris centres and horizontal iris
    contour, nose bridge and tip), both medial canthi and the lateral canthus
    of the other side (the operated side's is pulled by the orbicularis
    oculi); with ``available``, only those in it.
    """
    s = Side(side)
    ids = list(STABLE_FIXED) + [int(LM.RIGHT_MEDIAL_CANTHUS), int(LM.LEFT_MEDIAL_CANTHUS)]
    ids.append(int(LM.LEFT_LATERAL_CANTHUS if s is Side.RIGHT else LM.RIGHT_LATERAL_CANTHUS))
    keep = None if available is None else set(int(i) for i in available)
    return tuple(i for i in dict.fromkeys(ids) if keep is None or i in keep)


def apply_similarity(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points (..., 2+) by a 2x3 matrix; returns (..., 2)."""
    p = np.asarray(points, float)[..., :2]
    return p @ m[:, :2].T + m[:, 2]


def _interp_at(base: np.ndarray, disp: np.ndarray, chain: Sequence[int], x: float) -> tuple[float, np.ndarray]:
    """Base y of a contour at abscissa ``x`` and the displacement of the skin there (linear along the chain)."""
    idx = list(chain)
    bx, by = base[idx, 0], base[idx, 1]
    order = np.argsort(bx, kind="stable")
    bx, by, d = bx[order], by[order], disp[idx][order]
    y = float(np.interp(x, bx, by))
    return y, np.array([np.interp(x, bx, d[:, 0]), np.interp(x, bx, d[:, 1])])


def _direction(d: np.ndarray, s: float) -> float:
    if not np.isfinite(d).all() or float(np.hypot(*d)) < MIN_DIRECTION_MM:
        return math.nan
    return float(np.degrees(np.arctan2(d[1], s * d[0])))


def region_movements(base_mm: np.ndarray, moved_mm: np.ndarray, side: Side | str) -> list[Movement]:
    """The movements of :data:`MOVEMENTS` on one side, from landmark displacements.

    Parameters
    ----------
    base_mm, moved_mm : ndarray of shape (478, 2)
        The same landmarks at baseline and at the response, both in the
        **baseline's** pupil frame (mm, x toward the patient's left, y up),
        i.e. after the head's own motion was removed. Landmarks not used may
        be NaN.
    side : Side or str
        The side measured, as the landmark model labels it.

    Returns
    -------
    list of Movement
        In the order of :data:`MOVEMENTS`.
    """
    side = Side(side)
    s = lateral_sign(side)
    b = np.asarray(base_mm, float)[:, :2]
    d = np.asarray(moved_mm, float)[:, :2] - b
    c = CONTOURS[side]
    pupil_x = float(b[c.iris_center, 0])
    half_x = float(b[c.commissure, 0]) / 2.0

    _, d_brow = _interp_at(b, d, c.brow, pupil_x)
    y_up, d_up = _interp_at(b, d, c.upper_lid, pupil_x)
    y_lo, d_lo = _interp_at(b, d, c.lower_lid, pupil_x)
    pfh = y_up - y_lo
    _, d_ul = _interp_at(b, d, c.outer_upper_lip, half_x)
    _, d_ll = _interp_at(b, d, c.outer_lower_lip, half_x)
    d_com = d[c.commissure]
    chin = d[list(CHIN_POINTS)]
    chin = chin[np.isfinite(chin).all(axis=1)]
    d_chin = chin.mean(axis=0) if len(chin) else np.full(2, np.nan)
    up, lat = float(d_com[1]), float(s * d_com[0])
    closure = -100.0 * (d_up[1] - d_lo[1]) / pfh if pfh > 1e-6 else math.nan
    smile = np.array([max(lat, 0.0), max(up, 0.0)])
    vals = {
        "brow_elevation": (float(d_brow[1]), _direction(d_brow, s)),
        "eye_closure": (float(closure), _direction(d_up, s)),
        "upper_lid_descent": (float(-d_up[1]), _direction(d_up, s)),
        "smile_vector": (float(np.hypot(*smile)), _direction(np.array([s * smile[0], smile[1]]), s)),
        "commissure_elevation": (up, _direction(d_com, s)),
        "commissure_lateral": (lat, _direction(d_com, s)),
        "commissure_depression": (max(-up, 0.0), _direction(d_com, s)),
        "upper_lip_elevation": (float(d_ul[1]), _direction(d_ul, s)),
        "lower_lip_depression": (float(-d_ll[1]), _direction(d_ll, s)),
        "lip_pucker": (max(-lat, 0.0), _direction(d_com, s)),
        "chin_motion": (float(np.hypot(*d_chin)), _direction(d_chin, s)),
    }
    return [Movement(name, vals[name][0], unit, vals[name][1]) for name, unit in MOVEMENTS.items()]


def activations(movements: Sequence[Movement] | Mapping[str, float]) -> dict[str, float]:
    """Group activations (movement / threshold, 1 = just detectable); see the module docstring."""
    v = {m.name: m.value for m in movements} if not isinstance(movements, Mapping) else dict(movements)

    def g(name: str) -> float:
        x = v.get(name, math.nan)
        return x if x is not None and math.isfinite(x) else 0.0

    t = THRESHOLDS
    return {
        "smile": max(g("smile_vector"), g("upper_lip_elevation"), 0.0) / t["smile"],
        "antagonist": max(g("commissure_depression"), g("lip_pucker"), 0.0) / t["antagonist"],
        "ocular": max(g("eye_closure") / t["eye_closure"], abs(g("brow_elevation")) / t["brow"], 0.0),
        "lower_lip": max(g("lower_lip_depression"), g("chin_motion"), 0.0) / t["lower_lip"],
    }


def classify(acts: Mapping[str, float]) -> tuple[str, bool]:
    """``(class, preserve)`` from group activations (see the module docstring for the rule)."""
    active = sorted(((a, g) for g, a in acts.items() if a >= 1.0), reverse=True)
    preserve = acts.get("lower_lip", 0.0) >= 1.0
    if not active:
        return "none", False
    top, group = active[0]
    if len(active) == 1 or all(top >= DOMINANCE * a for a, _ in active[1:]):
        return GROUP_CLASS[group], preserve
    return "mixed", preserve


def onset_time(time_s: np.ndarray, signal: np.ndarray, stim_s: float, peak_row: int,
               fraction: float = 0.2) -> float:
    """First time at or after ``stim_s`` from which ``signal`` stays >= ``fraction`` x its peak for two frames.

    ``signal`` is per frame (NaN without a face); the search ends at
    ``peak_row``. Returns NaN when the peak is not positive.
    """
    t = np.asarray(time_s, float)
    x = np.asarray(signal, float)
    peak = x[peak_row]
    if not (np.isfinite(peak) and peak > 0):
        return math.nan
    level = fraction * peak
    rows = [k for k in range(len(t)) if t[k] >= stim_s - 1e-9 and k <= peak_row]
    for j, k in enumerate(rows):
        nxt = rows[j + 1] if j + 1 < len(rows) else k
        if x[k] >= level and x[nxt] >= level:
            return float(t[k])
    return float(t[peak_row])


# --------------------------------------------------------------------------- analysis
#: Chin-pad landmarks for mentalis motion (the per-frame video series keeps only the menton, 152).
CHIN_POINTS: tuple[int, ...] = (152, 175, 199, 200)


def _full(points_k: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """(..., K, 2) points of landmarks ``ids`` -> (..., 478, 2) with NaN elsewhere."""
    out = np.full(points_k.shape[:-2] + (478, 2), np.nan)
    out[..., list(ids), :] = points_k[..., :2]
    return out


def _mobile_ids(side: Side) -> list[int]:
    """The operated side's measured points: brow, lid margins, lip contours, commissure."""
    c = CONTOURS[side]
    return list(dict.fromkeys([*c.brow, *c.upper_lid[1:-1], *c.lower_lid[1:-1], *c.outer_upper_lip,
                               *c.outer_lower_lip, c.commissure]))


def _image_anchors(side: Side) -> tuple[int, ...]:
    """Points a branch of ``side`` does not move, for aligning frames on the image itself.

    The nasal midline (bridge to tip, as in :mod:`symmetry.refine`'s stable
    set, without the alae that the levator labii alaeque nasi moves), both
    medial canthi, and the other side's lateral canthus and brow: a
    stimulation moves one side only.
    """
    o = CONTOURS[side.other]
    lateral = int(LM.LEFT_LATERAL_CANTHUS if side is Side.RIGHT else LM.RIGHT_LATERAL_CANTHUS)
    return (168, 6, 197, 195, 5, 4, 1, int(LM.RIGHT_MEDIAL_CANTHUS), int(LM.LEFT_MEDIAL_CANTHUS), lateral, *o.brow)


#: Point groups reported as refined (tracked in the image), by name.
_TRACK_GROUPS = {
    "brows": lambda c: c.brow,
    "eyelids": lambda c: (*c.upper_lid[1:-1], *c.lower_lid[1:-1]),
    "commissures": lambda c: (c.commissure,),
    "lips": lambda c: (*c.outer_upper_lip[1:-1], *c.outer_lower_lip[1:-1]),
    "chin": lambda c: CHIN_POINTS,
}


#: Lucas-Kanade window per group, iris diameters (eyelids, brows, commissures, lips as in symmetry.refine).
_TRACK_WINDOWS = {"brows": 0.8, "eyelids": 0.15, "commissures": 0.4, "lips": 0.6, "chin": 0.8}


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    d = np.hypot(*(np.asarray(a, float) - np.asarray(b, float)).T)
    d = d[np.isfinite(d)]
    return float(np.sqrt(np.mean(d**2))) if len(d) else math.nan


def _nanmedian(x: np.ndarray, axis: int = 0) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x, axis=axis)


def _iris_px(points: np.ndarray) -> float:
    return float(np.nanmean([np.hypot(*(points[c.iris_lateral, :2] - points[c.iris_medial, :2]))
                             for c in CONTOURS.values() if c.iris_lateral != c.iris_medial]))


#: Forward-backward error accepted by the skin tracker, iris diameters.
_FB_MAX_IRIS = 0.04
#: Largest displacement the skin tracker accepts from the baseline, iris diameters (about 14 mm).
_MAX_MOVE_IRIS = 1.2
_TARGET_IRIS_PX = 32.0


class _SkinTracker:
    """Tracks skin points from one baseline frame into later frames (pyramidal Lucas-Kanade).

    The same method as :func:`symmetry.refine.track_points` (an upsampled
    face crop, the later frame warped onto the baseline by the head's
    similarity, forward-backward check), but without its limit on the
    distance from the landmark model's position: the model under-reports a
    one-sided movement, and a stimulation moves one side only. Every frame is
    tracked from the baseline image itself (no drift), started from the
    previous frame's result (small steps). Positions come back in baseline
    pixels, the head's motion removed.
    """

    def __init__(self, base_rgb: np.ndarray, base_pts: np.ndarray, ids: Sequence[int], anchors: Sequence[int],
                 windows: Sequence[tuple[Sequence[int], float]] = ()) -> None:
        import cv2

        self.cv2 = cv2
        pts = np.asarray(base_pts, float)[:, :2]
        self.ids = np.array([i for i in ids if np.isfinite(pts[i]).all()], dtype=int)
        iris = max(_iris_px(pts), 1.0)
        self.up = float(np.clip(_TARGET_IRIS_PX / iris, 1.0, 6.0))
        finite = pts[np.isfinite(pts).all(axis=1)]
        span = np.ptp(finite, axis=0)
        h, w = base_rgb.shape[:2]
        self.lo = np.maximum(np.floor(finite.min(axis=0) - 0.15 * span), 0.0)
        hi = np.minimum(np.ceil(finite.max(axis=0) + 0.15 * span), [w, h])
        self.size = (int(np.ceil((hi[0] - self.lo[0]) * self.up)), int(np.ceil((hi[1] - self.lo[1]) * self.up)))
        self.t_base = np.array([[self.up, 0.0, -self.up * self.lo[0]], [0.0, self.up, -self.up * self.lo[1]]])
        self.base_img = self._canvas(base_rgb, self.t_base)
        self.p0 = apply_similarity(self.t_base, pts[self.ids]).astype(np.float32).reshape(-1, 1, 2)
        self.guess = self.p0.copy()
        self.anchor_ids = np.array([i for i in anchors if np.isfinite(pts[i]).all()], dtype=int)
        self.a0 = apply_similarity(self.t_base, pts[self.anchor_ids]).astype(np.float32).reshape(-1, 1, 2)
        self.residual_px = math.nan
        self.win = int(max(7, round(0.6 * iris * self.up)) | 1)
        # one Lucas-Kanade window per point group, in iris diameters (as symmetry.refine: a lid margin
        # needs a small window, or the still iris and sclera under it hold it back)
        by_id = {int(i): k for k, i in enumerate(self.ids)}
        self.groups: list[tuple[np.ndarray, int]] = []
        for group_ids, win_iris in windows:
            sel = np.array([by_id[i] for i in group_ids if i in by_id], dtype=int)
            if len(sel):
                self.groups.append((sel, int(max(7, round(win_iris * iris * self.up)) | 1)))
        rest = np.setdiff1d(np.arange(len(self.ids)), np.concatenate([g for g, _ in self.groups] or [np.empty(0, int)]))
        if len(rest):
            self.groups.append((rest, self.win))
        self.fb_max = _FB_MAX_IRIS * iris * self.up
        self.max_move = _MAX_MOVE_IRIS * iris * self.up

    def _canvas(self, rgb: np.ndarray, t: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        return cv2.warpAffine(gray, t, self.size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)

    def _lk(self, img: np.ndarray, p0: np.ndarray, guess: np.ndarray, size: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        cv2 = self.cv2
        crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 0.003)
        flags = cv2.OPTFLOW_USE_INITIAL_FLOW
        win = (size or self.win, size or self.win)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(self.base_img, img, p0, guess.copy(), winSize=win, maxLevel=3,
                                              criteria=crit, flags=flags)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(img, self.base_img, p1, p0.copy(), winSize=win, maxLevel=3,
                                                criteria=crit, flags=flags)
        fb = np.hypot(*(back - p0).reshape(-1, 2).T)
        move = np.hypot(*(p1 - p0).reshape(-1, 2).T)
        ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb <= self.fb_max) & (move <= self.max_move)
        return p1, ok

    def track(self, rgb: np.ndarray, base_to_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions (baseline pixels, (len(ids), 2)) of the points in ``rgb`` and which were tracked.

        ``base_to_frame`` is the head's similarity from the landmark model; it
        is corrected from the image by tracking the anchors (points the
        stimulated branch does not move) and refitting the similarity on them
        (twice trimmed of outliers), so that the head's motion is removed by
        image evidence too. :attr:`residual_px` is then the anchors' RMS misfit.
        """
        cv2 = self.cv2
        t = (np.vstack([self.t_base, [0, 0, 1]]) @ np.vstack([cv2.invertAffineTransform(base_to_frame), [0, 0, 1]]))[:2]
        img = self._canvas(rgb, t)
        self.residual_px = math.nan
        if len(self.anchor_ids) >= 4:
            a1, ok = self._lk(img, self.a0, self.a0)
            src, dst = a1.reshape(-1, 2)[ok], self.a0.reshape(-1, 2)[ok]
            for _ in range(2):
                if len(src) < 4:
                    break
                corr = similarity_fit(src, dst)
                res = np.hypot(*(apply_similarity(corr, src) - dst).T)
                keep = res <= max(3.0 * float(np.median(res)), 0.5 * self.up)
                src, dst = src[keep], dst[keep]
            if len(src) >= 4:
                corr = similarity_fit(src, dst)
                self.residual_px = _rms(apply_similarity(corr, src), dst) / self.up
                t = (np.vstack([corr, [0, 0, 1]]) @ np.vstack([t, [0, 0, 1]]))[:2]
                img = self._canvas(rgb, t)
        inv_base = cv2.invertAffineTransform(self.t_base)
        self.frame_to_base = (np.vstack([inv_base, [0, 0, 1]]) @ np.vstack([t, [0, 0, 1]]))[:2]
        p1 = self.p0.copy()
        ok = np.zeros(len(self.ids), bool)
        for sel, win in self.groups:
            q, good = self._lk(img, self.p0[sel], self.guess[sel], win)
            p1[sel], ok[sel] = q, good
        self.guess[ok] = p1[ok]
        return p1.reshape(-1, 2).astype(float) / self.up + self.lo, ok


class _Analysis:
    """One video's landmark series and the per-branch analysis on it."""

    def __init__(self, source: str, options: StimOptions, lm: Any, progress: Any) -> None:
        from .video import POINT_IDS, VideoAnalyser, VideoOptions

        self.source = source
        self.options = options
        # MediaPipe's FaceLandmarker on every frame: the twitch measures were validated with it (with
        # symmetry.tracking's unsmoothed points a phantom's 1.5 mm lid descent read 1.04 mm)
        vopts = VideoOptions(frame_stride=options.frame_stride, mirrored=False, mm_per_px=options.mm_per_px,
                             iris_mm=options.iris_mm, workers=options.workers, model_path=options.model_path,
                             engine="mediapipe")
        with VideoAnalyser(vopts) as va:
            self.series = va.frames(source, progress=progress)
        self.ids = list(POINT_IDS)
        f = self.series.frames
        self.time = f["time_s"].to_numpy(dtype=float)
        self.face = f["face_found"].to_numpy(dtype=bool)
        self.mpp = f["mm_per_px"].to_numpy(dtype=float)
        self.yaw = f["yaw_deg"].to_numpy(dtype=float)
        self.pitch = f["pitch_deg"].to_numpy(dtype=float)
        self.fps = float(self.series.info.fps) / options.frame_stride
        self.duration = float(self.time[-1]) + 1.0 / self.fps if len(self.time) else 0.0
        self.lm = lm
        self.side = options.model_side
        self.stable = list(stable_points(self.side, self.ids))

    def points(self, rows: np.ndarray | int) -> np.ndarray:
        """Series landmarks of rows as (..., 478, 2) pixels (NaN where not kept)."""
        return _full(self.series.points_px[rows].astype(float), self.ids)

    # -- one branch ---------------------------------------------------------
    def branch(self, stim: Stimulation, end_s: float, *, known: bool, keyframe: bool
               ) -> tuple[BranchResponse, np.ndarray | None]:
        o = self.options
        resp = BranchResponse(stim.branch, self.source, stim.time_s, end_s, stim_time_known=known)
        t = self.time
        base_rows = np.flatnonzero((t >= stim.time_s - o.baseline_s - 1e-9) & (t < stim.time_s - 1e-9))
        win_rows = np.flatnonzero((t >= stim.time_s - 1e-9) & (t <= end_s + 1e-9))
        all_rows = np.concatenate([base_rows, win_rows])
        if len(all_rows):
            resp.face_lost_fraction = float(np.mean(~self.face[all_rows]))
            seen = all_rows[self.face[all_rows]]
            if len(seen):
                resp.max_abs_yaw_deg = float(np.nanmax(np.abs(self.yaw[seen])))
                resp.max_abs_pitch_deg = float(np.nanmax(np.abs(self.pitch[seen])))
        base_rows = base_rows[self.face[base_rows]]
        win = win_rows[self.face[win_rows]]
        if len(base_rows) == 0 or len(win) == 0:
            if len(all_rows) == 0:
                why = "no analysed frame around the stimulation"
            elif len(base_rows) == 0:
                why = f"no face in the {o.baseline_s:g} s before the stimulation (no baseline)"
            else:
                why = "no face after the stimulation"
            return self._unusable(resp, why), None

        # -- the model's landmarks: baseline, head motion, time course ----------------
        pts = self.points(np.concatenate([base_rows, win]))
        nb = len(base_rows)
        st = self.stable
        ref = _nanmedian(pts[:nb])
        aligned = np.stack([apply_similarity(similarity_fit(p[st], ref[st]), p) for p in pts])
        mobile = _mobile_ids(self.side)
        med = _nanmedian(aligned[:nb])
        mpp0 = float(np.nanmedian(self.mpp[base_rows]))
        dev = np.array([np.nanmax(np.hypot(*(a[mobile] - med[mobile]).T)) for a in aligned[:nb]]) * mpp0
        still = dev <= STILL_MM
        if still.sum() < min(2, nb):
            still = np.ones(nb, bool)
            resp.quality_flags.append(f"the face was not still before the stimulation (moved {np.nanmin(dev):.1f} mm)")
        base = _nanmedian(aligned[:nb][still])
        fits = [similarity_fit(p[st], base[st]) for p in pts]
        aligned = np.stack([apply_similarity(m, p) for m, p in zip(fits, pts)])
        if not np.isfinite(base[list(_FRAME_IDS)]).all():
            return self._unusable(resp, "the baseline has no pupil frame"), None
        frame = pupil_frame(np.nan_to_num(base), mpp0)
        base_mm = frame.to_mm(base)
        model_moves = [region_movements(base_mm, frame.to_mm(a), self.side) for a in aligned[nb:]]
        model_acts = np.array([list(activations(m).values()) for m in model_moves])
        k_model = int(np.nanargmax(_running_median(model_acts.max(axis=1), 3)))
        resp.model_movements = model_moves[k_model]
        raw_dev = [_rms(p[st], base[st]) * mpp0 for p in pts[nb:]]
        resp.head_motion_mm = float(np.nanmax(raw_dev))
        resp.residual_motion_mm = _rms(aligned[nb + k_model][st], base[st]) * mpp0

        k_base = int(np.argmin(np.where(still, dev, np.inf)))
        base_row = int(base_rows[k_base])
        moves, acts, k_peak = model_moves, model_acts, k_model
        base_rgb = peak_rgb = base_full = peak_in_base = None
        base_series = self.points(base_row)
        if o.refine or keyframe:
            base_rgb = _frames_at(self.source, [t[base_row]], self.fps).get(round(t[base_row], 6))
            if base_rgb is not None:
                base_full = _detect(self.lm, base_rgb)
                if base_full is None:
                    base_full = base_series
                    resp.quality_flags.append("no face in the baseline frame as a still image: model points used")
        self._peak_to_base = None
        if o.refine and base_full is not None:
            tracked = self._track(base_rgb, base_full, base_series, win, resp)
            if tracked is not None:
                moves, acts, k_peak, peak_in_base, peak_rgb = tracked
        elif o.refine:
            resp.quality_flags.append("the baseline frame could not be decoded: model landmarks only")
        peak_row = int(win[k_peak])
        if keyframe and base_full is not None and peak_in_base is None:
            m = similarity_fit(aligned[nb + k_peak][st], base_series[st])
            peak_in_base = base_full + (apply_similarity(m, aligned[nb + k_peak]) - base_series)
            peak_rgb = _frames_at(self.source, [t[peak_row]], self.fps).get(round(t[peak_row], 6))
        resp.peak_s = float(t[peak_row])
        resp.movements = moves[k_peak]
        resp.activations = activations(resp.movements)
        resp.movement_class, resp.preserve = classify(resp.activations)
        if resp.movement_class != "none":
            groups = list(resp.activations)
            dom = max(groups, key=lambda g: resp.activations[g])
            sig = acts[:, groups.index(dom)]
            if not resp.refined:
                sig = _running_median(sig, 3)
            resp.onset_s = onset_time(t[win], sig, stim.time_s, k_peak, o.onset_fraction)
            if known and math.isfinite(resp.onset_s):
                resp.onset_latency_ms = 1000.0 * (resp.onset_s - stim.time_s)
        self._quality(resp)
        image = None
        if keyframe and base_rgb is not None and peak_rgb is not None and peak_in_base is not None:
            m = self._peak_to_base if self._peak_to_base is not None and resp.refined else \
                similarity_fit(self.points(peak_row)[st], base_series[st])
            image = stim_keyframe(base_rgb, base_full, peak_rgb, m, peak_in_base, resp, self.side,
                                  mirrored=o.mirrored)
        return resp, image

    def _track(self, base_rgb: np.ndarray, base_full: np.ndarray, base_series: np.ndarray, win: np.ndarray,
               resp: BranchResponse) -> tuple[list[list[Movement]], np.ndarray, int, np.ndarray, np.ndarray] | None:
        """Skin-tracked movements of every response frame, streamed from the video.

        Returns (movements per frame, activations per frame, peak index,
        peak points in baseline pixels, peak RGB), or None when nothing could be tracked.
        """
        from .video import iter_frames

        st = self.stable
        c = CONTOURS[self.side]
        ids = list(dict.fromkeys([*_mobile_ids(self.side), *CHIN_POINTS]))
        windows = [(tuple(pick(c)), _TRACK_WINDOWS[name]) for name, pick in _TRACK_GROUPS.items()]
        tracker = _SkinTracker(base_rgb, base_full, ids, _image_anchors(self.side), windows)
        tracked_ids = set(tracker.ids.tolist())
        bframe = pupil_frame(base_full, float(np.nanmedian(self.mpp[win])) * _ipd(base_series) / _ipd(base_full))
        base_mm = bframe.to_mm(base_full)
        times = self.time[win]
        half = 0.5 / max(self.fps, 1.0)
        frames = iter_frames(self.source, start_s=max(float(times[0]) - half, 0.0), end_s=float(times[-1]) + 2 * half)
        moves: list[list[Movement]] = []
        acts, oks, residuals = [], [], []
        best: tuple[Any, ...] = (-math.inf, -1, None, None, math.nan, None)
        for k, r in enumerate(win):
            rgb = None
            for fr in frames:
                if fr.time_s >= times[k] - half - 1e-6:
                    if abs(fr.time_s - times[k]) <= half + 1e-6:
                        rgb = fr.rgb
                    break
            frame_pts = self.points(int(r))
            m = similarity_fit(base_series[st], frame_pts[st])  # baseline -> this frame (head motion)
            minv = similarity_fit(frame_pts[st], base_series[st])
            # where tracking fails: the model's own displacement added to the baseline frame's points
            moved = base_full[:, :2] + (apply_similarity(minv, frame_pts) - base_series)
            ok = np.zeros(len(tracker.ids), bool)
            if rgb is not None:
                pos, ok = tracker.track(rgb, m)
                moved[tracker.ids[ok]] = pos[ok]
                residuals.append(tracker.residual_px)
            moves.append(region_movements(base_mm, bframe.to_mm(moved), self.side))
            acts.append(list(activations(moves[-1]).values()))
            oks.append(ok)
            total = max(acts[-1])
            if rgb is not None and total > best[0]:
                best = (total, k, moved, rgb, tracker.residual_px, tracker.frame_to_base)
        if not any(o.any() for o in oks) or best[1] < 0:
            resp.quality_flags.append("the points could not be tracked in the image: model landmarks only")
            return None
        _, k_peak, peak_moved, peak_rgb, residual_px, self._peak_to_base = best
        if math.isfinite(residual_px):
            resp.residual_motion_mm = residual_px * bframe.mm_per_px
        ok_ids = set(tracker.ids[oks[k_peak]].tolist())
        resp.refined = [name for name, pick in _TRACK_GROUPS.items()
                        if (g := [i for i in pick(c) if i in tracked_ids]) and sum(i in ok_ids for i in g) * 2 >= len(g)]
        return moves, np.array(acts), k_peak, peak_moved, peak_rgb

    def _unusable(self, resp: BranchResponse, why: str) -> BranchResponse:
        resp.quality = "unusable"
        resp.quality_flags.append(why)
        resp.movements = [Movement(n, math.nan, u) for n, u in MOVEMENTS.items()]
        resp.activations = {g: math.nan for g in ("smile", "antagonist", "ocular", "lower_lip")}
        resp.movement_class, resp.preserve = "none", False
        return resp

    def _quality(self, resp: BranchResponse) -> None:
        flags = resp.quality_flags
        if resp.face_lost_fraction > MAX_FACE_LOST:
            flags.append(f"no face in {100 * resp.face_lost_fraction:.0f}% of the frames")
        if math.isfinite(resp.max_abs_yaw_deg) and resp.max_abs_yaw_deg > YAW_LIMIT_DEG:
            flags.append(f"head yaw up to {resp.max_abs_yaw_deg:.0f} deg (limit {YAW_LIMIT_DEG:.0f}): "
                         "frontal measures unreliable")
        if math.isfinite(resp.max_abs_pitch_deg) and resp.max_abs_pitch_deg > PITCH_LIMIT_DEG:
            flags.append(f"head pitch up to {resp.max_abs_pitch_deg:.0f} deg (limit {PITCH_LIMIT_DEG:.0f})")
        if math.isfinite(resp.residual_motion_mm) and resp.residual_motion_mm > MAX_RESIDUAL_MM:
            flags.append(f"stable points misfit by {resp.residual_motion_mm:.1f} mm after alignment: "
                         "head motion not fully removed")
        if resp.quality != "unusable":
            resp.quality = "check" if flags else "good"
        if math.isfinite(resp.head_motion_mm) and resp.head_motion_mm > HEAD_MOTION_NOTE_MM:
            flags.append(f"head moved {resp.head_motion_mm:.1f} mm (removed by aligning on stable points)")


_FRAME_IDS = (int(LM.RIGHT_IRIS_CENTER), int(LM.LEFT_IRIS_CENTER), int(LM.FOREHEAD), int(LM.CHIN))


def _ipd(points: np.ndarray) -> float:
    return float(np.hypot(*(points[LM.LEFT_IRIS_CENTER, :2] - points[LM.RIGHT_IRIS_CENTER, :2])))


def _running_median(x: np.ndarray, width: int) -> np.ndarray:
    if len(x) < width:
        return np.asarray(x, float)
    return pd.Series(x).rolling(width, center=True, min_periods=1).median().to_numpy()


def _frames_at(source: str, times: Sequence[float], fps: float) -> dict[float, np.ndarray]:
    """RGB frames nearest the given times (one decoding pass over their span), keyed by ``round(time, 6)``."""
    from .video import iter_frames

    if not len(times):
        return {}
    half = 0.5 / max(fps, 1.0)
    wanted = sorted(set(round(float(x), 6) for x in times))
    out: dict[float, np.ndarray] = {}
    best: dict[float, float] = {}
    for fr in iter_frames(source, start_s=max(wanted[0] - half, 0.0), end_s=wanted[-1] + 2 * half):
        k = int(np.searchsorted(wanted, fr.time_s))
        for j in (k - 1, k):
            if 0 <= j < len(wanted):
                w = wanted[j]
                d = abs(fr.time_s - w)
                if d <= half + 1e-6 and d < best.get(w, math.inf):
                    out[w], best[w] = fr.rgb, d
    return out


def _detect(lm: Any, rgb: np.ndarray) -> np.ndarray | None:
    from .errors import NoFaceError

    try:
        return lm.detect(rgb).points_px[:, :2].astype(float)
    except NoFaceError:
        return None


# --------------------------------------------------------------------------- key frames
_BASE_BGR = (200, 200, 200)


def stim_keyframe(base_rgb: np.ndarray, base_pts: np.ndarray, peak_rgb: np.ndarray, peak_to_base: np.ndarray,
                  peak_in_base: np.ndarray, response: BranchResponse, side: Side | str, *, mirrored: bool = False,
                  min_height: int = 420) -> np.ndarray:
    """Side-by-side baseline | peak image of one branch (RGB).

    Parameters
    ----------
    base_rgb, peak_rgb : ndarray (H, W, 3)
    base_pts : ndarray (478, 2)
        Baseline landmarks, pixels.
    peak_to_base : ndarray (2, 3)
        Similarity taking peak-frame pixels to baseline pixels (the head's motion undone).
    peak_in_base : ndarray (478, 2)
        The measured peak positions, baseline pixels.
    response : BranchResponse
    side : Side or str
        The operated side as the landmark model labels it.

    The peak frame is aligned onto the baseline (so what differs is the face's
    own movement), both are cropped around the face as
    :func:`symmetry.annotate.annotate` does, and the operated side's measured
    points are drawn: baseline positions as rings on both panels, arrows from
    them to the peak positions on the right panel.
    """
    import cv2

    from .annotate import _face_view

    side = Side(side)
    h, w = base_rgb.shape[:2]
    peak_al = cv2.warpAffine(peak_rgb, peak_to_base, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    finite = np.asarray(base_pts, float)[:, :2]
    finite = finite[np.isfinite(finite).all(axis=1)]
    left, corner, scale = _face_view(base_rgb, finite, min_height)
    x0, y0 = corner.astype(int)
    ch, cw = int(round(left.shape[0] / scale)), int(round(left.shape[1] / scale))
    right = cv2.resize(peak_al[y0 : y0 + ch, x0 : x0 + cw], (left.shape[1], left.shape[0]), interpolation=cv2.INTER_CUBIC)
    panels = [cv2.cvtColor(np.ascontiguousarray(p), cv2.COLOR_RGB2BGR) for p in (left, right)]
    c = CONTOURS[side]
    ids = [c.commissure, c.upper_lid[len(c.upper_lid) // 2], c.brow[2], c.outer_lower_lip[2], c.outer_upper_lip[2]]
    th = max(1, int(round(left.shape[1] / 300)))

    def px(p: np.ndarray) -> tuple[int, int]:
        q = (np.asarray(p, float)[:2] - corner) * scale
        return int(round(q[0])), int(round(q[1]))

    for i in ids:
        for panel in panels:
            cv2.circle(panel, px(base_pts[i]), 4 * th, _BASE_BGR, th, cv2.LINE_AA)
        if np.isfinite(peak_in_base[i]).all():
            cv2.arrowedLine(panels[1], px(base_pts[i]), px(peak_in_base[i]), (0, 0, 255), th + 1, cv2.LINE_AA,
                            tipLength=0.3)
    shown = side.other if mirrored else side
    lat = f"+{response.onset_latency_ms:.0f} ms onset" if math.isfinite(response.onset_latency_ms) else ""
    titles = [f"baseline  {response.stim_s:.2f} s", f"peak  {response.peak_s:.2f} s  {lat}"]
    for panel, title in zip(panels, titles):
        _text(panel, title, (6, 18 * th), 0.5 * th, th)
    _text(panels[1], f"{response.branch}: {_CLASS_LABELS[response.movement_class]} (patient {shown.value})",
          (6, panels[1].shape[0] - 10), 0.45 * th, th)
    gap = np.full((left.shape[0], 4 * th, 3), 255, np.uint8)
    return cv2.cvtColor(np.hstack([panels[0], gap, panels[1]]), cv2.COLOR_BGR2RGB)


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, th: int) -> None:
    import cv2

    (tw, tht), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, th)
    x, y = org
    cv2.rectangle(img, (x - 2, y - tht - 3), (x + tw + 2, y + base), (20, 20, 20), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), th, cv2.LINE_AA)


# --------------------------------------------------------------------------- the table
_MOVEMENT_WORDS = {
    "brow_elevation": ("brow", "mm"),
    "eye_closure": ("eye closure", "%"),
    "smile_vector": ("smile vector", "mm"),
    "upper_lip_elevation": ("upper lip up", "mm"),
    "commissure_depression": ("corner down", "mm"),
    "lip_pucker": ("corner toward midline (pucker)", "mm"),
    "lower_lip_depression": ("lower lip down", "mm"),
    "chin_motion": ("chin", "mm"),
}
_GROUP_MOVEMENTS = {
    "smile": ("smile_vector", "upper_lip_elevation"),
    "antagonist": ("commissure_depression", "lip_pucker"),
    "ocular": ("eye_closure", "brow_elevation"),
    "lower_lip": ("lower_lip_depression", "chin_motion"),
}


def _explain(b: BranchResponse) -> str:
    """A short explanation giving the numbers behind the class (never a cut/keep decision)."""
    if b.quality == "unusable":
        return f"not measured: {'; '.join(b.quality_flags)}"
    parts = []

    def word(name: str, detail: bool = True) -> str:
        label, unit = _MOVEMENT_WORDS[name]
        m = b.movement(name)
        if m is None or not math.isfinite(m.value):
            return ""
        v = _zero(m.value, 1 if unit == "mm" else 0)
        text = f"{label} {v:.1f} {unit}" if unit == "mm" else f"{label} {v:.0f}%"
        if detail and name == "smile_vector" and math.isfinite(m.direction_deg):
            text += (f" at {m.direction_deg:.0f} deg (up {b.value('commissure_elevation'):.1f}, "
                     f"lateral {b.value('commissure_lateral'):.1f} mm)")
        return text

    acts = b.activations
    order = sorted(acts, key=lambda g: -acts[g])
    active = [g for g in order if acts[g] >= 1.0]
    for g in active:
        names = sorted(_GROUP_MOVEMENTS[g], key=lambda n: -_act_of(b, n))
        parts.append(word(names[0]))
    head = _CLASS_LABELS[b.movement_class]
    if active:
        text = f"{head}: " + "; ".join(p for p in parts if p)
        rest = [g for g in order if g not in active]
        if rest and acts[rest[0]] >= _NOTABLE:
            g = rest[0]
            n = max(_GROUP_MOVEMENTS[g], key=lambda n: _act_of(b, n))
            text += f"; largest other: {word(n, False)}"
    elif acts[order[0]] >= _NOTABLE:
        g = order[0]
        n = max(_GROUP_MOVEMENTS[g], key=lambda n: _act_of(b, n))
        text = f"{head}: every region under its threshold (largest: {word(n, False)})"
    else:
        text = f"{head}: every region under {100 * _NOTABLE:.0f}% of its threshold"
    if math.isfinite(b.onset_latency_ms):
        text += f"; onset {b.onset_latency_ms:.0f} ms"
    if b.preserve:
        text += "; lower-lip depressor territory, marked to preserve (oral competence)"
    if b.quality == "check":
        text += f"; check quality: {b.quality_flags[0]}"
    return text


#: Activations below this are not worth naming in an explanation.
_NOTABLE = 0.2


def _zero(v: float, digits: int) -> float:
    """``v`` with a rounded negative zero made positive (no "-0.0" in tables)."""
    return 0.0 if round(v, digits) == 0 else v


def _act_of(b: BranchResponse, name: str) -> float:
    v = b.value(name)
    if not math.isfinite(v):
        return 0.0
    t = THRESHOLDS["eye_closure"] if name == "eye_closure" else THRESHOLDS["brow"] if name == "brow_elevation" else 1.5
    return abs(v) / t if name == "brow_elevation" else v / t


def _rank(branches: list[BranchResponse]) -> None:
    def key(k: int) -> tuple[float, int]:
        v = branches[k].value("smile_vector")
        return (-(v if math.isfinite(v) else -1.0), k)

    for r, k in enumerate(sorted(range(len(branches)), key=key), start=1):
        branches[k].rank = r
    for b in branches:
        b.explanation = _explain(b)


def _sha256(paths: Sequence[str]) -> str:
    hashes = []
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        hashes.append(h.hexdigest())
    return hashes[0] if len(hashes) == 1 else hashlib.sha256("".join(hashes).encode()).hexdigest()


def _landmarker(options: StimOptions) -> Any:
    from .landmarks import Landmarker, LandmarkerOptions

    return Landmarker(LandmarkerOptions(model_path=options.model_path))


def _check_video(path: str) -> None:
    from .video import VideoReadError

    p = Path(path)
    if not p.exists():
        raise VideoReadError(path, "file not found")


def analyse_stimulation(
    video: str | os.PathLike[str],
    log: str | os.PathLike[str] | Sequence[Stimulation],
    options: StimOptions | None = None,
    *,
    keyframes: bool = False,
    progress: Callable[[int], None] | bool | None = None,
) -> StimResult:
    """The branch table of one session video with its stimulation log.

    Parameters
    ----------
    video : path
    log : path or sequence of Stimulation
        The stimulation log (see :func:`read_stim_log`).
    options : StimOptions
        ``side`` is the operated side.
    keyframes : bool
        Also make the side-by-side baseline | peak image of each branch.
    progress : callable, bool or None
        As for :meth:`symmetry.video.VideoAnalyser.frames`.

    Raises
    ------
    StimLogError
        A bad log, or a stimulation outside the video.
    VideoReadError, NoFaceError, FaceTooSmallError
        The video cannot be used.
    """
    options = options or StimOptions()
    source = str(video)
    log_name = None if not isinstance(log, (str, os.PathLike)) else str(log)
    stims = read_stim_log(log) if log_name is not None else list(log)
    if not stims:
        raise StimLogError(log_name, "no stimulation to analyse")
    if any(s.clip for s in stims):
        raise StimLogError(log_name, "the log names clips (a clip column): give the clips, not one video")
    _check_video(source)
    from .video import probe_video

    declared = probe_video(source).duration_s
    for s in stims:
        if math.isfinite(declared) and s.time_s >= declared:
            raise StimLogError(log_name, f"line {s.line}: stimulation at {s.time_s:g} s is after the end of "
                                         f"the video ({declared:.2f} s)")
    with _landmarker(options) as lm:
        an = _Analysis(source, options, lm, progress)
        branches, images = [], {}
        for k, s in enumerate(stims):
            if s.time_s >= an.duration:
                raise StimLogError(log_name, f"line {s.line}: stimulation at {s.time_s:g} s is after the end of "
                                             f"the video ({an.duration:.2f} s)")
            nxt = stims[k + 1].time_s if k + 1 < len(stims) else math.inf
            end = min(s.end_s if s.end_s is not None else s.time_s + options.response_s, nxt, an.duration)
            resp, img = an.branch(s, end, known=True, keyframe=keyframes)
            branches.append(resp)
            if img is not None:
                images[_key(k, s.branch)] = img
    _rank(branches)
    warnings = [f"{b.branch}: quality {b.quality}: {'; '.join(b.quality_flags)}" for b in branches if b.quality != "good"]
    return StimResult([source], log_name, options.side, options.mirrored, float(np.nanmedian(an.mpp)),
                      _sha256([source]), branches, warnings, images)


def analyse_clips(
    clips: Sequence[str | os.PathLike[str]],
    options: StimOptions | None = None,
    *,
    log: str | os.PathLike[str] | Sequence[Stimulation] | None = None,
    keyframes: bool = False,
    progress: Callable[[int], None] | bool | None = None,
) -> StimResult:
    """The branch table from one short clip per branch.

    Branch names come from the log (rows matched by a ``clip`` column naming
    the file, else in order, one row per clip; ``time_s`` is the stimulation
    instant within the clip) or, without a log, from the file stems, with the
    stimulation assumed at ``baseline_s`` into each clip (no latency then).

    Raises
    ------
    StimLogError
        The log does not match the clips.
    VideoReadError, NoFaceError, FaceTooSmallError
        A clip cannot be used.
    """
    options = options or StimOptions()
    paths = [str(c) for c in clips]
    if not paths:
        raise ValueError("`clips`: give at least one clip")
    log_name = None if log is None or not isinstance(log, (str, os.PathLike)) else str(log)
    rows: list[Stimulation | None] = [None] * len(paths)
    if log is not None:
        stims = read_stim_log(log) if log_name is not None else list(log)
        if any(s.clip for s in stims):
            names = {Path(p).name: k for k, p in enumerate(paths)} | {Path(p).stem: k for k, p in enumerate(paths)}
            for s in stims:
                k = names.get(Path(s.clip or "").name, names.get(Path(s.clip or "").stem))
                if k is None:
                    raise StimLogError(log_name, f"line {s.line}: clip {s.clip!r} is not among the clips given")
                rows[k] = s
            missing = [Path(paths[k]).name for k, r in enumerate(rows) if r is None]
            if missing:
                raise StimLogError(log_name, f"no row for clip(s) {', '.join(missing)}")
        else:
            if len(stims) != len(paths):
                raise StimLogError(log_name, f"{len(stims)} row(s) for {len(paths)} clip(s); give one row per clip "
                                             "in order, or a clip column")
            rows = list(stims)
    branches, images = [], {}
    mpps = []
    with _landmarker(options) as lm:
        for k, path in enumerate(paths):
            _check_video(path)
            an = _Analysis(path, options, lm, progress)
            row = rows[k]
            known = row is not None
            if row is None:
                row = Stimulation(Path(path).stem, options.baseline_s, None, None, 0)
            if row.time_s >= an.duration:
                raise StimLogError(log_name or path, f"line {row.line}: stimulation at {row.time_s:g} s is after "
                                                     f"the end of {Path(path).name} ({an.duration:.2f} s)")
            end = min(row.end_s if row.end_s is not None else row.time_s + options.response_s, an.duration)
            if not known:
                end = an.duration
            resp, img = an.branch(row, end, known=known, keyframe=keyframes)
            branches.append(resp)
            mpps.append(float(np.nanmedian(an.mpp)))
            if img is not None:
                images[_key(k, resp.branch)] = img
    _rank(branches)
    warnings = [f"{b.branch}: quality {b.quality}: {'; '.join(b.quality_flags)}" for b in branches if b.quality != "good"]
    if log is None:
        warnings.append("no stimulation log: each clip's first "
                        f"{options.baseline_s:g} s is the baseline; onset latencies are not given")
    return StimResult(paths, log_name, options.side, options.mirrored, float(np.nanmedian(mpps)), _sha256(paths),
                      branches, warnings, images)
