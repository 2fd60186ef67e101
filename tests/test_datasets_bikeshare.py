"""The bundled bike-sharing data: a year of hourly rentals, split by month."""

import pytest

from keel.datasets import MONTHS, bikeshare, write_bikeshare_csv
from keel.errors import InvalidInput


def test_bikeshare_is_a_year_of_hours_with_seasonal_drift(tmp_path):
    df = bikeshare()
    assert len(df) == 8645 and list(df["mnth"].unique()) == MONTHS
    assert (df["bikers"] == df["casual"] + df["registered"]).all()
    assert df["hr"].between(0, 23).all()
    winter, summer = bikeshare(["Jan", "Feb"]), bikeshare(["June", "July"])
    assert summer["temp"].mean() > winter["temp"].mean() + 0.3  # the drift the demo watches
    paths = write_bikeshare_csv(tmp_path, {"early": ["Jan", "Feb"]})
    assert paths["early"].read_text().count("\n") == len(winter) + 1
    with pytest.raises(InvalidInput, match="'Juli'"):
        bikeshare(["Juli"])
