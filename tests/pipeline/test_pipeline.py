"""Pipelines: steps cached by the hash of their inputs, retries, resume after a failure,
checked YAML, lineage, executors (inline, a process pool, real Ray), and the CLI."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from keel import registry
from keel.cli import main
from keel.data import get_dataset, list_datasets
from keel.datasets import adult
from keel.errors import Conflict, InvalidInput, NotFound
from keel.pipeline import Pipeline, Step, get_pipeline_run, list_pipeline_runs, run_pipeline
from keel.store import _tables, lineage

ROOT = Path(__file__).resolve().parents[2]
STEPS = "tests.pipeline.steps"


@pytest.fixture(scope="module")
def adult_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pipeline-data") / "adult.csv"
    adult("train").sample(1500, random_state=0).to_csv(path, index=False)
    return path


def _train_pipeline(csv: Path, n_estimators: int = 5) -> Pipeline:
    return Pipeline(
        "adult",
        [
            Step("ingest", "ingest", params={"path": str(csv), "name": "adult"}),
            Step(
                "train",
                "train",
                inputs=["ingest"],
                params={"target": "income", "params": {"n_estimators": n_estimators}},
            ),
        ],
    )


def _count(store, table) -> int:
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


# -- caching ------------------------------------------------------------------------------


def test_changing_a_training_param_reruns_train_not_ingest(any_store, adult_csv):
    first = run_pipeline(any_store, _train_pipeline(adult_csv))
    assert first.ok and [s.status for s in first.steps] == ["ran", "ran"]
    assert first["train"].output["model"] == "adult/1" and first["train"].attempts == 1

    same = run_pipeline(any_store, _train_pipeline(adult_csv))
    assert [s.status for s in same.steps] == ["cached", "cached"]
    assert same["train"].output == first["train"].output
    assert same["train"].source_run == first.id and same["train"].seconds == 0

    changed = run_pipeline(any_store, _train_pipeline(adult_csv, n_estimators=8))
    assert changed["ingest"].status == "cached" and changed["train"].status == "ran"
    assert changed["ingest"].key == first["ingest"].key
    assert changed["train"].key != first["train"].key
    assert changed["train"].output["model"] == "adult/2"
    assert len(list_datasets(any_store)) == 1  # ingest ran once in three runs
    assert len(registry.list_versions(any_store, "adult")) == 2
    assert [r.id for r in list_pipeline_runs(any_store, "adult")] == [
        changed.id,
        same.id,
        first.id,
    ]


def test_changed_source_bytes_rerun_ingest(store, tmp_path, adult_csv):
    csv = tmp_path / "adult.csv"
    csv.write_bytes(adult_csv.read_bytes())
    a = run_pipeline(store, _train_pipeline(csv))
    csv.write_text("\n".join(csv.read_text().splitlines()[:800]) + "\n")
    b = run_pipeline(store, _train_pipeline(csv))
    assert a.ok and b.ok and b["ingest"].status == "ran" and b["train"].status == "ran"
    assert b["ingest"].output["rows"] == 799


def test_cache_is_shared_across_processes(tmp_path, adult_csv):
    """A run on a process pool, then the same pipeline from another process's CLI: all cached."""
    from keel import project

    proj = project.init(tmp_path / "proj")
    spec = tmp_path / "proj" / "pipeline.yaml"
    pipe = _train_pipeline(adult_csv)  # + a python step beside train: one wave of two
    count = Step("count", function=f"{STEPS}:rows", inputs=["ingest"], params={"scale": 3})
    spec.write_text(yaml.safe_dump(Pipeline("adult", [*pipe.steps, count]).to_dict()))
    first = run_pipeline(proj.store, Pipeline.load(spec), executor="process", workers=2)
    proj.close()
    assert first.ok and first.executor == "process"
    assert [s.status for s in first.steps] == ["ran", "ran", "ran"]
    assert first["count"].output == {"rows": 4500, "inputs": ["ingest"]}
    assert first["count"].started_at == first["train"].started_at  # submitted together
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from keel.cli import main; sys.exit(main())"]
        + ["pipeline", "run", str(spec), "--json", "-C", str(tmp_path / "proj")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    second = json.loads(out.stdout)
    assert [s["status"] for s in second["steps"]] == ["cached", "cached", "cached"]
    assert second["steps"][1]["source_run"] == first.id


# -- retries, failure and resume ----------------------------------------------------------


def test_a_step_that_fails_twice_then_succeeds_is_retried(any_store, tmp_path):
    counter = tmp_path / "calls"
    pipe = Pipeline(
        "retry",
        [
            Step(
                "flaky",
                function=f"{STEPS}:flaky",
                params={"counter": str(counter), "fail_times": 2},
                retries=2,
                retry_delay=0.01,
            )
        ],
    )
    run = run_pipeline(any_store, pipe)
    step = run["flaky"]
    assert run.ok and step.status == "ran" and step.attempts == 3
    assert step.output == {"calls": 3, "attempt": 3}
    events = [e["payload"] for e in any_store.events("pipeline_step")]
    assert [(e["attempt"], e["status"]) for e in events] == [
        (1, "failed"),
        (2, "failed"),
        (3, "ran"),
    ]
    assert "transient failure 1" in events[0]["error"]


def test_retries_have_a_limit(store, tmp_path):
    step = Step(
        "flaky",
        function=f"{STEPS}:flaky",
        params={"counter": str(tmp_path / "n"), "fail_times": 5},
        retries=1,
    )
    run = run_pipeline(store, Pipeline("retry", [step]))
    assert run.status == "failed" and run["flaky"].status == "failed"
    assert run["flaky"].attempts == 2 and "transient failure 2" in run["flaky"].error
    assert (tmp_path / "n").read_text() == "2"


def test_bad_input_is_not_retried(store):
    run = run_pipeline(store, Pipeline("p", [Step("bad", function=f"{STEPS}:not_json", retries=3)]))
    assert run["bad"].status == "failed" and run["bad"].attempts == 1
    assert "output: expected plain JSON values" in run["bad"].error


def _resumable(csv: Path, flag: Path) -> Pipeline:
    return Pipeline(
        "resumable",
        [
            Step("ingest", "ingest", params={"path": str(csv), "name": "adult"}),
            Step(
                "check",
                function=f"{STEPS}:needs_file",
                inputs=["ingest"],
                params={"flag": str(flag)},
            ),
            Step(
                "count", function=f"{STEPS}:rows", inputs=["ingest", "check"], params={"scale": 2}
            ),
        ],
    )


def test_failure_keeps_earlier_outputs_and_resume_continues(any_store, tmp_path, adult_csv):
    flag = tmp_path / "ready"
    pipe = _resumable(adult_csv, flag)
    failed = run_pipeline(any_store, pipe)
    assert failed.status == "failed"
    assert [s.status for s in failed.steps] == ["ran", "failed", "pending"]
    assert "ready is not there yet" in failed["check"].error
    assert len(list_datasets(any_store)) == 1  # the ingest's output stays

    flag.write_text("ok")
    resumed = run_pipeline(any_store, pipe, resume=failed.id)
    assert resumed.id == failed.id and resumed.ok
    assert [s.status for s in resumed.steps] == ["ran", "ran", "ran"]
    assert resumed["ingest"].ended_at == failed["ingest"].ended_at  # not run again
    assert resumed["count"].output == {"rows": 3000, "inputs": ["check", "ingest"]}
    assert len(list_datasets(any_store)) == 1
    ingests = [e for e in any_store.events("pipeline_step") if e["payload"]["step"] == "ingest"]
    assert len(ingests) == 1
    statuses = [e["payload"]["status"] for e in any_store.events("pipeline_run")]
    assert statuses == ["started", "failed", "resumed", "succeeded"]

    # a fresh run of the same pipeline reuses everything
    again = run_pipeline(any_store, pipe)
    assert [s.status for s in again.steps] == ["cached", "cached", "cached"]


def test_a_fresh_run_after_a_failure_continues_from_the_failed_step(store, tmp_path, adult_csv):
    flag = tmp_path / "ready"
    failed = run_pipeline(store, _resumable(adult_csv, flag))
    flag.write_text("ok")
    fresh = run_pipeline(store, _resumable(adult_csv, flag))
    assert fresh.id != failed.id
    assert [s.status for s in fresh.steps] == ["cached", "ran", "ran"]
    assert get_pipeline_run(store, failed.id[:10]).status == "failed"


def test_resume_checks_the_run(store, tmp_path, adult_csv):
    with pytest.raises(NotFound, match="no pipeline run"):
        run_pipeline(store, _resumable(adult_csv, tmp_path / "x"), resume="0" * 32)
    run = run_pipeline(store, _resumable(adult_csv, tmp_path / "x"))
    with pytest.raises(Conflict, match="is of pipeline 'resumable'"):
        run_pipeline(store, _train_pipeline(adult_csv), resume=run.id)


# -- checked input ------------------------------------------------------------------------

GOOD = {
    "name": "p",
    "steps": [
        {"name": "ingest", "kind": "ingest", "params": {"path": "a.csv"}},
        {"name": "train", "kind": "train", "inputs": ["ingest"], "params": {"target": "y"}},
    ],
}


def _with(step: int, **changes):
    data = json.loads(json.dumps(GOOD))
    data["steps"][step].update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_with(1, kind="trian"), "step 'train': kind: expected one of .* \\(did you mean 'train'"),
        (_with(1, inputs=["ingset"]), "step 'train': inputs: no step named 'ingset'"),
        (
            _with(0, inputs=["train"]),
            "step 'ingest': inputs: the steps form a cycle \\(ingest -> train -> ingest\\)",
        ),
        (_with(1, inputs=["train"]), "step 'train': inputs: the steps form a cycle"),
        (
            _with(1, params={"target": "y", "n_trees": 3}),
            "step 'train': params: unknown parameter 'n_trees'",
        ),
        (_with(1, params={"target": 3}), "step 'train': params.target: expected text, got 3"),
        (_with(1, params={}), "step 'train': params.target: a train step needs it"),
        (_with(1, params={"target": "y", "model": "gbm"}), "step 'train': params.model: "),
        (_with(1, retries=-1), "step 'train': retries: expected an integer 0..20, got -1"),
        (_with(1, inputs=[]), "step 'train': inputs: a train step needs a dataset"),
        (_with(1, colour="red"), "step 'train': unknown field 'colour'"),
        (_with(0, params={"name": "a"}), "step 'ingest': params: an ingest step needs one of"),
        (_with(1, name="ingest"), "step 'ingest': name: two steps have this name"),
        (_with(1, kind="python", function="no.such.module:f", params={}), "cannot import 'no.such"),
        (
            _with(1, kind="python", function="os.path", params={}),
            "function: expected an importable",
        ),
        ({"name": "p", "steps": []}, "steps: expected a list of steps"),
        ({"name": "p p", "steps": GOOD["steps"]}, "name: expected letters"),
    ],
)
def test_bad_pipelines_are_refused_naming_step_and_field(data, message):
    with pytest.raises(InvalidInput, match=message):
        Pipeline.from_yaml(yaml.safe_dump(data))


def test_a_refused_pipeline_stores_nothing(any_store, adult_csv):
    bad = Pipeline(
        "p",
        [
            Step("ingest", "ingest", params={"path": str(adult_csv)}),
            Step("train", "train", inputs=["ingest", "nope"], params={"target": "income"}),
        ],
    )
    with pytest.raises(InvalidInput, match="no step named 'nope'"):
        run_pipeline(any_store, bad)
    release = Pipeline(
        "p",
        [
            Step("ingest", "ingest", params={"path": str(adult_csv)}),
            Step("train", "train", inputs=["ingest"], params={"target": "income"}),
            Step("release", "release", inputs=["train"], params={"alias": "production"}),
        ],
    )
    with pytest.raises(InvalidInput, match="'production' is gated .*allow_production: true"):
        run_pipeline(any_store, release)
    for table in (_tables.pipeline_runs, _tables.pipeline_steps, _tables.datasets, _tables.events):
        assert _count(any_store, table) == 0
    assert not list(any_store.blobs.root.rglob("*")) or not any(
        p.is_file() for p in any_store.blobs.root.rglob("*")
    )


def test_yaml_text_errors_name_the_line():
    with pytest.raises(InvalidInput, match="pipeline line 3: not valid YAML"):
        Pipeline.from_yaml("name: p\nsteps: [\n  - {")
    with pytest.raises(InvalidInput, match="python step's parameter names"):
        Pipeline("p", [Step("s", function=f"{STEPS}:rows", params={"not a name": 1})]).check()
    with pytest.raises(InvalidInput, match="function: expected an importable"):
        Pipeline("p", [Step("s", function=lambda ctx: 1)]).check()


def test_python_function_objects_become_names():
    from tests.pipeline import steps

    pipe = Pipeline(
        "p", [Step("s", function=steps.flaky, params={"counter": "c", "fail_times": 0})]
    )
    pipe.check()
    assert pipe.to_dict()["steps"][0]["function"] == "tests.pipeline.steps:flaky"
    again = Pipeline.from_dict(pipe.to_dict())
    assert again.spec_json() == pipe.spec_json()


def test_validate_checks_a_stored_dataset_against_a_schema(store, adult_csv):
    ingest = Step("ingest", "ingest", params={"path": str(adult_csv), "name": "adult"})
    first = run_pipeline(store, Pipeline("v", [ingest]))
    schema = get_dataset(store, first["ingest"].output["dataset"]).schema
    ok = run_pipeline(
        store,
        Pipeline(
            "v", [ingest, Step("check", "validate", inputs=["ingest"], params={"schema": schema})]
        ),
    )
    assert ok.ok and ok["ingest"].status == "cached" and ok["check"].output["rows"] == 1500
    for col in schema["columns"]:
        if col["name"] == "age":
            col["max"] = 60
    strict = Step("check", "validate", inputs=["ingest"], params={"schema": schema}, retries=2)
    bad = run_pipeline(store, Pipeline("v", [ingest, strict]))
    assert bad["check"].status == "failed" and bad["check"].attempts == 1
    assert "ValidationFailed" in bad["check"].error and "age" in bad["check"].error


# -- the whole flow and its lineage -------------------------------------------------------


def test_the_flow_ends_in_a_release_and_every_step_is_in_lineage(any_store, tmp_path, adult_csv):
    any_store.settings = {
        "audit": {"sensitive": ["sex"], "policy": ["performance.roc_auc >= 0.6"]},
    }
    (tmp_path / "adult.csv").write_bytes(adult_csv.read_bytes())
    spec = tmp_path / "flow.yaml"
    spec.write_text(
        """
name: flow
steps:
  - {name: ingest, kind: ingest, params: {path: adult.csv, name: adult}}
  - name: train
    kind: train
    inputs: [ingest]
    params: {target: income, params: {n_estimators: 10}, register: income}
  - {name: audit, kind: audit, inputs: [train], params: {sections: [performance], n_boot: 10}}
  - {name: gate, kind: gate, inputs: [audit]}
  - {name: export, kind: export, inputs: [gate]}
  - {name: release, kind: release, inputs: [export], params: {alias: candidate}}
"""
    )
    run = run_pipeline(any_store, spec)  # a path: relative paths are from its folder
    assert run.ok, [(s.name, s.error) for s in run.steps]
    assert run["release"].output == {"model": "income/1", "alias": "candidate"}
    assert registry.get_version(any_store, "income@candidate").version == 1
    assert run["gate"].output["passed"] is True

    tree = lineage(any_store, "model", "income/1")
    nodes = {(n.kind, n.id, n.role) for n in tree.walk()}
    train_node = ("step", f"{run.id}/train")
    assert (*train_node, "made_by") in nodes
    assert ("pipeline", run.id, "part_of") in nodes
    assert ("step", f"{run.id}/ingest", "input:ingest") in nodes
    assert any(k == "blob" and role == "spec" for k, _, role in nodes)
    ds_sha = run["ingest"].output["sha"]
    assert any(n.kind == "step" for n in lineage(any_store, "dataset", ds_sha).parents)
    release_tree = lineage(any_store, "step", f"{run.id}/release")
    assert ("model", "income/1", "releases") in {
        (n.kind, n.id, n.role) for n in release_tree.parents
    }
    evidence = run["audit"].output["evidence"]
    assert lineage(any_store, "evidence", str(evidence)).parents  # made_by the audit step
    # every step execution is an event
    steps = {e["payload"]["step"] for e in any_store.events("pipeline_step")}
    assert steps == {"ingest", "train", "audit", "gate", "export", "release"}


def test_a_failing_gate_stops_the_run_before_release(store, adult_csv):
    store.settings = {"audit": {"policy": ["performance.roc_auc >= 0.999"]}}
    pipe = Pipeline(
        "gated",
        [
            Step("ingest", "ingest", params={"path": str(adult_csv), "name": "adult"}),
            Step(
                "train",
                "train",
                inputs=["ingest"],
                params={"target": "income", "params": {"n_estimators": 5}},
            ),
            Step(
                "audit",
                "audit",
                inputs=["train"],
                params={"sections": ["performance"], "n_boot": 10},
            ),
            Step("gate", "gate", inputs=["audit"], retries=3),
            Step("release", "release", inputs=["gate"], params={"alias": "candidate"}),
        ],
    )
    run = run_pipeline(store, pipe)
    assert run.status == "failed" and run["gate"].status == "failed"
    assert run["gate"].attempts == 1  # a failed gate is not retried
    assert "performance.roc_auc >= 0.999" in run["gate"].error
    assert run["release"].status == "pending"
    with pytest.raises(NotFound):
        registry.get_version(store, "adult@candidate")


def test_production_when_the_project_allows_it_and_the_gates_pass(store, adult_csv):
    def flow(alias: str) -> Pipeline:
        return Pipeline(
            "prod",
            [
                Step("ingest", "ingest", params={"path": str(adult_csv), "name": "adult"}),
                Step("train", "train", inputs=["ingest"], params={"target": "income"}),
                Step("audit", "audit", inputs=["train"], params={"sections": ["performance"]}),
                Step("release", "release", inputs=["audit"], params={"alias": alias}),
            ],
        )

    store.settings = {
        "audit": {"policy": ["performance.roc_auc >= 0.999"]},
        "pipeline": {"allow_production": True},
    }
    refused = run_pipeline(store, flow("production"))
    assert refused["release"].status == "failed" and "fails the project's gates" in (
        refused["release"].error
    )
    store.settings["audit"] = {"policy": ["performance.roc_auc >= 0.6"]}
    released = run_pipeline(store, flow("production"))  # the policy is part of the key
    assert released.ok and released["release"].status == "ran"
    assert registry.get_version(store, "adult@production").version == 1


# -- Ray ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_pipeline_on_a_real_local_ray_cluster(store, tmp_path, adult_csv):
    pytest.importorskip("ray")

    pipe = Pipeline(
        "on-ray",
        [
            Step("ingest", "ingest", params={"path": str(adult_csv), "name": "adult"}),
            Step(
                "train",
                "train",
                inputs=["ingest"],
                params={"target": "income", "params": {"n_estimators": 5}},
            ),
            Step(
                "audit",
                "audit",
                inputs=["train"],
                params={"sections": ["performance"], "n_boot": 10},
            ),
        ],
    )
    run = run_pipeline(store, pipe, executor="ray", workers=2)  # started and shut down
    assert run.ok, [(s.name, s.error) for s in run.steps]
    assert run.executor == "ray" and [s.status for s in run.steps] == ["ran", "ran", "ran"]
    assert registry.get_version(store, "adult/1").run_id == run["train"].output["run"]
    again = run_pipeline(store, pipe)  # inline now: the cache holds Ray's outputs
    assert [s.status for s in again.steps] == ["cached", "cached", "cached"]


# -- CLI and the public namespace ---------------------------------------------------------


def test_cli_runs_and_shows_a_pipeline(tmp_path, adult_csv, capsys):
    from keel import project

    project.init(tmp_path / "proj").close()
    spec = tmp_path / "proj" / "p.yaml"
    spec.write_text(yaml.safe_dump(_train_pipeline(adult_csv).to_dict()))
    assert main(["pipeline", "run", str(spec), "-C", str(tmp_path / "proj"), "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert [s["status"] for s in run["steps"]] == ["ran", "ran"]
    assert main(["pipeline", "show", run["id"][:8], "-C", str(tmp_path / "proj")]) == 0
    shown = capsys.readouterr().out
    assert "succeeded" in shown and "train" in shown and "cached" not in shown
    assert main(["pipeline", "list", "-C", str(tmp_path / "proj"), "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [run["id"]]

    bad = tmp_path / "proj" / "bad.yaml"
    bad.write_text("name: p\nsteps:\n  - {name: a, kind: trian}\n")
    assert main(["pipeline", "run", str(bad), "-C", str(tmp_path / "proj")]) == 2
    assert "step 'a': kind: expected one of" in capsys.readouterr().err


def test_all_is_complete():
    mod = importlib.import_module("keel.pipeline")
    public = {
        n
        for n, obj in vars(mod).items()
        if not n.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__.startswith("keel.pipeline")
    }
    assert public <= set(mod.__all__)
    assert all(hasattr(mod, n) for n in mod.__all__)


def test_a_gate_step_says_why_it_failed_on_a_missing_section_or_no_rules(store, adult_csv):
    steps = [
        Step("ingest", "ingest", params={"path": str(adult_csv), "name": "adult"}),
        Step(
            "train",
            "train",
            inputs=["ingest"],
            params={"target": "income", "params": {"n_estimators": 5}},
        ),
        Step(
            "audit", "audit", inputs=["train"], params={"sections": ["performance"], "n_boot": 10}
        ),
        Step("gate", "gate", inputs=["audit"]),
    ]
    store.settings = {"audit": {"policy": ["fairness.sex.demographic_parity_difference <= 0.1"]}}
    run = run_pipeline(store, Pipeline("missing", steps))
    assert run["gate"].status == "failed"
    assert "the evidence has no fairness section" in run["gate"].error
    store.settings = {"audit": {"policy": []}}
    run = run_pipeline(store, Pipeline("empty", steps))
    assert run["gate"].status == "failed" and "no rules" in run["gate"].error
