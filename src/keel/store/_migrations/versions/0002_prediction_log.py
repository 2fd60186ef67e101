"""The model server's prediction log: Parquet segments of logged predictions, and files of
delayed ground-truth labels.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SHA = sa.String(64)


def _col(name, type_, *args, **kw):
    kw.setdefault("nullable", False)
    return sa.Column(name, type_, *args, **kw)


def upgrade() -> None:
    op.create_table(
        "prediction_segments",
        _col("id", sa.Integer, primary_key=True, autoincrement=True),
        _col("model", sa.String(200)),
        _col("version", sa.Integer),
        _col("sha", SHA),
        _col("n_rows", sa.BigInteger),
        _col("ts_min", sa.Float),
        _col("ts_max", sa.Float),
        _col("created_at", sa.Float),
    )
    op.create_index("ix_prediction_segments_model_ts", "prediction_segments", ["model", "ts_max"])
    op.create_table(
        "prediction_labels",
        _col("id", sa.Integer, primary_key=True, autoincrement=True),
        _col("sha", SHA),
        _col("n_rows", sa.BigInteger),
        _col("created_at", sa.Float),
        _col("source_uri", sa.Text),
        _col("model", sa.String(200), nullable=True),
    )
    op.create_index("ix_prediction_labels_sha", "prediction_labels", ["sha"])


def downgrade() -> None:
    op.drop_table("prediction_labels")
    op.drop_table("prediction_segments")
