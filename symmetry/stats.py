"""Cohort statistics: paired pre vs post tests, comparisons between cohorts, trajectories.

Inputs are the tidy measurement rows of :meth:`symmetry.store.Store.measurements`
(or any frame with the same columns); outputs are tidy DataFrames, one row
per measure, whose columns are listed in each function's Returns section
(the pingouin convention). The tests themselves come from scipy, statsmodels
and pingouin; nothing here re-implements a statistic.

A *measure* is the triple ``(expression, measure, side)``. Sides are
relabelled relative to the palsy (``affected``/``healthy``; ``midline`` for
|L-R| and ratio rows), so patients with different affected sides pool. The
*change* of a patient is ``post - pre``: the last pre-op visit against the last
visit of the chosen post-op phase (``late`` by default).

The noise band, perception thresholds and swelling phases are in
:mod:`symmetry.trends`; cohort statistics use ``late`` visits by default
precisely because earlier ones are biased by swelling.
"""

from __future__ import annotations

import math
import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .trends import KEY_MEASURES, Phase, relative_sides, visit_values

__all__ = [
    "prepost_pairs",
    "paired_tests",
    "group_labels",
    "cohort_summary",
    "compare_cohorts",
    "trajectory_model",
    "trajectory_models",
    "select_measures",
]

_MEASURE_KEYS = ["expression", "measure", "side"]
#: Post-op choices of :func:`prepost_pairs`: a phase, or ``last`` (the last post-op visit of any phase).
POST_CHOICES = ("late", "settling", "early", "last")


def select_measures(
    frame: pd.DataFrame,
    measures: Sequence[tuple[str, str, str]] | str | None = "key",
) -> pd.DataFrame:
    """Keep the rows of chosen measures.

    ``"key"`` keeps :data:`symmetry.trends.KEY_MEASURES`; ``"midline"`` every
    ``*_asymmetry`` and ``*_ratio`` row; ``None`` or ``"all"`` everything; a
    sequence of ``(expression, measure, side)`` exactly those.
    """
    if measures is None or measures == "all":
        return frame
    if measures == "midline":
        return frame[frame["side"] == "midline"]
    wanted = set(KEY_MEASURES if measures == "key" else measures)  # type: ignore[arg-type]
    keys = list(zip(frame["expression"], frame["measure"], frame["side"]))
    return frame[[k in wanted for k in keys]]


def prepost_pairs(
    measurements: pd.DataFrame,
    *,
    post: str = "late",
    measures: Sequence[tuple[str, str, str]] | str | None = "key",
) -> pd.DataFrame:
    """One pre/post pair per patient and measure.

    Parameters
    ----------
    measurements : DataFrame
        Tidy rows with ``patient, cohort, visit_date, days_from_procedure,
        phase, expression, measure, side, value, unit`` and optionally
        ``affected_side`` and ``aetiology``.
    post : {"late", "settling", "early", "last"}
        The post-op visit: the last one in that phase, or the last post-op
        visit of any phase.
    measures : see :func:`select_measures`

    Returns
    -------
    DataFrame
        ``patient, cohort, aetiology, expression, measure, side, unit,
        pre_date, pre, post_date, post_days, post_phase, post, change``
        (``change = post - pre``); patients without both visits are left out.

    Raises
    ------
    ValueError
        Unknown ``post``.
    """
    if post not in POST_CHOICES:
        raise ValueError(f"`post` must be one of {', '.join(POST_CHOICES)}, got {post!r}")
    cols = [
        "patient", "cohort", "aetiology", "expression", "measure", "side", "unit", "pre_date", "pre",
        "post_date", "post_days", "post_phase", "post", "change",
    ]
    if measurements.empty:
        return pd.DataFrame(columns=cols)
    rel = relative_sides(measurements)
    values = visit_values(select_measures(rel, measures))
    if values.empty:
        return pd.DataFrame(columns=cols)
    pre = values[values["phase"] == Phase.PRE_OP.value]
    post_phases = [p.value for p in Phase if p is not Phase.PRE_OP] if post == "last" else [post]
    after = values[values["phase"].isin(post_phases)]
    keys = ["patient"] + _MEASURE_KEYS
    pre = pre.sort_values("visit_date").groupby(keys, as_index=False).last()
    after = after.sort_values("visit_date").groupby(keys, as_index=False).last()
    pairs = pre[keys + ["unit", "visit_date", "value"]].rename(columns={"visit_date": "pre_date", "value": "pre"}).merge(
        after[keys + ["visit_date", "days_from_procedure", "phase", "value"]].rename(
            columns={"visit_date": "post_date", "days_from_procedure": "post_days", "phase": "post_phase", "value": "post"}
        ),
        on=keys,
    )
    info = measurements.groupby("patient")[["cohort"]].first()
    info["aetiology"] = measurements.groupby("patient")["aetiology"].first() if "aetiology" in measurements.columns else None
    pairs = pairs.merge(info, left_on="patient", right_index=True, how="left")
    pairs["change"] = pairs["post"] - pairs["pre"]
    pairs = pairs.dropna(subset=["pre", "post"])
    return pairs[cols].sort_values(_MEASURE_KEYS + ["patient"], ignore_index=True)


def _row(result: pd.DataFrame) -> pd.Series:
    """The first row of a pingouin result, column names as in pingouin >= 0.7 (``p_val``, not ``p-val``)."""
    return result.rename(columns=lambda c: str(c).replace("-", "_")).iloc[0]


def _holm(p: pd.Series) -> pd.Series:
    """Holm-adjusted p-values (statsmodels) over the non-missing entries."""
    from statsmodels.stats.multitest import multipletests

    out = pd.Series(np.nan, index=p.index, dtype=float)
    ok = p.notna()
    if ok.any():
        out[ok] = multipletests(p[ok].to_numpy(dtype=float), method="holm")[1]
    return out


def paired_tests(
    pairs: pd.DataFrame,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int | None = 0,
    min_n: int = 3,
) -> pd.DataFrame:
    """Pre vs post, per measure: paired t, Wilcoxon signed-rank, effect sizes, bootstrap CI, Holm.

    Parameters
    ----------
    pairs : DataFrame
        :func:`prepost_pairs`.
    n_boot : int
        Bootstrap resamples of the mean change.
    confidence : float
        Level of the confidence intervals.
    seed : int or None
        Seed of the bootstrap's random generator (reproducible by default).
    min_n : int
        Fewer pairs than this: descriptive columns only, tests NaN.

    Returns
    -------
    DataFrame
        One row per measure, columns:

        ``expression, measure, side, unit``
        ``n`` pairs
        ``mean_pre, mean_post, mean_change, sd_change, median_change``
        ``ci_low, ci_high`` bootstrap (BCa, scipy) CI of the mean change
        ``t, dof, p_t`` paired t-test (pingouin ``ttest(paired=True)``)
        ``w, p_wilcoxon`` Wilcoxon signed-rank (pingouin ``wilcoxon``, scipy underneath)
        ``cohen_dav, hedges_g`` paired effect sizes post vs pre (pingouin
        ``compute_effsize(paired=True)``: mean change over the mean of the two SDs)
        ``rbc`` matched-pairs rank-biserial correlation (pingouin)
        ``p_t_holm, p_wilcoxon_holm`` Holm-adjusted across the rows (statsmodels)

    Notes
    -----
    Signs follow ``post - pre``: for ``*_asymmetry`` rows a negative change is
    an improvement.
    """
    import pingouin as pg
    from scipy import stats

    cols = [
        "expression", "measure", "side", "unit", "n", "mean_pre", "mean_post", "mean_change", "sd_change",
        "median_change", "ci_low", "ci_high", "t", "dof", "p_t", "w", "p_wilcoxon", "cohen_dav", "hedges_g", "rbc",
        "p_t_holm", "p_wilcoxon_holm",
    ]
    rows = []
    for key, g in pairs.groupby(_MEASURE_KEYS, sort=True):
        pre = g["pre"].to_numpy(dtype=float)
        post = g["post"].to_numpy(dtype=float)
        d = post - pre
        n = len(d)
        row: dict[str, object] = dict(zip(_MEASURE_KEYS, key))
        row.update(
            unit=g["unit"].iloc[0], n=n, mean_pre=float(np.mean(pre)), mean_post=float(np.mean(post)),
            mean_change=float(np.mean(d)), sd_change=float(np.std(d, ddof=1)) if n > 1 else math.nan,
            median_change=float(np.median(d)),
        )
        row.update({c: math.nan for c in cols if c not in row})
        if n >= min_n and np.ptp(d) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tt = _row(pg.ttest(post, pre, paired=True, confidence=confidence))
                row.update(t=float(tt["T"]), dof=float(tt["dof"]), p_t=float(tt["p_val"]))
                row["cohen_dav"] = float(pg.compute_effsize(post, pre, paired=True, eftype="cohen"))
                row["hedges_g"] = float(pg.compute_effsize(post, pre, paired=True, eftype="hedges"))
                if np.any(d != 0):
                    wt = _row(pg.wilcoxon(post, pre))
                    row.update(w=float(wt["W_val"]), p_wilcoxon=float(wt["p_val"]), rbc=float(wt["RBC"]))
                ci = stats.bootstrap(
                    (d,), np.mean, n_resamples=n_boot, confidence_level=confidence, method="BCa",
                    rng=np.random.default_rng(seed),
                ).confidence_interval
                row.update(ci_low=float(ci.low), ci_high=float(ci.high))
        rows.append(row)
    out = pd.DataFrame(rows, columns=cols)
    if not out.empty:
        out["p_t_holm"] = _holm(out["p_t"])
        out["p_wilcoxon_holm"] = _holm(out["p_wilcoxon"])
    return out


def group_labels(pairs: pd.DataFrame, by: str = "cohort") -> pd.DataFrame:
    """Attach a ``group`` column from ``by`` (``cohort`` labels ``a;b`` give one row per label)."""
    if by not in pairs.columns:
        raise ValueError(f"cannot group by {by!r}; use cohort or aetiology")
    g = pairs.copy()
    g["group"] = g[by].fillna("").astype(str)
    if by == "cohort":
        g["group"] = g["group"].str.split(";")
        g = g.explode("group")
        g["group"] = g["group"].str.strip()
    g = g[g["group"] != ""]
    return g.reset_index(drop=True)


def cohort_summary(pairs: pd.DataFrame, *, by: str = "cohort") -> pd.DataFrame:
    """Descriptive change per measure and group.

    Returns
    -------
    DataFrame
        ``expression, measure, side, unit, group, n, mean_pre, mean_post,
        mean_change, sd_change, median_change``.
    """
    g = group_labels(pairs, by)
    cols = _MEASURE_KEYS + ["unit", "group", "n", "mean_pre", "mean_post", "mean_change", "sd_change", "median_change"]
    if g.empty:
        return pd.DataFrame(columns=cols)
    out = (
        g.groupby(_MEASURE_KEYS + ["group"], sort=True)
        .agg(
            unit=("unit", "first"), n=("change", "size"), mean_pre=("pre", "mean"), mean_post=("post", "mean"),
            mean_change=("change", "mean"), sd_change=("change", "std"), median_change=("change", "median"),
        )
        .reset_index()
    )
    return out[cols]


def compare_cohorts(
    pairs: pd.DataFrame,
    *,
    by: str = "cohort",
    groups: Sequence[str] | None = None,
    min_n: int = 2,
) -> pd.DataFrame:
    """Compare the change (post - pre) between cohorts, per measure.

    Two groups: Welch's t-test and Mann-Whitney U (pingouin ``ttest`` with
    ``correction=True``, ``mwu``), effect size Hedges' g. More groups: Welch's
    ANOVA and Kruskal-Wallis (pingouin ``welch_anova``, ``kruskal``), effect
    size partial eta squared. Holm adjustment across the measures.

    Parameters
    ----------
    pairs : DataFrame
        :func:`prepost_pairs`.
    by : {"cohort", "aetiology"}
    groups : sequence of str, optional
        The groups to compare (default: all). They must not share patients.
    min_n : int
        Groups with fewer patients for a measure are left out of its test.

    Returns
    -------
    DataFrame
        One row per measure: ``expression, measure, side, unit, groups`` (the
        compared groups joined with ``" vs "``), ``n`` (patients per group,
        ``"a=5, b=6"``), ``test_parametric, stat_parametric, p_parametric,
        test_rank, stat_rank, p_rank, effect_size, effect_size_kind,
        p_parametric_holm, p_rank_holm, note`` (why a test is missing).

    Raises
    ------
    ValueError
        Groups share a patient (the message names them), or fewer than two groups.
    """
    import pingouin as pg

    g = group_labels(pairs, by)
    if groups is not None:
        missing = sorted(set(groups) - set(g["group"]))
        if missing:
            raise ValueError(f"no patients with a pre/post pair in {by} {', '.join(missing)}; have {', '.join(sorted(set(g['group'])))}")
        g = g[g["group"].isin(groups)]
    names = sorted(g["group"].unique())
    if len(names) < 2:
        raise ValueError(f"need at least two {by} groups with pre/post pairs to compare, have {names or 'none'}")
    shared = g.groupby("patient")["group"].nunique()
    shared = shared[shared > 1]
    if not shared.empty:
        raise ValueError(
            f"patients in more than one compared {by}: {', '.join(shared.index[:5])}"
            f"{'...' if len(shared) > 5 else ''}; choose disjoint groups (e.g. --groups A B)"
        )
    cols = [
        "expression", "measure", "side", "unit", "groups", "n", "test_parametric", "stat_parametric", "p_parametric",
        "test_rank", "stat_rank", "p_rank", "effect_size", "effect_size_kind", "p_parametric_holm", "p_rank_holm", "note",
    ]
    rows = []
    for key, m in g.groupby(_MEASURE_KEYS, sort=True):
        counts = m.groupby("group")["change"].size()
        keep = counts[counts >= min_n].index
        m = m[m["group"].isin(keep)]
        row: dict[str, object] = dict(zip(_MEASURE_KEYS, key))
        row.update(unit=m["unit"].iloc[0] if not m.empty else "", groups=" vs ".join(sorted(keep)),
                   n=", ".join(f"{k}={int(counts[k])}" for k in sorted(counts.index)))
        row.update({c: math.nan for c in cols if c not in row})
        row["note"] = "" if len(keep) >= 2 else f"fewer than two groups with {min_n}+ patients"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if len(keep) == 2 and m["change"].nunique() > 1:
                a = m.loc[m["group"] == sorted(keep)[0], "change"].to_numpy(float)
                b = m.loc[m["group"] == sorted(keep)[1], "change"].to_numpy(float)
                tt = _row(pg.ttest(a, b, correction=True))
                mw = _row(pg.mwu(a, b))
                row.update(
                    test_parametric="welch_t", stat_parametric=float(tt["T"]), p_parametric=float(tt["p_val"]),
                    test_rank="mann_whitney_u", stat_rank=float(mw["U_val"]), p_rank=float(mw["p_val"]),
                    effect_size=float(pg.compute_effsize(a, b, paired=False, eftype="hedges")),
                    effect_size_kind="hedges_g",
                )
            elif len(keep) > 2 and m["change"].nunique() > 1:
                kw = _row(pg.kruskal(m, dv="change", between="group"))
                row.update(test_rank="kruskal_wallis", stat_rank=float(kw["H"]), p_rank=float(kw["p_unc"]))
                try:
                    wa = _row(pg.welch_anova(m, dv="change", between="group"))
                except ValueError as exc:  # a group without variance: Welch weights undefined
                    row["note"] = f"no Welch ANOVA: {exc}"
                else:
                    row.update(
                        test_parametric="welch_anova", stat_parametric=float(wa["F"]), p_parametric=float(wa["p_unc"]),
                        effect_size=float(wa["np2"]), effect_size_kind="partial_eta_squared",
                    )
        rows.append(row)
    out = pd.DataFrame(rows, columns=cols)
    if not out.empty:
        out["p_parametric_holm"] = _holm(out["p_parametric"])
        out["p_rank_holm"] = _holm(out["p_rank"])
    return out


TRAJECTORY_COLUMNS = (
    "expression", "measure", "side", "unit", "term", "coef", "se", "z", "p", "ci_low", "ci_high", "n_obs",
    "n_patients", "converged",
)


def trajectory_model(
    measurements: pd.DataFrame,
    *,
    expression: str,
    measure: str,
    side: str,
    by: str | None = None,
) -> pd.DataFrame:
    """A mixed-effects model of one measure over the phases after surgery.

    ``value ~ C(phase, Treatment("pre-op"))`` with a random intercept per
    patient (statsmodels ``MixedLM``, REML), so each phase coefficient is the
    mean change from pre-op allowing for each patient's own level. With
    ``by`` (``cohort`` or ``aetiology``), the group and its interaction with
    the phase are added: ``value ~ C(phase) * C(group)``; patients in several
    cohorts are then counted in each (use disjoint cohorts).

    Returns
    -------
    DataFrame
        One row per fixed-effect term: ``expression, measure, side, unit,
        term, coef, se, z, p, ci_low, ci_high, n_obs, n_patients, converged``.
        Empty when fewer than two patients or phases have data.
    """
    import statsmodels.formula.api as smf
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    cols = list(TRAJECTORY_COLUMNS)
    rel = relative_sides(measurements)
    rel = rel[(rel["expression"] == expression) & (rel["measure"] == measure) & (rel["side"] == side)]
    data = visit_values(rel).dropna(subset=["value", "phase"])
    if by is not None:
        info = measurements.groupby("patient")[by].first()
        data = data.merge(info.rename("group"), left_on="patient", right_index=True)
        if by == "cohort":
            data["group"] = data["group"].fillna("").astype(str).str.split(";")
            data = data.explode("group")
        data = data[data["group"].fillna("") != ""]
    if data["patient"].nunique() < 2 or data["phase"].nunique() < 2 or Phase.PRE_OP.value not in set(data["phase"]):
        return pd.DataFrame(columns=cols)
    formula = 'value ~ C(phase, Treatment("pre-op"))' + (" * C(group)" if by is not None and data["group"].nunique() > 1 else "")
    model = smf.mixedlm(formula, data.reset_index(drop=True), groups=data["patient"].reset_index(drop=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = model.fit(reml=True)
        except (np.linalg.LinAlgError, ValueError):
            return pd.DataFrame(columns=cols)
    converged = bool(getattr(fit, "converged", True)) and not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    fe = fit.fe_params.index
    ci = fit.conf_int().loc[fe]
    out = pd.DataFrame(
        {
            "term": [_term_name(t) for t in fe],
            "coef": fit.fe_params.to_numpy(),
            "se": fit.bse_fe.to_numpy(),
            "z": fit.tvalues.loc[fe].to_numpy(),
            "p": fit.pvalues.loc[fe].to_numpy(),
            "ci_low": ci.iloc[:, 0].to_numpy(),
            "ci_high": ci.iloc[:, 1].to_numpy(),
        }
    )
    out.insert(0, "unit", data["unit"].iloc[0])
    out.insert(0, "side", side)
    out.insert(0, "measure", measure)
    out.insert(0, "expression", expression)
    out["n_obs"] = len(data)
    out["n_patients"] = data["patient"].nunique()
    out["converged"] = converged
    return out[cols]


def _term_name(term: str) -> str:
    """Readable fixed-effect names: ``C(phase, Treatment("pre-op"))[T.late]`` -> ``phase[late]``."""
    out = term.replace('C(phase, Treatment("pre-op"))[T.', "phase[").replace("C(group)[T.", "group[")
    return out


def trajectory_models(
    measurements: pd.DataFrame,
    *,
    measures: Iterable[tuple[str, str, str]] = KEY_MEASURES,
    by: str | None = None,
) -> pd.DataFrame:
    """:func:`trajectory_model` for several measures, concatenated (empty models left out)."""
    frames = [trajectory_model(measurements, expression=e, measure=m, side=s, by=by) for e, m, s in measures]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=list(TRAJECTORY_COLUMNS))
    return pd.concat(frames, ignore_index=True)
