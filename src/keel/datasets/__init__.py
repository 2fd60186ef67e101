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

import numpy as np
import pandas as pd

from keel.datasets._german import GERMAN_COLUMNS, GERMAN_VALUES, german_credit
from keel.errors import InvalidInput

__all__ = [
    "ADULT_COLUMNS",
    "GERMAN_COLUMNS",
    "GERMAN_VALUES",
    "MONTHS",
    "adult",
    "bikeshare",
    "digits",
    "german_credit",
    "write_adult_csv",
    "write_bikeshare_csv",
    "write_digits_npz",
]

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


#: The months of the bike-sharing data, in calendar order.
MONTHS = ["Jan", "Feb", "March", "April", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec"]


def bikeshare(months: list[str] | None = None) -> pd.DataFrame:
    """Capital Bikeshare hourly rentals in 2011 (8,645 rows): calendar, weather, and the
    counts ``casual``, ``registered`` and ``bikers`` (their sum). ``hr`` is an integer;
    ``mnth`` a month name from :data:`MONTHS`. With ``months``, only those months."""
    with resources.files(__package__).joinpath("bikeshare.csv.gz").open("rb") as raw:
        with gzip.open(raw, "rt", encoding="utf-8") as f:
            df = pd.read_csv(f)
    df["hr"] = df["hr"].astype(int)
    if months is not None:
        unknown = [m for m in months if m not in MONTHS]
        if unknown:
            raise InvalidInput(f"bikeshare months: expected some of {MONTHS}, got {unknown[0]!r}")
        df = df[df["mnth"].isin(months)].reset_index(drop=True)
    return df


def write_bikeshare_csv(folder: str | Path, parts: dict[str, list[str]]) -> dict[str, Path]:
    """Write one CSV per named part, each holding the given months: e.g.
    ``{"early": ["Jan", "Feb", "March"], "summer": ["June", "July"]}``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, months in parts.items():
        path = folder / f"bikeshare-{name}.csv"
        bikeshare(months).to_csv(path, index=False)
        paths[name] = path
    return paths


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 handwritten digits (1,797 images, offline): ``X`` float32
    ``[N, 1, 8, 8]`` scaled to [0, 1] (the raw values are 0..16) and ``y`` int64 0..9."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (np.asarray(data.images, dtype=np.float32) / 16.0)[:, None, :, :]
    return np.ascontiguousarray(x), np.asarray(data.target, dtype=np.int64)


def write_digits_npz(folder: str | Path) -> Path:
    """Write ``digits.npz`` (arrays ``X`` and ``y`` of :func:`digits`) into ``folder``, ready
    for ``keel ingest digits.npz``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x, y = digits()
    path = folder / "digits.npz"
    np.savez_compressed(path, X=x, y=y)
    return path
