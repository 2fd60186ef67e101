"""The keel command end to end, and bad input that must leave the store unchanged."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from keel.cli import main
from keel.store import _tables


def keel(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def keel_json(capsys, *args):
    code, out, err = keel(capsys, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def snapshot(root: Path) -> dict:
    """Row counts of every table and the set of blob files: the store's observable state."""
    from keel.project import open_project

    with open_project(root) as proj:
        with proj.store.read() as conn:
            counts = {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar()
                for t in _tables.metadata.sorted_tables
            }
        blobs = sorted(p.name for p in proj.blob_root.rglob("*") if p.is_file())
    return {"rows": counts, "blobs": blobs}


@pytest.fixture
def project(tmp_path, capsys):
    root = tmp_path / "proj"
    code, out, _ = keel(capsys, "init", root)
    assert code == 0 and "project" in out
    rows = "".join(f"{20 + i},{['Oslo', 'Rome'][i % 2]},{i % 2}\n" for i in range(20))
    (root / "good.csv").write_text("age,city,label\n" + rows)
    keel_json(capsys, "ingest", root / "good.csv", "--name", "people", "-C", root)
    return root


def test_ingest_list_and_show(project, capsys):
    items = keel_json(capsys, "datasets", "-C", project)
    assert [(d["ref"], d["n_rows"]) for d in items] == [("people/1", 20)]
    again = keel_json(capsys, "ingest", project / "good.csv", "--name", "people", "-C", project)
    assert again["dataset"]["version"] == 1  # same bytes: same version, stored once


def test_quarantine_keeps_good_rows(project, capsys):
    (project / "mixed.csv").write_text("age,city,label\n30,Oslo,1\nold,Rome,0\n35,Oslo,1\n")
    schema = project / "schema.yaml"
    schema.write_text(
        "columns:\n"
        "  - {name: age, type: int}\n  - {name: city, type: string}\n  - {name: label, type: int}\n"
    )
    out = keel_json(
        capsys,
        "ingest",
        project / "mixed.csv",
        "--schema",
        schema,
        "--on-error",
        "quarantine",
        "--name",
        "mixed",
        "-C",
        project,
    )
    assert out["dataset"]["n_rows"] == 2
    assert out["quarantine"]["n_rows"] == 1 and out["quarantine"]["name"] == "mixed.quarantine"


BAD_INPUTS = {
    "wrong type": (
        "age,city,label\n30,Oslo,1\nforty,Rome,0\n",
        ["row 2 (line 3)", "'age'", "forty"],
    ),
    "missing column": ("age,label\n30,1\n", ["missing column", "'city'"]),
    "empty file": ("", ["empty"]),
    "non-UTF-8": (b"age,city,label\n30,M\xfcnchen,1\n", ["not valid UTF-8", "line 2"]),
    "huge field": ('age,city,label\n30,"' + "x" * 1_100_000 + '",1\n', ["larger than the limit"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_files_give_one_clear_message_and_change_nothing(project, capsys, case):
    content, needles = BAD_INPUTS[case]
    bad = project / "bad.csv"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    schema = project / "schema.yaml"
    schema.write_text(
        "columns:\n  - {name: age, type: int, min: 0, max: 120}\n"
        "  - {name: city, type: string}\n  - {name: label, type: int}\n"
    )
    before = snapshot(project)
    code, out, err = keel(capsys, "ingest", bad, "--schema", schema, "-C", project)
    assert code == 2 and out == ""
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    assert snapshot(project) == before


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "people", "-t", "label", "-m", "gpt5"], "unknown model 'gpt5'"),
        (["train", "people", "-t", "salary"], "target: column 'salary'"),
        (["train", "nobody", "-t", "label"], "dataset 'nobody' does not exist"),
        (["train", "people", "-t", "label", "-p", "novalue"], "expected KEY=VALUE"),
        (["ingest", "good.csv", "--on-error", "ignore"], "on_error: expected one of"),
        (["alias", "ghost/1", "production"], "'ghost' is not registered"),
    ],
)
def test_bad_flags_are_named_and_change_nothing(project, capsys, args, needle):
    before = snapshot(project)
    os.chdir(project)
    code, _, err = keel(capsys, *args)
    assert code in (1, 2), err
    assert needle in err and "Traceback" not in err
    assert snapshot(project) == before


def test_bad_schema_yaml_names_the_line(project, capsys):
    schema = project / "schema.yaml"
    schema.write_text("columns:\n  - {name: age, type: integer}\n")
    before = snapshot(project)
    code, _, err = keel(capsys, "ingest", project / "good.csv", "--schema", schema, "-C", project)
    assert code == 2 and "columns[0].type" in err and "integer" in err
    schema.write_text("columns: [\n  - oops\n")
    code, _, err = keel(capsys, "ingest", project / "good.csv", "--schema", schema, "-C", project)
    assert code == 2 and "line" in err
    assert snapshot(project) == before


def test_bad_feature_spec_yaml_changes_nothing(project, capsys):
    spec = project / "features.yaml"
    spec.write_text("steps:\n  - {op: scal, columns: [age]}\n")
    before = snapshot(project)
    code, _, err = keel(capsys, "train", "people", "-t", "label", "--features", spec, "-C", project)
    assert code == 2 and "steps[0].op" in err and "scal" in err
    assert snapshot(project) == before


@pytest.mark.slow
def test_train_register_alias_lineage_runs(project, capsys, tmp_path):
    from keel.datasets import write_adult_csv

    paths = write_adult_csv(tmp_path / "adult")
    keel_json(capsys, "ingest", paths["train"], "--name", "adult", "-C", project)
    out = keel_json(
        capsys,
        "train",
        "adult",
        "-t",
        "income",
        "-p",
        "n_estimators=50",
        "--register",
        "income",
        "-C",
        project,
    )
    assert out["registered"] == "income/1" and out["metrics"]["roc_auc"] > 0.85
    moved = keel_json(capsys, "alias", "income/1", "candidate", "--why", "first", "-C", project)
    assert moved["history"][0]["to_version"] == 1 and moved["history"][0]["why"] == "first"
    models = keel_json(capsys, "models", "-C", project)
    assert models == [{"name": "income", "latest": 1, "versions": 1, "aliases": {"candidate": 1}}]
    tree = keel_json(capsys, "lineage", "income@candidate", "-C", project)["tree"]
    run = tree["parents"][0]
    assert run["kind"] == "run" and run["id"] == out["run_id"]
    ds = run["parents"][0]
    assert ds["kind"] == "dataset" and ds["parents"][0]["kind"] == "source"
    runs = keel_json(capsys, "runs", "-C", project)
    assert runs[0]["id"] == out["run_id"] and runs[0]["metrics"]["holdout_roc_auc"] > 0.85
    code, text, _ = keel(capsys, "lineage", "income/1", "-C", project)
    assert code == 0 and "adult/1" in text and "adult-train.csv" in text


def test_every_command_has_help_with_an_example():
    exe = Path(sys.executable).parent / "keel"
    for cmd in [
        "init",
        "ingest",
        "datasets",
        "train",
        "runs",
        "models",
        "alias",
        "lineage",
        "demo",
        "audit",
        "gate",
        "mitigate",
        "card",
        "defend",
        "epsilon",
        "compare",
        "serve",
        "release",
        "signing-key",
        "monitor run",
        "pipeline run",
    ]:
        out = subprocess.run(
            [exe, *cmd.split(), "--help"], capture_output=True, text=True, check=True
        )
        assert "Example: keel" in out.stdout, cmd


@pytest.mark.parametrize(
    "args",
    [["--bogus"], ["ingest", "x.csv", "--bogus"], ["runs", "--limit", "x"], ["train"]],
)
def test_usage_errors_print_usage_not_a_traceback(capsys, args):
    code, out, err = keel(capsys, *args)
    assert code == 2
    assert "Usage: keel" in err and "Traceback" not in out + err


def test_version_and_os_errors(capsys, tmp_path):
    import keel as k

    code, out, _ = keel(capsys, "--version")
    assert code == 0 and out.strip() == f"keel {k.__version__}"
    (tmp_path / "file").write_text("x")
    code, _, err = keel(capsys, "init", tmp_path / "file" / "sub")
    assert code == 1 and "os_error" in err and "Traceback" not in err


def test_register_name_checked_before_training(project, capsys):
    before = snapshot(project)
    code, _, err = keel(
        capsys, "train", "people", "-t", "label", "--register", "bad name!", "-C", project
    )
    assert code == 2 and "--register" in err
    assert snapshot(project) == before


def test_negative_trials_and_bad_param_types_are_refused(project, capsys):
    before = snapshot(project)
    code, _, err = keel(capsys, "train", "people", "-t", "label", "--trials", "-3", "-C", project)
    assert code == 2 and "--trials" in err
    code, _, err = keel(
        capsys, "train", "people", "-t", "label", "-p", "num_leaves=abc", "-C", project
    )
    assert code == 2 and "'num_leaves': expected a number like 31, got 'abc'" in err
    assert snapshot(project) == before


def test_search_keeps_split_options_and_fixed_params(project, capsys):
    rows = "".join(f"{20 + i},{['Oslo', 'Rome'][i % 2]},{i % 2},{i}\n" for i in range(40))
    (project / "timed.csv").write_text("age,city,label,when\n" + rows)
    keel_json(capsys, "ingest", project / "timed.csv", "--name", "timed", "-C", project)
    out = keel_json(
        capsys,
        "train",
        "timed",
        "-t",
        "label",
        "-m",
        "random_forest",
        "--trials",
        "2",
        "--executor",
        "inline",
        "--split",
        "time",
        "--time-col",
        "when",
        "--test-size",
        "0.25",
        "-p",
        "n_estimators=15",
        "-C",
        project,
    )
    run = keel_json(capsys, "runs", "--id", out["run_id"], "-C", project)
    assert run["params"]["model.n_estimators"] == 15
    assert run["params"]["n_test"] == 10 and run["params"]["split"] == "time"


def test_signing_key_then_a_signed_bundle_verifies(project, capsys, tmp_path):
    from keel.export import verify_bundle

    keel_json(capsys, "train", "people", "-t", "label", "--register", "people-m", "-C", project)
    key = tmp_path / "edge.pem"
    out = keel_json(capsys, "signing-key", key)
    assert out == {"private": str(key), "public": str(tmp_path / "edge.pub")}
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    code, _, err = keel(capsys, "signing-key", key)
    assert code == 2 and "exists" in err  # never overwrites a key
    bundle = tmp_path / "m.tar.gz"
    code, text, err = keel(
        capsys, "bundle", "people-m/1", "--out", bundle, "--archive", "--key", key, "-C", project
    )
    assert code == 0, err
    assert f"tar -xzf {bundle} m/runner.py" in text and "--public-key" in text
    manifest = verify_bundle(bundle, public_key=tmp_path / "edge.pub")
    assert manifest["model"]["name"] == "people-m"


def test_runs_id_and_datasets_name_show_one_item(project, capsys):
    out = keel_json(
        capsys, "train", "people", "-t", "label", "--register", "people-m", "-C", project
    )
    rows = "".join(f"{30 + i},{['Oslo', 'Rome', 'Bergen'][i % 3]},{i % 2}\n" for i in range(30))
    (project / "more.csv").write_text("age,city,label\n" + rows)
    keel_json(capsys, "ingest", project / "more.csv", "--name", "people", "-C", project)

    code, text, err = keel(capsys, "runs", out["run_id"][:10], "-C", project)
    assert code == 0, err
    assert out["run_id"] in text and "params" in text and "metrics" in text
    assert "holdout_roc_auc" in text and "tags" in text
    assert "people/1" in text and "good.csv" in text  # lineage: dataset and its source
    assert "people-m/1" in text  # what was registered from it
    run = keel_json(capsys, "runs", out["run_id"][:10], "-C", project)
    assert run["id"] == out["run_id"] and run["registered"] == ["people-m/1"]
    assert run["lineage"]["parents"][0]["kind"] == "dataset"
    assert keel_json(capsys, "runs", "--id", out["run_id"], "-C", project)["id"] == out["run_id"]
    code, _, err = keel(capsys, "runs", "nope", "-C", project)
    assert code == 1 and "run 'nope' does not exist" in err

    code, text, err = keel(capsys, "datasets", "people", "-C", project)
    assert code == 0, err
    assert "people/1" in text and "people/2" in text  # the versions
    assert "age" in text and "int" in text and "Bergen" in text  # schema and profile of v2
    one = keel_json(capsys, "datasets", "people/1", "-C", project)
    assert one["dataset"]["ref"] == "people/1" and [v["ref"] for v in one["versions"]] == [
        "people/1",
        "people/2",
    ]
    assert one["profile"]["columns"]["city"]["distinct"] == 2
    code, _, err = keel(capsys, "datasets", "ghost", "-C", project)
    assert code == 1 and "dataset 'ghost' does not exist" in err


def test_search_progress_names_the_metric(project, capsys):
    exe = Path(sys.executable).parent / "keel"
    args = ["train", "people", "-t", "label", "-m", "logistic_regression", "--trials", "2"]
    args += ["--executor", "inline", "-C", str(project)]
    done = subprocess.run([exe, *args], capture_output=True, text=True, check=True)
    assert "best val_roc_auc " in done.stdout, done.stdout
    rows = "".join(f"{20 + i},{['a', 'b', 'c'][i % 3]},{'xyz'[i % 3]}\n" for i in range(45))
    (project / "three.csv").write_text("age,city,label\n" + rows)
    keel_json(capsys, "ingest", project / "three.csv", "--name", "three", "-C", project)
    args[1] = "three"
    done = subprocess.run([exe, *args], capture_output=True, text=True, check=True)
    assert "best val_neg_log_loss -" in done.stdout, done.stdout  # not called roc_auc


def test_audit_flags_a_disparate_impact_under_four_fifths(tmp_path, capsys):
    n = 200
    group = ["A"] * (n // 2) + ["B"] * (n // 2)
    # group A is selected half the time, group B a fifth of the time: ratio 0.4
    score = [0.9 if i % 2 == 0 else 0.1 for i in range(n // 2)]
    score += [0.9 if i % 5 == 0 else 0.1 for i in range(n // 2)]
    label = [int(s > 0.5) for s in score]
    lines = "".join(f"{g},{s},{y}\n" for g, s, y in zip(group, score, label, strict=True))
    (tmp_path / "p.csv").write_text("g,p,y\n" + lines)
    args = ["audit", "--predictions", tmp_path / "p.csv", "--label", "y", "--score", "p"]
    code, text, err = keel(capsys, *args, "--sensitive", "g", "--n-boot", "20")
    assert code == 0, err
    assert "four-fifths rule" in text and "FAILS" in text and "0.40" in text, text
    assert "under 0.8" in text and "B" in text
    fair = [f"{g},{s},{y}\n" for g, s, y in zip(group, score[: n // 2] * 2, label, strict=True)]
    (tmp_path / "q.csv").write_text("g,p,y\n" + "".join(fair))
    args[2] = tmp_path / "q.csv"
    code, text, err = keel(capsys, *args, "--sensitive", "g", "--n-boot", "20")
    assert code == 0 and "four-fifths rule" in text and "FAILS" not in text, err


def test_bundle_hint_commands_work_as_printed(project, capsys, tmp_path):
    import shlex

    keel_json(capsys, "train", "people", "-t", "label", "--register", "people-m", "-C", project)
    bundle = tmp_path / "out" / "m.tar.gz"
    bundle.parent.mkdir()
    code, text, err = keel(
        capsys, "bundle", "people-m/1", "--out", bundle, "--archive", "-C", project
    )
    assert code == 0, err
    hints = [line.split(": ", 1)[1] for line in text.splitlines() if ": " in line]
    get, run = [h for h in hints if h.startswith(("tar ", "python "))]
    work = tmp_path / "edge"
    work.mkdir()
    (work / "rows.csv").write_text("age,city\n31,Oslo\n44,Rome\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for cmd in (get, run):
        done = subprocess.run(shlex.split(cmd), cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{cmd}: {done.stderr}"
    assert done.stdout.count("\n") >= 2  # one answer per row


def test_readme_says_nothing_that_is_here_comes_next():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "come next" not in text and "comes next" not in text
    assert "tar -xzf income.tar.gz runner.py" not in text


def test_monitor_run_shows_fairness_prediction_drift_and_quality(tmp_path, capsys):
    import numpy as np
    import pandas as pd
    import yaml

    from keel import registry
    from keel.project import open_project
    from keel.serve import PredictionLog, ingest_labels

    root = tmp_path / "proj"
    keel(capsys, "init", root)
    cfg = root / "keel.yaml"
    cfg.write_text(
        yaml.safe_dump({**yaml.safe_load(cfg.read_text()), "audit": {"sensitive": ["city"]}})
    )
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"age": rng.integers(20, 70, 400), "city": rng.choice(["Oslo", "Rome"], 400)})
    df["label"] = np.where((df.age > 45) | (df.city == "Oslo"), "yes", "no")
    df.to_csv(root / "d.csv", index=False)
    keel_json(capsys, "ingest", root / "d.csv", "--name", "people", "-C", root)
    args = ["train", "people", "-t", "label", "-m", "logistic_regression", "--register", "people"]
    keel_json(capsys, *args, "-C", root)
    keel_json(capsys, "alias", "people/1", "production", "-C", root)
    traffic = df.assign(age=df.age + 15).astype({"age": "float"})
    traffic.loc[:20, "age"] = None  # missing values: a data-quality issue
    with open_project(root) as proj:
        model = registry.load(proj.store, "people/1")
        X = traffic.drop(columns=["label"])
        proba = model.predict_proba(X)
        entries = [
            {
                "request_id": f"r{i}",
                "model": "people",
                "version": 1,
                "inputs": {k: (None if v != v else v) for k, v in row.items()},
                "ts": 1e6 + i,
                "outputs": {
                    "label": ["no", "yes"][int(p[1] >= 0.5)],
                    "probabilities": {"no": float(p[0]), "yes": float(p[1])},
                },
            }
            for i, (row, p) in enumerate(zip(X.to_dict("records"), proba, strict=True))
        ]
        with PredictionLog(proj.store) as log:
            log.record(entries)
        ids = [f"r{i}" for i in range(len(df))]
        pd.DataFrame({"request_id": ids, "y": df["label"]}).to_csv(root / "y.csv", index=False)
        ingest_labels(proj.store, root / "y.csv", label_col="y")
    code, text, err = keel(capsys, "monitor", "run", "people", "--min-labels", "50", "-C", root)
    assert code == 0, err
    assert "prediction drift" in text and "score" in text
    assert "data quality" in text and "null_rate_up" in text and "age" in text
    assert "fairness" in text and "disparate_impact_ratio" in text
    assert "four-fifths rule" in text
