import pytest

from keel.errors import InvalidInput, NotFound
from keel.train import get_run, list_runs, start_run


def test_run_records_params_metrics_artifacts_env(any_store, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    with start_run(any_store, "exp", seed=7, tags={"owner": "ana"}) as run:
        run.log_params({"lr": 0.1, "layers": [64, 32]})
        for step in range(5):
            run.log_metric("loss", 1.0 / (step + 1))
        run.log_metric("auc", 0.9, step=10)
        run.log_artifact("notes", f)
        run.log_artifact("blob", b"\x00\x01")
    got = get_run(any_store, run.id[:10])
    assert got["status"] == "finished" and got["seed"] == 7 and got["wall_time"] > 0
    assert got["params"] == {"lr": 0.1, "layers": [64, 32]}
    assert got["metric_history"]["loss"] == [(i, 1.0 / (i + 1)) for i in range(5)]
    assert got["metrics"]["auc"] == 0.9
    assert any_store.blobs.get_bytes(got["artifacts"]["notes"]["sha"]) == b"hello"
    assert got["env"]["packages"]["scikit-learn"]
    assert got["tags"] == {"owner": "ana"}


def test_failed_block_marks_run_failed(store):
    with pytest.raises(RuntimeError):
        with start_run(store, "exp") as run:
            raise RuntimeError("boom")
    assert get_run(store, run.id)["status"] == "failed"


def test_list_runs_newest_first_with_last_metrics(store):
    ids = []
    for i in range(3):
        with start_run(store, "e1" if i < 2 else "e2") as run:
            run.log_metric("m", i)
            run.log_metric("m", i + 10)
            ids.append(run.id)
    runs = list_runs(store, "e1")
    assert [r["id"] for r in runs] == ids[1::-1]
    assert runs[0]["metrics"] == {"m": 11.0}


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda r: r.log_metric("m", "abc"), "metric 'm': expected a number, got 'abc'"),
        (lambda r: r.log_metric("m", float("nan")), "got NaN"),
        (lambda r: r.log_metric("", 1), "metric name"),
        (lambda r: r.log_param("x" * 300, 1), "param name"),
        (lambda r: r.log_artifact("a", "/no/such/file"), "is not a file"),
    ],
)
def test_bad_tracking_input_is_refused_and_writes_nothing(store, call, needle):
    run = start_run(store, "e")
    with pytest.raises(InvalidInput, match=needle):
        call(run)
    got = get_run(store, run.id)
    assert got["metrics"] == {} and got["params"] == {} and got["artifacts"] == {}


def test_unknown_run(store):
    with pytest.raises(NotFound, match="does not exist"):
        get_run(store, "feedbeef")


def _git(cwd, *args):
    import subprocess

    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_git_commit_is_read_like_git_does(tmp_path):
    from keel.train._tracking import git_commit

    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    assert git_commit(repo) is None  # no commit yet
    (repo / "f").write_text("1")
    _git(repo, "add", "f")
    _git(repo, "commit", "-qm", "one")
    (repo / "sub").mkdir()
    assert git_commit(repo / "sub") == _git(repo, "rev-parse", "HEAD")
    _git(repo, "pack-refs", "--all")
    assert git_commit(repo) == _git(repo, "rev-parse", "HEAD")
    first = _git(repo, "rev-parse", "HEAD")
    (repo / "f").write_text("2")
    _git(repo, "commit", "-qam", "two")
    assert git_commit(repo) == _git(repo, "rev-parse", "HEAD") != first
    _git(repo, "checkout", "-q", first)  # detached
    assert git_commit(repo) == first
    _git(repo, "worktree", "add", "-q", str(tmp_path / "wt"), "main")
    assert git_commit(tmp_path / "wt") == _git(repo, "rev-parse", "main")
    assert git_commit(tmp_path / "elsewhere") is None


def test_run_records_the_commit(store, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f").write_text("1")
    _git(repo, "add", "f")
    _git(repo, "commit", "-qm", "one")
    run = start_run(store, "e", project_root=repo)
    assert get_run(store, run.id)["git_commit"] == _git(repo, "rev-parse", "HEAD")


# -- runs whose writer died ---------------------------------------------------------------

_KILLED_CHILD = """
import sys, time
from keel.store import Store
from keel.train import start_run
store = Store.open(sys.argv[1], sys.argv[2])
run = start_run(store, "killed")
run.log_metric("loss", 0.5)
print(run.id, flush=True)
time.sleep(600)
"""


def _start_killed_child(url, blobs):
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, url, str(blobs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read()
    return proc, run_id


def test_sigkilled_run_is_marked_failed_when_listed(any_store, tmp_path):
    import signal

    proc, run_id = _start_killed_child(any_store.url, tmp_path / "blobs")
    try:
        assert get_run(any_store, run_id)["status"] == "running"  # alive: left alone
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    (listed,) = [r for r in list_runs(any_store) if r["id"] == run_id]
    assert listed["status"] == "failed"
    assert f"process {proc.pid} ended without finishing the run" in listed["reason"]
    got = get_run(any_store, run_id)
    assert got["status"] == "failed" and got["ended_at"] is not None
    assert got["reason"] == listed["reason"] and got["metrics"] == {"loss": 0.5}


def test_a_run_of_a_live_process_stays_running(store):
    import os
    import socket

    run = start_run(store, "alive")
    assert list_runs(store)[0]["status"] == "running"
    got = get_run(store, run.id)
    assert got["status"] == "running" and got["reason"] is None
    assert (got["pid"], got["host"]) == (os.getpid(), socket.gethostname())
    run.end()
    assert get_run(store, run.id)["status"] == "finished"


def test_a_silent_run_on_another_host_is_marked_failed(store):
    import time

    from sqlalchemy import update

    from keel.store import _tables
    from keel.train._tracking import STALE_AFTER_S

    old, fresh = start_run(store, "remote"), start_run(store, "remote")
    with store.write() as conn:
        t = _tables.runs
        conn.execute(
            update(t)
            .where(t.c.id == old.id)
            .values(host="elsewhere", pid=1, heartbeat_at=time.time() - STALE_AFTER_S - 60)
        )
        conn.execute(update(t).where(t.c.id == fresh.id).values(host="elsewhere", pid=1))
    got = {r["id"]: r for r in list_runs(store, "remote")}
    assert got[old.id]["status"] == "failed"
    assert "no sign of life from host 'elsewhere'" in got[old.id]["reason"]
    assert got[fresh.id]["status"] == "running"
