"""The metadata tables, as SQLAlchemy Core objects for queries.

The schema itself is created and changed only by the Alembic migrations in ``_migrations``;
a test checks that the migrated database matches these definitions.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

SHA = String(64)

sources = Table(
    "sources",
    metadata,
    Column("sha", SHA, primary_key=True),
    Column("uri", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sha", SHA, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("n_rows", BigInteger, nullable=False),
    Column("n_cols", Integer, nullable=False),
    Column("schema_json", Text, nullable=False),
    Column("profile_sha", SHA, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("name", "version", name="uq_datasets_name_version"),
)
Index("ix_datasets_sha", datasets.c.sha)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("experiment", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("wall_time", Float, nullable=True),
    Column("seed", Integer, nullable=True),
    Column("git_commit", String(64), nullable=True),
    Column("env_json", Text, nullable=False),
    Column("tags_json", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    # 0005: who writes the run, and when it last showed a sign of life
    Column("pid", Integer, nullable=True),
    Column("host", String(255), nullable=True),
    Column("heartbeat_at", Float, nullable=True),
    Column("status_reason", Text, nullable=True),
)
Index("ix_runs_experiment", runs.c.experiment)
Index("ix_runs_status", runs.c.status)

params = Table(
    "params",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("value", Float, nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("ts", Float, nullable=False),
)
Index("ix_metrics_run_key_step", metrics.c.run_id, metrics.c.key, metrics.c.step)

artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.id"), primary_key=True),
    Column("name", String(500), primary_key=True),
    Column("sha", SHA, nullable=False),
    Column("size", BigInteger, nullable=False),
)

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("description", Text, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("name", String(200), ForeignKey("registered_models.name"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("run_id", String(32), ForeignKey("runs.id"), nullable=True),
    Column("artifact_sha", SHA, nullable=False),
    Column("flavor", String(50), nullable=False),
    Column("task", String(50), nullable=False),
    Column("input_schema_json", Text, nullable=False),
    Column("output_schema_json", Text, nullable=False),
    Column("metrics_json", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
)

aliases = Table(
    "aliases",
    metadata,
    Column("name", String(200), ForeignKey("registered_models.name"), primary_key=True),
    Column("alias", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
)

alias_events = Table(
    "alias_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("alias", String(100), nullable=False),
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("who", String(200), nullable=False),
    Column("at", Float, nullable=False),
    Column("why", Text, nullable=False),
)
Index("ix_alias_events_name", alias_events.c.name, alias_events.c.alias)

model_tags = Table(
    "model_tags",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

lineage = Table(
    "lineage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("child_kind", String(20), nullable=False),
    Column("child_id", String(300), nullable=False),
    Column("parent_kind", String(20), nullable=False),
    Column("parent_id", String(300), nullable=False),
    Column("role", String(50), nullable=False),
    UniqueConstraint(
        "child_kind", "child_id", "parent_kind", "parent_id", "role", name="uq_lineage_edge"
    ),
)
Index("ix_lineage_child", lineage.c.child_kind, lineage.c.child_id)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(50), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("payload_json", Text, nullable=False),
    Column("at", Float, nullable=False),
)
Index("ix_events_kind", events.c.kind)

# -- 0002: the model server's prediction log ------------------------------------------------

prediction_segments = Table(
    "prediction_segments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sha", SHA, nullable=False),
    Column("n_rows", BigInteger, nullable=False),
    Column("ts_min", Float, nullable=False),
    Column("ts_max", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)
Index("ix_prediction_segments_model_ts", prediction_segments.c.model, prediction_segments.c.ts_max)

prediction_labels = Table(
    "prediction_labels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha", SHA, nullable=False),
    Column("n_rows", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("source_uri", Text, nullable=False),
    Column("model", String(200), nullable=True),
)
Index("ix_prediction_labels_sha", prediction_labels.c.sha)

evidence = Table(
    "evidence",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("sha", SHA, nullable=False),
    Column("format", Integer, nullable=False),
    Column("sections", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(200), nullable=False),
)
Index("ix_evidence_model", evidence.c.name, evidence.c.version)

# -- 0004: pipeline runs and their steps (the step cache) ------------------------------------

pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pipeline", String(200), nullable=False),
    Column("spec_sha", SHA, nullable=False),
    Column("status", String(20), nullable=False),
    Column("executor", String(20), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("created_by", String(200), nullable=False),
)
Index("ix_pipeline_runs_pipeline", pipeline_runs.c.pipeline)

pipeline_steps = Table(
    "pipeline_steps",
    metadata,
    Column("run_id", String(32), ForeignKey("pipeline_runs.id"), primary_key=True),
    Column("step", String(100), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("kind", String(20), nullable=False),
    Column("key", SHA, nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("output_json", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("source_run", String(32), nullable=True),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
)
Index("ix_pipeline_steps_key", pipeline_steps.c.key, pipeline_steps.c.status)
