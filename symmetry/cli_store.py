"""Subcommands on the patient database: ingest, export, outcomes, cohort, report, score, patients.

Thin: argparse parses, :mod:`symmetry.store`, :mod:`symmetry.ingest`,
:mod:`symmetry.trends`, :mod:`symmetry.stats` and :mod:`symmetry.report` do
the work. Every command takes ``--database URL`` (default
``SYMMETRY_DATABASE_URL``, else the SQLite file in ``SYMMETRY_HOME``).
Exit codes: 0 ok; 2 a bad input file (manifest row, photo); 1 anything else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from typing import Any

from .cli_args import EXIT_INPUT, EXIT_OK, EXIT_OTHER


__all__ = ["add_parsers"]


def _database_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--database",
        metavar="URL",
        help="SQLAlchemy URL or SQLite file (default: $SYMMETRY_DATABASE_URL, else symmetry.sqlite3 in $SYMMETRY_HOME)",
    )


def add_parsers(sub: Any) -> None:
    """Add the database subcommands to the ``symmetry`` parser."""
    p = sub.add_parser(
        "ingest",
        help="ingest a manifest of visit photos into the database",
        description=(
            "Ingest photos listed in a CSV manifest (columns patient, visit_date, expression, path; optional "
            "procedure_date, procedure, affected_side, aetiology, cohort, mirrored). Files already stored (same "
            "content) are skipped; each photo is stored and measured in its own transaction; bad rows are "
            "reported and skipped (exit code 2)."
        ),
    )
    p.add_argument("manifest", metavar="MANIFEST.csv")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per row")
    p.add_argument("--remeasure", action="store_true", help="also re-measure every stored recording of the manifest's patients")
    _database_arg(p)
    p.set_defaults(func=_ingest)

    p = sub.add_parser(
        "export",
        help="export all measurements as tidy rows",
        description=(
            "Tidy rows: patient, cohort, visit_date, days_from_procedure, phase, expression, measure, side, value, "
            "unit. Written to stdout unless --out is given."
        ),
    )
    p.add_argument("--format", choices=("csv", "parquet", "xlsx"), help="default: from --out's suffix, else csv")
    p.add_argument("--out", metavar="FILE", help="output file (default stdout)")
    p.add_argument("--patient", metavar="CODE", help="only this patient")
    _database_arg(p)
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "outcomes",
        help="one patient's outcomes: deltas from pre-op, noise band, thresholds, eFACE-style scores, flags",
    )
    p.add_argument("patient", metavar="PATIENT")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table",
                   help="table (default), json (everything), csv (all pre/post deltas)")
    p.add_argument("--all-measures", action="store_true", help="table: every measure, not only the key ones")
    _database_arg(p)
    p.set_defaults(func=_outcomes)

    p = sub.add_parser(
        "cohort",
        help="cohort statistics: paired pre vs post tests, comparison between cohorts, mixed-effects trajectories",
    )
    p.add_argument("--by", choices=("cohort", "aetiology"), default="cohort", help="grouping (default cohort)")
    p.add_argument("--groups", nargs="+", metavar="NAME", help="compare only these groups (must not share patients)")
    p.add_argument("--post", choices=("late", "settling", "early", "last"), default="late",
                   help="post-op visit: the last one in this phase, or the last of any (default late)")
    p.add_argument("--measures", choices=("key", "midline", "all"), default="key",
                   help="key measures (default), every |L-R| and ratio row, or everything")
    p.add_argument("--n-boot", type=int, default=2000, metavar="N", help="bootstrap resamples (default 2000)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    _database_arg(p)
    p.set_defaults(func=_cohort)

    p = sub.add_parser("report", help="a patient's report: overlays, trend plots and tables (self-contained HTML or PDF)")
    p.add_argument("patient", metavar="PATIENT")
    p.add_argument("--out", required=True, metavar="FILE", help="report.html or report.pdf")
    p.add_argument("--no-photos", action="store_true", help="leave the annotated photos out")
    _database_arg(p)
    p.set_defaults(func=_report)

    p = sub.add_parser(
        "score",
        help="enter clinician scores for a visit (eFACE, Sunnybrook, House-Brackmann, FaCE, SAQ)",
        description=(
            "Enter scores as INSTRUMENT.ITEM=VALUE, e.g. 'sunnybrook.composite=62 house_brackmann.grade=3 "
            "eface.total=71 face.total=63 saq.total=21'. The visit is created if absent."
        ),
    )
    p.add_argument("patient", metavar="PATIENT")
    p.add_argument("visit_date", metavar="VISIT_DATE", help="YYYY-MM-DD")
    p.add_argument("scores", nargs="+", metavar="INSTRUMENT.ITEM=VALUE")
    p.add_argument("--rater", default="", help="who scored (initials or a code)")
    p.add_argument("--notes", help="free-text note stored with the scores")
    _database_arg(p)
    p.set_defaults(func=_score)

    p = sub.add_parser("patients", help="list the patients in the database")
    _database_arg(p)
    p.set_defaults(func=_patients)


def _open(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .store import open_store

    return open_store(args.database)


# --------------------------------------------------------------------------- ingest / export


def _ingest(args: argparse.Namespace) -> int:
    from .ingest import ingest_manifest, remeasure
    from .landmarks import Landmarker, LandmarkerOptions

    say = (lambda msg: print(msg, file=sys.stderr)) if args.verbose else None
    with _open(args) as store, Landmarker(LandmarkerOptions()) as lm:
        report = ingest_manifest(store, args.manifest, landmarker=lm, on_row=say)
        if args.remeasure:
            from .ingest import read_manifest

            rows, _ = read_manifest(args.manifest)
            for code in dict.fromkeys(r.patient for r in rows):
                remeasure(store, code, landmarker=lm, report=report, force=True, on_row=say)
    for problem in report.problems:
        print(f"error: {problem}", file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_INPUT


def _export(args: argparse.Namespace) -> int:
    from .store import export_frame, write_export

    fmt = args.format
    if fmt is None:
        suffix = (args.out or "").rsplit(".", 1)[-1].lower() if args.out and "." in args.out else ""
        fmt = suffix if suffix in ("csv", "parquet", "xlsx") else "csv"
    with _open(args) as store:
        if args.patient and not store.has_patient(args.patient):
            print(f"error: unknown patient {args.patient!r}", file=sys.stderr)
            return EXIT_OTHER
        frame = export_frame(store, args.patient)
    if args.out:
        write_export(frame, fmt, args.out)
        print(f"{len(frame)} rows written to {args.out}", file=sys.stderr)
        return EXIT_OK
    try:
        if fmt == "csv":
            write_export(frame, fmt, sys.stdout)
            sys.stdout.flush()
        else:
            import io

            buf = io.BytesIO()  # parquet and xlsx writers need a seekable file
            write_export(frame, fmt, buf)
            sys.stdout.flush()
            sys.stdout.buffer.write(buf.getvalue())
            sys.stdout.buffer.flush()
    except BrokenPipeError:  # e.g. `symmetry export | head`: the reader has all it wants
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


# --------------------------------------------------------------------------- outcomes


def _fmt(v: Any, digits: int = 2) -> str:
    import pandas as pd

    if v is None or v is pd.NA:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _json_default(o: Any) -> Any:
    if isinstance(o, (dt.date, dt.datetime)):
        return o.isoformat()
    if hasattr(o, "item"):
        return o.item()
    return str(o)


def _records(frame: Any) -> list[dict[str, Any]]:
    import pandas as pd

    f = frame.astype(object).where(pd.notna(frame), None)
    return [dict(r) for r in f.to_dict(orient="records")]


def _outcomes(args: argparse.Namespace) -> int:
    import pandas as pd

    from .trends import patient_outcomes

    with _open(args) as store:
        m = store.measurements(args.patient)
        if m.empty:
            known = ", ".join(store.patients()["patient"]) or "none"
            print(f"error: no measurements for patient {args.patient!r}; patients: {known}", file=sys.stderr)
            return EXIT_OTHER
        visits = store.visits(args.patient)
        procedures = store.procedures(args.patient)
        scores = store.scores(args.patient)
    o = patient_outcomes(m, args.patient)
    if args.format == "json":
        payload = {
            "patient": o.patient,
            "affected_side": o.affected_side,
            "aetiology": m["aetiology"].iloc[0],
            "cohort": m["cohort"].iloc[0],
            "procedures": _records(procedures),
            "visits": _records(visits),
            "deltas": _records(o.deltas),
            "eface_approximation": _records(o.eface),
            "oral_competence": _records(o.oral_competence),
            "oral_competence_flag": o.oral_competence_flag,
            "oral_competence_persistent": o.oral_competence_persistent,
            "clinician_scores": _records(scores),
            "notes": o.notes,
        }
        json.dump(payload, sys.stdout, indent=2, default=_json_default)
        sys.stdout.write("\n")
        return EXIT_OK
    if args.format == "csv":
        o.deltas.to_csv(sys.stdout, index=False)
        return EXIT_OK
    out = sys.stdout
    print(f"patient {o.patient}   affected side {o.affected_side or 'unknown'}   aetiology {m['aetiology'].iloc[0] or 'unknown'}"
          f"   cohort {m['cohort'].iloc[0] or '-'}", file=out)
    for _, p in procedures.iterrows():
        print(f"procedure {p['date']}  {p['kind']}", file=out)
    print("\nvisits", file=out)
    for _, v in visits.iterrows():
        days = "" if v["days_from_procedure"] is pd.NA else f"day {int(v['days_from_procedure'])}"
        swell = "  (swelling: measures biased)" if v["phase"] in ("early", "settling") else ""
        print(f"  {v['visit_date']}  {days:>9}  {v['phase'] or '-':<9} {int(v['n_recordings'])} recording(s){swell}", file=out)
    d = o.deltas if args.all_measures else o.key_deltas()
    print("\npre-op vs post-op" + ("" if args.all_measures else " (key measures; --all-measures for every one)"), file=out)
    print("  noise band ±1.5 mm ('noise'); '*' beyond the perception threshold (2 mm eye, 3 mm mouth); "
          "'~' swelling-biased visit", file=out)
    if d.empty:
        print("  (no pre-op and post-op visits to compare)", file=out)
    else:
        print(f"  {'visit':<11}{'phase':<9}{'expression':<19}{'measure':<36}{'side':<9}{'pre':>8}{'post':>8}{'delta':>8}  unit", file=out)
        for _, r in d.iterrows():
            mark = ""
            if r["within_noise"] is True:
                mark += " noise"
            if r["beyond_perception"] is True:
                mark += " *"
            if isinstance(r["direction"], str) and r["direction"] != "within noise":
                mark += f" {r['direction']}"
            if r["swelling_biased"]:
                mark += " ~"
            print(f"  {str(r['visit_date']):<11}{r['phase']:<9}{r['expression']:<19}{r['measure']:<36}{r['side']:<9}"
                  f"{_fmt(r['baseline']):>8}{_fmt(r['value']):>8}{_fmt(r['delta']):>8}  {r['unit']}{mark}", file=out)
    print("\neFACE-style scores (APPROXIMATION from photos, Auto-eFACE style; not a clinician's eFACE)", file=out)
    if o.eface.empty:
        print("  (none: affected side unknown or expressions missing)", file=out)
    else:
        piv = o.eface.pivot_table(index="item", columns="visit_date", values="score", aggfunc="first", sort=False)
        print("  " + f"{'item':<26}" + "".join(f"{str(c):>12}" for c in piv.columns), file=out)
        for item, row in piv.iterrows():
            print("  " + f"{item:<26}" + "".join(f"{_fmt(v, 0):>12}" for v in row), file=out)
    if not scores.empty:
        print("\nclinician scores", file=out)
        for _, s in scores.iterrows():
            rater = f"  ({s['rater']})" if s["rater"] else ""
            print(f"  {s['visit_date']}  {s['instrument']} {s['item']} = {s['value']:g}{rater}", file=out)
    print("\noral competence", file=out)
    oc = o.oral_competence
    if oc.empty:
        print("  (no pre-op and post-op proxies to compare)", file=out)
    elif not o.oral_competence_flag:
        print("  no proxy worsened beyond the noise band after surgery", file=out)
    else:
        print("  FLAG: a proxy worsened beyond the noise band after surgery"
              + (" and persists at the last late visit" if o.oral_competence_persistent else " (not at a late visit)"), file=out)
        for _, r in oc[oc["flagged"]].iterrows():
            print(f"    {r['visit_date']} {r['phase']}: {r['proxy']} worse by {r['worsening_mm']:.1f} mm", file=out)
    for n in o.notes:
        print(f"note: {n}", file=out)
    return EXIT_OK


# --------------------------------------------------------------------------- cohort


def _cohort(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import stats

    with _open(args) as store:
        m = store.measurements()
    if m.empty:
        print("error: the database has no measurements yet; run symmetry ingest first", file=sys.stderr)
        return EXIT_OTHER
    pairs = stats.prepost_pairs(m, post=args.post, measures=args.measures)
    if pairs.empty:
        print(f"error: no patient has both a pre-op and a {args.post} post-op visit", file=sys.stderr)
        return EXIT_OTHER
    grouped = stats.group_labels(pairs, args.by)
    paired = []
    groups = args.groups or sorted(grouped["group"].unique())
    for name in ["all"] + [g for g in groups]:
        sel = pairs if name == "all" else grouped[grouped["group"] == name]
        if sel.empty:
            continue
        t = stats.paired_tests(sel, n_boot=args.n_boot)
        t.insert(0, "group", name)
        paired.append(t)
    paired_df = pd.concat(paired, ignore_index=True)
    notes = []
    try:
        between = stats.compare_cohorts(pairs, by=args.by, groups=args.groups)
    except ValueError as exc:
        between = pd.DataFrame()
        notes.append(f"no comparison between groups: {exc}")
    measures = sorted(set(zip(pairs["expression"], pairs["measure"], pairs["side"])))
    traj = stats.trajectory_models(m, measures=measures)
    if args.format == "json":
        json.dump({"paired": _records(paired_df), "between": _records(between), "trajectory": _records(traj), "notes": notes},
                  sys.stdout, indent=2, default=_json_default)
        sys.stdout.write("\n")
        return EXIT_OK
    if args.format == "csv":
        frames = [paired_df.assign(analysis="paired"), between.assign(analysis="between"), traj.assign(analysis="trajectory")]
        out = pd.concat([f for f in frames if not f.empty], ignore_index=True)
        cols = ["analysis"] + [c for c in out.columns if c != "analysis"]
        out[cols].to_csv(sys.stdout, index=False)
        return EXIT_OK
    pd_opts = {"display.width": 250, "display.max_columns": 40, "display.max_rows": 500}
    with pd.option_context(*[x for kv in pd_opts.items() for x in kv]):
        n_pat = pairs["patient"].nunique()
        print(f"pre-op vs {args.post} post-op, {n_pat} patient(s) with pairs; change = post - pre "
              "(negative = more symmetric for |L-R| rows); p-values Holm-adjusted across measures within each group")
        show = ["group", "expression", "measure", "side", "unit", "n", "mean_change", "ci_low", "ci_high",
                "p_t", "p_t_holm", "p_wilcoxon", "p_wilcoxon_holm", "cohen_dav", "rbc"]
        print(paired_df[show].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(f"\nbetween {args.by} groups (change post - pre)")
        if between.empty:
            print("  " + ("; ".join(notes) or "nothing to compare"))
        else:
            show = ["expression", "measure", "side", "groups", "n", "test_parametric", "p_parametric", "p_parametric_holm",
                    "test_rank", "p_rank", "p_rank_holm", "effect_size", "effect_size_kind"]
            print(between[show].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print("\ntrajectory (mixed effects: value ~ phase, random intercept per patient; coefficients vs pre-op)")
        if traj.empty:
            print("  (not enough patients or phases)")
        else:
            show = ["expression", "measure", "side", "term", "coef", "ci_low", "ci_high", "p", "n_patients", "converged"]
            print(traj[show].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return EXIT_OK


# --------------------------------------------------------------------------- report, score, patients


def _report(args: argparse.Namespace) -> int:
    from .report import ReportContext, make_overlays, write_report
    from .trends import patient_outcomes

    if not args.out.lower().endswith((".html", ".htm", ".pdf")):
        print(f"error: --out must end in .html or .pdf, got {args.out!r}", file=sys.stderr)
        return EXIT_OTHER
    with _open(args) as store:
        m = store.measurements(args.patient)
        if m.empty:
            known = ", ".join(store.patients()["patient"]) or "none"
            print(f"error: no measurements for patient {args.patient!r}; patients: {known}", file=sys.stderr)
            return EXIT_OTHER
        visits = store.visits(args.patient)
        procedures = store.procedures(args.patient)
        scores = store.scores(args.patient)
        recordings = store.recordings(args.patient)
    o = patient_outcomes(m, args.patient)
    overlays = [] if args.no_photos else make_overlays(recordings, affected_side=o.affected_side)
    ctx = ReportContext(
        outcomes=o,
        aetiology=m["aetiology"].iloc[0],
        cohort=m["cohort"].iloc[0],
        procedures=procedures[["date", "kind", "notes"]],
        visits=visits[["visit_date", "days_from_procedure", "phase", "n_recordings"]],
        scores=scores,
        overlays=overlays,
    )
    path = write_report(args.out, ctx)
    print(f"report written to {path}", file=sys.stderr)
    return EXIT_OK


def _score(args: argparse.Namespace) -> int:
    try:
        visit_date = dt.date.fromisoformat(args.visit_date)
    except ValueError:
        print(f"error: VISIT_DATE {args.visit_date!r} is not a date in YYYY-MM-DD form", file=sys.stderr)
        return EXIT_OTHER
    scores: dict[tuple[str, str], float] = {}
    for text in args.scores:
        key, sep, value = text.partition("=")
        inst, dot, item = key.partition(".")
        try:
            if not (sep and dot and inst and item):
                raise ValueError
            scores[(inst, item)] = float(value)
        except ValueError:
            print(f"error: {text!r}: write scores as INSTRUMENT.ITEM=VALUE, e.g. sunnybrook.composite=62", file=sys.stderr)
            return EXIT_OTHER
    with _open(args) as store:
        try:
            n = store.add_scores(args.patient, visit_date, scores, rater=args.rater, notes=args.notes)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_OTHER
    print(f"{n} score(s) stored for {args.patient} on {visit_date}", file=sys.stderr)
    return EXIT_OK


def _patients(args: argparse.Namespace) -> int:
    with _open(args) as store:
        p = store.patients()
    if p.empty:
        print("no patients yet", file=sys.stderr)
    else:
        print(p.to_string(index=False))
    return EXIT_OK
