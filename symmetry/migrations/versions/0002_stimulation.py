"""stimulation maps: the branch table of a selective-denervation session, linked to the procedure

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Tables ``stimulation_map`` (one per procedure, source hash and operated side),
``stimulation_branch`` (class, rank, preserve flag, latency, quality, explanation
per stimulated branch) and ``stimulation_movement`` (one row per branch x movement).
tests/test_store.py asserts that the models and the migrations agree.
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('stimulation_map',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('procedure_id', sa.Integer(), nullable=False),
    sa.Column('source_sha256', sa.String(length=64), nullable=False),
    sa.Column('source_name', sa.String(length=255), nullable=True),
    sa.Column('side', sa.String(length=5), nullable=False),
    sa.Column('mirrored', sa.Boolean(), nullable=False),
    sa.Column('mm_per_px', sa.Float(), nullable=True),
    sa.Column('warnings', sa.Text(), nullable=False),
    sa.Column('algorithm_version', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("side IN ('left', 'right')", name=op.f('ck_stimulation_map_side')),
    sa.ForeignKeyConstraint(['procedure_id'], ['procedure.id'], name=op.f('fk_stimulation_map_procedure_id_procedure'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stimulation_map')),
    sa.UniqueConstraint('procedure_id', 'source_sha256', 'side', name=op.f('uq_stimulation_map_procedure_id_source_sha256_side'))
    )
    op.create_index(op.f('ix_stimulation_map_procedure_id'), 'stimulation_map', ['procedure_id'], unique=False)
    op.create_table('stimulation_branch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('map_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('branch', sa.String(length=64), nullable=False),
    sa.Column('movement_class', sa.String(length=24), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('preserve', sa.Boolean(), nullable=False),
    sa.Column('stim_s', sa.Float(), nullable=True),
    sa.Column('peak_s', sa.Float(), nullable=True),
    sa.Column('onset_latency_ms', sa.Float(), nullable=True),
    sa.Column('quality', sa.String(length=16), nullable=False),
    sa.Column('quality_flags', sa.Text(), nullable=False),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.CheckConstraint("movement_class IN ('smile_agonist', 'smile_antagonist', 'ocular', 'lower_lip', 'mixed', 'none')", name=op.f('ck_stimulation_branch_movement_class')),
    sa.ForeignKeyConstraint(['map_id'], ['stimulation_map.id'], name=op.f('fk_stimulation_branch_map_id_stimulation_map'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stimulation_branch')),
    sa.UniqueConstraint('map_id', 'position', name=op.f('uq_stimulation_branch_map_id_position'))
    )
    op.create_index(op.f('ix_stimulation_branch_map_id'), 'stimulation_branch', ['map_id'], unique=False)
    op.create_table('stimulation_movement',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('branch_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('unit', sa.String(length=8), nullable=False),
    sa.Column('direction_deg', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['branch_id'], ['stimulation_branch.id'], name=op.f('fk_stimulation_movement_branch_id_stimulation_branch'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stimulation_movement')),
    sa.UniqueConstraint('branch_id', 'name', name=op.f('uq_stimulation_movement_branch_id_name'))
    )
    op.create_index(op.f('ix_stimulation_movement_branch_id'), 'stimulation_movement', ['branch_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_stimulation_movement_branch_id'), table_name='stimulation_movement')
    op.drop_table('stimulation_movement')
    op.drop_index(op.f('ix_stimulation_branch_map_id'), table_name='stimulation_branch')
    op.drop_table('stimulation_branch')
    op.drop_index(op.f('ix_stimulation_map_procedure_id'), table_name='stimulation_map')
    op.drop_table('stimulation_map')
