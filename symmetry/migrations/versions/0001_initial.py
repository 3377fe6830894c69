"""initial schema: patients, procedures, visits, recordings, measurements, clinician scores

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25

Hand-checked autogenerate output; tests/test_store.py asserts that the models and
this migration agree (Alembic's compare_metadata finds no difference) on SQLite
and PostgreSQL.
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('patient',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('affected_side', sa.String(length=5), nullable=True),
    sa.Column('aetiology', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("aetiology IN ('bells_palsy', 'ramsay_hunt', 'acoustic_neuroma', 'nerve_repair', 'trauma', 'other')", name=op.f('ck_patient_aetiology')),
    sa.CheckConstraint("affected_side IN ('left', 'right')", name=op.f('ck_patient_affected_side')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient')),
    sa.UniqueConstraint('code', name=op.f('uq_patient_code'))
    )
    op.create_table('patient_cohort',
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('label', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_patient_cohort_patient_id_patient'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('patient_id', 'label', name=op.f('pk_patient_cohort'))
    )
    op.create_table('procedure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('date', sa.Date(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_procedure_patient_id_patient'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_procedure')),
    sa.UniqueConstraint('patient_id', 'kind', 'date', name=op.f('uq_procedure_patient_id_kind_date'))
    )
    op.create_index(op.f('ix_procedure_patient_id'), 'procedure', ['patient_id'], unique=False)
    op.create_table('visit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('date', sa.Date(), nullable=False),
    sa.Column('procedure_id', sa.Integer(), nullable=True),
    sa.Column('days_from_procedure', sa.Integer(), nullable=True),
    sa.Column('phase', sa.String(length=10), nullable=True),
    sa.CheckConstraint("phase IN ('pre-op', 'early', 'settling', 'late')", name=op.f('ck_visit_phase')),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_visit_patient_id_patient'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['procedure_id'], ['procedure.id'], name=op.f('fk_visit_procedure_id_procedure'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visit')),
    sa.UniqueConstraint('patient_id', 'date', name=op.f('uq_visit_patient_id_date'))
    )
    op.create_index(op.f('ix_visit_patient_id'), 'visit', ['patient_id'], unique=False)
    op.create_table('clinician_score',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('instrument', sa.String(length=24), nullable=False),
    sa.Column('item', sa.String(length=48), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('rater', sa.String(length=64), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("instrument IN ('eface', 'sunnybrook', 'house_brackmann', 'face', 'saq')", name=op.f('ck_clinician_score_instrument')),
    sa.ForeignKeyConstraint(['visit_id'], ['visit.id'], name=op.f('fk_clinician_score_visit_id_visit'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_clinician_score')),
    sa.UniqueConstraint('visit_id', 'instrument', 'item', 'rater', name=op.f('uq_clinician_score_visit_id_instrument_item_rater'))
    )
    op.create_index(op.f('ix_clinician_score_visit_id'), 'clinician_score', ['visit_id'], unique=False)
    op.create_table('recording',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('visit_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('expression', sa.String(length=32), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('mirrored', sa.Boolean(), nullable=False),
    sa.Column('media_path', sa.String(length=255), nullable=False),
    sa.Column('original_name', sa.String(length=255), nullable=True),
    sa.Column('width_px', sa.Integer(), nullable=True),
    sa.Column('height_px', sa.Integer(), nullable=True),
    sa.Column('mm_per_px', sa.Float(), nullable=True),
    sa.Column('mm_per_px_uncertainty', sa.Float(), nullable=True),
    sa.Column('scale_source', sa.String(length=16), nullable=True),
    sa.Column('head_yaw_deg', sa.Float(), nullable=True),
    sa.Column('head_pitch_deg', sa.Float(), nullable=True),
    sa.Column('head_roll_deg', sa.Float(), nullable=True),
    sa.Column('warnings', sa.Text(), nullable=False),
    sa.Column('refined_points', sa.Text(), nullable=False),
    sa.Column('rest_recording_id', sa.Integer(), nullable=True),
    sa.Column('measured_affected_side', sa.String(length=5), nullable=True),
    sa.Column('algorithm_version', sa.String(length=16), nullable=False),
    sa.Column('measured_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('photo', 'video')", name=op.f('ck_recording_kind')),
    sa.ForeignKeyConstraint(['rest_recording_id'], ['recording.id'], name=op.f('fk_recording_rest_recording_id_recording'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['visit_id'], ['visit.id'], name=op.f('fk_recording_visit_id_visit'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_recording')),
    sa.UniqueConstraint('sha256', name=op.f('uq_recording_sha256'))
    )
    op.create_index(op.f('ix_recording_visit_id'), 'recording', ['visit_id'], unique=False)
    op.create_table('measurement',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('recording_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('side', sa.String(length=8), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('unit', sa.String(length=8), nullable=False),
    sa.Column('algorithm_version', sa.String(length=16), nullable=False),
    sa.CheckConstraint("side IN ('left', 'right', 'midline')", name=op.f('ck_measurement_side')),
    sa.ForeignKeyConstraint(['recording_id'], ['recording.id'], name=op.f('fk_measurement_recording_id_recording'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_measurement')),
    sa.UniqueConstraint('recording_id', 'name', 'side', name=op.f('uq_measurement_recording_id_name_side'))
    )
    op.create_index(op.f('ix_measurement_recording_id'), 'measurement', ['recording_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_measurement_recording_id'), table_name='measurement')
    op.drop_table('measurement')
    op.drop_index(op.f('ix_recording_visit_id'), table_name='recording')
    op.drop_table('recording')
    op.drop_index(op.f('ix_clinician_score_visit_id'), table_name='clinician_score')
    op.drop_table('clinician_score')
    op.drop_index(op.f('ix_visit_patient_id'), table_name='visit')
    op.drop_table('visit')
    op.drop_index(op.f('ix_procedure_patient_id'), table_name='procedure')
    op.drop_table('procedure')
    op.drop_table('patient_cohort')
    op.drop_table('patient')
