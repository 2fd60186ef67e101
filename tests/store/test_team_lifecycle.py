"""The whole lifecycle once on a team store (issue 16 point 2): PostgreSQL for the records and
SeaweedFS (S3) for the bytes, across three project folders that share no file.

Every step is the ``keel`` command in a process of its own, as three people on three
machines would run it:

- folder A (alice) holds the source CSV: ``keel init``, ``ingest``, ``train --register``,
  ``alias``; it reaches the team store through ``KEEL_STORE`` and ``KEEL_BLOBS``;
- folder B (bob) ``export``\\ s and ``serve``\\ s the alias on its own port, answers real HTTP
  requests and is stopped with SIGTERM, as a service manager stops it;
- folder C (carol) runs ``monitor run`` over the logged traffic and retrains (a new version);

B and C name the team store in their keel.yaml (``store:`` and ``blobs:``), with only the
S3 credentials in the environment. From each folder, ``keel lineage --request RID`` walks
from a served prediction back to folder A's CSV: its path and sha256.

The README's trainer and releaser database roles are tested here too, on a real server.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from keel.datasets import adult
from tests.serve._support import records
from tests.store.conftest import BUCKET, Seaweed, fresh_prefix

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MODEL = "adult-income"
STEP_TIMEOUT_S = 300


def _env(seaweed: Seaweed, user: str, **keel: str) -> dict[str, str]:
    """This process's environment less any KEEL_* or AWS_* setting, plus the S3 endpoint
    and credentials, the user and ``keel`` (KEEL_STORE, KEEL_BLOBS) as given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "AWS_"))}
    env.update(seaweed.env(), AWS_MAX_ATTEMPTS="2", KEEL_USER=user, **keel)
    return env


def keel(folder: Path, env: dict[str, str], *args: Any) -> subprocess.CompletedProcess[str]:
    """``keel ARGS`` run in ``folder`` (found upward from the working folder, as a user runs
    it), with ``env`` and nothing else."""
    return subprocess.run(
        [sys.executable, "-m", "keel", *map(str, args)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
    )


def keel_json(folder: Path, env: dict[str, str], *args: Any) -> Any:
    proc = keel(folder, env, *args, "--json")
    assert proc.returncode == 0, f"keel {' '.join(map(str, args))}:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


def init_team_folder(folder: Path, env: dict[str, str], store: str, blobs: str) -> None:
    """``keel init`` on the team store, then keep the store and blobs in keel.yaml, so later
    commands in this folder need no KEEL_STORE or KEEL_BLOBS."""
    folder.mkdir()
    proc = keel(folder, {**env, "KEEL_STORE": store, "KEEL_BLOBS": blobs}, "init", ".")
    assert proc.returncode == 0, proc.stderr
    cfg = folder / "keel.yaml"
    settings = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**settings, "store": store, "blobs": blobs}, sort_keys=False))


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_call(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = None if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen[str], port: int, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"keel serve exited {proc.returncode}:\n{log.read_text()}"
        try:
            if http_call(port, "GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"keel serve not ready in {timeout} s:\n{log.read_text()[-3000:]}")


def chain(tree: dict[str, Any]) -> list[tuple[str, str]]:
    """The first path from the root to a leaf: (kind, role) of each node."""
    out = [(tree["kind"], tree["role"])]
    while tree["parents"]:
        tree = tree["parents"][0]
        out.append((tree["kind"], tree["role"]))
    return out


def test_ingest_serve_monitor_retrain_and_lineage_across_three_folders(
    pg_url: str, seaweed: Seaweed, tmp_path: Path
) -> None:
    blobs = f"s3://{BUCKET}/{fresh_prefix()}"
    a, b, c = tmp_path / "a-train", tmp_path / "b-serve", tmp_path / "c-monitor"

    # -- A: ingest, train, register, alias (KEEL_STORE / KEEL_BLOBS in the environment) ---
    env_a = _env(seaweed, "alice", KEEL_STORE=pg_url, KEEL_BLOBS=blobs)
    a.mkdir()
    assert keel(a, env_a, "init", ".").returncode == 0
    csv = a / "adult.csv"
    adult("train").sample(1500, random_state=0).to_csv(csv, index=False)
    source_sha = hashlib.sha256(csv.read_bytes()).hexdigest()
    ingested = keel_json(a, env_a, "ingest", "adult.csv", "--name", "adult")
    assert ingested["dataset"]["n_rows"] == 1500
    trained = keel_json(
        a, env_a, "train", "adult", "-t", "income", "-p", "n_estimators=30", "--seed", "1",
        "--register", MODEL,
    )  # fmt: skip
    assert trained["registered"] == f"{MODEL}/1"
    moved = keel_json(a, env_a, "alias", f"{MODEL}/1", "production", "--why", "first release")
    assert moved["model"] == f"{MODEL}/1"
    assert files_in(a) == ["adult.csv", "keel.yaml"]  # records and bytes are on the team store

    # -- B: export and serve the alias from a folder holding only keel.yaml ----------------
    env_b = _env(seaweed, "bob")
    init_team_folder(b, env_b, pg_url, blobs)
    exported = keel_json(b, env_b, "export", f"{MODEL}@production")
    assert exported["model"] == f"{MODEL}/1" and exported["parity"]["label_agreement"] == 1.0
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "keel", "serve", MODEL, "--port", str(port)],
            cwd=b,
            env=env_b,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_ready(server, port, log)
        rows = records(adult("test").sample(120, random_state=1), 120)
        rids: list[str] = []
        for i in range(0, len(rows), 4):
            status, headers, body = http_call(
                port, "POST", f"/models/{MODEL}/predict", {"rows": rows[i : i + 4]}
            )
            assert status == 200, body
            answer = json.loads(body)
            assert answer["version"] == 1 and len(answer["predictions"]) == 4
            assert answer["request_id"] == headers["x-request-id"]
            rids.append(headers["x-request-id"])
        mine = f"lifecycle-{uuid.uuid4().hex[:8]}"
        status, headers, _ = http_call(
            port, "POST", f"/models/{MODEL}/predict", {"rows": rows[:1]}, {"x-request-id": mine}
        )
        assert status == 200 and headers["x-request-id"] == mine
        rids.append(mine)
        assert len(set(rids)) == 31
    finally:
        server.send_signal(signal.SIGTERM)  # as systemd or Kubernetes stops a service
        code = server.wait(timeout=60)
    assert code in (0, -signal.SIGTERM), log.read_text()[-3000:]
    assert files_in(b) == ["keel.yaml"]  # no local store, no blobs: all went to the team

    # -- C: monitor the logged traffic, then retrain from there ---------------------------
    env_c = _env(seaweed, "carol")
    init_team_folder(c, env_c, pg_url, blobs)
    watched = keel_json(c, env_c, "monitor", "run", MODEL)
    assert watched["window"]["rows"] == 121  # every row answered was logged before the stop
    assert watched["window"]["versions"] == [1]
    assert set(watched["values"]["drift"]["features"]) >= {"age", "education", "sex"}
    retrained = keel_json(
        c, env_c, "train", "adult", "-t", "income", "-p", "n_estimators=60", "--seed", "2",
        "--register", MODEL,
    )  # fmt: skip
    assert retrained["registered"] == f"{MODEL}/2"
    assert retrained["run_id"] != trained["run_id"]
    assert files_in(c) == ["keel.yaml"]

    # -- lineage of a served prediction from each folder: back to A's CSV ----------------
    source = {"uri": str(csv.resolve()), "sha256": source_sha, "bytes": csv.stat().st_size}
    for folder, env in ((a, env_a), (b, env_b), (c, env_c)):
        for rid in (rids[0], mine):
            found = keel_json(folder, env, "lineage", "--request", rid, MODEL)
            assert found["request_id"] == rid
            assert {(p["model"], p["version"]) for p in found["predictions"]} == {(MODEL, 1)}
            assert found["sources"] == [source], folder
            (tree,) = found["lineage"].values()
            assert chain(tree) == [
                ("predictions", ""),
                ("model", "predicted_by"),
                ("run", "trained_by"),
                ("dataset", "train"),
                ("source", "read_from"),
            ]
    assert [p["row"] for p in found["predictions"]] == [0]
    text = keel(c, env_c, "lineage", "--request", rids[5])
    assert text.returncode == 0, text.stderr
    assert f"{MODEL}/1" in text.stdout and str(csv.resolve()) in text.stdout
    assert source_sha in text.stdout
    # the retrained version comes from the same file too
    v2 = keel_json(c, env_c, "lineage", f"{MODEL}/2")
    assert v2["details"][f"source:{source_sha}"]["label"] == str(csv.resolve())

    # who did what, from the third folder
    done = {(r["who"], r["action"]) for r in keel_json(c, env_c, "log")["activity"]}
    assert {("alice", "ingest"), ("alice", "register"), ("alice", "alias")} <= done
    assert ("carol", "register") in done

    # an unknown or malformed request id: one line, nothing else
    unknown = keel(b, env_b, "lineage", "--request", "no-such-request", MODEL)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.strip().count("\n") == 0
    assert "no logged prediction of 'adult-income' has request id 'no-such-request'" in (
        unknown.stderr
    )
    bad = keel(b, env_b, "lineage", "--request", "not a request id!")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "--request: expected 1 to 128 letters" in bad.stderr


# -- the README's database roles ------------------------------------------------------------

#: The trainer and releaser roles of the README, as they work: a trainer needs UPDATE on
#: registered_models (registering locks the model's row: SELECT ... FOR UPDATE) and DELETE
#: on artifacts and model_tags (a re-logged artifact or tag replaces its row). Neither may
#: rewrite the who-did-what log (events, alias_events): INSERT only.
ROLES_SQL = """
-- trainer: ingests, trains, registers, audits, exports; cannot move an alias
CREATE ROLE keel_trainer LOGIN;
GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO keel_trainer;
GRANT UPDATE ON runs, registered_models, pipeline_runs, pipeline_steps TO keel_trainer;
GRANT DELETE ON artifacts, model_tags TO keel_trainer;
REVOKE INSERT ON aliases, alias_events FROM keel_trainer;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO keel_trainer;
-- releaser: moves aliases (gated aliases still need the gates, or --override with a reason)
CREATE ROLE keel_releaser LOGIN;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO keel_releaser;
GRANT INSERT, UPDATE, DELETE ON aliases TO keel_releaser;
GRANT INSERT ON alias_events, events TO keel_releaser;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO keel_releaser;
"""


def _refused(call: Any, table: str, role: str) -> None:
    from keel.errors import KeelError

    with pytest.raises(KeelError) as info:
        call()
    text = str(info.value)
    assert "\n" not in text and f"permission denied for table {table}" in text, text
    assert f"the database role '{role}' may not change the store" in text


def test_trainer_registers_but_cannot_release_and_releaser_releases(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg
    from psycopg import sql

    from keel import registry
    from keel.audit import audit
    from keel.data import ingest
    from keel.errors import ValidationFailed
    from keel.export import export
    from keel.store import Store, activity
    from keel.train import train

    blobs = tmp_path / "blobs"
    Store.open(pg_url, blobs).close()  # keel makes its tables first, as the README says
    suffix = uuid.uuid4().hex[:8]
    trainer, releaser = f"keel_trainer_{suffix}", f"keel_releaser_{suffix}"
    script = ROLES_SQL.replace("keel_trainer", trainer).replace("keel_releaser", releaser)
    with psycopg.connect(pg_url, autocommit=True) as owner:
        owner.execute(script.encode())
    host = pg_url.split("@", 1)[1]
    csv = tmp_path / "adult.csv"
    adult("train").sample(400, random_state=0).to_csv(csv, index=False)
    gated = {"audit": {"policy": ["performance.roc_auc >= 0.999"]}}
    try:
        monkeypatch.setenv("KEEL_USER", "tess")
        t = Store.open(f"postgresql://{trainer}@{host}", blobs)
        try:
            ingest(t, csv, name="adult")
            mv = train(t, "adult", "income", params={"n_estimators": 5}, seed=1).register(
                t, "adult"
            )
            assert mv.ref == "adult/1"
            registry.set_tag(t, mv.ref, "owner", "tess")
            registry.set_tag(t, mv.ref, "owner", "tess again")  # replaces: needs DELETE
            audit(t, mv.ref, sections=["performance"])
            assert export(t, mv.ref).parity.label_agreement == 1.0
            _refused(lambda: registry.set_alias(t, "adult/1", "staging"), "aliases", trainer)
            assert registry.get_version(t, "adult/1").aliases == []
        finally:
            t.close()

        monkeypatch.setenv("KEEL_USER", "rita")
        r = Store.open(f"postgresql://{releaser}@{host}", blobs)
        r.settings = gated
        try:
            assert registry.set_alias(r, "adult/1", "staging", why="review").version == 1
            with pytest.raises(ValidationFailed, match="fails the project's gates"):
                registry.set_alias(r, "adult/1", "production")
            moved = registry.set_alias(r, "adult/1", "production", override="signed off by ana")
            assert moved.version == 1
            _refused(lambda: ingest(r, csv, name="adult-again"), "datasets", releaser)
            _refused(
                lambda: train(r, "adult", "income", params={"n_estimators": 5}, seed=2),
                "runs",
                releaser,
            )
            assert sorted(registry.get_version(r, "adult/1").aliases) == ["production", "staging"]
            who = {(a.who, a.action, a.subject) for a in activity(r)}
            assert ("tess", "register", "adult/1") in who
            assert ("rita", "alias", "adult@production") in who
        finally:
            r.close()

        # neither role can rewrite who did what
        for role in (trainer, releaser):
            with psycopg.connect(f"postgresql://{role}@{host}", autocommit=True) as conn:
                for statement in ("UPDATE events SET at = at", "DELETE FROM alias_events"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(statement)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as owner:
            for role in (trainer, releaser):
                owner.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (role,),
                )
                ident = sql.Identifier(role)
                for what in ("TABLES", "SEQUENCES"):
                    owner.execute(
                        sql.SQL("REVOKE ALL ON ALL {} IN SCHEMA public FROM {}").format(
                            sql.SQL(what), ident
                        )
                    )
                owner.execute(sql.SQL("DROP ROLE {}").format(ident))
