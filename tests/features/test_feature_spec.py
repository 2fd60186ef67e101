"""FeatureSpec: YAML and dict round-trips, hashing, inference, and messages for bad specs."""

from __future__ import annotations

import json

import pytest

import keel.features
from keel.errors import InvalidInput
from keel.features import KNOWN_OPS, FeatureSpec, ImputeStep, OneHotStep, ScaleStep

SPEC_YAML = """\
target: income
steps:
  - op: impute
    columns: [age, hours-per-week]
    strategy: median
  - op: scale
    columns: [age, hours-per-week]
  - op: impute
    columns: [workclass, native-country]
    strategy: constant
    fill_value: missing
  - op: onehot
    columns: [workclass, native-country]
    min_frequency: 2
remainder: drop
"""


def test_public_names_are_all_listed() -> None:
    public = {n for n in vars(keel.features) if not n.startswith("_")}
    assert public == set(keel.features.__all__)


def test_yaml_round_trip() -> None:
    spec = FeatureSpec.from_yaml(SPEC_YAML)
    assert spec.target == "income"
    assert [s.op for s in spec.steps] == ["impute", "scale", "impute", "onehot"]
    again = FeatureSpec.from_yaml(spec.to_yaml())
    assert again == spec
    assert again.hash() == spec.hash()


def test_dict_round_trip_and_op_first_in_output() -> None:
    spec = FeatureSpec.from_yaml(SPEC_YAML)
    data = spec.to_dict()
    assert FeatureSpec.from_dict(data) == spec
    assert list(data["steps"][0])[0] == "op"
    json.dumps(data)  # plain JSON types only


def test_from_yaml_reads_a_file(tmp_path) -> None:
    path = tmp_path / "features.yaml"
    path.write_text(SPEC_YAML, encoding="utf-8")
    assert FeatureSpec.from_yaml(path) == FeatureSpec.from_yaml(str(path))
    assert FeatureSpec.from_yaml(path) == FeatureSpec.from_yaml(SPEC_YAML)


def test_missing_file_is_named(tmp_path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InvalidInput, match="nope.yaml"):
        FeatureSpec.from_yaml(missing)


def test_python_construction_matches_yaml() -> None:
    spec = FeatureSpec(
        target="y",
        steps=[ImputeStep(columns=["a"]), ScaleStep(columns="a", method="robust")],
    )
    assert spec == FeatureSpec.from_yaml(
        "target: y\nsteps:\n  - {op: impute, columns: [a]}\n"
        "  - {op: scale, columns: a, method: robust}\n"
    )


def test_hash_is_stable_across_runs() -> None:
    spec = FeatureSpec.from_dict({"target": "y", "steps": [{"op": "impute", "columns": ["a"]}]})
    # frozen value: a change here means every stored spec hash changes
    assert spec.hash() == "aec174617de60a479b6475b7764dbe871a3230b3078fb2a9ee5c58f2ef4e02bd"


def test_hash_ignores_key_order_and_written_defaults() -> None:
    short = {"steps": [{"op": "onehot", "columns": ["a"]}], "target": "y"}
    full = {
        "remainder": "drop",
        "target": "y",
        "steps": [
            {
                "handle_unknown": "infrequent_if_exist",
                "columns": ["a"],
                "max_categories": None,
                "op": "onehot",
            }
        ],
    }
    assert FeatureSpec.from_dict(short).hash() == FeatureSpec.from_dict(full).hash()
    assert len(FeatureSpec.from_dict(short).hash()) == 64


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("steps", 0, "strategy"), "mean"),
        (("steps", 1, "method"), "minmax"),
        (("steps", 3, "min_frequency"), 3),
        (("steps", 3, "columns"), ["native-country", "workclass"]),
        (("target",), "income2"),
        (("remainder",), "passthrough"),
    ],
)
def test_hash_changes_with_any_option(path: tuple, value: object) -> None:
    base = FeatureSpec.from_yaml(SPEC_YAML)
    data = base.to_dict()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert FeatureSpec.from_dict(data).hash() != base.hash()


def test_infer_default_spec() -> None:
    spec = FeatureSpec.infer(
        {
            "age": "int",
            "fnlwgt": "float",
            "workclass": "string",
            "race": "category",
            "married": "bool",
            "signup": "datetime",
            "income": "category",
        },
        target="income",
    )
    ops = [(s.op, s.columns) for s in spec.steps]
    assert ops == [
        ("impute", ["age", "fnlwgt"]),
        ("passthrough", ["married"]),
        ("impute", ["married"]),
        ("impute", ["workclass", "race"]),
        ("onehot", ["workclass", "race"]),
        ("date_parts", ["signup"]),
        ("impute", ["signup"]),
    ]
    assert spec.steps[0].strategy == "median"
    assert spec.steps[3].strategy == "constant" and spec.steps[3].fill_value == "missing"
    assert spec.target == "income"
    assert all("income" not in s.columns for s in spec.steps)


def test_infer_refuses_unknown_logical_type() -> None:
    with pytest.raises(InvalidInput, match=r"'when'.*'timestamp'.*datetime"):
        FeatureSpec.infer({"when": "timestamp"})


def _error(text: str) -> str:
    with pytest.raises(InvalidInput) as info:
        FeatureSpec.from_yaml(text)
    return str(info.value)


def test_unknown_op_lists_known_ops() -> None:
    message = _error("steps:\n  - {op: impute, columns: [a]}\n  - {op: scal, columns: [a]}\n")
    assert "steps[1].op" in message
    assert "'scal'" in message
    assert "line 3" in message
    for op in KNOWN_OPS:
        assert op in message


def test_missing_op_is_named() -> None:
    message = _error("steps:\n  - {columns: [a]}\n")
    assert "steps[0].op" in message and "missing" in message


def test_wrong_option_value_names_field_expected_and_given() -> None:
    message = _error("steps:\n  - {op: impute, columns: [a], strategy: 3}\n")
    assert "steps[0].strategy" in message
    assert "'median'" in message  # what was expected
    assert "got 3" in message  # what was given


def test_wrong_option_type_names_field() -> None:
    message = _error("steps:\n  - {op: onehot, columns: [a], min_frequency: lots}\n")
    assert "steps[0].min_frequency" in message
    assert "'lots'" in message


def test_unknown_option_lists_the_op_options() -> None:
    message = _error("steps:\n  - {op: onehot, columns: [a], handle_unknow: ignore}\n")
    assert "steps[0].handle_unknow" in message
    assert "handle_unknown" in message and "min_frequency" in message


def test_unknown_top_level_field() -> None:
    message = _error("stepz: []\n")
    assert "stepz" in message and "target, steps, remainder" in message


def test_several_problems_are_all_reported() -> None:
    message = _error("remainder: keep\nsteps:\n  - {op: scale, columns: [a], method: zscore}\n")
    assert "remainder" in message and "steps[0].method" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("steps:\n  - {op: impute, columns: [a]\n  - x\n", 3),
        ("steps: [\n", 2),
        ("target: y\n  steps: oops\n", 2),
    ],
)
def test_bad_yaml_names_the_line(text: str, line: int) -> None:
    message = _error(text)
    assert "not valid YAML" in message
    assert f"line {line}" in message


def test_top_level_must_be_a_mapping() -> None:
    assert "mapping" in _error("- a\n- b\n")


@pytest.mark.parametrize(
    ("steps", "words"),
    [
        ([{"op": "clip", "columns": ["a"]}], ["steps[0]", "lower, upper"]),
        ([{"op": "clip", "columns": ["a"], "lower": 5, "upper": 1}], ["steps[0]", "above"]),
        ([{"op": "impute", "columns": ["a"], "fill_value": 0}], ["steps[0]", "constant"]),
        ([{"op": "impute", "columns": []}], ["steps[0].columns", "at least 1"]),
        ([{"op": "impute", "columns": ["a", "a"]}], ["steps[0].columns", "'a'"]),
        ([{"op": "interact", "columns": ["a"]}], ["steps[0].columns", "at least 2"]),
        ([{"op": "date_parts", "columns": ["d"], "parts": ["week"]}], ["steps[0].parts[0]"]),
        ([{"op": "onehot", "columns": ["a"], "min_frequency": 2.5}], ["min_frequency"]),
        (
            [{"op": "impute", "columns": ["a"]}, {"op": "drop", "columns": ["a"]}],
            ["steps[1] (drop)", "steps[0] (impute)", "'a'"],
        ),
        (
            [{"op": "onehot", "columns": ["a"]}, {"op": "ordinal", "columns": ["a"]}],
            ["steps[1] (ordinal)", "already encoded"],
        ),
        (
            [{"op": "onehot", "columns": ["a"]}, {"op": "interact", "columns": ["a", "b"]}],
            ["steps[1] (interact)", "steps[0] (onehot)"],
        ),
        (
            [{"op": "clip", "columns": ["d"], "lower": 0}, {"op": "date_parts", "columns": ["d"]}],
            ["steps[1] (date_parts)", "first"],
        ),
    ],
)
def test_bad_steps_name_the_step(steps: list, words: list[str]) -> None:
    with pytest.raises(InvalidInput) as info:
        FeatureSpec.from_dict({"steps": steps})
    for word in words:
        assert word in str(info.value)


def test_target_cannot_be_a_feature() -> None:
    with pytest.raises(InvalidInput, match=r"steps\[0\] \(impute\).*'y' is the target"):
        FeatureSpec.from_dict({"target": "y", "steps": [{"op": "impute", "columns": ["y"]}]})


def test_python_construction_raises_invalid_input() -> None:
    with pytest.raises(InvalidInput, match=r"steps\[0\].method"):
        FeatureSpec(steps=[{"op": "scale", "columns": ["a"], "method": "zscore"}])


def test_spec_is_immutable() -> None:
    spec = FeatureSpec(steps=[OneHotStep(columns=["a"])])
    with pytest.raises(ValueError):
        spec.target = "a"  # type: ignore[misc]
