"""keel's exceptions: one root, with builtin mix-ins so callers can catch either.

::

    KeelError
     ├── InvalidInput (ValueError)      bad file, flag, YAML, body: names the field and the value
     │    └── ValidationFailed          rows or columns that break a dataset schema
     ├── NotFound (LookupError)         unknown dataset, run, model, alias, blob
     ├── Conflict                       the operation clashes with what the store holds
     ├── UnsafeArtifact                 an artifact that would need unpickling, or whose bytes
     │                                  do not match their hash, or that names untrusted types
     ├── StoreError                     the store cannot be opened, migrated or written
     └── MissingExtra (ImportError)     an optional dependency is not installed

Every error has a stable ``code`` (used by the CLI and, later, HTTP answers) and a message
that names the thing, the value, and the fix.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Conflict",
    "InvalidInput",
    "KeelError",
    "MissingExtra",
    "NotFound",
    "StoreError",
    "UnsafeArtifact",
    "ValidationFailed",
    "require",
]


class KeelError(Exception):
    """Root of every error keel raises on purpose."""

    code = "keel_error"


class InvalidInput(KeelError, ValueError):
    """Input (a file, a flag, YAML, a request body) is not what was expected."""

    code = "invalid_input"


class ValidationFailed(InvalidInput):
    """Data broke its schema. ``problems`` lists each finding as a dict
    (file, row, column, expected, got)."""

    code = "validation_failed"

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class NotFound(KeelError, LookupError):
    """A named thing (dataset, run, model, alias, blob) does not exist."""

    code = "not_found"

    def __str__(self) -> str:  # LookupError would add quotes around the message
        return str(self.args[0]) if self.args else ""


class Conflict(KeelError):
    """The operation clashes with the store's current state."""

    code = "conflict"


class UnsafeArtifact(KeelError):
    """An artifact that keel refuses to load: tampered bytes, pickle, untrusted types."""

    code = "unsafe_artifact"


class StoreError(KeelError):
    """The store cannot be opened, migrated or written."""

    code = "store_error"


class MissingExtra(KeelError, ImportError):
    """An optional dependency is missing; the message gives the pip command."""

    code = "missing_extra"


def require(module: str, extra: str) -> Any:
    """Import an optional dependency lazily, or fail with the exact install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtra(
            f"{module} is not installed; install it with: pip install 'keel[{extra}]'"
        ) from exc
