"""The seeded draw of a mitigated model: each row's uniform number is a keyed hash of its
values, computed column by column so the robustness oracle can reuse a row's hashes."""

import numpy as np
import pandas as pd
import pytest

from keel.datasets import adult
from keel.models._mitigated import (
    draw_decisions,
    draw_with,
    group_keys,
    hashes_to_uniforms,
    row_hashes,
    row_uniforms,
)


def _frame_hash_uniforms(X, schema, seed):
    """The draw as keel first defined it: pandas' hash of the canonical frame."""
    canon = {}
    for c in schema:
        col = X[c["name"]]
        if c["type"] in ("int", "float"):
            canon[c["name"]] = pd.to_numeric(col, errors="coerce").astype(np.float64).to_numpy()
        else:
            canon[c["name"]] = np.asarray(
                ["\x00" if pd.isna(v) else str(v) for v in col], dtype=object
            )
    key = f"keel{seed % 10**12:012d}"
    h = pd.util.hash_pandas_object(pd.DataFrame(canon), index=False, hash_key=key).to_numpy()
    return (h >> np.uint64(40)).astype(np.float64) / float(2**24)


@pytest.fixture(scope="module")
def rows():
    X = adult("test").sample(3000, random_state=0).reset_index(drop=True)
    schema = [{"name": c, "type": "int" if X[c].dtype.kind in "iu" else "string"} for c in X]
    assert X.isna().any().any()  # missing cells are hashed too
    return X, schema


@pytest.mark.parametrize("seed", [0, 7, 123456789012345])
def test_the_column_wise_draw_is_the_frame_hash_keel_always_drew(rows, seed):
    X, schema = rows
    assert np.array_equal(row_uniforms(X, schema, seed), _frame_hash_uniforms(X, schema, seed))


def test_one_rows_hashes_give_the_same_number_without_a_frame(rows):
    X, schema = rows
    H = np.stack([row_hashes(X.iloc[i].to_dict(), schema, 5) for i in range(200)])
    assert np.array_equal(hashes_to_uniforms(H), row_uniforms(X.iloc[:200], schema, 5))


def test_only_rows_strictly_between_0_and_1_are_drawn(rows):
    X, schema = rows
    pmf = np.tile([0.0, 1.0, 0.5, 1e-12, 1 - 1e-12], 600)
    asked = []

    def uniforms(idx):
        asked.append(idx)
        return row_uniforms(X.iloc[idx], schema, 0)

    d = draw_with(pmf, uniforms)
    assert np.array_equal(np.flatnonzero(pmf == 0.5), asked[0])
    assert not d[pmf < 1e-9].any() and d[pmf > 1 - 1e-9].all()
    assert np.array_equal(d, draw_decisions(pmf, X, schema, 0))
    assert 0.4 < d[pmf == 0.5].mean() < 0.6


def test_group_keys_convert_each_distinct_value_once_and_alike():
    X = pd.DataFrame({"age": [39, 39.0, None, 40], "sex": ["Male", "Male", "Female", None]})
    assert list(group_keys(X, ["age"])) == ["39", "39", "(missing)", "40"]
    assert list(group_keys(X, ["sex", "age"])) == [
        "Male & 39",
        "Male & 39",
        "Female & (missing)",
        "(missing) & 40",
    ]
