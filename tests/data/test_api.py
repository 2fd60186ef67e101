"""The public names of keel.data are exactly those in __all__."""

from __future__ import annotations

import keel.data


def test_all_lists_every_public_name() -> None:
    public = {n for n in vars(keel.data) if not n.startswith("_")}
    assert public == set(keel.data.__all__)


def test_core_names_are_exported() -> None:
    names = {"read_source", "SourceInfo", "Schema", "ColumnSchema", "infer_schema"}
    names |= {"validate", "ValidationResult", "profile"}
    assert names <= set(keel.data.__all__)
