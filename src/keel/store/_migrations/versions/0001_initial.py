"""The first schema: sources, datasets, runs and their tracking, the registry, lineage, events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SHA = sa.String(64)


def _col(name, type_, *args, **kw):
    kw.setdefault("nullable", False)
    return sa.Column(name, type_, *args, **kw)


def upgrade() -> None:
    op.create_table(
        "sources",
        _col("sha", SHA, primary_key=True),
        _col("uri", sa.Text),
        _col("size", sa.BigInteger),
        _col("created_at", sa.Float),
    )
    op.create_table(
        "datasets",
        _col("id", sa.Integer, primary_key=True, autoincrement=True),
        _col("name", sa.String(200)),
        _col("version", sa.Integer),
        _col("sha", SHA),
        _col("kind", sa.String(20)),
        _col("n_rows", sa.BigInteger),
        _col("n_cols", sa.Integer),
        _col("schema_json", sa.Text),
        _col("profile_sha", SHA, nullable=True),
        _col("created_at", sa.Float),
        _col("created_by", sa.String(200)),
        sa.UniqueConstraint("name", "version", name="uq_datasets_name_version"),
    )
    op.create_index("ix_datasets_sha", "datasets", ["sha"])
    op.create_table(
        "runs",
        _col("id", sa.String(32), primary_key=True),
        _col("experiment", sa.String(200)),
        _col("status", sa.String(20)),
        _col("created_at", sa.Float),
        _col("ended_at", sa.Float, nullable=True),
        _col("wall_time", sa.Float, nullable=True),
        _col("seed", sa.Integer, nullable=True),
        _col("git_commit", sa.String(64), nullable=True),
        _col("env_json", sa.Text),
        _col("tags_json", sa.Text),
        _col("created_by", sa.String(200)),
    )
    op.create_index("ix_runs_experiment", "runs", ["experiment"])
    op.create_table(
        "params",
        _col("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        _col("key", sa.String(250), primary_key=True),
        _col("value", sa.Text),
    )
    op.create_table(
        "metrics",
        _col("id", sa.Integer, primary_key=True, autoincrement=True),
        _col("run_id", sa.String(32), sa.ForeignKey("runs.id")),
        _col("key", sa.String(250)),
        _col("value", sa.Float),
        _col("step", sa.BigInteger),
        _col("ts", sa.Float),
    )
    op.create_index("ix_metrics_run_key_step", "metrics", ["run_id", "key", "step"])
    op.create_table(
        "artifacts",
        _col("run_id", sa.String(32), sa.ForeignKey("runs.id"), primary_key=True),
        _col("name", sa.String(500), primary_key=True),
        _col("sha", SHA),
        _col("size", sa.BigInteger),
    )
    _registry_tables()
    op.create_table(
        "lineage",
        _col("id", sa.Integer, primary_key=True, autoincrement=True),
        _col("child_kind", sa.String(20)),
        _col("child_id", sa.String(300)),
        _col("parent_kind", sa.String(20)),
        _col("parent_id", sa.String(300)),
        _col("role", sa.String(50)),
        sa.UniqueConstraint(
            "child_kind", "child_id", "parent_kind", "parent_id", "role", name="uq_lineage_edge"
        ),
    )
    op.create_index("ix_lineage_child", "lineage", ["child_kind", "child_id"])
    op.create_table(
        "events",
        _col("id", sa.Integer, primary_key=True, autoincrement=True),
        _col("kind", sa.String(50)),
        _col("subject", sa.String(300)),
        _col("payload_json", sa.Text),
        _col("at", sa.Float),
    )
    op.create_index("ix_events_kind", "events", ["kind"])


def _registry_tables() -> None:
    op.create_table(
        "registered_models",
        _col("name", sa.String(200), primary_key=True),
        _col("created_at", sa.Float),
        _col("description", sa.Text),
    )
    op.create_table(
        "model_versions",
        _col("name", sa.String(200), sa.ForeignKey("registered_models.name"), primary_key=True),
        _col("version", sa.Integer, primary_key=True),
        _col("run_id", sa.String(32), sa.ForeignKey("runs.id"), nullable=True),
        _col("artifact_sha", SHA),
        _col("flavor", sa.String(50)),
        _col("task", sa.String(50)),
        _col("input_schema_json", sa.Text),
        _col("output_schema_json", sa.Text),
        _col("metrics_json", sa.Text),
        _col("description", sa.Text),
        _col("created_at", sa.Float),
        _col("created_by", sa.String(200)),
    )
    op.create_table(
        "aliases",
        _col("name", sa.String(200), sa.ForeignKey("registered_models.name"), primary_key=True),
        _col("alias", sa.String(100), primary_key=True),
        _col("version", sa.Integer),
    )
    op.create_table(
        "alias_events",
        _col("id", sa.Integer, primary_key=True, autoincrement=True),
        _col("name", sa.String(200)),
        _col("alias", sa.String(100)),
        _col("from_version", sa.Integer, nullable=True),
        _col("to_version", sa.Integer, nullable=True),
        _col("who", sa.String(200)),
        _col("at", sa.Float),
        _col("why", sa.Text),
    )
    op.create_index("ix_alias_events_name", "alias_events", ["name", "alias"])
    op.create_table(
        "model_tags",
        _col("name", sa.String(200), primary_key=True),
        _col("version", sa.Integer, primary_key=True),
        _col("key", sa.String(250), primary_key=True),
        _col("value", sa.Text),
    )


def downgrade() -> None:
    for table in [
        "events",
        "lineage",
        "model_tags",
        "alias_events",
        "aliases",
        "model_versions",
        "registered_models",
        "artifacts",
        "metrics",
        "params",
        "runs",
        "datasets",
        "sources",
    ]:
        op.drop_table(table)
