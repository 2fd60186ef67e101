"""Helpers for the model server's tests: a trained Adult model in a temp store, and plain
HTTP calls to a live server on 127.0.0.1 (http.client, every call with a timeout)."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path
from typing import Any

from keel import registry
from keel.data import ingest
from keel.datasets import adult
from keel.store import Store
from keel.train import train

TIMEOUT = 30
_PATHLIKE = re.compile(r"(/[\w.\-]+){2,}|\.py\b|Traceback|File \"")


def adult_store(root: Path, rows: int = 2000) -> tuple[Store, Any]:
    """A store holding the ``adult`` dataset (``rows`` rows) and the frame itself."""
    store = Store.open(f"sqlite:///{root}/store.db", root / "blobs")
    df = adult("train").sample(rows, random_state=0)
    df.to_csv(root / "adult.csv", index=False)
    ingest(store, root / "adult.csv", name="adult")
    return store, df


def train_lgb(store: Store, name: str, alias: str | None = "production", **params: Any) -> Any:
    mv = train(store, "adult", "income", params={"n_estimators": 20, **params}, seed=2).register(
        store, name
    )
    if alias:
        registry.set_alias(store, mv.ref, alias)
    return mv


def records(df: Any, n: int, start: int = 0) -> list[dict[str, Any]]:
    """``n`` rows as JSON-ready records (no NumPy scalars; NaN as None)."""
    out = []
    for row in df.drop(columns=["income"]).iloc[start : start + n].to_dict("records"):
        out.append({k: _plain(v) for k, v in row.items()})
    return out


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v


def call(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    content_type: str | None = "application/json",
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; ``body`` as bytes is sent as is, anything else as JSON."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=TIMEOUT)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        hdrs = dict(headers or {})
        if content_type is not None and data is not None:
            hdrs.setdefault("Content-Type", content_type)
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def call_json(url: str, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    status, headers, data = call(url, method, path, body, **kw)
    return status, json.loads(data) if data else None


def assert_clean_error(data: bytes, code: str) -> dict[str, Any]:
    """An error body with ``code``, and no traceback, file path or module name in it."""
    text = data.decode()
    assert not _PATHLIKE.search(text), text
    assert "keel." not in text and "site-packages" not in text, text
    body = json.loads(text)
    err = body if isinstance(body["error"], str) else body["error"]  # /v2: {"error": message}
    err = {**err, "message": err.get("message", body["error"])}
    assert err["code"] == code, err
    assert err["message"] and err["request_id"]
    return err


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
