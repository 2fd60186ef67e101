"""``keel deploy k8s --store-secret NAME``: the pod serves from, and logs to, the team store.

The manifests still fit the Kubernetes and KServe schemas, take the store's settings from the
Secret by name (no value of it is written anywhere), keep the pod locked down, and let it
reach only DNS and the store's ports. The image's command, run for real with
``--team-store`` against a real PostgreSQL database (a folder of blobs standing in for S3)
and every training package unimportable, answers requests for the version the image was
built from, and its predictions land in the team store under that version, where
``keel.serve.read_predictions`` (what ``keel monitor`` reads) finds them while it runs. A
store whose version has another graph, or no such version, is refused at start in one line;
so is a missing ``KEEL_STORE``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from keel.deploy import SERVE_REQUIREMENTS, TEAM_STORE_REQUIREMENTS
from tests.conftest import fresh_pg_database
from tests.deploy._support import load_yaml, make_project, validate_k8s, validate_kserve
from tests.deploy.test_image_serving import TRAINING, WRAPPER, _body, _closure
from tests.serve._support import call_json

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SECRET = "keel-team-store"
PASSWORD = "pw-never-in-a-manifest-5d1c"  # trust auth: the server never asks for it
AWS_SECRET = "aws-secret-never-in-a-manifest-93ab"
AWS_KEY_ID = "AKIANEVERINAMANIFEST"
REGISTRY = ("registered_models", "model_versions", "model_tags", "aliases")


@dataclass
class Team:
    """The team store: a PostgreSQL database and a blob folder (S3's stand-in)."""

    url: str
    blobs: str
    project: Path

    def env(self) -> dict[str, str]:
        return {"KEEL_STORE": self.url, "KEEL_BLOBS": self.blobs}


@pytest.fixture(scope="module")
def team(pg_admin_user: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    root = tmp_path_factory.mktemp("team")
    with fresh_pg_database(pg_admin_user) as url:
        url = url.replace(f"//{pg_admin_user}@", f"//{pg_admin_user}:{PASSWORD}@", 1)
        t = Team(url, (root / "blobs").as_uri(), root / "project")
        with pytest.MonkeyPatch.context() as mp:
            for key, value in t.env().items():
                mp.setenv(key, value)
            make_project(t.project).close()  # adult 1 (production), 2 (candidate) exported
        yield t


def _deploy(team: Team, out: Path, **options) -> dict:
    from keel.deploy import deploy_k8s
    from keel.project import open_project

    with pytest.MonkeyPatch.context() as mp:
        for key, value in team.env().items():
            mp.setenv(key, value)
        mp.setenv("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
        mp.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        with open_project(team.project) as proj:
            return deploy_k8s(proj.store, "adult@candidate", out, **options)  # version 2


@pytest.fixture(scope="module")
def folder(team: Team, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "adult"
    res = _deploy(team, out, kserve=True, namespace="models", store_secret=SECRET)
    assert res["store_secret"] == SECRET
    assert any(f"kubectl create secret generic {SECRET}" in step for step in res["next"])
    assert not any("SQLite" in note for note in res["notes"])  # deployed from the team store
    return out


def _objects(folder: Path) -> dict[str, dict]:
    paths = sorted((folder / "k8s").glob("*.yaml")) + sorted((folder / "kserve").glob("*.yaml"))
    return {p.name: load_yaml(p) for p in paths}


def test_team_store_manifests_fit_the_schemas_and_name_the_secret_only(team, folder):
    objs = _objects(folder)
    for name, obj in objs.items():
        if name == "inferenceservice.yaml":
            validate_kserve(obj)
        else:
            validate_k8s(obj)  # strict: an unknown field fails
    assert len(objs) == 6
    pods = {
        "deployment": objs["deployment.yaml"]["spec"]["template"]["spec"],
        "kserve": objs["inferenceservice.yaml"]["spec"]["predictor"],
    }
    for kind, pod in pods.items():
        (c,) = pod["containers"]
        assert c["envFrom"] == [{"secretRef": {"name": SECRET, "optional": False}}], kind
        assert "--team-store" in c["args"] and "--store" not in c["args"], kind
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["runAsNonRoot"] is True
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert set(volumes) == {"tmp", "keys"}, kind  # no store emptyDir: nothing kept
        assert "emptyDir" in volumes["tmp"]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert mounts == {"/tmp": "tmp", "/etc/keel/keys": "keys"}, kind
        env = {e["name"] for e in c["env"]}
        assert not env & {"KEEL_STORE", "KEEL_BLOBS", "AWS_SECRET_ACCESS_KEY"}, kind
    # the pod may reach DNS and the store's ports; nothing else goes out
    egress = objs["networkpolicy.yaml"]["spec"]["egress"]
    ports = {(p["protocol"], p["port"]) for rule in egress for p in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 443)}
    assert all("to" not in rule for rule in egress)
    # no value of the Secret (nor of the deploying shell's store settings) is written
    text = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    dbname = team.url.rsplit("/", 1)[1]
    for value in (PASSWORD, AWS_SECRET, AWS_KEY_ID, dbname, team.blobs, "127.0.0.1:5432"):
        assert value.encode() not in text, value
    assert all(o["kind"] != "Secret" for o in objs.values())
    assert SECRET.encode() in (folder / "k8s" / "deployment.yaml").read_bytes()
    docker = (folder / "Dockerfile").read_text()
    assert '"--team-store"' in docker.rsplit("\nCMD ", 1)[1]


def test_the_team_store_image_pins_its_drivers_and_still_leaves_training_out(
    team, folder, tmp_path
):
    import importlib.metadata as md

    from packaging.utils import canonicalize_name

    reqs = (folder / "requirements-serve.txt").read_text().splitlines()
    for name in ("psycopg", "psycopg-binary", "boto3"):
        assert f"{name}=={md.version(name)}" in reqs, name
    plain = tmp_path / "plain"
    _deploy(team, plain)
    plain_reqs = (plain / "requirements-serve.txt").read_text()
    assert "psycopg" not in plain_reqs and "boto3" not in plain_reqs
    assert "--team-store" not in (plain / "Dockerfile").read_text()
    deployment = _objects(plain)["deployment.yaml"]
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "envFrom" not in c and "--store" in c["args"]
    closure = _closure(SERVE_REQUIREMENTS + TEAM_STORE_REQUIREMENTS)
    assert {"psycopg-binary", "boto3", "botocore"} <= closure
    assert not {canonicalize_name(t) for t in TRAINING} & closure


def test_store_ports_can_be_given_and_bad_ones_are_refused(team, tmp_path, capsys, monkeypatch):
    from keel.cli import main

    out = tmp_path / "out"
    _deploy(team, out, store_secret=SECRET, store_ports=(6432, 9000))
    egress = _objects(out)["networkpolicy.yaml"]["spec"]["egress"]
    validate_k8s(_objects(out)["networkpolicy.yaml"])
    assert egress[1]["ports"] == [
        {"protocol": "TCP", "port": 6432},
        {"protocol": "TCP", "port": 9000},
    ]
    for args, needle in (
        (["--store-secret", "Team_Store"], "--store-secret"),
        (["--store-secret", SECRET, "--store-port", "70000"], "--store-port"),
        (["--store-port", "5432"], "give --store-secret with it"),
    ):
        bad = tmp_path / "bad"
        for key, value in team.env().items():
            monkeypatch.setenv(key, value)
        code = main(
            ["deploy", "k8s", "adult@production", "--out", str(bad), *args]
            + ["--project", str(team.project)]
        )
        _, err = capsys.readouterr()
        assert code == 2
        (line,) = [x for x in err.splitlines() if x.strip()]
        assert needle in line
        assert not bad.exists()


# ------------------------------------------------------------------ the pod, run for real


def _image_modules() -> tuple[set[str], set[str]]:
    import importlib.metadata as md

    from packaging.utils import canonicalize_name

    allowed = _closure(SERVE_REQUIREMENTS + TEAM_STORE_REQUIREMENTS) | {"keel"}
    modules = md.packages_distributions()
    installed = {m for m in modules if m.isidentifier()}
    keep = {m for m, ds in modules.items() if any(canonicalize_name(d) in allowed for d in ds)}
    return keep, installed


def _pod_env(store_env: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEEL_", "AWS_"))}
    env["PYTHONPATH"] = str(Path(__file__).parents[2] / "src")
    env["KEEL_STORE_RETRY_SECONDS"] = "0"
    return {**env, **store_env}


def _pod(model_dir: Path, keys: Path) -> list[str]:
    keep, installed = _image_modules()
    return [
        sys.executable, "-c", WRAPPER, ",".join(sorted(keep)), ",".join(sorted(installed)),
        "serve", "--model-dir", str(model_dir), "--team-store", "--keys", str(keys),
        "--host", "127.0.0.1", "--port", "0",
    ]  # fmt: skip


def _registry_rows(store) -> dict[str, list]:
    from sqlalchemy import select

    from keel.store import _tables

    out = {}
    with store.read() as conn:
        for name in REGISTRY:
            table = getattr(_tables, name)
            out[name] = sorted(map(tuple, conn.execute(select(table)).all()), key=repr)
    return out


def test_the_pod_serves_from_the_team_store_and_logs_its_predictions_there(team, folder, tmp_path):
    from keel.serve import add_key, read_predictions
    from keel.store import Store

    keys = tmp_path / "keys.json"
    token, _ = add_key(keys, "gateway", ["predict"])
    manifest = json.loads((folder / "model" / "keel-deploy.json").read_text())
    body = _body(manifest["input_schema"])
    store = Store.open(team.url, team.blobs)
    try:
        before = _registry_rows(store)
        assert read_predictions(store, "adult").num_rows == 0
        proc = subprocess.Popen(
            _pod(folder / "model", keys),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_pod_env(team.env()),
        )
        try:
            url, started = _url_and_log(proc)
            assert "keel deploy: serving adult/2 from the team store" in started
            assert PASSWORD not in started  # the URL is shown with its password hidden
            deadline = time.monotonic() + 60
            while call_json(url, "GET", "/readyz")[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert call_json(url, "GET", "/readyz")[0] == 200
            assert call_json(url, "POST", "/v2/models/adult/infer", body)[0] == 401
            auth = {"Authorization": f"Bearer {token}"}
            served = []
            for i in range(3):
                status, answer = call_json(
                    url, "POST", "/v2/models/adult/infer", {**body, "id": f"r{i}"}, headers=auth
                )
                assert status == 200, answer
                served.append(answer)
            # the log reaches the team store while the pod runs (what keel monitor reads)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if read_predictions(store, "adult", version=2).num_rows >= 6:
                    break
                time.sleep(0.5)
            live = read_predictions(store, "adult", version=2).num_rows
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        assert live == 6, err[-2000:]  # 3 requests of 2 rows, under the real version 2
        assert all(a["model_version"] == "2" for a in served)
        assert read_predictions(store, "adult", version=1).num_rows == 0
        logged = read_predictions(store, "adult")
        assert logged.num_rows == 6 and set(logged["version"].to_pylist()) == {2}
        assert _registry_rows(store) == before  # no registry row written by the pod
    finally:
        store.close()
    assert PASSWORD not in err


def _url_and_log(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    """The server's URL from its "listening on" line, and the log lines up to it."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"listening on ([\d.]+):(\d+)", line)
        if m:
            return f"http://{m.group(1)}:{m.group(2)}", "".join(seen)
    proc.kill()
    raise AssertionError("the server did not start:\n" + "".join(seen[-20:]))


def _refused(model_dir: Path, keys: Path, store_env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.run(
        _pod(model_dir, keys),
        capture_output=True,
        text=True,
        timeout=120,
        env=_pod_env(store_env),
    )
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.returncode, lines[0]


def _model_copy(folder: Path, tmp_path: Path, graph: bytes | None = None, **model) -> Path:
    """The image's model folder, with another graph (its manifest sha256 made to match, as
    an image built from another store's export would have) or other model fields."""
    import shutil

    out = tmp_path / "model"
    shutil.copytree(folder / "model", out)
    manifest = json.loads((out / "keel-deploy.json").read_text())
    if graph is not None:
        (out / "model.onnx").write_bytes(graph)
        manifest["graph"].update(sha256=hashlib.sha256(graph).hexdigest(), size=len(graph))
    manifest["model"].update(model)
    (out / "keel-deploy.json").write_text(json.dumps(manifest))
    return out


def test_an_image_whose_graph_the_team_store_does_not_hold_is_refused(team, folder, tmp_path):
    from keel import registry
    from keel.serve import add_key, read_predictions
    from keel.store import Store

    keys = tmp_path / "keys.json"
    add_key(keys, "gateway", ["predict"])
    graph = (folder / "model" / "model.onnx").read_bytes() + b"\x00"  # another graph's bytes
    code, line = _refused(_model_copy(folder, tmp_path, graph), keys, team.env())
    assert code == 1
    assert line.startswith("error (unsafe_artifact):")
    assert "adult/2" in line and hashlib.sha256(graph).hexdigest() in line
    assert PASSWORD not in line
    code, line = _refused(_model_copy(folder, tmp_path / "v9", version=9), keys, team.env())
    assert code == 1 and line.startswith("error (unsafe_artifact):")
    assert "does not hold adult/9" in line
    store = Store.open(team.url, team.blobs)
    try:  # refused before serving: nothing registered, nothing logged for those images
        assert [mv.version for mv in registry.list_versions(store, "adult")] == [1, 2, 3]
        assert read_predictions(store, "adult", version=9).num_rows == 0
    finally:
        store.close()


UNREACHABLE = f"postgresql://keel:{PASSWORD}@127.0.0.1:9/keel"  # the discard port: refused


@pytest.mark.parametrize(
    "store_env, code, needle",
    [
        ({}, 2, "KEEL_STORE and KEEL_BLOBS not set"),
        ({"KEEL_BLOBS": "s3://bucket/keel"}, 2, "KEEL_STORE not set"),
        ({"KEEL_STORE": "sqlite:////tmp/x.db", "KEEL_BLOBS": "/tmp/b"}, 2, "postgresql://"),
        ({"KEEL_STORE": UNREACHABLE, "KEEL_BLOBS": "/tmp/b"}, 1, "cannot open the team store"),
    ],
)
def test_a_missing_or_bad_store_setting_is_one_line(folder, tmp_path, store_env, code, needle):
    from keel.serve import add_key

    keys = tmp_path / "keys.json"
    add_key(keys, "gateway", ["predict"])
    got, line = _refused(folder / "model", keys, store_env)
    assert got == code and needle in line
    assert PASSWORD not in line
    if "not set" in line:
        for key in ("KEEL_STORE", "KEEL_BLOBS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert key in line
    assert not Path("/tmp/x.db").exists()


def test_a_database_with_no_keel_store_is_refused_and_left_empty(pg_admin_user, folder, tmp_path):
    import psycopg

    from keel.serve import add_key

    keys = tmp_path / "keys.json"
    add_key(keys, "gateway", ["predict"])
    with fresh_pg_database(pg_admin_user) as url:
        env = {"KEEL_STORE": url, "KEEL_BLOBS": (tmp_path / "blobs").as_uri()}
        code, line = _refused(folder / "model", keys, env)
        assert code == 2 and "holds no keel store" in line
        with psycopg.connect(url) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        assert tables == (0,)  # the pod made no store there
