"""Run liveness: the writer's pid and host and a heartbeat on each run, so a run whose
process died (SIGKILL, power loss) can be marked failed instead of staying ``running``, and
the reason it was marked so.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS = ("pid", "host", "heartbeat_at", "status_reason")


def upgrade() -> None:
    op.add_column("runs", sa.Column("pid", sa.Integer, nullable=True))
    op.add_column("runs", sa.Column("host", sa.String(255), nullable=True))
    op.add_column("runs", sa.Column("heartbeat_at", sa.Float, nullable=True))
    op.add_column("runs", sa.Column("status_reason", sa.Text, nullable=True))
    op.create_index("ix_runs_status", "runs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_runs_status", "runs")
    for name in reversed(_COLUMNS):
        op.drop_column("runs", name)
