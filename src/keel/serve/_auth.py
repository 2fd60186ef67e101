"""API keys with scopes. Only the sha256 of a key is kept; a presented key is hashed and
compared with every stored hash in constant time.

Scopes: ``predict`` (inference, model metadata, and ``/metrics`` unless the server makes
it public) and ``admin`` (the ``/admin`` routes; an admin key may also predict).

A ring read with :meth:`KeyRing.from_file` follows its file: at most once a second (and at
once after :meth:`KeyRing.reload_soon`, which ``keel serve`` calls on SIGHUP) it compares
the file's inode, size and mtime, and reloads it when they changed, so a revoked key stops
working without a restart. A file that cannot be read or parsed any more refuses every key
until it is fixed. :func:`add_key` and :func:`revoke_key` change a key file under an
exclusive lock (``KEYFILE.lock`` beside it), so concurrent ``keel key`` commands lose
nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput, NotFound

__all__ = ["SCOPES", "ApiKey", "KeyRing", "add_key", "revoke_key"]

log = logging.getLogger("keel.serve")

SCOPES = ("predict", "admin")
_PREFIX = "keel_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """A stored key: who it is for, the sha256 of the token, and what it may do."""

    name: str
    sha256: str
    scopes: frozenset[str]

    def __post_init__(self) -> None:
        unknown = set(self.scopes) - set(SCOPES)
        if unknown or not self.scopes:
            raise InvalidInput(
                f"API key {self.name!r}: scopes must be some of {', '.join(SCOPES)}, "
                f"got {sorted(self.scopes)}"
            )
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise InvalidInput(f"API key {self.name!r}: sha256 must be 64 lowercase hex digits")

    @classmethod
    def create(cls, name: str, scopes: Iterable[str] = ("predict",)) -> tuple[str, ApiKey]:
        """A new random token (shown once: give it to the client) and its stored form."""
        token = _PREFIX + secrets.token_urlsafe(32)
        return token, cls.from_token(name, token, scopes)

    @classmethod
    def from_token(cls, name: str, token: str, scopes: Iterable[str] = ("predict",)) -> ApiKey:
        return cls(name, _digest(token), frozenset(scopes))

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "scopes": sorted(self.scopes)}


class KeyRing:
    """The keys a server accepts; with ``path``, reloaded when that file changes (looked at
    most every ``check_every`` seconds, on the next :meth:`check`)."""

    def __init__(
        self, keys: Iterable[ApiKey] = (), path: Path | None = None, check_every: float = 1.0
    ) -> None:
        self.keys = list(keys)
        self.path = path
        self.check_every = check_every
        self._seen: tuple[int, ...] | None = None  # the file's (dev, inode, size, mtime)
        self._next = 0.0

    @classmethod
    def from_file(cls, path: str | Path, check_every: float = 1.0) -> KeyRing:
        """The keys of a key file (made by ``keel key``), followed as it changes."""
        file = Path(path)
        ring = cls(path=file, check_every=check_every)
        try:
            stamp = _stamp(file)
            ring.keys = cls.from_json(file.read_text()).keys
        except OSError as exc:
            raise InvalidInput(f"API keys: cannot read {path}: {exc.strerror}") from None
        ring._seen, ring._next = stamp, time.monotonic() + check_every
        return ring

    def reload_soon(self) -> None:
        """Read the file again on the next :meth:`check`, changed or not (for SIGHUP)."""
        self._seen, self._next = None, 0.0

    def refresh(self) -> None:
        """Reload the key file if it changed since it was last read."""
        if self.path is None:
            return
        self._next = time.monotonic() + self.check_every
        try:
            stamp = _stamp(self.path)
            if stamp == self._seen:
                return
            keys = KeyRing.from_json(self.path.read_text()).keys
        except (OSError, InvalidInput) as exc:
            if self._seen != ():
                log.error(
                    "serve: the key file %s is unreadable (%s); refusing every key", self.path, exc
                )
            self.keys, self._seen = [], ()
            return
        self.keys, self._seen = keys, stamp
        log.info("serve: reloaded %d API key(s) from %s", len(keys), self.path)

    def check(self, token: str) -> ApiKey | None:
        """The key whose hash matches ``token``, or None; every stored key is compared."""
        if self.path is not None and time.monotonic() >= self._next:
            self.refresh()
        digest = _digest(token).encode()
        found = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.sha256.encode()):
                found = key
        return found

    def to_json(self) -> str:
        return json.dumps([k.to_dict() for k in self.keys], indent=2)

    @classmethod
    def from_json(cls, text: str) -> KeyRing:
        """Keys from ``[{"name": ..., "sha256": ..., "scopes": [...]}, ...]``."""
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(f"API keys: not valid JSON ({exc.__class__.__name__})") from None
        if not isinstance(items, list):
            raise InvalidInput("API keys: expected a JSON list of {name, sha256, scopes}")
        keys = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not {"name", "sha256", "scopes"} <= set(item):
                raise InvalidInput(f"API keys entry {i}: expected name, sha256 and scopes")
            keys.append(ApiKey(str(item["name"]), str(item["sha256"]), frozenset(item["scopes"])))
        return cls(keys)

    def __len__(self) -> int:
        return len(self.keys)


def _stamp(path: Path) -> tuple[int, ...]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``PATH.lock`` (beside the key file) for a read-change-write."""
    import fcntl

    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read(path: Path) -> KeyRing:
    return KeyRing.from_json(path.read_text()) if path.exists() else KeyRing()


def _write(path: Path, ring: KeyRing) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(ring.to_json())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def add_key(
    path: str | Path, name: str, scopes: Iterable[str] = ("predict",)
) -> tuple[str, ApiKey]:
    """Make a key named ``name`` and add its hash to the key file (created if absent); the
    token is returned once. Refuses a name the file already holds."""
    path = Path(path)
    token, key = ApiKey.create(name, scopes)
    with _locked(path):
        ring = _read(path)
        if any(k.name == name for k in ring.keys):
            raise InvalidInput(
                f"API key {name!r} is already in {path}; revoke it first "
                f"(keel key revoke {name} --keys {path}) or choose another name"
            )
        ring.keys.append(key)
        _write(path, ring)
    return token, key


def revoke_key(path: str | Path, name: str) -> list[ApiKey]:
    """Remove the keys named ``name`` from the key file; the removed keys. A running server
    following the file refuses them within about a second."""
    path = Path(path)
    with _locked(path):
        ring = _read(path)
        gone = [k for k in ring.keys if k.name == name]
        if not gone:
            names = ", ".join(sorted(k.name for k in ring.keys)) or "none"
            raise NotFound(f"API key {name!r} is not in {path} (its keys: {names})")
        ring.keys = [k for k in ring.keys if k.name != name]
        _write(path, ring)
    return gone
