"""compile_spec: real fits on small frames, compared with scikit-learn's own pipelines."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from keel.errors import InvalidInput
from keel.features import FeatureSpec, compile_spec, feature_origins

# rows of UCI Adult (age, workclass, education, capital-gain, hours-per-week,
# native-country, income), with a few values blanked to test missing data
ADULT = """\
39|State-gov|Bachelors|2174|40|United-States|<=50K
50|Self-emp-not-inc|Bachelors|0|13|United-States|<=50K
38|Private|HS-grad|0||United-States|<=50K
53|Private|11th|0|40|United-States|<=50K
28|Private|Bachelors|0|40|Cuba|<=50K
|Private|Masters|0|40|United-States|<=50K
49|Private|9th|0|16|Jamaica|<=50K
52|Self-emp-not-inc|HS-grad|0|45|United-States|>50K
31|Private|Masters|14084|50||>50K
42|Private|Bachelors|5178|40|United-States|>50K
30|State-gov|Bachelors|0|40|India|>50K
40|Private|Assoc-voc|0|40|?|>50K
34|Private|7th-8th|0|45|Mexico|<=50K
54||Some-college|0|60|South|>50K
48|Private|11th|0|40|Puerto-Rico|<=50K
47|Private|Prof-school|0|60|Honduras|>50K
46|Private|5th-6th|0|40|Mexico|<=50K
52|Private|Bachelors|0|40|Cuba|<=50K
"""
COLUMNS = [
    "age",
    "workclass",
    "education",
    "capital-gain",
    "hours-per-week",
    "native-country",
    "income",
]


@pytest.fixture
def adult() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(ADULT), sep="|", header=None, names=COLUMNS)


ADULT_SPEC = """\
target: income
steps:
  - {op: impute, columns: [age, hours-per-week]}
  - {op: scale, columns: [age, hours-per-week]}
  - {op: log, columns: [capital-gain]}
  - {op: impute, columns: [workclass, native-country], strategy: constant, fill_value: missing}
  - {op: onehot, columns: [workclass, native-country]}
  - {op: ordinal, columns: [education]}
"""


def test_adult_spec_fits_to_dense_float_with_readable_names(adult: pd.DataFrame) -> None:
    transformer = compile_spec(FeatureSpec.from_yaml(ADULT_SPEC), columns=list(adult.columns))
    out = transformer.fit_transform(adult)
    names = list(transformer.get_feature_names_out())
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    assert out.shape == (len(adult), len(names))
    assert not np.isnan(out).any()
    assert names[:2] == ["age", "hours-per-week"]
    assert "native-country_Peru" not in names  # not in the sample
    assert {"native-country_Cuba", "workclass_Private", "workclass_missing"} <= set(names)
    assert "education" in names and "income" not in " ".join(names)


def test_unseen_category_gives_zeros(adult: pd.DataFrame) -> None:
    transformer = compile_spec(FeatureSpec.from_yaml(ADULT_SPEC)).fit(adult)
    row = adult.drop(columns="income").iloc[[0]].copy()
    row["native-country"] = "Peru"
    row["education"] = "Doctorate"
    out = transformer.transform(row)
    names = list(transformer.get_feature_names_out())
    country = [i for i, n in enumerate(names) if n.startswith("native-country_")]
    assert np.all(out[0, country] == 0.0)
    assert out[0, names.index("education")] == -1.0


def test_unseen_category_goes_to_infrequent_bucket() -> None:
    frame = pd.DataFrame({"c": ["a", "a", "a", "b", "b", "b", "rare"]})
    spec = FeatureSpec.from_dict(
        {"steps": [{"op": "onehot", "columns": ["c"], "min_frequency": 2}]}
    )
    transformer = compile_spec(spec).fit(frame)
    assert list(transformer.get_feature_names_out()) == ["c_a", "c_b", "c_infrequent_sklearn"]
    out = transformer.transform(pd.DataFrame({"c": ["never-seen", "a", None]}))
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0], [0, 0, 1]])


def test_missing_text_values_are_imputed_before_onehot() -> None:
    frame = pd.DataFrame({"c": pd.Series(["x", None, "y", np.nan, "x"], dtype=object)})
    spec = FeatureSpec.from_dict(
        {
            "steps": [
                {"op": "impute", "columns": ["c"], "strategy": "most_frequent"},
                {"op": "onehot", "columns": ["c"]},
            ]
        }
    )
    transformer = compile_spec(spec).fit(frame)
    assert list(transformer.get_feature_names_out()) == ["c_x", "c_y"]
    out = transformer.transform(pd.DataFrame({"c": pd.Series([None], dtype=object)}))
    np.testing.assert_array_equal(out, [[1.0, 0.0]])


@pytest.mark.parametrize(
    ("method", "scaler"),
    [("standard", StandardScaler), ("minmax", MinMaxScaler), ("robust", RobustScaler)],
)
def test_impute_then_scale_equals_sklearn_pipeline(
    adult: pd.DataFrame, method: str, scaler: type
) -> None:
    columns = ["age", "hours-per-week"]
    spec = FeatureSpec.from_dict(
        {
            "steps": [
                {"op": "impute", "columns": columns, "strategy": "mean"},
                {"op": "scale", "columns": columns, "method": method},
            ]
        }
    )
    ours = compile_spec(spec).fit_transform(adult)
    theirs = make_pipeline(SimpleImputer(strategy="mean"), scaler()).fit_transform(adult[columns])
    np.testing.assert_allclose(ours, theirs)


def test_log_and_clip_values() -> None:
    frame = pd.DataFrame({"a": [0.0, 1.0, 9.0, np.nan], "b": [-5.0, 0.5, 7.0, 2.0]})
    spec = FeatureSpec.from_dict(
        {
            "steps": [
                {"op": "log", "columns": ["a"]},
                {"op": "clip", "columns": ["b"], "lower": 0, "upper": 5},
            ]
        }
    )
    out = compile_spec(spec).fit_transform(frame)
    np.testing.assert_allclose(out[:, 0], np.log1p([0.0, 1.0, 9.0, np.nan]))
    np.testing.assert_array_equal(out[:, 1], [0.0, 0.5, 5.0, 2.0])


def test_log_of_negative_value_names_the_column() -> None:
    frame = pd.DataFrame({"capital-loss": [0.0, np.nan, -3.0, 2.0]})
    spec = FeatureSpec.from_dict(
        {
            "steps": [
                {"op": "impute", "columns": ["capital-loss"]},
                {"op": "log", "columns": ["capital-loss"]},
            ]
        }
    )
    with pytest.raises(InvalidInput, match=r"column 'capital-loss' has -3 \(row 2\)"):
        compile_spec(spec).fit(frame)


def test_clip_before_log_accepts_negatives() -> None:
    frame = pd.DataFrame({"x": [-3.0, 0.0, 3.0]})
    spec = FeatureSpec.from_dict(
        {
            "steps": [
                {"op": "clip", "columns": ["x"], "lower": 0},
                {"op": "log", "columns": ["x"]},
            ]
        }
    )
    out = compile_spec(spec).fit_transform(frame)
    np.testing.assert_allclose(out[:, 0], np.log1p([0.0, 0.0, 3.0]))


def test_interactions_use_the_steps_before_them() -> None:
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": [2.0, 4.0, 6.0], "c": [1.0, 1.0, 2.0]})
    spec = FeatureSpec.from_dict(
        {
            "steps": [
                {"op": "impute", "columns": ["a"], "strategy": "constant", "fill_value": 10},
                {"op": "interact", "columns": ["a", "b", "c"]},
            ]
        }
    )
    transformer = compile_spec(spec).fit(frame)
    out = transformer.transform(frame)
    assert list(transformer.get_feature_names_out()) == ["a", "a*b", "a*c", "b*c"]
    np.testing.assert_array_equal(out[:, 0], [1.0, 10.0, 3.0])
    np.testing.assert_array_equal(out[:, 1], [2.0, 40.0, 18.0])
    np.testing.assert_array_equal(out[:, 3], [2.0, 4.0, 12.0])
    assert feature_origins(transformer) == ["a", "a*b", "a*c", "b*c"]


@pytest.mark.parametrize(
    "when",
    [
        pd.Series(["2024-03-15T13:45:00", None, "2023-12-31"], dtype=object),
        pd.to_datetime(pd.Series(["2024-03-15 13:45", None, "2023-12-31 00:00"])),
    ],
)
def test_date_parts_from_strings_or_datetimes(when: pd.Series) -> None:
    frame = pd.DataFrame({"when": when})
    spec = FeatureSpec.from_dict({"steps": [{"op": "date_parts", "columns": ["when"]}]})
    transformer = compile_spec(spec).fit(frame)
    out = transformer.transform(frame)
    assert list(transformer.get_feature_names_out()) == [
        "when_year",
        "when_month",
        "when_day",
        "when_dayofweek",
        "when_hour",
    ]
    np.testing.assert_array_equal(out[0], [2024, 3, 15, 4, 13])  # a Friday
    assert np.isnan(out[1]).all()
    np.testing.assert_array_equal(out[2], [2023, 12, 31, 6, 0])


def test_date_parts_refuses_non_dates() -> None:
    frame = pd.DataFrame({"when": ["2024-01-01", "next tuesday"]})
    spec = FeatureSpec.from_dict({"steps": [{"op": "date_parts", "columns": ["when"]}]})
    with pytest.raises(InvalidInput, match=r"column 'when' has 'next tuesday'"):
        compile_spec(spec).fit(frame)


def test_passthrough_bool_as_numbers_and_refuses_text() -> None:
    frame = pd.DataFrame({"flag": [True, False, None], "n": [1, 2, 3]})
    spec = FeatureSpec.from_dict({"steps": [{"op": "passthrough", "columns": ["flag", "n"]}]})
    out = compile_spec(spec).fit_transform(frame)
    np.testing.assert_array_equal(out, [[1.0, 1.0], [0.0, 2.0], [np.nan, 3.0]])
    with pytest.raises(InvalidInput, match=r"column 'flag' has 'yes'"):
        compile_spec(spec).fit(pd.DataFrame({"flag": ["yes", "no"], "n": [1, 2]}))


def test_remainder_passthrough_keeps_unnamed_columns_but_not_target_or_dropped() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": [3, 4], "gone": [5, 6], "y": [0, 1]})
    spec = FeatureSpec.from_dict(
        {
            "target": "y",
            "remainder": "passthrough",
            "steps": [
                {"op": "scale", "columns": ["a"]},
                {"op": "drop", "columns": ["gone"]},
            ],
        }
    )
    transformer = compile_spec(spec, columns=list(frame.columns)).fit(frame)
    assert list(transformer.get_feature_names_out()) == ["a", "b"]
    # serving rows carry neither the target nor the dropped column
    out = transformer.transform(frame[["a", "b"]])
    np.testing.assert_array_equal(out, [[-1.0, 3.0], [1.0, 4.0]])


def test_remainder_drop_is_the_default() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    spec = FeatureSpec.from_dict({"steps": [{"op": "passthrough", "columns": ["a"]}]})
    transformer = compile_spec(spec).fit(frame)
    assert list(transformer.get_feature_names_out()) == ["a"]


def test_remainder_passthrough_without_columns_works_when_no_target() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [True, False]})
    spec = FeatureSpec.from_dict(
        {"remainder": "passthrough", "steps": [{"op": "scale", "columns": ["a"]}]}
    )
    out = compile_spec(spec).fit_transform(frame)
    np.testing.assert_array_equal(out, [[-1.0, 1.0], [1.0, 0.0]])
    with_target = FeatureSpec.from_dict({**spec.to_dict(), "target": "b"})
    with pytest.raises(InvalidInput, match="columns="):
        compile_spec(with_target)


def test_unknown_column_names_step_op_column_and_choices(adult: pd.DataFrame) -> None:
    spec = FeatureSpec.from_dict(
        {
            "steps": [
                {"op": "impute", "columns": ["age"]},
                {"op": "onehot", "columns": ["workclass", "native_country"]},
            ]
        }
    )
    with pytest.raises(InvalidInput) as info:
        compile_spec(spec, columns=list(adult.columns))
    message = str(info.value)
    assert "steps[1] (onehot)" in message
    assert "'native_country'" in message
    assert "did you mean 'native-country'" in message
    assert "'hours-per-week'" in message  # the available columns are listed


def test_compile_accepts_a_dict() -> None:
    transformer = compile_spec({"steps": [{"op": "scale", "columns": ["a"]}]})
    frame = pd.DataFrame({"a": [1.0, 3.0]})
    np.testing.assert_array_equal(transformer.fit_transform(frame), [[-1.0], [1.0]])


def test_feature_origins_follow_output_columns(adult: pd.DataFrame) -> None:
    spec = FeatureSpec.from_yaml(ADULT_SPEC)
    transformer = compile_spec(spec, columns=list(adult.columns)).fit(adult)
    names = list(transformer.get_feature_names_out())
    origins = feature_origins(transformer)
    assert len(origins) == len(names)
    for name, origin in zip(names, origins, strict=True):
        assert name == origin or name.startswith(origin + "_")
    assert origins.count("workclass") == sum(n.startswith("workclass_") for n in names)
    assert set(origins) == set(COLUMNS) - {"income"}


def test_feature_origins_with_interactions_and_remainder() -> None:
    frame = pd.DataFrame(
        {"a": [1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0], "c": ["x", "y", "x"], "d": [5, 6, 7]}
    )
    spec = FeatureSpec.from_dict(
        {
            "remainder": "passthrough",
            "steps": [
                {"op": "onehot", "columns": ["c"]},
                {"op": "interact", "columns": ["a", "b"]},
            ],
        }
    )
    transformer = compile_spec(spec).fit(frame)
    assert list(transformer.get_feature_names_out()) == ["c_x", "c_y", "a*b", "d"]
    assert feature_origins(transformer) == ["c", "c", "a*b", "d"]


def test_inferred_spec_compiles_and_gives_no_nan() -> None:
    frame = pd.DataFrame(
        {
            "age": [30, None, 50, 41],
            "job": ["a", None, "b", "a"],
            "member": pd.Series([True, False, None, True], dtype=object),
            "signup": ["2024-01-02T03:00", None, "2024-03-04", "2024-05-06"],
            "y": ["no", "yes", "no", "yes"],
        }
    )
    spec = FeatureSpec.infer(
        {"age": "int", "job": "string", "member": "bool", "signup": "datetime", "y": "category"},
        target="y",
    )
    transformer = compile_spec(spec, columns=list(frame.columns)).fit(frame)
    serving = pd.DataFrame(
        {"age": [None], "job": ["never-seen"], "member": [None], "signup": [None]}
    )
    for out in (transformer.transform(frame), transformer.transform(serving)):
        assert out.dtype == np.float64 and not np.isnan(out).any()
    assert "y" not in feature_origins(transformer)


def test_feature_origins_when_names_look_alike() -> None:
    frame = pd.DataFrame(
        {
            "a": ["b_x", "b_x", "y", "z"],
            "a_b": ["q", "q", "q", "w"],
            "when": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"],
        }
    )
    spec = FeatureSpec.from_dict(
        {
            "steps": [
                {"op": "onehot", "columns": ["a", "a_b"], "min_frequency": 2},
                {"op": "date_parts", "columns": ["when"], "parts": ["day"]},
                {"op": "scale", "columns": ["when"]},
            ]
        }
    )
    transformer = compile_spec(spec).fit(frame)
    names = list(transformer.get_feature_names_out())
    assert names == ["a_b_x", "a_infrequent_sklearn", "a_b_q", "a_b_infrequent_sklearn", "when_day"]
    assert feature_origins(transformer) == ["a", "a", "a_b", "a_b", "when"]
