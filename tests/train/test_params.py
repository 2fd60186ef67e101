"""Model parameters are checked by name and value before a run opens."""

from __future__ import annotations

import pytest

from keel.cli import main
from keel.data import ingest
from keel.errors import InvalidInput
from keel.train import get_run, list_runs, train


@pytest.mark.parametrize(
    ("model", "params", "needle"),
    [
        ("lightgbm", {"num_leavs": 5}, "'num_leavs'.*did you mean 'num_leaves'"),
        ("random_forest", {"n_estimator": 5}, "'n_estimator'.*did you mean 'n_estimators'"),
        ("lightgbm", {"learning_rate": -1}, "parameter 'learning_rate' = -1: .*learning_rate"),
        ("lightgbm", {"num_leaves": 1}, "parameter 'num_leaves' = 1"),
        ("random_forest", {"n_estimators": -1}, "'n_estimators'.*-1"),
    ],
)
def test_bad_parameters_are_refused_and_record_nothing(imbalanced, model, params, needle):
    with pytest.raises(InvalidInput, match=needle):
        train(imbalanced, "default", "y", model=model, params=params)
    assert list_runs(imbalanced) == []


def test_native_lightgbm_names_and_aliases_are_accepted(imbalanced):
    res = train(
        imbalanced,
        "default",
        "y",
        params={"n_estimators": 5, "min_data_in_leaf": 5, "feature_fraction": 0.9},
    )
    assert get_run(imbalanced, res.run_id)["params"]["model.min_data_in_leaf"] == 5


def test_cli_names_the_parameter_without_a_traceback(imbalanced, tmp_path, capsys):
    from keel.project import init

    root = tmp_path / "proj"
    with init(root) as proj:
        ingest(proj.store, tmp_path / "default.csv", name="default")
    capsys.readouterr()
    code = main(["train", "default", "-t", "y", "-p", "learning_rate=-1", "-C", str(root)])
    _, err = capsys.readouterr()
    assert code != 0 and "Traceback" not in err
    assert "'learning_rate' = -1" in err
