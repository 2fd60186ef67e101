"""The model registry: versions numbered per name, aliases with an audit trail, tags.

A reference to a model is ``name`` (its newest version), ``name/3`` (version 3) or
``name@production`` (what the alias points at).
"""

from __future__ import annotations

import inspect
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from keel import config, plugins
from keel.errors import InvalidInput, NotFound
from keel.store import Store, _tables

__all__ = [
    "ModelVersion",
    "alias_history",
    "check_name",
    "get_version",
    "list_models",
    "list_versions",
    "load",
    "parse_ref",
    "register",
    "remove_alias",
    "set_alias",
    "set_tag",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,99}$")
t_models, t_versions = _tables.registered_models, _tables.model_versions
t_alias, t_events, t_tags = _tables.aliases, _tables.alias_events, _tables.model_tags


@dataclass
class ModelVersion:
    name: str
    version: int
    artifact_sha: str
    flavor: str
    task: str
    run_id: str | None
    input_schema: list[dict[str, Any]]
    output_schema: dict[str, Any]
    metrics: dict[str, float]
    description: str
    created_at: float
    created_by: str
    aliases: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ref": self.ref}


def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(
            f"{what}: expected letters, digits, '_', '-', '.' (up to 200, starting with a "
            f"letter or digit), got {name!r}"
        )
    return name


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """``name`` → (name, None, None); ``name/3`` → (name, 3, None); ``name@prod`` → alias."""
    if "@" in ref:
        name, alias = ref.split("@", 1)
        if not _ALIAS.match(alias):
            raise InvalidInput(f"model reference {ref!r}: alias {alias!r} is not a valid alias")
        return check_name(name), None, alias
    if "/" in ref:
        name, v = ref.rsplit("/", 1)
        if not v.isdigit() or int(v) < 1:
            raise InvalidInput(
                f"model reference {ref!r}: expected name/VERSION with a positive integer, got {v!r}"
            )
        return check_name(name), int(v), None
    return check_name(ref), None, None


def register(
    store: Store,
    name: str,
    *,
    artifact_sha: str,
    flavor: str,
    task: str,
    input_schema: list[dict[str, Any]],
    output_schema: dict[str, Any],
    run_id: str | None = None,
    metrics: dict[str, float] | None = None,
    description: str = "",
) -> ModelVersion:
    """Add the next version of ``name`` (1, 2, 3, … even under concurrent registrations)."""
    check_name(name)
    if not store.blobs.exists(artifact_sha):
        raise NotFound(f"artifact {artifact_sha[:12]}… is not in the store's blobs")
    now, who = time.time(), config.user()
    with store.write() as conn:
        _lock_model_row(conn, store.dialect, name, now)
        if (
            run_id is not None
            and conn.execute(select(_tables.runs.c.id).where(_tables.runs.c.id == run_id)).first()
            is None
        ):
            raise NotFound(f"run {run_id!r} does not exist")
        latest = conn.execute(
            select(func.max(t_versions.c.version)).where(t_versions.c.name == name)
        ).scalar()
        version = int(latest or 0) + 1
        conn.execute(
            insert(t_versions).values(
                name=name,
                version=version,
                run_id=run_id,
                artifact_sha=artifact_sha,
                flavor=flavor,
                task=task,
                input_schema_json=json.dumps(input_schema),
                output_schema_json=json.dumps(output_schema),
                metrics_json=json.dumps(metrics or {}),
                description=description,
                created_at=now,
                created_by=who,
            )
        )
        child = ("model", f"{name}/{version}")
        if run_id is not None:
            store.add_edge(conn, child, ("run", run_id), "trained_by")
        store.add_edge(conn, child, ("blob", artifact_sha), "artifact")
    return get_version(store, f"{name}/{version}")


def _lock_model_row(conn: Connection, dialect: str, name: str, now: float) -> None:
    """Make sure the registered model exists, and hold its row until the transaction ends."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(
            pg_insert(t_models)
            .values(name=name, created_at=now, description="")
            .on_conflict_do_nothing()
        )
        conn.execute(select(t_models.c.name).where(t_models.c.name == name).with_for_update())
        return
    # SQLite: BEGIN IMMEDIATE already serialises writers.
    if conn.execute(select(t_models.c.name).where(t_models.c.name == name)).first() is None:
        conn.execute(insert(t_models).values(name=name, created_at=now, description=""))


def _row_to_version(conn: Connection, row: Any) -> ModelVersion:
    aliases = conn.execute(
        select(t_alias.c.alias).where(t_alias.c.name == row.name, t_alias.c.version == row.version)
    ).scalars()
    tags = conn.execute(
        select(t_tags.c.key, t_tags.c.value).where(
            t_tags.c.name == row.name, t_tags.c.version == row.version
        )
    ).all()
    return ModelVersion(
        name=row.name,
        version=row.version,
        artifact_sha=row.artifact_sha,
        flavor=row.flavor,
        task=row.task,
        run_id=row.run_id,
        input_schema=json.loads(row.input_schema_json),
        output_schema=json.loads(row.output_schema_json),
        metrics=json.loads(row.metrics_json),
        description=row.description,
        created_at=row.created_at,
        created_by=row.created_by,
        aliases=sorted(aliases),
        tags=dict(tags),
    )


def _resolve(conn: Connection, ref: str) -> Any:
    name, version, alias = parse_ref(ref)
    if alias is not None:
        version = conn.execute(
            select(t_alias.c.version).where(t_alias.c.name == name, t_alias.c.alias == alias)
        ).scalar()
        if version is None:
            known = conn.execute(
                select(t_versions.c.version).where(t_versions.c.name == name).limit(1)
            ).scalar()
            if known is None:
                names = conn.execute(select(t_versions.c.name).distinct().limit(20)).scalars()
                listed = ", ".join(sorted(names)) or "none yet"
                raise NotFound(f"no model named {name!r} is registered; models: {listed}")
            raise NotFound(f"model {name!r} has no alias {alias!r}")
    q = select(t_versions).where(t_versions.c.name == name)
    q = (
        q.where(t_versions.c.version == version)
        if version
        else q.order_by(t_versions.c.version.desc())
    )
    row = conn.execute(q.limit(1)).first()
    if row is None:
        latest = conn.execute(
            select(func.max(t_versions.c.version)).where(t_versions.c.name == name)
        ).scalar()
        if latest is not None:
            raise NotFound(f"model {name!r} has no version {version} (newest is {latest})")
        known = conn.execute(select(t_models.c.name)).scalars().all()
        hint = f"; known models: {', '.join(sorted(known)[:10])}" if known else ""
        raise NotFound(f"model {name!r} is not registered{hint}")
    return row


def get_version(store: Store, ref: str) -> ModelVersion:
    with store.read() as conn:
        return _row_to_version(conn, _resolve(conn, ref))


def load(store: Store, ref: str) -> Any:
    """The model behind ``ref``, built from its artifact without unpickling."""
    from keel.models import load_model

    return load_model(store.blobs, get_version(store, ref).artifact_sha)


def list_models(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute(
            select(
                t_versions.c.name,
                func.max(t_versions.c.version).label("latest"),
                func.count().label("versions"),
            )
            .group_by(t_versions.c.name)
            .order_by(t_versions.c.name)
        ).all()
        aliases = conn.execute(select(t_alias).order_by(t_alias.c.alias)).all()
    by_name: dict[str, dict[str, int]] = {}
    for a in aliases:
        by_name.setdefault(a.name, {})[a.alias] = a.version
    return [
        {
            "name": r.name,
            "latest": r.latest,
            "versions": r.versions,
            "aliases": by_name.get(r.name, {}),
        }
        for r in rows
    ]


def list_versions(store: Store, name: str) -> list[ModelVersion]:
    with store.read() as conn:
        rows = conn.execute(
            select(t_versions)
            .where(t_versions.c.name == check_name(name))
            .order_by(t_versions.c.version)
        ).all()
        if not rows:
            raise NotFound(f"model {name!r} is not registered")
        return [_row_to_version(conn, r) for r in rows]


def _run_alias_checks(
    store: Any, ref: str, alias: str, *, override: str | None, who: str | None
) -> tuple[list[str], list[tuple[str, str, dict[str, Any]]]]:
    """Run every ``alias_checks`` plug-in (keel.audit's gates among them, see
    :mod:`keel.plugins`); each raises to refuse the move. Returns the failed rules that
    ``override`` let through, and the events the checks asked to record with the move
    (a check that takes ``record`` appends them there instead of writing them itself, so
    that a move the store then refuses leaves no gate pass or override behind). With no
    check plugged in at all (a broken install), refuse: an alias must not move unchecked."""
    checks = plugins.plugins("alias_checks")
    if not checks:
        raise plugins.PluginMissing(
            f"alias {alias!r}: no alias checks are installed, so the gates cannot run; "
            "keel's package metadata is missing: reinstall keel (pip install -e .)"
        )
    overridden: list[str] = []
    record: list[tuple[str, str, dict[str, Any]]] = []
    for check in checks.values():
        kwargs: dict[str, Any] = {"override": override, "who": who}
        if _takes_record(check):
            kwargs["record"] = record
        overridden.extend(check(store, ref, alias, **kwargs) or [])
    return overridden, record


def _takes_record(check: Any) -> bool:
    try:
        return "record" in inspect.signature(check).parameters
    except (TypeError, ValueError):  # a callable with no signature to read
        return False


def set_alias(
    store: Store,
    ref: str,
    alias: str,
    *,
    why: str = "",
    who: str | None = None,
    override: str | None = None,
) -> ModelVersion:
    """Point ``alias`` at the version ``ref`` names; the move is recorded (who, when, why).

    An alias the project's audit policy gates (``production`` by default) moves only when
    the version's evidence passes the gates (see :mod:`keel.audit.gates`), or with
    ``override="reason"``, which is recorded."""
    if not _ALIAS.match(alias or ""):
        raise InvalidInput(
            f"alias: expected a letter then letters, digits, '_' or '-', got {alias!r}"
        )
    _, version, source_alias = parse_ref(ref)
    if version is None and source_alias is None:
        raise InvalidInput(
            f"alias: give the version to point at, e.g. {ref}/3 or {ref}@candidate; got {ref!r}"
        )
    overridden, events = _run_alias_checks(store, ref, alias, override=override, who=who)
    if overridden:
        why = f"{why} [gate override: {override}]".strip()
    with store.write() as conn:  # the checks' events land with the move, or not at all
        for kind, subject, payload in events:
            store.add_event(conn, kind, subject, payload)
        row = _resolve(conn, ref)
        old = conn.execute(
            select(t_alias.c.version).where(t_alias.c.name == row.name, t_alias.c.alias == alias)
        ).scalar()
        if old is None:
            conn.execute(insert(t_alias).values(name=row.name, alias=alias, version=row.version))
        else:
            conn.execute(
                update(t_alias)
                .where(t_alias.c.name == row.name, t_alias.c.alias == alias)
                .values(version=row.version)
            )
        _record_move(conn, row.name, alias, old, row.version, why, who)
    return get_version(store, f"{row.name}/{row.version}")


def remove_alias(
    store: Store, name: str, alias: str, *, why: str = "", who: str | None = None
) -> None:
    with store.write() as conn:
        old = conn.execute(
            select(t_alias.c.version).where(t_alias.c.name == name, t_alias.c.alias == alias)
        ).scalar()
        if old is None:
            raise NotFound(f"model {name!r} has no alias {alias!r}")
        conn.execute(t_alias.delete().where(t_alias.c.name == name, t_alias.c.alias == alias))
        _record_move(conn, name, alias, old, None, why, who)


def _record_move(
    conn: Connection,
    name: str,
    alias: str,
    old: int | None,
    new: int | None,
    why: str,
    who: str | None,
) -> None:
    conn.execute(
        insert(t_events).values(
            name=name,
            alias=alias,
            from_version=old,
            to_version=new,
            who=who or config.user(),
            at=time.time(),
            why=why,
        )
    )


def alias_history(store: Store, name: str) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute(
            select(t_events).where(t_events.c.name == name).order_by(t_events.c.id)
        ).all()
    return [dict(r._mapping) for r in rows]


def set_tag(store: Store, ref: str, key: str, value: str) -> None:
    if not key or len(key) > 250:
        raise InvalidInput(f"tag key: expected 1 to 250 characters, got {key!r}")
    with store.write() as conn:
        row = _resolve(conn, ref)
        where = (t_tags.c.name == row.name, t_tags.c.version == row.version, t_tags.c.key == key)
        conn.execute(t_tags.delete().where(*where))
        conn.execute(
            insert(t_tags).values(name=row.name, version=row.version, key=key, value=str(value))
        )
