"""The patient database: patients, procedures, visits, recordings, measurements, scores.

SQLAlchemy 2 models, the engine and session factory, and read helpers that
return pandas DataFrames, so nothing outside this module and
:mod:`symmetry.ingest` ever sees an SQLAlchemy object. The measuring core
(:mod:`symmetry.photo` and below) does not import this module.

Where the data lives
--------------------
``SYMMETRY_HOME`` (environment variable; default the per-user data directory,
e.g. ``~/.local/share/symmetry`` on Linux) holds the default SQLite database
``symmetry.sqlite3`` and ``media/``, the copies of ingested photos (location
and device metadata stripped, named by the SHA-256 of the original file).
``SYMMETRY_DATABASE_URL`` or the ``database`` argument (the CLI's
``--database``) selects another database: an SQLAlchemy URL such as
``postgresql+psycopg://user@host/symmetry`` for a clinic server, or a plain
file path for an SQLite file. Opening a store runs the Alembic migrations
shipped in :mod:`symmetry.migrations` up to ``head``.

Model
-----
``patient`` (pseudonymous ``code``, ``affected_side``, ``aetiology``) with
cohort labels in ``patient_cohort``; ``procedure`` (``kind``, ``date``,
``notes``); ``visit`` (``date``, the reference ``procedure``, and the derived
``days_from_procedure`` and ``phase``, see :func:`symmetry.trends.visit_timeline`);
``recording`` (photo or video of one ``expression``, content ``sha256``,
``mirrored``, the stored copy, scale and head pose); ``measurement`` (tidy
rows ``name, side, value, unit`` with the ``algorithm_version``); and
``clinician_score`` (eFACE, Sunnybrook, House-Brackmann, FaCE, SAQ entered
by hand, see :data:`INSTRUMENTS`); ``stimulation_map`` (the branch table of an
intra-operative stimulation session, linked to the ``procedure``, with
``stimulation_branch`` and tidy ``stimulation_movement`` rows; see
:mod:`symmetry.stim` and :func:`save_stimulation`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from sqlalchemy.pool import StaticPool

from .errors import SymmetryError

__all__ = [
    "Aetiology",
    "RecordingKind",
    "INSTRUMENTS",
    "ScoreRange",
    "StoreError",
    "Store",
    "open_store",
    "symmetry_home",
    "resolve_database_url",
    "validate_score",
    "normalise_aetiology",
    "Base",
    "Patient",
    "PatientCohort",
    "Procedure",
    "Visit",
    "Recording",
    "Measurement",
    "ClinicianScore",
    "StimulationMap",
    "StimulationBranch",
    "StimulationMovement",
    "STIMULATION_COLUMNS",
    "save_stimulation",
    "EXPORT_COLUMNS",
    "export_frame",
    "write_export",
    "read_export",
    "get_or_create_visit",
    "visit_id_for",
    "refresh_timeline",
]

#: File name of the default SQLite database inside ``SYMMETRY_HOME``.
DEFAULT_DB_NAME = "symmetry.sqlite3"
#: Folder of the stored media copies inside ``SYMMETRY_HOME``.
MEDIA_DIR = "media"
#: Columns of ``symmetry export``, in order.
EXPORT_COLUMNS = (
    "patient",
    "cohort",
    "visit_date",
    "days_from_procedure",
    "phase",
    "expression",
    "measure",
    "side",
    "value",
    "unit",
)
#: Columns of :meth:`Store.stimulation`, in order.
STIMULATION_COLUMNS = (
    "patient", "procedure", "procedure_date", "map_id", "source", "source_sha256", "side", "position", "branch",
    "rank", "class", "preserve", "stim_s", "peak_s", "onset_latency_ms", "quality", "movement", "value", "unit",
    "direction_deg", "explanation", "algorithm_version",
)
#: Separator of several cohort labels in one text field (manifest, export).
COHORT_SEPARATOR = ";"
_SQLITE_BUSY_TIMEOUT_S = 30.0


class StoreError(SymmetryError):
    """The database cannot be opened, migrated or is inconsistent with a request."""


# --------------------------------------------------------------------------- vocabularies


class Aetiology(str, enum.Enum):
    """Cause of the facial palsy."""

    BELLS_PALSY = "bells_palsy"
    RAMSAY_HUNT = "ramsay_hunt"
    ACOUSTIC_NEUROMA = "acoustic_neuroma"
    NERVE_REPAIR = "nerve_repair"
    TRAUMA = "trauma"
    OTHER = "other"


_AETIOLOGY_ALIASES = {
    "bell": Aetiology.BELLS_PALSY,
    "bells": Aetiology.BELLS_PALSY,
    "bell_palsy": Aetiology.BELLS_PALSY,
    "ramsay_hunt_syndrome": Aetiology.RAMSAY_HUNT,
    "vestibular_schwannoma": Aetiology.ACOUSTIC_NEUROMA,
    "acoustic_neuroma_resection": Aetiology.ACOUSTIC_NEUROMA,
}


def normalise_aetiology(text: str) -> Aetiology:
    """Map free text such as ``"Bell's palsy"`` or ``"Ramsay Hunt"`` to :class:`Aetiology`.

    Raises
    ------
    ValueError
        The text names none of the known aetiologies; the message lists them.
    """
    key = "".join(ch if ch.isalnum() else "_" for ch in text.strip().lower().replace("'", ""))
    key = "_".join(part for part in key.split("_") if part)
    try:
        return Aetiology(key)
    except ValueError:
        pass
    if key in _AETIOLOGY_ALIASES:
        return _AETIOLOGY_ALIASES[key]
    allowed = ", ".join(a.value for a in Aetiology)
    raise ValueError(f"unknown aetiology {text!r}; use one of {allowed}")


class RecordingKind(str, enum.Enum):
    PHOTO = "photo"
    VIDEO = "video"


@dataclass(frozen=True)
class ScoreRange:
    """Allowed values of one clinician-score item (inclusive); ``integer`` for grades."""

    low: float
    high: float
    integer: bool = False


def _items(names: Sequence[str], low: float, high: float, integer: bool = False) -> dict[str, ScoreRange]:
    return {n: ScoreRange(low, high, integer) for n in names}


#: Instruments clinicians enter by hand: instrument -> item -> allowed range.
#:
#: * ``eface`` (Banks et al., PRS 2015), 100 = normal. The four static items
#:   accept 0-200 because the eFACE static sliders run both ways from the
#:   balanced 100 (e.g. a brow higher than the healthy side); dynamic and
#:   synkinesis items and the sub-scores run 0-100.
#: * ``sunnybrook``: resting symmetry 0-20, voluntary movement 20-100,
#:   synkinesis 0-15, composite = voluntary - resting - synkinesis (-15..100).
#: * ``house_brackmann``: grade I-VI entered as 1-6.
#: * ``face`` (Facial Clinimetric Evaluation): total and domains 0-100.
#: * ``saq`` (Synkinesis Assessment Questionnaire): nine items 1-5 and their
#:   raw sum ``total`` 9-45 (the scale of "SAQ 27 -> 21" in the literature).
INSTRUMENTS: dict[str, dict[str, ScoreRange]] = {
    "eface": {
        **_items(("brow_rest", "palpebral_fissure_rest", "nasolabial_fold_rest", "oral_commissure_rest"), 0, 200),
        **_items(
            (
                "brow_elevation",
                "gentle_eye_closure",
                "full_eye_closure",
                "oral_commissure_smile",
                "nasolabial_fold_depth_smile",
                "nasolabial_fold_orientation_smile",
                "lower_lip_eee",
                "ocular_synkinesis",
                "midfacial_synkinesis",
                "mentalis_synkinesis",
                "platysmal_synkinesis",
                "static_score",
                "dynamic_score",
                "synkinesis_score",
                "total",
            ),
            0,
            100,
        ),
    },
    "sunnybrook": {
        "resting_symmetry": ScoreRange(0, 20),
        "voluntary_movement": ScoreRange(20, 100),
        "synkinesis": ScoreRange(0, 15),
        "composite": ScoreRange(-15, 100),
    },
    "house_brackmann": {"grade": ScoreRange(1, 6, integer=True)},
    "face": _items(
        (
            "total",
            "facial_movement",
            "facial_comfort",
            "oral_function",
            "eye_comfort",
            "lacrimal_control",
            "social_function",
        ),
        0,
        100,
    ),
    "saq": {**_items(tuple(f"q{i}" for i in range(1, 10)), 1, 5, integer=True), "total": ScoreRange(9, 45, integer=True)},
}


def validate_score(instrument: str, item: str, value: float) -> tuple[str, str, float]:
    """Check one clinician score; return the normalised ``(instrument, item, value)``.

    Raises
    ------
    ValueError
        Unknown instrument or item (the message lists the allowed ones), or a
        value outside the item's range.
    """
    inst = instrument.strip().lower().replace("-", "_")
    if inst not in INSTRUMENTS:
        raise ValueError(f"unknown instrument {instrument!r}; use one of {', '.join(INSTRUMENTS)}")
    name = item.strip().lower().replace("-", "_")
    items = INSTRUMENTS[inst]
    if name not in items:
        raise ValueError(f"unknown {inst} item {item!r}; use one of {', '.join(items)}")
    rng = items[name]
    v = float(value)
    if not math.isfinite(v) or not rng.low <= v <= rng.high:
        raise ValueError(f"{inst} {name} must be between {rng.low:g} and {rng.high:g}, got {value}")
    if rng.integer and v != int(v):
        raise ValueError(f"{inst} {name} must be a whole number, got {value}")
    return inst, name, v


# --------------------------------------------------------------------------- models

_NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
_BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)


class Patient(Base):
    __tablename__ = "patient"
    __table_args__ = (
        CheckConstraint("affected_side IN ('left', 'right')", name="affected_side"),
        CheckConstraint(
            "aetiology IN ('bells_palsy', 'ramsay_hunt', 'acoustic_neuroma', 'nerve_repair', 'trauma', 'other')",
            name="aetiology",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    affected_side: Mapped[str | None] = mapped_column(String(5))
    aetiology: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)

    cohorts: Mapped[list[PatientCohort]] = relationship(back_populates="patient", cascade="all, delete-orphan")
    procedures: Mapped[list[Procedure]] = relationship(back_populates="patient", cascade="all, delete-orphan")
    visits: Mapped[list[Visit]] = relationship(back_populates="patient", cascade="all, delete-orphan")


class PatientCohort(Base):
    __tablename__ = "patient_cohort"

    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)

    patient: Mapped[Patient] = relationship(back_populates="cohorts")


class Procedure(Base):
    __tablename__ = "procedure"
    __table_args__ = (UniqueConstraint("patient_id", "kind", "date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    date: Mapped[dt.date] = mapped_column(Date)
    notes: Mapped[str | None] = mapped_column(Text)

    patient: Mapped[Patient] = relationship(back_populates="procedures")


class Visit(Base):
    __tablename__ = "visit"
    __table_args__ = (
        UniqueConstraint("patient_id", "date"),
        CheckConstraint("phase IN ('pre-op', 'early', 'settling', 'late')", name="phase"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patient.id", ondelete="CASCADE"), index=True)
    date: Mapped[dt.date] = mapped_column(Date)
    #: The procedure the visit is timed against (derived; see trends.visit_timeline).
    procedure_id: Mapped[int | None] = mapped_column(ForeignKey("procedure.id", ondelete="SET NULL"))
    days_from_procedure: Mapped[int | None] = mapped_column(Integer)
    phase: Mapped[str | None] = mapped_column(String(10))

    patient: Mapped[Patient] = relationship(back_populates="visits")
    procedure: Mapped[Procedure | None] = relationship()
    recordings: Mapped[list[Recording]] = relationship(
        back_populates="visit", cascade="all, delete-orphan", foreign_keys="Recording.visit_id"
    )
    scores: Mapped[list[ClinicianScore]] = relationship(back_populates="visit", cascade="all, delete-orphan")


class Recording(Base):
    __tablename__ = "recording"
    __table_args__ = (CheckConstraint("kind IN ('photo', 'video')", name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8), default=RecordingKind.PHOTO.value)
    expression: Mapped[str] = mapped_column(String(32))
    #: SHA-256 of the original file's bytes (hex): the identity used for idempotent ingest.
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    mirrored: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The stored copy, relative to ``SYMMETRY_HOME/media``.
    media_path: Mapped[str] = mapped_column(String(255))
    original_name: Mapped[str | None] = mapped_column(String(255))
    width_px: Mapped[int | None] = mapped_column(Integer)
    height_px: Mapped[int | None] = mapped_column(Integer)
    mm_per_px: Mapped[float | None] = mapped_column(Float)
    mm_per_px_uncertainty: Mapped[float | None] = mapped_column(Float)
    scale_source: Mapped[str | None] = mapped_column(String(16))
    head_yaw_deg: Mapped[float | None] = mapped_column(Float)
    head_pitch_deg: Mapped[float | None] = mapped_column(Float)
    head_roll_deg: Mapped[float | None] = mapped_column(Float)
    #: JSON lists of strings.
    warnings: Mapped[str] = mapped_column(Text, default="[]")
    refined_points: Mapped[str] = mapped_column(Text, default="[]")
    #: The rest recording of the same visit that the movement measures are taken against.
    rest_recording_id: Mapped[int | None] = mapped_column(ForeignKey("recording.id", ondelete="SET NULL"))
    #: The patient's affected side the ratios were computed with (re-measured when it changes).
    measured_affected_side: Mapped[str | None] = mapped_column(String(5))
    algorithm_version: Mapped[str] = mapped_column(String(16))
    measured_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)
    ingested_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)

    visit: Mapped[Visit] = relationship(back_populates="recordings", foreign_keys=[visit_id])
    measurements: Mapped[list[Measurement]] = relationship(
        back_populates="recording", cascade="all, delete-orphan", passive_deletes=True
    )


class Measurement(Base):
    __tablename__ = "measurement"
    __table_args__ = (
        UniqueConstraint("recording_id", "name", "side"),
        CheckConstraint("side IN ('left', 'right', 'midline')", name="side"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recording.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(8))
    #: NULL where the measure is undefined (NaN).
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(8))
    algorithm_version: Mapped[str] = mapped_column(String(16))

    recording: Mapped[Recording] = relationship(back_populates="measurements")


class ClinicianScore(Base):
    __tablename__ = "clinician_score"
    __table_args__ = (
        UniqueConstraint("visit_id", "instrument", "item", "rater"),
        CheckConstraint(
            "instrument IN ('eface', 'sunnybrook', 'house_brackmann', 'face', 'saq')", name="instrument"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"), index=True)
    instrument: Mapped[str] = mapped_column(String(24))
    item: Mapped[str] = mapped_column(String(48))
    value: Mapped[float] = mapped_column(Float)
    #: Who scored (initials or a code); '' when not given.
    rater: Mapped[str] = mapped_column(String(64), default="")
    notes: Mapped[str | None] = mapped_column(Text)
    entered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)

    visit: Mapped[Visit] = relationship(back_populates="scores")


#: Movement classes of a stimulated branch (as :data:`symmetry.stim.CLASSES`).
_STIM_CLASSES = ("smile_agonist", "smile_antagonist", "ocular", "lower_lip", "mixed", "none")


class StimulationMap(Base):
    """A stimulation map: the branch table of one intra-operative session, linked to the procedure.

    One per procedure, source (video or clips, by content hash) and operated side.
    """

    __tablename__ = "stimulation_map"
    __table_args__ = (
        UniqueConstraint("procedure_id", "source_sha256", "side"),
        CheckConstraint("side IN ('left', 'right')", name="side"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    procedure_id: Mapped[int] = mapped_column(ForeignKey("procedure.id", ondelete="CASCADE"), index=True)
    #: SHA-256 of the session video (of the clips' hashes, for one clip per branch).
    source_sha256: Mapped[str] = mapped_column(String(64))
    source_name: Mapped[str | None] = mapped_column(String(255))
    #: The operated side (the patient's).
    side: Mapped[str] = mapped_column(String(5))
    mirrored: Mapped[bool] = mapped_column(Boolean, default=False)
    mm_per_px: Mapped[float | None] = mapped_column(Float)
    #: JSON list of strings.
    warnings: Mapped[str] = mapped_column(Text, default="[]")
    algorithm_version: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_utcnow)

    procedure: Mapped[Procedure] = relationship()
    branches: Mapped[list[StimulationBranch]] = relationship(
        back_populates="map", cascade="all, delete-orphan", passive_deletes=True
    )


class StimulationBranch(Base):
    """One stimulated branch of a map: its class, rank, latency, quality and explanation."""

    __tablename__ = "stimulation_branch"
    __table_args__ = (
        UniqueConstraint("map_id", "position"),
        CheckConstraint(
            "movement_class IN ('smile_agonist', 'smile_antagonist', 'ocular', 'lower_lip', 'mixed', 'none')",
            name="movement_class",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    map_id: Mapped[int] = mapped_column(ForeignKey("stimulation_map.id", ondelete="CASCADE"), index=True)
    #: Order in the stimulation log (0-based).
    position: Mapped[int] = mapped_column(Integer)
    branch: Mapped[str] = mapped_column(String(64))
    movement_class: Mapped[str] = mapped_column(String(24))
    rank: Mapped[int] = mapped_column(Integer)
    preserve: Mapped[bool] = mapped_column(Boolean, default=False)
    stim_s: Mapped[float | None] = mapped_column(Float)
    peak_s: Mapped[float | None] = mapped_column(Float)
    onset_latency_ms: Mapped[float | None] = mapped_column(Float)
    quality: Mapped[str] = mapped_column(String(16))
    #: JSON list of strings.
    quality_flags: Mapped[str] = mapped_column(Text, default="[]")
    explanation: Mapped[str] = mapped_column(Text, default="")

    map: Mapped[StimulationMap] = relationship(back_populates="branches")
    movements: Mapped[list[StimulationMovement]] = relationship(
        back_populates="branch_row", cascade="all, delete-orphan", passive_deletes=True
    )


class StimulationMovement(Base):
    """One movement of one branch (tidy: ``name, value, unit, direction_deg``)."""

    __tablename__ = "stimulation_movement"
    __table_args__ = (UniqueConstraint("branch_id", "name"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True)
    branch_id: Mapped[int] = mapped_column(ForeignKey("stimulation_branch.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(32))
    #: NULL where undefined (NaN).
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(8))
    direction_deg: Mapped[float | None] = mapped_column(Float)

    branch_row: Mapped[StimulationBranch] = relationship(back_populates="movements")



# --------------------------------------------------------------------------- locations


def symmetry_home(env: Mapping[str, str] | None = None) -> Path:
    """The data directory: ``SYMMETRY_HOME`` if set, else the per-user data directory."""
    env = os.environ if env is None else env
    value = env.get("SYMMETRY_HOME")
    if value:
        return Path(value).expanduser()
    try:
        import platformdirs

        return Path(platformdirs.user_data_dir("symmetry", appauthor=False))
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        return Path.home() / ".local" / "share" / "symmetry"


def resolve_database_url(
    database: str | os.PathLike[str] | None = None,
    *,
    home: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> URL:
    """The database to use: ``database``, else ``SYMMETRY_DATABASE_URL``, else SQLite in the home.

    A value without ``://`` is taken as the path of an SQLite file.

    Raises
    ------
    StoreError
        The value is not a usable URL.
    """
    env = os.environ if env is None else env
    value = database if database is not None else env.get("SYMMETRY_DATABASE_URL") or None
    if value is None:
        path = (home or symmetry_home(env)) / DEFAULT_DB_NAME
        return URL.create("sqlite", database=str(path))
    text = os.fspath(value)
    if "://" not in text:
        return URL.create("sqlite", database=str(Path(text).expanduser()))
    try:
        return make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"not a database URL: {text!r} ({exc}); e.g. postgresql+psycopg://user@host/db") from None


def _is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _make_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT_S}}
    if _is_memory_sqlite(url):
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    # pysqlite's own transaction handling skips DDL and SAVEPOINTs; take it over
    # (SQLAlchemy's documented recipe) so that migrations and every ingest
    # transaction are atomic. Write transactions start with BEGIN IMMEDIATE so
    # that concurrent writers wait (busy timeout) instead of failing mid-way.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        if not _is_memory_sqlite(url):
            cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("symmetry_write") else "BEGIN")

    return engine


# --------------------------------------------------------------------------- the store


class Store:
    """An open database plus the media folder. Use :func:`open_store`.

    Attributes
    ----------
    url : sqlalchemy.engine.URL
    home : Path
        ``SYMMETRY_HOME``; stored media live in ``home / "media"``.
    engine : sqlalchemy.Engine
    """

    def __init__(self, url: URL, home: Path, engine: Engine) -> None:
        self.url = url
        self.home = home
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    # -- plumbing
    @property
    def media_dir(self) -> Path:
        return self.home / MEDIA_DIR

    @property
    def display_url(self) -> str:
        """The URL with any password hidden, for messages."""
        return self.url.render_as_string(hide_password=True)

    @contextlib.contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error.

        ``write=True`` takes the write lock at the start (SQLite ``BEGIN IMMEDIATE``).
        """
        with self._sessions() as session:
            if write:
                session.connection(execution_options={"symmetry_write": True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def media_path(self, relative: str) -> Path:
        """Absolute path of a stored media file from its ``media_path`` column."""
        return self.media_dir / relative

    # -- reads (DataFrames out)
    def patients(self) -> pd.DataFrame:
        """One row per patient: ``patient, affected_side, aetiology, cohort, n_visits, n_recordings``."""
        with self.session() as s:
            pats = s.execute(select(Patient.id, Patient.code, Patient.affected_side, Patient.aetiology)).all()
            cohorts = self._cohorts(s)
            visits = s.execute(select(Visit.patient_id, Visit.id)).all()
            recs = s.execute(select(Visit.patient_id, Recording.id).join(Recording, Recording.visit_id == Visit.id)).all()
        n_vis: dict[int, int] = {}
        for pid, _ in visits:
            n_vis[pid] = n_vis.get(pid, 0) + 1
        n_rec: dict[int, int] = {}
        for pid, _ in recs:
            n_rec[pid] = n_rec.get(pid, 0) + 1
        rows = [
            {
                "patient": code,
                "affected_side": side,
                "aetiology": aet,
                "cohort": cohorts.get(pid, ""),
                "n_visits": n_vis.get(pid, 0),
                "n_recordings": n_rec.get(pid, 0),
            }
            for pid, code, side, aet in pats
        ]
        cols = ["patient", "affected_side", "aetiology", "cohort", "n_visits", "n_recordings"]
        return pd.DataFrame(rows, columns=cols).sort_values("patient", ignore_index=True)

    def procedures(self, patient: str | None = None) -> pd.DataFrame:
        """``patient, kind, date, notes``, by patient and date."""
        q = select(Patient.code, Procedure.kind, Procedure.date, Procedure.notes).join(Procedure.patient)
        if patient is not None:
            q = q.where(Patient.code == patient)
        with self.session() as s:
            rows = s.execute(q.order_by(Patient.code, Procedure.date)).all()
        return pd.DataFrame(rows, columns=["patient", "kind", "date", "notes"])

    def visits(self, patient: str | None = None) -> pd.DataFrame:
        """``patient, visit_date, days_from_procedure, phase, procedure, procedure_date, n_recordings``."""
        q = (
            select(Patient.code, Visit.id, Visit.date, Visit.days_from_procedure, Visit.phase, Procedure.kind, Procedure.date)
            .join(Visit.patient)
            .outerjoin(Procedure, Visit.procedure_id == Procedure.id)
        )
        if patient is not None:
            q = q.where(Patient.code == patient)
        with self.session() as s:
            rows = s.execute(q.order_by(Patient.code, Visit.date)).all()
            counts = _count_by(s.execute(select(Recording.visit_id)).scalars().all())
        out = [
            {
                "patient": code,
                "visit_date": date,
                "days_from_procedure": days,
                "phase": phase,
                "procedure": kind,
                "procedure_date": pdate,
                "n_recordings": counts.get(vid, 0),
            }
            for code, vid, date, days, phase, kind, pdate in rows
        ]
        frame = pd.DataFrame(
            out,
            columns=["patient", "visit_date", "days_from_procedure", "phase", "procedure", "procedure_date", "n_recordings"],
        )
        frame["days_from_procedure"] = frame["days_from_procedure"].astype("Int64")
        return frame

    def recordings(self, patient: str | None = None) -> pd.DataFrame:
        """One row per recording, with the absolute ``file`` of its stored copy.

        Columns: ``patient, visit_date, phase, days_from_procedure, expression, kind,
        sha256, mirrored, file, original_name, mm_per_px, head_yaw_deg,
        head_pitch_deg, head_roll_deg, warnings (list), rest_sha256, algorithm_version``.
        """
        rest = Recording.__table__.alias("rest")
        q = (
            select(
                Patient.code,
                Visit.date,
                Visit.phase,
                Visit.days_from_procedure,
                Recording.expression,
                Recording.kind,
                Recording.sha256,
                Recording.mirrored,
                Recording.media_path,
                Recording.original_name,
                Recording.mm_per_px,
                Recording.head_yaw_deg,
                Recording.head_pitch_deg,
                Recording.head_roll_deg,
                Recording.warnings,
                rest.c.sha256,
                Recording.algorithm_version,
            )
            .join(Recording.visit)
            .join(Visit.patient)
            .outerjoin(rest, Recording.rest_recording_id == rest.c.id)
        )
        if patient is not None:
            q = q.where(Patient.code == patient)
        with self.session() as s:
            rows = s.execute(q.order_by(Patient.code, Visit.date, Recording.id)).all()
        cols = [
            "patient",
            "visit_date",
            "phase",
            "days_from_procedure",
            "expression",
            "kind",
            "sha256",
            "mirrored",
            "file",
            "original_name",
            "mm_per_px",
            "head_yaw_deg",
            "head_pitch_deg",
            "head_roll_deg",
            "warnings",
            "rest_sha256",
            "algorithm_version",
        ]
        data = []
        for r in rows:
            d = dict(zip(cols, r))
            d["file"] = str(self.media_path(d["file"]))
            d["warnings"] = json.loads(d["warnings"] or "[]")
            data.append(d)
        frame = pd.DataFrame(data, columns=cols)
        frame["days_from_procedure"] = frame["days_from_procedure"].astype("Int64")
        return frame

    def measurements(self, patient: str | None = None) -> pd.DataFrame:
        """All measurement rows, tidy, with their context.

        Columns: :data:`EXPORT_COLUMNS` followed by ``affected_side, aetiology,
        procedure, procedure_date, sha256, algorithm_version``. ``cohort`` joins
        several labels with ``;``; ``value`` is NaN where undefined;
        ``days_from_procedure`` is a nullable integer (missing without a procedure).
        """
        q = (
            select(
                Patient.id,
                Patient.code,
                Visit.date,
                Visit.days_from_procedure,
                Visit.phase,
                Recording.expression,
                Measurement.name,
                Measurement.side,
                Measurement.value,
                Measurement.unit,
                Patient.affected_side,
                Patient.aetiology,
                Procedure.kind,
                Procedure.date,
                Recording.sha256,
                Measurement.algorithm_version,
            )
            .select_from(Measurement)
            .join(Measurement.recording)
            .join(Recording.visit)
            .join(Visit.patient)
            .outerjoin(Procedure, Visit.procedure_id == Procedure.id)
        )
        if patient is not None:
            q = q.where(Patient.code == patient)
        q = q.order_by(Patient.code, Visit.date, Recording.expression, Recording.id, Measurement.id)
        with self.session() as s:
            rows = s.execute(q).all()
            cohorts = self._cohorts(s)
        cols = list(EXPORT_COLUMNS) + ["affected_side", "aetiology", "procedure", "procedure_date", "sha256", "algorithm_version"]
        data = [
            (code, cohorts.get(pid, ""), date, days, phase, expr, name, side,
             math.nan if value is None else value, unit, aff, aet, kind, pdate, sha, ver)
            for (pid, code, date, days, phase, expr, name, side, value, unit, aff, aet, kind, pdate, sha, ver) in rows
        ]
        frame = pd.DataFrame(data, columns=cols)
        frame["days_from_procedure"] = frame["days_from_procedure"].astype("Int64")
        frame["value"] = frame["value"].astype(float)
        return frame

    def scores(self, patient: str | None = None) -> pd.DataFrame:
        """Clinician scores: ``patient, visit_date, days_from_procedure, phase, instrument, item, value, rater, notes``."""
        q = (
            select(
                Patient.code,
                Visit.date,
                Visit.days_from_procedure,
                Visit.phase,
                ClinicianScore.instrument,
                ClinicianScore.item,
                ClinicianScore.value,
                ClinicianScore.rater,
                ClinicianScore.notes,
            )
            .join(ClinicianScore.visit)
            .join(Visit.patient)
        )
        if patient is not None:
            q = q.where(Patient.code == patient)
        with self.session() as s:
            rows = s.execute(q.order_by(Patient.code, Visit.date, ClinicianScore.instrument, ClinicianScore.item)).all()
        cols = ["patient", "visit_date", "days_from_procedure", "phase", "instrument", "item", "value", "rater", "notes"]
        frame = pd.DataFrame(rows, columns=cols)
        frame["days_from_procedure"] = frame["days_from_procedure"].astype("Int64")
        return frame

    def stimulation(self, patient: str | None = None) -> pd.DataFrame:
        """Stored stimulation maps, tidy: one row per branch x movement (:data:`STIMULATION_COLUMNS`).

        ``class`` is the branch's movement class (:data:`symmetry.stim.CLASSES`),
        ``value`` NaN where undefined; rows by patient, procedure date, map, rank.
        """
        q = (
            select(
                Patient.code, Procedure.kind, Procedure.date, StimulationMap.id, StimulationMap.source_name,
                StimulationMap.source_sha256, StimulationMap.side, StimulationBranch.position,
                StimulationBranch.branch, StimulationBranch.rank, StimulationBranch.movement_class,
                StimulationBranch.preserve, StimulationBranch.stim_s, StimulationBranch.peak_s,
                StimulationBranch.onset_latency_ms, StimulationBranch.quality, StimulationMovement.name,
                StimulationMovement.value, StimulationMovement.unit, StimulationMovement.direction_deg,
                StimulationBranch.explanation, StimulationMap.algorithm_version,
            )
            .select_from(StimulationMovement)
            .join(StimulationMovement.branch_row)
            .join(StimulationBranch.map)
            .join(StimulationMap.procedure)
            .join(Procedure.patient)
        )
        if patient is not None:
            q = q.where(Patient.code == patient)
        q = q.order_by(Patient.code, Procedure.date, StimulationMap.id, StimulationBranch.rank, StimulationMovement.id)
        with self.session() as s:
            rows = s.execute(q).all()
        frame = pd.DataFrame(rows, columns=list(STIMULATION_COLUMNS))
        for col in ("value", "direction_deg", "stim_s", "peak_s", "onset_latency_ms"):
            frame[col] = frame[col].astype(float)
        return frame

    def has_patient(self, patient: str) -> bool:
        with self.session() as s:
            return s.scalar(select(Patient.id).where(Patient.code == patient)) is not None

    # -- writes that are not ingest
    def add_scores(
        self,
        patient: str,
        visit_date: dt.date,
        scores: Mapping[tuple[str, str], float],
        *,
        rater: str = "",
        notes: str | None = None,
    ) -> int:
        """Enter clinician scores for one visit (created if absent); replaces same-rater values.

        ``scores`` maps ``(instrument, item)`` to the value. Returns the number stored.

        Raises
        ------
        StoreError
            The patient is unknown (ingest a photo first, or check the code).
        ValueError
            A score is invalid (see :func:`validate_score`); nothing is stored.
        """
        checked = [validate_score(inst, item, v) for (inst, item), v in scores.items()]
        with self.session(write=True) as s:
            pat = s.scalar(select(Patient).where(Patient.code == patient))
            if pat is None:
                raise StoreError(f"unknown patient {patient!r}; patients: {', '.join(self._codes(s)) or 'none yet'}")
            visit = get_or_create_visit(s, pat, visit_date)
            for inst, item, v in checked:
                row = s.scalar(
                    select(ClinicianScore).where(
                        ClinicianScore.visit_id == visit.id,
                        ClinicianScore.instrument == inst,
                        ClinicianScore.item == item,
                        ClinicianScore.rater == rater,
                    )
                )
                if row is None:
                    s.add(ClinicianScore(visit=visit, instrument=inst, item=item, value=v, rater=rater, notes=notes))
                else:
                    row.value, row.notes, row.entered_at = v, notes, _utcnow()
        return len(checked)

    # -- helpers
    @staticmethod
    def _cohorts(s: Session) -> dict[int, str]:
        labels: dict[int, list[str]] = {}
        for pid, label in s.execute(select(PatientCohort.patient_id, PatientCohort.label)).all():
            labels.setdefault(pid, []).append(label)
        return {pid: COHORT_SEPARATOR.join(sorted(v)) for pid, v in labels.items()}

    @staticmethod
    def _codes(s: Session) -> list[str]:
        return list(s.scalars(select(Patient.code).order_by(Patient.code)).all())


def _count_by(values: Sequence[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def refresh_timeline(s: Session, patient: Patient) -> None:
    """Recompute every visit's reference procedure, days and phase (after a procedure change)."""
    procs = _procedures_in_order(patient)
    for visit in patient.visits:
        _set_timeline(visit, procs)


def _procedures_in_order(patient: Patient) -> list[Procedure]:
    return sorted(patient.procedures, key=lambda p: (p.date, p.id or 0))


def _set_timeline(visit: Visit, procs: Sequence[Procedure]) -> None:
    """One visit's reference procedure, days and phase; ``procs`` sorted by (date, id)."""
    from .trends import visit_timeline

    proc_index, days, phase = visit_timeline(visit.date, [p.date for p in procs])
    visit.procedure = procs[proc_index] if proc_index is not None else None
    visit.days_from_procedure = days
    visit.phase = phase


def get_or_create_visit(s: Session, patient: Patient, date: dt.date) -> Visit:
    """The patient's visit on ``date``, created (with its timeline) if absent.

    A new visit changes no other visit's timeline (each depends only on its own date and the
    procedures), so only its own is computed: the patient's other visits are not loaded.
    """
    visit = s.scalar(select(Visit).where(Visit.patient_id == patient.id, Visit.date == date)) if patient.id else None
    if visit is None:
        visit = Visit(patient=patient, date=date)
        s.add(visit)
        _set_timeline(visit, _procedures_in_order(patient))
    return visit


@functools.lru_cache(maxsize=None)
def _visit_on_date() -> Any:
    """``SELECT visit.id`` by patient id and date, built once (bound parameters)."""
    from sqlalchemy import bindparam

    return select(Visit.id).where(Visit.patient_id == bindparam("patient_id"), Visit.date == bindparam("date"))


def visit_id_for(s: Session | Connection, patient_id: int, date: dt.date) -> int:
    """The id of the patient's visit on ``date``, created (with its timeline) if absent.

    :func:`get_or_create_visit` in Core statements, for a writer that needs only the id
    (a batch stores many files): no ORM objects are loaded or flushed.
    """
    from sqlalchemy import insert

    from .trends import visit_timeline

    found = s.execute(_visit_on_date(), {"patient_id": patient_id, "date": date}).scalar()
    if found is not None:
        return int(found)
    procs = s.execute(
        select(Procedure.id, Procedure.date).where(Procedure.patient_id == patient_id).order_by(Procedure.date, Procedure.id)
    ).all()
    index, days, phase = visit_timeline(date, [p.date for p in procs])
    table = Visit.__table__
    stmt = insert(table).values(
        patient_id=patient_id, date=date, procedure_id=procs[index].id if index is not None else None,
        days_from_procedure=days, phase=phase,
    )
    return int(s.execute(stmt.returning(table.c.id)).scalar_one())


def save_stimulation(
    store: Store,
    patient: str,
    procedure_date: dt.date,
    result: Any,
    *,
    procedure: str | None = None,
) -> int:
    """Store a stimulation map (a :class:`symmetry.stim.StimResult`) with the patient's procedure.

    The patient is created if absent (with the operated side as affected
    side); the procedure is the patient's procedure on ``procedure_date``
    (of kind ``procedure`` when given), created as ``procedure`` (default
    ``selective_neurectomy``) if there is none. A map of the same source and
    side on the same procedure is replaced. Returns the number of branches stored.

    Raises
    ------
    StoreError
        Several procedures on that date and no ``procedure`` kind to choose one.
    ValueError
        A branch has an unknown class.
    """
    from . import ALGORITHM_VERSION

    for b in result.branches:
        if b.movement_class not in _STIM_CLASSES:
            raise ValueError(f"branch {b.branch!r}: unknown class {b.movement_class!r}")

    def num(v: Any) -> float | None:
        return None if v is None or not math.isfinite(float(v)) else float(v)

    with store.session(write=True) as s:
        pat = s.scalar(select(Patient).where(Patient.code == patient))
        if pat is None:
            pat = Patient(code=patient, affected_side=result.side)
            s.add(pat)
            s.flush()
        procs = [p for p in pat.procedures if p.date == procedure_date and (procedure is None or p.kind == procedure)]
        if len(procs) > 1:
            kinds = ", ".join(sorted(p.kind for p in procs))
            raise StoreError(f"patient {patient!r} has several procedures on {procedure_date} ({kinds}); name one")
        if procs:
            proc = procs[0]
        else:
            proc = Procedure(kind=procedure or "selective_neurectomy", date=procedure_date)
            pat.procedures.append(proc)
            s.flush()
            refresh_timeline(s, pat)
        old = s.scalar(
            select(StimulationMap).where(
                StimulationMap.procedure_id == proc.id,
                StimulationMap.source_sha256 == result.source_sha256,
                StimulationMap.side == result.side,
            )
        )
        if old is not None:
            s.delete(old)
            s.flush()
        names = [Path(x).name for x in result.sources]
        smap = StimulationMap(
            procedure=proc, source_sha256=result.source_sha256, source_name=", ".join(names)[:255],
            side=result.side, mirrored=bool(result.mirrored), mm_per_px=num(result.mm_per_px),
            warnings=json.dumps(list(result.warnings)), algorithm_version=ALGORITHM_VERSION,
        )
        s.add(smap)
        for k, b in enumerate(result.branches):
            row = StimulationBranch(
                map=smap, position=k, branch=b.branch, movement_class=b.movement_class, rank=int(b.rank),
                preserve=bool(b.preserve), stim_s=num(b.stim_s), peak_s=num(b.peak_s),
                onset_latency_ms=num(b.onset_latency_ms), quality=b.quality,
                quality_flags=json.dumps(list(b.quality_flags)), explanation=b.explanation,
            )
            s.add(row)
            for m in b.movements:
                s.add(StimulationMovement(branch_row=row, name=m.name, value=num(m.value), unit=m.unit,
                                          direction_deg=num(m.direction_deg)))
    return len(result.branches)


def open_store(
    database: str | os.PathLike[str] | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    migrate: bool = True,
) -> Store:
    """Open (and by default migrate to the newest schema) the database.

    Parameters
    ----------
    database : str or path, optional
        SQLAlchemy URL or SQLite file path; default ``SYMMETRY_DATABASE_URL``,
        else ``SYMMETRY_HOME/symmetry.sqlite3``.
    home : path, optional
        Overrides ``SYMMETRY_HOME`` (media copies go to ``home/media``).
    migrate : bool
        Run ``alembic upgrade head`` (default). Without it an outdated schema
        raises.

    Raises
    ------
    StoreError
        The database cannot be reached or migrated, or its schema is newer
        than this version of symmetry knows.
    """
    home_path = Path(home).expanduser() if home is not None else symmetry_home()
    url = resolve_database_url(database, home=home_path)
    try:
        engine = _make_engine(url)
    except Exception as exc:  # missing driver, bad options
        raise StoreError(f"cannot use database {url.render_as_string(hide_password=True)}: {exc}") from None
    store = Store(url, home_path, engine)
    from .migrations import check_current, upgrade

    try:
        if migrate:
            upgrade(engine)
        else:
            check_current(engine)
    except StoreError:
        engine.dispose()
        raise
    except Exception as exc:
        engine.dispose()
        raise StoreError(f"cannot open database {store.display_url}: {type(exc).__name__}: {exc}") from None
    return store


# --------------------------------------------------------------------------- export


def export_frame(store: Store, patient: str | None = None) -> pd.DataFrame:
    """The tidy export: exactly :data:`EXPORT_COLUMNS`, one row per stored measurement."""
    return store.measurements(patient)[list(EXPORT_COLUMNS)].reset_index(drop=True)


_EXPORT_FORMATS = ("csv", "parquet", "xlsx")


def write_export(frame: pd.DataFrame, fmt: str, out: str | os.PathLike[str] | Any) -> None:
    """Write an export frame as ``csv``, ``parquet`` or ``xlsx`` to a path or binary/text stream.

    Raises
    ------
    ValueError
        Unknown format.
    """
    if fmt not in _EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(_EXPORT_FORMATS)}")
    if fmt == "csv":
        frame.to_csv(out, index=False)
    elif fmt == "parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_excel(out, index=False, sheet_name="measurements")


def read_export(path: str | os.PathLike[str], fmt: str | None = None) -> pd.DataFrame:
    """Read an export written by :func:`write_export` back with the same dtypes."""
    fmt = fmt or Path(path).suffix.lstrip(".").lower()
    if fmt == "csv":
        frame = pd.read_csv(path, keep_default_na=False, na_values={"value": [""], "days_from_procedure": [""]})
    elif fmt == "parquet":
        frame = pd.read_parquet(path)
    elif fmt == "xlsx":
        frame = pd.read_excel(path, sheet_name="measurements", keep_default_na=False,
                              na_values={"value": [""], "days_from_procedure": [""]})
    else:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(_EXPORT_FORMATS)}")
    frame["visit_date"] = pd.to_datetime(frame["visit_date"]).dt.date
    frame["days_from_procedure"] = frame["days_from_procedure"].astype("Int64")
    frame["value"] = frame["value"].astype(float)
    for col in ("patient", "cohort", "phase", "expression", "measure", "side", "unit"):
        frame[col] = frame[col].astype(object).where(frame[col].notna(), "").astype(str)
    frame["phase"] = frame["phase"].where(frame["phase"] != "", None)
    return frame
