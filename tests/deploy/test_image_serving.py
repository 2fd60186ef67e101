"""The image's entry point, run for real: ``python -m keel.deploy serve`` on the folder
``keel deploy k8s`` wrote, in a process where every training package is unimportable,
answers the Open Inference Protocol v2 exactly as keel's server does from the project,
with the project's version number, and only with a key. What it imports is covered by
``requirements-serve.txt``. A graph whose bytes changed is refused before serving."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keel.deploy import SERVE_REQUIREMENTS
from tests.deploy._support import make_project
from tests.serve._support import call_json

pytestmark = pytest.mark.slow

TRAINING = (
    "scikit-learn lightgbm optuna fairlearn adversarial-robustness-toolbox diffprivlib skl2onnx "
    "onnxmltools onnx torch shap scipy skops duckdb typer rich"
).split()

# Runs the container's command in a process that can import the standard library, keel
# and the given top-level modules, and nothing else that is installed here: the image.
WRAPPER = """
import importlib.abc, sys
ALLOWED = set(sys.argv[1].split(","))
INSTALLED = set(sys.argv[2].split(","))
class Image(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in INSTALLED and top not in ALLOWED:
            raise ImportError(f"{name} is not in the serving image")
sys.meta_path.insert(0, Image())
from keel.deploy._boot import run
sys.exit(run(sys.argv[3:]))
"""


def image_modules() -> tuple[set[str], set[str]]:
    """Top-level modules of the distributions the image installs (keel, and the closure of
    SERVE_REQUIREMENTS), and of every distribution installed here."""
    import importlib.metadata as md

    from packaging.utils import canonicalize_name

    allowed = _closure(SERVE_REQUIREMENTS) | {"keel"}
    modules = md.packages_distributions()
    installed = {m for m in modules if m.isidentifier()}
    keep = {m for m, ds in modules.items() if any(canonicalize_name(d) in allowed for d in ds)}
    return keep, installed


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("proj")
    make_project(root).close()
    return root


@pytest.fixture(scope="module")
def folder(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from keel.deploy import deploy_k8s
    from keel.project import open_project

    out = tmp_path_factory.mktemp("deploy") / "adult"
    with open_project(project) as proj:
        deploy_k8s(proj.store, "adult@candidate", out)  # version 2, not 1
    return out


def _launch(model_dir: Path, pod: Path, keys: Path) -> subprocess.Popen:
    args = ["serve", "--model-dir", str(model_dir), "--store", str(pod), "--keys", str(keys)]
    args += ["--host", "127.0.0.1", "--port", "0"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    keep, installed = image_modules()
    return subprocess.Popen(
        [sys.executable, "-c", WRAPPER, ",".join(sorted(keep)), ",".join(sorted(installed)), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _url(proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"listening on ([\d.]+):(\d+)", line)
        if m:
            return f"http://{m.group(1)}:{m.group(2)}"
    proc.kill()
    raise AssertionError("the server did not start:\n" + "".join(seen[-20:]))


def _body(schema: list[dict]) -> dict:
    values = {"float": 37.0, "int": 40}
    inputs = []
    for col in schema:
        number = col["type"] in values
        inputs.append(
            {
                "name": col["name"],
                "shape": [2],
                "datatype": "FP64" if number else "BYTES",
                "data": [values[col["type"]], 52.0] if number else ["Private", "?"],
            }
        )
    return {"id": "r1", "inputs": inputs}


def _closure(names: tuple[str, ...]) -> set[str]:
    """The distributions ``names`` pull in when pip installs them (markers evaluated)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for text in md.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def test_the_image_command_serves_the_graph_without_the_training_stack(project, folder, tmp_path):
    from packaging.utils import canonicalize_name

    from keel.project import open_project
    from keel.serve import add_key, start

    keys = tmp_path / "keys.json"
    token, _ = add_key(keys, "gateway", ["predict"])
    manifest = json.loads((folder / "model" / "keel-deploy.json").read_text())
    body = _body(manifest["input_schema"])
    proc = _launch(folder / "model", tmp_path / "pod", keys)
    try:
        url = _url(proc)
        deadline = time.monotonic() + 60
        while call_json(url, "GET", "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert call_json(url, "GET", "/readyz")[0] == 200
        status, _ = call_json(url, "POST", "/v2/models/adult/infer", body)
        assert status == 401  # keys are on: no key, no answer
        auth = {"Authorization": f"Bearer {token}"}
        status, served = call_json(url, "POST", "/v2/models/adult/infer", body, headers=auth)
        assert status == 200, served
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert served["model_version"] == "2"  # the project's version number, not the pod's 1
    with open_project(project) as proj:
        with start(proj.store, ["adult@candidate"]) as local:
            status, expected = call_json(local.url, "POST", "/v2/models/adult/infer", body)
    assert status == 200
    assert served["outputs"] == expected["outputs"]
    # the image leaves the training stack out (the server ran without it, above)
    assert not {canonicalize_name(t) for t in TRAINING} & _closure(SERVE_REQUIREMENTS)
    keep, _ = image_modules()
    assert not {"sklearn", "lightgbm", "skl2onnx", "fairlearn", "typer"} & keep


def test_a_graph_whose_bytes_changed_is_refused_at_start(folder, tmp_path):
    import shutil

    from keel.serve import add_key

    model = tmp_path / "model"
    shutil.copytree(folder / "model", model)
    graph = bytearray((model / "model.onnx").read_bytes())
    graph[len(graph) // 2] ^= 0xFF
    (model / "model.onnx").write_bytes(bytes(graph))
    keys = tmp_path / "keys.json"
    add_key(keys, "gateway", ["predict"])
    proc = subprocess.run(
        [sys.executable, "-m", "keel.deploy", "serve", "--model-dir", str(model)]
        + ["--store", str(tmp_path / "pod"), "--keys", str(keys), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert "sha256" in line and "model.onnx" in line
    assert not (tmp_path / "pod").exists()  # refused before the store was made
