"""Public data sets bundled with keel (see README.md beside this file for sources and licences).

>>> df = adult("train")
>>> df.shape
(32561, 15)
>>> sorted(df["income"].unique())
['<=50K', '>50K']
"""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path

import pandas as pd

from keel.errors import InvalidInput

__all__ = ["ADULT_COLUMNS", "adult", "write_adult_csv"]

ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
]
_FILES = {"train": "adult.data.gz", "test": "adult.test.gz"}


def adult(split: str = "train") -> pd.DataFrame:
    """UCI Adult as a clean DataFrame: named columns, spaces stripped, '?' as missing, the
    label ``income`` in {'<=50K', '>50K'} for both splits."""
    if split not in _FILES:
        raise InvalidInput(f"adult split: expected 'train' or 'test', got {split!r}")
    with resources.files(__package__).joinpath(_FILES[split]).open("rb") as raw:
        with gzip.open(raw, "rt", encoding="utf-8") as f:
            df = pd.read_csv(
                f,
                header=None,
                names=ADULT_COLUMNS,
                skipinitialspace=True,
                na_values=["?"],
                skiprows=1 if split == "test" else 0,
            )
    df["income"] = df["income"].str.rstrip(".")
    return df


def write_adult_csv(folder: str | Path) -> dict[str, Path]:
    """Write ``adult-train.csv`` and ``adult-test.csv`` (with a header) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in _FILES:
        path = folder / f"adult-{split}.csv"
        adult(split).to_csv(path, index=False)
        paths[split] = path
    return paths
