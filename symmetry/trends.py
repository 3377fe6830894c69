"""Per-patient outcomes over time: phases, pre-op vs post-op deltas, noise, thresholds.

Pure functions on tidy DataFrames (the rows of
:meth:`symmetry.store.Store.measurements`); nothing here touches the database.

Timeline
--------
Every visit is timed against one procedure of the patient: the latest one on
or before the visit, else (a visit before any procedure) the first one.
``days_from_procedure`` is visit date minus procedure date. Phases:

=============  ==============================  ====================================
phase          days from the procedure         meaning
=============  ==============================  ====================================
``pre-op``     <= 0                            baseline (the day of surgery counts:
                                               the pre-op photo set is taken that
                                               morning)
``early``      1 .. 21                         swelling (peaks about day 3, major
                                               swelling settles over 2-3 weeks)
``settling``   22 .. 122 (4 months)            residual swelling: still biased
``late``       > 122                           the outcome
=============  ==============================  ====================================

Visits in ``early`` and ``settling`` are flagged ``swelling_biased``.

Noise and perception
--------------------
A pre/post change under :data:`NOISE_MM` (1.5 mm; test-retest noise of a
smile is 1.3-1.5 mm) is within measurement noise. Changes of at least
:data:`PERCEPTION_MM` (2 mm for the eyelids, 3 mm for the mouth; Hohman,
Hadlock et al. 2014) are visible to an observer.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "Phase",
    "EARLY_MAX_DAYS",
    "SETTLING_MAX_DAYS",
    "NOISE_MM",
    "PERCEPTION_MM",
    "SWELLING_PHASES",
    "KEY_MEASURES",
    "EFACE_ITEMS",
    "phase_for_days",
    "visit_timeline",
    "measure_region",
    "perception_threshold_mm",
    "relative_sides",
    "visit_values",
    "baseline_deltas",
    "approximate_eface",
    "oral_competence",
    "PatientOutcomes",
    "patient_outcomes",
]


class Phase(str, enum.Enum):
    """Where a visit lies relative to the procedure (see the module docstring)."""

    PRE_OP = "pre-op"
    EARLY = "early"
    SETTLING = "settling"
    LATE = "late"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


#: Last day of the ``early`` (swelling) phase: 3 weeks.
EARLY_MAX_DAYS = 21
#: Last day of the ``settling`` phase: 4 months (4 x 30.44 days).
SETTLING_MAX_DAYS = 122
#: Pre/post changes smaller than this (mm) are within measurement noise.
NOISE_MM = 1.5
#: Smallest change an observer perceives, mm, by facial region.
PERCEPTION_MM: dict[str, float] = {"eye": 2.0, "mouth": 3.0}
#: Phases whose measures are biased by post-operative swelling.
SWELLING_PHASES = frozenset({Phase.EARLY.value, Phase.SETTLING.value})

_EYE = frozenset({"palpebral_fissure_height", "mrd1", "mrd2"})
_MOUTH = frozenset(
    {
        "commissure_x",
        "commissure_y",
        "commissure_excursion",
        "commissure_movement",
        "upper_lip_height",
        "lower_lip_height",
        "interlabial_gap",
        "lower_lip_movement",
    }
)
_BROW = frozenset({"brow_height", "brow_movement"})

#: The measures shown first in outcomes, reports and cohort statistics:
#: ``(expression, measure, side)`` with sides relative to the palsy
#: (``affected``/``healthy``) or ``midline`` for |L-R| and ratios.
KEY_MEASURES: tuple[tuple[str, str, str], ...] = (
    ("rest", "commissure_y_asymmetry", "midline"),
    ("rest", "commissure_excursion_asymmetry", "midline"),
    ("rest", "palpebral_fissure_height_asymmetry", "midline"),
    ("rest", "brow_height_asymmetry", "midline"),
    ("rest", "lower_lip_height_asymmetry", "midline"),
    ("smile_open", "commissure_movement", "affected"),
    ("smile_open", "commissure_movement_asymmetry", "midline"),
    ("smile_open", "commissure_excursion_asymmetry", "midline"),
    ("smile_open", "smile_angle_asymmetry", "midline"),
    ("smile_open", "palpebral_fissure_change", "affected"),
    ("pucker", "palpebral_fissure_change", "affected"),
    ("lower_teeth", "lower_lip_movement", "affected"),
    ("eye_closure_gentle", "commissure_movement", "affected"),
)


# --------------------------------------------------------------------------- timeline


def phase_for_days(days: float | None) -> str | None:
    """The phase of a visit ``days`` after its procedure (None without a procedure)."""
    if days is None or (isinstance(days, float) and math.isnan(days)) or days is pd.NA:
        return None
    if days <= 0:
        return Phase.PRE_OP.value
    if days <= EARLY_MAX_DAYS:
        return Phase.EARLY.value
    if days <= SETTLING_MAX_DAYS:
        return Phase.SETTLING.value
    return Phase.LATE.value


def visit_timeline(
    visit_date: dt.date, procedure_dates: Sequence[dt.date]
) -> tuple[int | None, int | None, str | None]:
    """Time one visit against the patient's procedures.

    Parameters
    ----------
    visit_date : date
    procedure_dates : sequence of date
        The patient's procedures, in any order.

    Returns
    -------
    index : int or None
        Position in ``procedure_dates`` of the reference procedure: the latest
        on or before the visit, else the earliest (None without procedures).
    days_from_procedure : int or None
    phase : str or None
    """
    if not procedure_dates:
        return None, None, None
    order = sorted(range(len(procedure_dates)), key=lambda i: procedure_dates[i])
    before = [i for i in order if procedure_dates[i] <= visit_date]
    index = before[-1] if before else order[0]
    days = (visit_date - procedure_dates[index]).days
    return index, days, phase_for_days(days)


def measure_region(name: str) -> str | None:
    """``eye``, ``mouth``, ``brow`` or None for a measure name (``_asymmetry`` counts as its base)."""
    base = name.removesuffix("_asymmetry")
    if base in _EYE:
        return "eye"
    if base in _MOUTH:
        return "mouth"
    if base in _BROW:
        return "brow"
    return None


def perception_threshold_mm(name: str) -> float | None:
    """The perception threshold (mm) that applies to a mm measure, or None."""
    region = measure_region(name)
    return PERCEPTION_MM.get(region) if region else None


# --------------------------------------------------------------------------- shaping


def relative_sides(frame: pd.DataFrame, affected_side: str | None = None) -> pd.DataFrame:
    """Relabel ``left``/``right`` as ``affected``/``healthy`` (``midline`` stays).

    Uses ``affected_side`` if given, else the frame's ``affected_side`` column
    (per patient). Rows of patients whose affected side is unknown keep
    ``left``/``right``.
    """
    out = frame.copy()
    if affected_side is not None:
        aff = pd.Series(affected_side, index=out.index)
    elif "affected_side" in out.columns:
        aff = out["affected_side"]
    else:
        return out
    side = out["side"]
    known = aff.isin(["left", "right"])
    out.loc[known & (side == aff), "side"] = "affected"
    out.loc[known & side.isin(["left", "right"]) & (side != aff), "side"] = "healthy"
    return out


def visit_values(frame: pd.DataFrame) -> pd.DataFrame:
    """One value per patient, visit, expression, measure and side (the mean of repeats).

    Columns: ``patient, visit_date, days_from_procedure, phase, expression,
    measure, side, unit, value, n_recordings``.
    """
    keys = ["patient", "visit_date", "expression", "measure", "side"]
    if frame.empty:
        return pd.DataFrame(columns=keys[:2] + ["days_from_procedure", "phase"] + keys[2:] + ["unit", "value", "n_recordings"])
    g = frame.groupby(keys, sort=True, dropna=False)
    out = g.agg(
        days_from_procedure=("days_from_procedure", "first"),
        phase=("phase", "first"),
        unit=("unit", "first"),
        value=("value", "mean"),
        n_recordings=("value", "size"),
    ).reset_index()
    cols = ["patient", "visit_date", "days_from_procedure", "phase", "expression", "measure", "side", "unit", "value", "n_recordings"]
    return out[cols]


def _baseline_and_post(values: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    pre = values[values["phase"] == Phase.PRE_OP.value]
    post = values[values["phase"].isin([p.value for p in Phase if p is not Phase.PRE_OP])]
    # baseline: the last pre-op visit of each patient (closest to surgery)
    if not pre.empty:
        last = pre.groupby("patient")["visit_date"].transform("max")
        pre = pre[pre["visit_date"] == last]
    return pre, post


def baseline_deltas(values: pd.DataFrame, *, noise_mm: float = NOISE_MM) -> pd.DataFrame:
    """Pre-op vs each post-op visit, per patient, expression, measure and side.

    Parameters
    ----------
    values : DataFrame
        From :func:`visit_values`.
    noise_mm : float
        The noise band, mm.

    Returns
    -------
    DataFrame
        One row per post-op visit and measure:

        ``patient, expression, measure, side, unit``
        ``baseline_date, baseline`` the last pre-op visit and its value
        ``visit_date, days_from_procedure, phase, value``
        ``delta`` value - baseline
        ``within_noise`` |delta| < ``noise_mm`` (mm measures; NA otherwise)
        ``perception_threshold_mm`` 2 (eye) or 3 (mouth) mm, NA elsewhere
        ``beyond_perception`` |delta| >= that threshold (NA without one)
        ``direction`` for ``*_asymmetry`` rows in mm: ``more symmetric``,
        ``less symmetric`` or ``within noise``; NA otherwise
        ``swelling_biased`` the visit is in the ``early`` or ``settling`` phase
    """
    cols = [
        "patient", "expression", "measure", "side", "unit", "baseline_date", "baseline", "visit_date",
        "days_from_procedure", "phase", "value", "delta", "within_noise", "perception_threshold_mm",
        "beyond_perception", "direction", "swelling_biased",
    ]
    pre, post = _baseline_and_post(values)
    if pre.empty or post.empty:
        return pd.DataFrame(columns=cols)
    keys = ["patient", "expression", "measure", "side"]
    base = pre[keys + ["visit_date", "value"]].rename(columns={"visit_date": "baseline_date", "value": "baseline"})
    out = post.merge(base, on=keys, how="inner")
    out["delta"] = out["value"] - out["baseline"]
    is_mm = out["unit"] == "mm"
    absd = out["delta"].abs()
    out["within_noise"] = pd.array([bool(a < noise_mm) if m and not math.isnan(a) else pd.NA for a, m in zip(absd, is_mm)], dtype="boolean")
    thr = out["measure"].map(perception_threshold_mm)
    out["perception_threshold_mm"] = pd.array([t if (m and t is not None) else np.nan for t, m in zip(thr, is_mm)], dtype=float)
    out["beyond_perception"] = pd.array(
        [bool(a >= t) if not (math.isnan(t) or math.isnan(a)) else pd.NA for a, t in zip(absd, out["perception_threshold_mm"])],
        dtype="boolean",
    )

    def direction(row: pd.Series) -> object:
        if row["unit"] != "mm" or not str(row["measure"]).endswith("_asymmetry") or math.isnan(row["delta"]):
            return pd.NA
        if abs(row["delta"]) < noise_mm:
            return "within noise"
        return "more symmetric" if row["delta"] < 0 else "less symmetric"

    out["direction"] = out.apply(direction, axis=1) if not out.empty else pd.Series(dtype=object)
    out["swelling_biased"] = out["phase"].isin(SWELLING_PHASES)
    return out[cols].sort_values(["patient", "visit_date", "expression", "measure", "side"], ignore_index=True)


# --------------------------------------------------------------------------- approximate eFACE


@dataclass(frozen=True)
class _EfaceItem:
    item: str
    group: str  # static | dynamic | synkinesis
    expressions: tuple[str, ...]
    measure: str
    kind: str  # balance: 100 * (1 - |1 - r|); movement: 100 * min(r, 1); min-ratio: 100 * min over expressions


#: The eFACE items approximated from photos (Auto-eFACE style, Miller et al.,
#: PRS 2021): each is built from an affected/healthy ratio ``r`` of one measure.
#: Static items score balance, ``100 * (1 - |1 - r|)``; dynamic items score
#: the affected side's movement relative to the healthy side,
#: ``100 * min(r, 1)``; ocular synkinesis is ``100 * min(PFH ratio in
#: smile_open, in pucker)``. All clipped to 0-100 (100 = normal).
EFACE_ITEMS: tuple[_EfaceItem, ...] = (
    _EfaceItem("brow_rest", "static", ("rest",), "brow_height", "balance"),
    _EfaceItem("palpebral_fissure_rest", "static", ("rest",), "palpebral_fissure_height", "balance"),
    _EfaceItem("oral_commissure_rest", "static", ("rest",), "commissure_excursion", "balance"),
    _EfaceItem("brow_elevation", "dynamic", ("brow_raise",), "brow_movement", "movement"),
    _EfaceItem("gentle_eye_closure", "dynamic", ("eye_closure_gentle",), "palpebral_fissure_change", "movement"),
    _EfaceItem("full_eye_closure", "dynamic", ("eye_closure_tight",), "palpebral_fissure_change", "movement"),
    _EfaceItem("oral_commissure_smile", "dynamic", ("smile_open",), "commissure_movement", "movement"),
    _EfaceItem("lower_lip_eee", "dynamic", ("lower_teeth",), "lower_lip_movement", "movement"),
    _EfaceItem("ocular_synkinesis", "synkinesis", ("smile_open", "pucker"), "palpebral_fissure_height", "min-ratio"),
)
_APPROX_LABEL = "approximation (Auto-eFACE-style, from photos)"


def _ratio(values: pd.DataFrame, expression: str, measure: str) -> float:
    rows = values[(values["expression"] == expression) & (values["measure"] == measure)]
    a = rows.loc[rows["side"] == "affected", "value"]
    h = rows.loc[rows["side"] == "healthy", "value"]
    if a.empty or h.empty:
        return math.nan
    a_v, h_v = float(a.iloc[0]), float(h.iloc[0])
    if math.isnan(a_v) or math.isnan(h_v) or abs(h_v) < 1e-9:
        return math.nan
    return a_v / h_v


def approximate_eface(values: pd.DataFrame) -> pd.DataFrame:
    """Approximate eFACE item and sub-scores per visit from photo measures.

    Parameters
    ----------
    values : DataFrame
        :func:`visit_values` of one patient with sides relabelled by
        :func:`relative_sides` (``affected``/``healthy``). Without them (the
        affected side unknown) the result is empty.

    Returns
    -------
    DataFrame
        ``visit_date, days_from_procedure, phase, item, group, score, ratio,
        expression, measure, label``; ``group`` is ``static``, ``dynamic``,
        ``synkinesis`` or ``score`` (the sub-scores ``static_score``,
        ``dynamic_score``, ``synkinesis_score`` and ``total``: means of the
        available items). ``label`` marks every score as an approximation.
    """
    cols = ["visit_date", "days_from_procedure", "phase", "item", "group", "score", "ratio", "expression", "measure", "label"]
    rows: list[dict[str, object]] = []
    if values.empty or not values["side"].isin(["affected", "healthy"]).any():
        return pd.DataFrame(columns=cols)
    for visit_date, v in values.groupby("visit_date", sort=True):
        days, phase = v["days_from_procedure"].iloc[0], v["phase"].iloc[0]
        items: list[dict[str, object]] = []
        for spec in EFACE_ITEMS:
            ratios = [_ratio(v, e, spec.measure) for e in spec.expressions]
            if spec.kind == "min-ratio":
                usable = [r for r in ratios if not math.isnan(r)]
                r = min(usable) if usable else math.nan
                score = 100.0 * min(max(r, 0.0), 1.0)
            elif spec.kind == "balance":
                r = ratios[0]
                score = 100.0 * min(max(1.0 - abs(1.0 - r), 0.0), 1.0)
            else:
                r = ratios[0]
                score = 100.0 * min(max(r, 0.0), 1.0)
            if math.isnan(r):
                continue
            items.append(
                {
                    "visit_date": visit_date, "days_from_procedure": days, "phase": phase, "item": spec.item,
                    "group": spec.group, "score": score, "ratio": r, "expression": "+".join(spec.expressions),
                    "measure": spec.measure, "label": _APPROX_LABEL,
                }
            )
        rows += items
        for sub, groups in (("static_score", {"static"}), ("dynamic_score", {"dynamic"}),
                            ("synkinesis_score", {"synkinesis"}), ("total", {"static", "dynamic", "synkinesis"})):
            scores = [float(i["score"]) for i in items if i["group"] in groups]  # type: ignore[arg-type]
            if scores:
                rows.append(
                    {
                        "visit_date": visit_date, "days_from_procedure": days, "phase": phase, "item": sub,
                        "group": "score", "score": float(np.mean(scores)), "ratio": math.nan, "expression": "",
                        "measure": f"mean of {len(scores)} item(s)", "label": _APPROX_LABEL,
                    }
                )
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------- oral competence

#: Oral-competence proxies: (name, expression, measure, side, sign). ``sign``
#: turns a change into "worsening, mm": +1 when an increase is worse, -1 when
#: a decrease is worse. ``interlabial_gap`` is the mean of both sides.
_ORAL_PROXIES: tuple[tuple[str, str, str, str, int], ...] = (
    ("lower_lip_depression_on_eee", "lower_teeth", "lower_lip_movement", "affected", +1),
    ("lower_lip_asymmetry_on_eee", "lower_teeth", "lower_lip_movement_asymmetry", "midline", +1),
    ("lower_lip_height_asymmetry_at_rest", "rest", "lower_lip_height_asymmetry", "midline", +1),
    ("interlabial_gap_at_rest", "rest", "interlabial_gap", "mean", +1),
)


def oral_competence(values: pd.DataFrame, *, noise_mm: float = NOISE_MM) -> pd.DataFrame:
    """Oral-competence proxies, pre-op vs each post-op visit; flags worsening beyond noise.

    Selective denervation costs up to a quarter of patients some oral
    competence (lip seal, lower-lip control). The proxies are the affected
    lower lip's depression on "eee" (``lower_lip_movement`` is negative for
    depression, so an increase is a loss), the lower-lip asymmetry on "eee"
    and at rest, and the resting interlabial gap (lip seal).

    Parameters
    ----------
    values : DataFrame
        :func:`visit_values` of one or more patients, sides relabelled by
        :func:`relative_sides`.

    Returns
    -------
    DataFrame
        ``patient, proxy, expression, measure, side, baseline_date, baseline,
        visit_date, days_from_procedure, phase, value, worsening_mm, flagged,
        swelling_biased``; ``flagged`` is ``worsening_mm > noise_mm``.
    """
    cols = [
        "patient", "proxy", "expression", "measure", "side", "baseline_date", "baseline", "visit_date",
        "days_from_procedure", "phase", "value", "worsening_mm", "flagged", "swelling_biased",
    ]
    v = values
    gap = v[(v["expression"] == "rest") & (v["measure"] == "interlabial_gap") & v["side"].isin(["left", "right", "affected", "healthy"])]
    if not gap.empty:
        mean_gap = (
            gap.groupby(["patient", "visit_date"], sort=False)
            .agg(days_from_procedure=("days_from_procedure", "first"), phase=("phase", "first"),
                 unit=("unit", "first"), value=("value", "mean"), n_recordings=("n_recordings", "max"))
            .reset_index()
            .assign(expression="rest", measure="interlabial_gap", side="mean")
        )
        v = pd.concat([v, mean_gap.reindex(columns=v.columns)], ignore_index=True)
    pre, post = _baseline_and_post(v)
    rows: list[dict[str, object]] = []
    for name, expr, measure, side, sign in _ORAL_PROXIES:
        sel = lambda f: f[(f["expression"] == expr) & (f["measure"] == measure) & (f["side"] == side)]  # noqa: E731
        b, p = sel(pre), sel(post)
        if b.empty or p.empty:
            continue
        merged = p.merge(b[["patient", "visit_date", "value"]].rename(columns={"visit_date": "baseline_date", "value": "baseline"}), on="patient")
        for _, r in merged.iterrows():
            worse = sign * (float(r["value"]) - float(r["baseline"]))
            rows.append(
                {
                    "patient": r["patient"], "proxy": name, "expression": expr, "measure": measure, "side": side,
                    "baseline_date": r["baseline_date"], "baseline": float(r["baseline"]), "visit_date": r["visit_date"],
                    "days_from_procedure": r["days_from_procedure"], "phase": r["phase"], "value": float(r["value"]),
                    "worsening_mm": worse, "flagged": bool(worse > noise_mm),
                    "swelling_biased": r["phase"] in SWELLING_PHASES,
                }
            )
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["patient", "visit_date", "proxy"], ignore_index=True) if not out.empty else out


# --------------------------------------------------------------------------- one patient


@dataclass
class PatientOutcomes:
    """Everything :func:`patient_outcomes` works out for one patient.

    Attributes
    ----------
    patient : str
    affected_side : str or None
    series : DataFrame
        :func:`visit_values` with sides relative to the palsy and a
        ``swelling_biased`` column: each measure over days from the procedure.
    deltas : DataFrame
        :func:`baseline_deltas`.
    eface : DataFrame
        :func:`approximate_eface` (empty without an affected side).
    oral_competence : DataFrame
        :func:`oral_competence`.
    oral_competence_flag : bool
        A proxy worsened beyond noise at some post-op visit.
    oral_competence_persistent : bool
        ... and still at the last ``late`` visit.
    notes : list of str
    """

    patient: str
    affected_side: str | None
    series: pd.DataFrame
    deltas: pd.DataFrame
    eface: pd.DataFrame
    oral_competence: pd.DataFrame
    oral_competence_flag: bool
    oral_competence_persistent: bool
    notes: list[str] = field(default_factory=list)

    def key_deltas(self) -> pd.DataFrame:
        """The deltas of :data:`KEY_MEASURES` only, in that order."""
        order = {k: i for i, k in enumerate(KEY_MEASURES)}
        d = self.deltas
        if d.empty:
            return d
        idx = [order.get((e, m, s)) for e, m, s in zip(d["expression"], d["measure"], d["side"])]
        d = d.assign(_k=idx).dropna(subset=["_k"])
        return d.sort_values(["visit_date", "_k"]).drop(columns="_k").reset_index(drop=True)


def patient_outcomes(measurements: pd.DataFrame, patient: str, *, noise_mm: float = NOISE_MM) -> PatientOutcomes:
    """Outcomes of one patient from the tidy measurement rows.

    Parameters
    ----------
    measurements : DataFrame
        :meth:`symmetry.store.Store.measurements` rows (other patients are ignored).
    patient : str
        The patient code.
    noise_mm : float

    Raises
    ------
    ValueError
        No rows for ``patient``.
    """
    m = measurements[measurements["patient"] == patient]
    if m.empty:
        known = ", ".join(sorted(measurements["patient"].unique())) or "none"
        raise ValueError(f"no measurements for patient {patient!r}; patients with measurements: {known}")
    affected = m["affected_side"].dropna().iloc[0] if m["affected_side"].notna().any() else None
    notes: list[str] = []
    if affected is None:
        notes.append("affected side unknown: sides stay left/right; no eFACE approximation or affected-side proxies")
    if m["phase"].isna().all():
        notes.append("no procedure recorded: no phases, baseline or deltas")
    values = visit_values(relative_sides(m, affected))
    deltas = baseline_deltas(values, noise_mm=noise_mm)
    if not values["phase"].eq(Phase.PRE_OP.value).any() and values["phase"].notna().any():
        notes.append("no pre-op visit: no baseline to compare with")
    eface = approximate_eface(values)
    oral = oral_competence(values, noise_mm=noise_mm)
    flag = bool(oral["flagged"].any()) if not oral.empty else False
    persistent = False
    if flag:
        late = oral[oral["phase"] == Phase.LATE.value]
        if not late.empty:
            last = late["visit_date"].max()
            persistent = bool(late.loc[late["visit_date"] == last, "flagged"].any())
    if flag:
        notes.append(
            "oral-competence proxy worsened beyond noise after surgery"
            + (" and persists at the last late visit" if persistent else " (not at a late visit: may be swelling)")
        )
    series = values.assign(swelling_biased=values["phase"].isin(SWELLING_PHASES))
    return PatientOutcomes(patient, affected, series, deltas, eface, oral, flag, persistent, notes)
