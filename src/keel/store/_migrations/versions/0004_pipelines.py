"""Pipelines: one row per pipeline run and one per step of it; a step's row keeps the cache
key of its inputs and its small JSON output, so a later run reuses what did not change.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SHA = sa.String(64)


def _col(name, type_, *args, **kw):
    kw.setdefault("nullable", False)
    return sa.Column(name, type_, *args, **kw)


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        _col("id", sa.String(32), primary_key=True),
        _col("pipeline", sa.String(200)),
        _col("spec_sha", SHA),
        _col("status", sa.String(20)),
        _col("executor", sa.String(20)),
        _col("created_at", sa.Float),
        _col("ended_at", sa.Float, nullable=True),
        _col("created_by", sa.String(200)),
    )
    op.create_index("ix_pipeline_runs_pipeline", "pipeline_runs", ["pipeline"])
    op.create_table(
        "pipeline_steps",
        _col("run_id", sa.String(32), sa.ForeignKey("pipeline_runs.id"), primary_key=True),
        _col("step", sa.String(100), primary_key=True),
        _col("position", sa.Integer),
        _col("kind", sa.String(20)),
        _col("key", SHA),
        _col("status", sa.String(20)),
        _col("attempts", sa.Integer),
        _col("seconds", sa.Float),
        _col("output_json", sa.Text, nullable=True),
        _col("error", sa.Text, nullable=True),
        _col("source_run", sa.String(32), nullable=True),
        _col("started_at", sa.Float, nullable=True),
        _col("ended_at", sa.Float, nullable=True),
    )
    op.create_index("ix_pipeline_steps_key", "pipeline_steps", ["key", "status"])


def downgrade() -> None:
    op.drop_table("pipeline_steps")
    op.drop_table("pipeline_runs")
