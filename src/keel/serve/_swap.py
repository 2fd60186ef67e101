"""Releasing a version: move an alias in the registry (audited) and, given a server, have
it swap the version in now rather than at its next look at the registry."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from keel.errors import InvalidInput, KeelError

__all__ = ["release"]


def release(
    project_or_store: Any,
    ref: str,
    alias: str,
    *,
    why: str = "",
    override: str | None = None,
    server_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 300,
) -> dict[str, Any]:
    """Point ``alias`` at ``ref`` (``NAME/VERSION``; the move is recorded with ``why``;
    ``override``: a reason to move a gated alias although the audit gates fail, see
    :func:`keel.registry.set_alias`) and, with ``server_url``, ``POST /admin/reload`` there
    (``api_key``: a key with the admin scope) so the server loads, warms and swaps in the
    version at once. Servers watching the registry pick the move up by themselves otherwise.

    Returns ``{"model", "alias", "version", "reloaded"}``; ``reloaded`` is the server's
    per-route outcome (None without ``server_url``). A version the server fails to load
    leaves the old one serving: that is an outcome with ``ok: false``, not an error."""
    from keel import registry
    from keel.serve._app import store_of

    if server_url is not None and not server_url.startswith(("http://", "https://")):
        raise InvalidInput(f"release: expected an http(s) server URL, got {server_url!r}")
    mv = registry.set_alias(store_of(project_or_store), ref, alias, why=why, override=override)
    out: dict[str, Any] = {"model": mv.ref, "alias": alias, "version": mv.version}
    out["reloaded"] = None if server_url is None else _reload(server_url, api_key, timeout)
    return out


def _reload(url: str, api_key: str | None, timeout: float) -> list[dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(
        url.rstrip("/") + "/admin/reload", data=b"", headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only
            return json.loads(resp.read())["reloaded"]
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read()).get("error", {})
            detail = err.get("message", err) if isinstance(err, dict) else err
        except Exception:
            detail = exc.reason
        raise KeelError(
            f"release: the alias moved, but the server's reload answered {exc.code}: {detail}"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise KeelError(
            f"release: the alias moved, but the server could not be reached at {url}: {reason}"
            " (it will pick the move up at its next look at the registry)"
        ) from None
