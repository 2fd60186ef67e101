"""Who did what (issue 16 point 5): every change to the shared store names its user, and
``keel log`` lists them; on PostgreSQL a read-only role reads but cannot move an alias."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from keel import registry
from keel.cli import main
from keel.data import ingest
from keel.datasets import adult
from keel.errors import KeelError
from keel.store import Store, activity
from keel.train import train


def _history(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """alice ingests, bob trains and registers twice, carol moves the alias with a reason."""
    csv = tmp_path / "adult.csv"
    adult("train").sample(400, random_state=0).to_csv(csv, index=False)
    monkeypatch.setenv("KEEL_USER", "alice")
    ingest(store, csv, name="adult")
    monkeypatch.setenv("KEEL_USER", "bob")
    for seed in (1, 2):
        train(store, "adult", "income", params={"n_estimators": 5}, seed=seed).register(
            store, "adult"
        )
    monkeypatch.setenv("KEEL_USER", "carol")
    registry.set_alias(store, "adult/1", "production", why="first release")
    registry.set_alias(store, "adult/2", "production", why="better AUC")


def test_every_change_names_its_user_newest_first(any_store, tmp_path, monkeypatch):
    _history(any_store, tmp_path, monkeypatch)
    found = activity(any_store)
    by = {(a.action, a.subject): a.who for a in found}
    assert by[("ingest", "adult/1")] == "alice"
    assert by[("register", "adult/1")] == "bob" and by[("register", "adult/2")] == "bob"
    assert by[("alias", "adult@production")] == "carol"
    runs = [a for a in found if a.action == "run"]
    assert len(runs) == 2 and {a.who for a in runs} == {"bob"}
    assert [a.at for a in found] == sorted((a.at for a in found), reverse=True)
    moves = [a.detail for a in found if a.action == "alias"]
    assert moves == ["1 → 2: better AUC", "- → 1: first release"]
    assert {a.who for a in activity(any_store, who="carol")} == {"carol"}
    assert len(activity(any_store, limit=2)) == 2
    with pytest.raises(KeelError, match="limit: expected a whole number ≥ 1, got 0"):
        activity(any_store, limit=0)


def test_keel_log_lists_who_did_what(tmp_path, monkeypatch, capsys):
    from keel.project import init

    root = tmp_path / "proj"
    with init(root) as proj:
        _history(proj.store, tmp_path, monkeypatch)
    assert main(["log", "-C", str(root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["activity"]
    assert rows[0]["action"] == "alias" and rows[0]["who"] == "carol"
    assert {r["who"] for r in rows} == {"alice", "bob", "carol"}
    assert main(["log", "-C", str(root), "--user", "alice"]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "ingest" in out and "carol" not in out


@pytest.mark.postgres
def test_a_read_only_role_reads_but_cannot_move_an_alias(pg_url, tmp_path, monkeypatch):
    """The analyst role of the README: SELECT on keel's tables and nothing else."""
    import psycopg
    from psycopg import sql

    store = Store.open(pg_url, tmp_path / "blobs")
    _history(store, tmp_path, monkeypatch)
    store.close()
    role = f"keel_analyst_{uuid.uuid4().hex[:8]}"
    admin = pg_url  # the database's owner
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        conn.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                sql.Identifier(role)
            )
        )
    try:
        rest = pg_url.removeprefix("postgresql://").split("@", 1)[1]
        ro = Store.open(f"postgresql://{role}@{rest}", tmp_path / "blobs")
        try:
            assert registry.get_version(ro, "adult@production").version == 2  # reads work
            assert len(activity(ro)) >= 6
            with pytest.raises(KeelError) as info:
                registry.set_alias(ro, "adult/1", "production", why="not allowed")
            assert "\n" not in str(info.value) and "may not change the store" in str(info.value)
            assert "permission denied for table aliases" in str(info.value)
            assert registry.get_version(ro, "adult@production").version == 2  # unchanged
        finally:
            ro.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (role,),
            )
            conn.execute(
                sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(
                    sql.Identifier(role)
                )
            )
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
