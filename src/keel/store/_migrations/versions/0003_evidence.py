"""Audit evidence: one versioned JSON document per audit of a model version (a blob), and
the gate outcomes recorded when an alias moves.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SHA = sa.String(64)


def _col(name, type_, *args, **kw):
    kw.setdefault("nullable", False)
    return sa.Column(name, type_, *args, **kw)


def upgrade() -> None:
    op.create_table(
        "evidence",
        _col("id", sa.Integer, primary_key=True, autoincrement=True),
        _col("name", sa.String(200)),
        _col("version", sa.Integer),
        _col("sha", SHA),
        _col("format", sa.Integer),
        _col("sections", sa.Text),
        _col("created_at", sa.Float),
        _col("created_by", sa.String(200)),
    )
    op.create_index("ix_evidence_model", "evidence", ["name", "version"])


def downgrade() -> None:
    op.drop_table("evidence")
