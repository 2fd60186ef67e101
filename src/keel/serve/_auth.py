"""API keys with scopes. Only the sha256 of a key is kept; a presented key is hashed and
compared with every stored hash in constant time.

Scopes: ``predict`` (inference and model metadata) and ``admin`` (the ``/admin`` routes;
an admin key may also predict).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from keel.errors import InvalidInput

__all__ = ["SCOPES", "ApiKey", "KeyRing"]

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
    """The keys a server accepts."""

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self.keys = list(keys)

    def check(self, token: str) -> ApiKey | None:
        """The key whose hash matches ``token``, or None; every stored key is compared."""
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
