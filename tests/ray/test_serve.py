"""``keel serve --ray --replicas N``: keel's server as Ray Serve replicas on a real local
cluster, answering as the one-process server does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from keel.cli import main
from keel.data import ingest
from keel.datasets import adult
from keel.project import init
from keel.serve import start
from tests.ray.conftest import free_ports
from tests.serve._support import call, call_json, records, train_lgb

ROUTE = "/models/adult-income/predict"


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("rayserve")
    df = adult("train").sample(1500, random_state=4)
    df.to_csv(root / "adult.csv", index=False)
    with init(root) as p:
        ingest(p.store, root / "adult.csv", name="adult")
        train_lgb(p.store, "adult-income")
    return root, df


def keel(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_replica_counts_are_checked(proj: tuple[Path, Any], capsys: Any) -> None:
    root, _ = proj
    code, _, err = keel(capsys, "serve", "adult-income", "--ray", "--replicas", "0", "-C", root)
    assert code == 2 and "--replicas: expected a whole number from 1 to 1024, got 0" in err
    code, _, err = keel(capsys, "serve", "adult-income", "--replicas", "2", "-C", root)
    assert code == 2 and "--replicas: applies with --ray" in err
    code, _, err = keel(capsys, "serve", "adult-income", "--ray", "--workers", "2", "-C", root)
    assert code == 2 and "leave --workers out" in err


def _wait_ready(out: Path, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    """Until the server says it serves (every replica has loaded its models)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"keel serve --ray exited {proc.returncode}")
        if "keel serving on" in out.read_text():
            return
        time.sleep(0.5)
    raise AssertionError("keel serve --ray: not ready in time")


@pytest.mark.slow
def test_ray_replicas_answer_as_the_one_process_server(
    proj: tuple[Path, Any], ray_cluster: Any, tmp_path: Path
) -> None:
    root, df = proj
    bodies = [{"rows": records(df, 3, 3 * i)} for i in range(40)]
    with start(root, ["adult-income"]) as single:
        want = [call_json(single.url, "POST", ROUTE, b)[1]["predictions"] for b in bodies]
    port = free_ports(1)[0]
    keel_bin = str(Path(sys.executable).with_name("keel"))
    env = dict(os.environ, RAY_ADDRESS=ray_cluster.address)
    cmd = [keel_bin, "serve", "adult-income", "--ray", "--replicas", "2", "--port", str(port)]
    out = tmp_path / "serve.out"
    with open(out, "w") as stdout, open(tmp_path / "serve.err", "w") as stderr:
        proc = subprocess.Popen(
            [*cmd, "-C", str(root)], env=env, stdout=stdout, stderr=stderr, text=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(out, proc)

        def ask(body: dict[str, Any]) -> tuple[int, str, Any]:
            status, headers, data = call(url, "POST", ROUTE, body)
            return status, headers.get("x-keel-worker", ""), json.loads(data)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, bodies * 3))
        assert {status for status, _, _ in answers} == {200}
        got = [a["predictions"] for _, _, a in answers]
        assert got == want * 3  # the same labels and probabilities, row for row
        assert {worker for _, worker, _ in answers} == {"1", "2"}  # both replicas answered
        status, _, data = call(url, "POST", ROUTE, {"rows": [{"age": "old"}]})
        assert status == 422 and b"age" in data and b"Traceback" not in data
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(120) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    with pytest.raises(OSError):
        call(url, "GET", "/readyz")  # the replicas and their proxy are gone
