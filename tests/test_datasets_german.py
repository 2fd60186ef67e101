"""The bundled German credit data: 1,000 applicants, codes mapped to their meanings."""

import doctest

import keel.datasets._german as german_module
from keel.datasets import GERMAN_COLUMNS, GERMAN_VALUES, german_credit


def test_german_credit_is_the_statlog_file_with_named_columns_and_words():
    df = german_credit()
    assert list(df.columns) == GERMAN_COLUMNS and len(df) == 1000
    assert df["credit"].value_counts().to_dict() == {"good": 700, "bad": 300}
    assert not df.isna().any().any()  # every code in the file has a meaning
    numeric = ["duration", "amount", "installment_rate", "residence_since", "age"]
    numeric += ["existing_credits", "people_liable"]
    assert all(df[c].dtype.kind == "i" for c in numeric)
    assert df["age"].between(19, 75).all() and df["amount"].min() > 0
    assert df["telephone"].dtype == bool and df["foreign_worker"].mean() > 0.9
    first = df.iloc[0]  # the file's first line: A11 6 A34 A43 1169 ... A93 ... 67 ... 1
    assert (first["status"], first["duration"], first["amount"]) == ("... < 0 DM", 6, 1169)
    assert (first["status_sex"], first["age"], first["credit"]) == ("male : single", 67, "good")


def test_the_codes_stay_available_and_map_one_to_one():
    codes = german_credit(decode=False)
    words = german_credit()
    for col, values in GERMAN_VALUES.items():
        assert set(codes[col]) <= set(values)  # no code without a meaning
        assert (codes[col].map(values) == words[col]).all()
    assert codes.drop(columns=list(GERMAN_VALUES)).equals(words.drop(columns=list(GERMAN_VALUES)))


def test_the_docstring_examples_run():
    assert doctest.testmod(german_module).failed == 0
