"""Plug-ins: how a lower layer runs a higher layer's behaviour without importing it.

keel's layers point one way (the contract under ``[tool.importlinter]`` in pyproject.toml):
the registry may not import the audit, and monitoring may not import pipelines. Yet an alias
move must pass the gates, and an alert rule may run a pipeline. So the lower layer names a
*group* and runs whatever is plugged into it; the higher layer plugs itself in.

A plug-in is a callable in a group, under a name. It arrives in one of two ways:

* declared as an entry point of the group ``keel.<group>`` in a package's metadata (keel's
  own are in its pyproject.toml, so they are there wherever keel is installed), loaded the
  first time the group is used;
* added at run time with :func:`register` (a third party's check, a test).

The groups keel runs:

``alias_checks``
    ``check(store, ref, alias, *, override, who[, record]) -> list[str]``, run by
    :func:`keel.registry.set_alias` before an alias moves; it raises to refuse the move and
    returns the failed rules that ``override`` let through. A check that takes ``record``
    appends the events it wants kept (``(kind, subject, payload)``) to that list, and they
    are written in the move's own transaction: a move the store refuses keeps none of them.
    keel.audit's gates are one.
    An alias never moves while this group is empty: a broken install fails closed.
``alert_actions``
    ``action(store, target) -> run`` (with ``.id``), run by ``keel monitor`` for an alert
    rule that names a target of that kind (``pipeline: retrain.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

from keel.errors import KeelError

__all__ = ["GROUPS", "PluginMissing", "get", "plugins", "register", "unregister"]

GROUPS = ("alias_checks", "alert_actions")

_added: dict[str, dict[str, Callable[..., Any]]] = {g: {} for g in GROUPS}
_declared: dict[str, dict[str, Callable[..., Any]]] = {}


class PluginMissing(KeelError):
    """A group holds no plug-in of the name asked for (or none at all)."""


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise KeelError(f"plug-in group: expected one of {', '.join(GROUPS)}, got {group!r}")


def _entry_points(group: str) -> dict[str, Callable[..., Any]]:
    if group not in _declared:
        found = {}
        for ep in metadata.entry_points(group=f"keel.{group}"):
            found[ep.name] = ep.load()
        _declared[group] = found
    return _declared[group]


def plugins(group: str) -> dict[str, Callable[..., Any]]:
    """The plug-ins of ``group`` by name, in order: declared ones (sorted by name), then
    those added at run time (a name added at run time replaces a declared one)."""
    _check_group(group)
    declared = _entry_points(group)
    merged = {name: declared[name] for name in sorted(declared)}
    merged.update(_added[group])
    return merged


def get(group: str, name: str) -> Callable[..., Any]:
    """The plug-in ``name`` of ``group``; :class:`PluginMissing` naming what is there."""
    found = plugins(group)
    if name not in found:
        there = ", ".join(sorted(found)) or "none"
        raise PluginMissing(
            f"no {group} plug-in named {name!r} (registered: {there}); keel's own plug-ins "
            "are declared in its package metadata: reinstall keel (pip install -e .)"
        )
    return found[name]


def register(group: str, name: str, fn: Callable[..., Any]) -> None:
    """Add ``fn`` to ``group`` as ``name`` for this process."""
    _check_group(group)
    if not callable(fn):
        raise KeelError(f"plug-in {group}.{name}: expected a callable, got {type(fn).__name__}")
    _added[group][name] = fn


def unregister(group: str, name: str) -> None:
    """Remove a plug-in added with :func:`register` (declared ones stay)."""
    _check_group(group)
    _added[group].pop(name, None)
