"""Users import from ``keel`` or ``keel.<area>``; every listed name exists and every public
function or class of an area is listed."""

import importlib
import inspect

import pytest

AREAS = [
    "keel.data",
    "keel.features",
    "keel.models",
    "keel.registry",
    "keel.store",
    "keel.train",
    "keel.errors",
    "keel.executors",
    "keel.types",
    "keel.testing",
    "keel.project",
    "keel.datasets",
    "keel.export",
    "keel.serve",
    "keel.deploy",
    "keel.audit",
    "keel.monitor",
    "keel.pipeline",
]


@pytest.mark.parametrize("area", AREAS)
def test_all_is_complete_and_importable(area):
    mod = importlib.import_module(area)
    names = set(mod.__all__)
    assert len(names) == len(mod.__all__), f"{area}.__all__ has duplicates"
    for name in names:
        assert hasattr(mod, name), f"{area}.__all__ lists {name!r}, which does not exist"
    public = {
        n
        for n, obj in vars(mod).items()
        if not n.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", "").startswith(area)
    }
    missing = public - names
    assert not missing, f"{area} defines public {sorted(missing)} not listed in __all__"
