"""Fixtures shared by the training tests."""

import numpy as np
import pandas as pd
import pytest

from keel.data import ingest


@pytest.fixture
def imbalanced(store, tmp_path):
    """600 rows, 3.3% positives, features that are pure noise."""
    rng = np.random.default_rng(0)
    n = 600
    y = np.array(["No"] * n, dtype=object)
    y[rng.choice(n, 20, replace=False)] = "Yes"
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "y": y})
    path = tmp_path / "default.csv"
    df.to_csv(path, index=False)
    ingest(store, path, name="default")
    return store
