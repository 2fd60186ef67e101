import multiprocessing as mp
import re
import time

import pytest

from keel import registry
from keel.errors import InvalidInput, NotFound
from keel.store import Store
from tests.registry._workers import register_one


def _register(store: Store, name: str = "m", **kw):
    sha = store.blobs.put_bytes(kw.pop("payload", b"model bytes"))
    return registry.register(
        store,
        name,
        artifact_sha=sha,
        flavor="sklearn",
        task="classification",
        input_schema=[{"name": "x", "type": "float"}],
        output_schema={"task": "classification", "classes": [0, 1]},
        **kw,
    )


def test_versions_are_numbered_per_name(any_store):
    assert [_register(any_store, "a").version for _ in range(3)] == [1, 2, 3]
    assert _register(any_store, "b").version == 1
    assert registry.get_version(any_store, "a").version == 3
    assert registry.get_version(any_store, "a/2").version == 2
    listed = {m["name"]: m for m in registry.list_models(any_store)}
    assert listed["a"]["versions"] == 3 and listed["b"]["latest"] == 1


def test_alias_moves_are_audited(any_store):
    v1, v2 = _register(any_store), _register(any_store)
    registry.set_alias(any_store, v1.ref, "production", why="first release", who="ana")
    assert registry.get_version(any_store, "m@production").version == 1
    registry.set_alias(any_store, v2.ref, "production", why="better AUC", who="ben")
    assert registry.get_version(any_store, "m@production").version == 2
    registry.remove_alias(any_store, "m", "production", why="rollback drill", who="cy")
    with pytest.raises(NotFound, match="no alias 'production'"):
        registry.get_version(any_store, "m@production")
    history = registry.alias_history(any_store, "m")
    assert [(h["from_version"], h["to_version"], h["who"], h["why"]) for h in history] == [
        (None, 1, "ana", "first release"),
        (1, 2, "ben", "better AUC"),
        (2, None, "cy", "rollback drill"),
    ]


def test_aliases_and_tags_show_on_versions(any_store):
    v = _register(any_store)
    registry.set_alias(any_store, v.ref, "candidate")
    registry.set_tag(any_store, v.ref, "owner", "risk-team")
    registry.set_tag(any_store, v.ref, "owner", "credit-team")
    got = registry.get_version(any_store, "m@candidate")
    assert got.aliases == ["candidate"] and got.tags == {"owner": "credit-team"}


@pytest.mark.parametrize(
    ("ref", "error", "needle"),
    [
        ("nope", NotFound, "'nope' is not registered"),
        ("m/7", NotFound, "has no version 7 (newest is 1)"),
        ("m/x", InvalidInput, "positive integer"),
        ("m@1bad", InvalidInput, "not a valid alias"),
        ("../etc", InvalidInput, "positive integer"),
        ("bad name!", InvalidInput, "model name"),
    ],
)
def test_bad_references_are_named(store, ref, error, needle):
    _register(store)
    with pytest.raises(error, match=re.escape(needle)):
        registry.get_version(store, ref)


def test_alias_needs_an_explicit_version(store):
    _register(store)
    with pytest.raises(InvalidInput, match="give the version to point at, e.g. m/3"):
        registry.set_alias(store, "m", "production")
    assert registry.alias_history(store, "m") == []


def test_bad_registration_changes_nothing(store):
    with pytest.raises(NotFound, match="artifact"):
        registry.register(
            store,
            "m",
            artifact_sha="0" * 64,
            flavor="sklearn",
            task="classification",
            input_schema=[],
            output_schema={},
        )
    with pytest.raises(NotFound, match="run 'missing'"):
        _register(store, run_id="missing")
    assert registry.list_models(store) == []
    with pytest.raises(InvalidInput, match="alias"):
        registry.set_alias(store, _register(store).ref, "no spaces allowed")
    assert registry.alias_history(store, "m") == []


def test_lineage_edge_from_model_to_run(store):
    from keel.store import lineage
    from keel.train import start_run

    run = start_run(store, "e")
    v = _register(store, run_id=run.id)
    tree = lineage(store, "model", v.ref)
    assert ("run", run.id) in {(n.kind, n.id) for n in tree.parents}


def _concurrent(url: str, blob_root: str, n: int = 16) -> list[int]:
    ctx = mp.get_context("spawn")
    start_at = time.time() + 4.0
    with ctx.Pool(n) as pool:
        return sorted(pool.starmap(register_one, [(url, blob_root, start_at)] * n))


@pytest.mark.slow
def test_16_concurrent_registrations_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path}/store.db"
    Store.open(url, tmp_path / "blobs").close()
    assert _concurrent(url, str(tmp_path / "blobs")) == list(range(1, 17))


@pytest.mark.slow
@pytest.mark.postgres
def test_16_concurrent_registrations_postgres(pg_url, tmp_path):
    Store.open(pg_url, tmp_path / "blobs").close()
    assert _concurrent(pg_url, str(tmp_path / "blobs")) == list(range(1, 17))
