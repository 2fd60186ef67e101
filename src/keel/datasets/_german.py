"""Statlog German Credit (UCI, Hofmann 1994): 1,000 applicants classed as good or bad
credit risks by 20 attributes, the file's codes (``A11`` …) mapped to the words of the
data set's documentation. Bundled as ``german.data.gz`` (see README.md beside this file)."""

from __future__ import annotations

import gzip
from importlib import resources
from typing import Any

import pandas as pd

__all__ = ["GERMAN_COLUMNS", "GERMAN_VALUES", "german_credit"]

GERMAN_COLUMNS = [
    "status",
    "duration",
    "credit_history",
    "purpose",
    "amount",
    "savings",
    "present_employment",
    "installment_rate",
    "status_sex",
    "other_debtors",
    "residence_since",
    "property",
    "age",
    "installment_plans",
    "housing",
    "existing_credits",
    "job",
    "people_liable",
    "telephone",
    "foreign_worker",
    "credit",
]

#: The data set's codes per categorical column, as words (its documentation's wording;
#: ``telephone`` and ``foreign_worker`` as booleans).
GERMAN_VALUES: dict[str, dict[str, Any]] = {
    "status": {
        "A11": "... < 0 DM",
        "A12": "0 <= ... < 200 DM",
        "A13": "... >= 200 DM / salary assignments for at least 1 year",
        "A14": "no checking account",
    },
    "credit_history": {
        "A30": "no credits taken/ all credits paid back duly",
        "A31": "all credits at this bank paid back duly",
        "A32": "existing credits paid back duly till now",
        "A33": "delay in paying off in the past",
        "A34": "critical account/ other credits existing (not at this bank)",
    },
    "purpose": {
        "A40": "car (new)",
        "A41": "car (used)",
        "A42": "furniture/equipment",
        "A43": "radio/television",
        "A44": "domestic appliances",
        "A45": "repairs",
        "A46": "education",
        "A47": "(vacation - does not exist?)",
        "A48": "retraining",
        "A49": "business",
        "A410": "others",
    },
    "savings": {
        "A61": "... < 100 DM",
        "A62": "100 <= ... < 500 DM",
        "A63": "500 <= ... < 1000 DM",
        "A64": ".. >= 1000 DM",
        "A65": "unknown/ no savings account",
    },
    "present_employment": {
        "A71": "unemployed",
        "A72": "... < 1 year",
        "A73": "1 <= ... < 4 years",
        "A74": "4 <= ... < 7 years",
        "A75": ".. >= 7 years",
    },
    "status_sex": {
        "A91": "male : divorced/separated",
        "A92": "female : divorced/separated/married",
        "A93": "male : single",
        "A94": "male : married/widowed",
        "A95": "female : single",
    },
    "other_debtors": {
        "A101": "none",
        "A102": "co-applicant",
        "A103": "guarantor",
    },
    "property": {
        "A121": "real estate",
        "A122": "building society savings agreement / life insurance",
        "A123": "car or other",
        "A124": "unknown / no property",
    },
    "installment_plans": {
        "A141": "bank",
        "A142": "stores",
        "A143": "none",
    },
    "housing": {
        "A151": "rent",
        "A152": "own",
        "A153": "for free",
    },
    "job": {
        "A171": "unemployed/ unskilled - non-resident",
        "A172": "unskilled - resident",
        "A173": "skilled employee/ official",
        "A174": "management/ self-employed/ highly qualified employee/ officer",
    },
    "telephone": {
        "A191": False,
        "A192": True,
    },
    "foreign_worker": {
        "A201": True,
        "A202": False,
    },
}


def german_credit(decode: bool = True) -> pd.DataFrame:
    """Statlog German Credit as a DataFrame: 1,000 rows, the 20 attributes named as in
    :data:`GERMAN_COLUMNS` (7 numeric, 13 categorical) and the label ``credit`` in
    {'good', 'bad'} (700 good). With ``decode`` (the default) each categorical code is
    replaced by its meaning (:data:`GERMAN_VALUES`); ``decode=False`` keeps the file's codes.
    Cost matrix of the data set: classing a bad applicant good costs 5, the reverse 1.

    >>> df = german_credit()
    >>> df.shape
    (1000, 21)
    >>> df["credit"].value_counts().to_dict()
    {'good': 700, 'bad': 300}
    >>> df.loc[0, "status_sex"]
    'male : single'
    """
    with resources.files(__package__).joinpath("german.data.gz").open("rb") as raw:
        with gzip.open(raw, "rt", encoding="ascii") as f:
            df = pd.read_csv(f, sep=" ", header=None, names=GERMAN_COLUMNS)
    df["credit"] = df["credit"].map({1: "good", 2: "bad"})
    if decode:
        for col, values in GERMAN_VALUES.items():
            df[col] = df[col].map(values)
        df["telephone"] = df["telephone"].astype(bool)
        df["foreign_worker"] = df["foreign_worker"].astype(bool)
    return df
