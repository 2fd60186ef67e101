"""Reading a running keel server's ``/metrics``: requests, errors and latency per model and
version, the release's split between variants, and its shadow's outcomes.

Which servers may be read is narrow on purpose (whoever can make keel fetch a URL could
otherwise reach any internal address through it): a server on a loopback address
(``127.0.0.0/8``, ``::1``, ``localhost``), which is connected to at the address checked
(no second DNS answer), or one whose origin is listed in ``allow`` (``keel.yaml``:
``ui: {servers: [http://10.0.0.5:8080]}`` for the dashboard). Nothing else is fetched.

Counters and histograms are cumulative since the server started: a rate needs two reads
(the dashboard polls and takes differences).
"""

from __future__ import annotations

import http.client
import math
import socket
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from keel.errors import InvalidInput
from keel.serve._server import _is_loopback_ip

__all__ = ["check_server_url", "histogram_quantile", "server_metrics"]

MAX_BYTES = 8 * 1024 * 1024
_PORTS = {"http": 80, "https": 443}


def _origin(url: str, what: str) -> tuple[str, str, int]:
    if not isinstance(url, str) or len(url) > 300:
        raise InvalidInput(f"{what}: expected a server URL such as http://127.0.0.1:8080")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        scheme not in _PORTS
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or port == -1
    ):
        raise InvalidInput(
            f"{what}: expected a server's base URL such as http://127.0.0.1:8080 (scheme, "
            f"host and port only), got {url[:120]!r}"
        )
    return scheme, parts.hostname.lower(), port or _PORTS[scheme]


def _show(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"


def check_server_url(url: str, allow: Iterable[str] = (), what: str = "server") -> dict[str, Any]:
    """Whether ``url`` may be read: ``{"url" (normalized), "scheme", "host", "port",
    "address" (the loopback address to connect to; None for an allowed origin)}``, or
    :class:`InvalidInput` naming ``what`` and saying what is allowed."""
    scheme, host, port = _origin(url, what)
    allowed = set()
    for entry in allow or ():
        try:
            allowed.add(_show(*_origin(str(entry), "ui.servers")))
        except InvalidInput:
            continue
    shown = _show(scheme, host, port)
    if shown in allowed:
        return {"url": shown, "scheme": scheme, "host": host, "port": port, "address": None}
    refusal = InvalidInput(
        f"{what}: {shown} is neither a loopback address (127.0.0.1, ::1, localhost) nor "
        "listed under ui.servers in keel.yaml; only those are read"
    )
    if scheme != "http":
        raise refusal
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise refusal from None
    addrs = [str(info[4][0]) for info in infos]  # typeshed: str | int (non-IP families)
    if not addrs or not all(_is_loopback_ip(a) for a in addrs):
        raise refusal
    return {"url": shown, "scheme": scheme, "host": host, "port": port, "address": addrs[0]}


def _fetch(target: dict[str, Any], api_key: str | None, timeout_s: float) -> bytes:
    host, port = target["host"], target["port"]
    if target["address"] is not None:  # pinned: the address that was checked
        conn: http.client.HTTPConnection = http.client.HTTPConnection(
            target["address"], port, timeout=timeout_s
        )
    elif target["scheme"] == "https":
        conn = http.client.HTTPSConnection(host, port, timeout=timeout_s)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
    headers = {
        "Host": f"{'[' + host + ']' if ':' in host else host}:{port}",
        "Accept": "text/plain",
    }
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        body = resp.read(MAX_BYTES + 1)
    finally:
        conn.close()
    if resp.status == 401:
        raise _Unreadable(
            "the server asks for an API key for /metrics: run it with --public-metrics"
        )
    if resp.status != 200:
        raise _Unreadable(f"/metrics answered HTTP {resp.status}")
    if len(body) > MAX_BYTES:
        raise _Unreadable(f"/metrics is larger than {MAX_BYTES // (1024 * 1024)} MB")
    return body


class _Unreadable(Exception):
    pass


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of a cumulative histogram ``[(upper bound, count), ...]`` (sorted,
    ending with +inf), interpolated linearly inside its bucket as Prometheus does; the
    highest finite bound when it falls in the +inf bucket; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank and count > below:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (count - below)
        if not math.isinf(upper):
            lower = upper
        below = count
    return lower


def server_metrics(
    url: str,
    *,
    model: str | None = None,
    allow: Iterable[str] = (),
    api_key: str | None = None,
    timeout_s: float = 3.0,
) -> dict[str, Any]:
    """Read a running server's ``/metrics`` (see the module docs for which servers may be
    read; :class:`InvalidInput` for any other). With ``model``, only its figures.

    Returns ``{"url", "ok", "error" (why it could not be read, when not ok), "at",
    "models": {model: {"versions": {version: {"requests", "by_status", "errors",
    "errors_by_code", "latency_buckets" [[seconds (null: +inf), cumulative count]], "latency_count",
    "latency_sum_s", "p50_ms", "p99_ms", "loaded"}}, "variants": {variant: {version: n}},
    "shadow": {version: {outcome: n}}}}}``. Figures are cumulative since the server
    started; the latency percentiles are estimated from its histogram buckets."""
    target = check_server_url(url, allow)
    out: dict[str, Any] = {
        "url": target["url"],
        "ok": False,
        "error": None,
        "at": time.time(),
        "models": {},
    }
    try:
        text = _fetch(target, api_key, timeout_s).decode("utf-8", "replace")
        out["models"] = _parse(text, model)
    except _Unreadable as exc:
        out["error"] = str(exc)
        return out
    except (OSError, http.client.HTTPException) as exc:
        out["error"] = f"cannot read {target['url']}/metrics: {type(exc).__name__}"
        return out
    except ValueError as exc:
        out["error"] = f"{target['url']}/metrics is not Prometheus text ({str(exc)[:120]})"
        return out
    out["ok"] = True
    return out


def _version_entry(models: dict[str, Any], model: str, version: str) -> dict[str, Any]:
    m = models.setdefault(model, {"versions": {}, "variants": {}, "shadow": {}})
    return m["versions"].setdefault(
        version,
        {
            "requests": 0,
            "by_status": {},
            "errors": 0,
            "errors_by_code": {},
            "latency_buckets": {},
            "latency_count": 0,
            "latency_sum_s": 0.0,
            "loaded": False,
        },
    )


def _parse(text: str, only: str | None) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    models: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            model = labels.get("model")
            if model is None or (only is not None and model != only):
                continue
            version = labels.get("version", "")
            name, value = s.name, float(s.value)
            if name == "keel_requests_total":
                e = _version_entry(models, model, version)
                e["requests"] += int(value)
                status = labels.get("status", "")
                e["by_status"][status] = e["by_status"].get(status, 0) + int(value)
            elif name == "keel_errors_total":
                e = _version_entry(models, model, version)
                e["errors"] += int(value)
                code = labels.get("code", "")
                e["errors_by_code"][code] = e["errors_by_code"].get(code, 0) + int(value)
            elif name == "keel_request_duration_seconds_bucket":
                e = _version_entry(models, model, version)
                le = float(labels.get("le", "inf"))
                e["latency_buckets"][le] = e["latency_buckets"].get(le, 0) + value
            elif name == "keel_request_duration_seconds_count":
                _version_entry(models, model, version)["latency_count"] += int(value)
            elif name == "keel_request_duration_seconds_sum":
                _version_entry(models, model, version)["latency_sum_s"] += value
            elif name == "keel_model_loaded":
                _version_entry(models, model, version)["loaded"] = value > 0
            elif name == "keel_release_requests_total":
                m = models.setdefault(model, {"versions": {}, "variants": {}, "shadow": {}})
                variant = m["variants"].setdefault(labels.get("variant", ""), {})
                variant[version] = variant.get(version, 0) + int(value)
            elif name == "keel_shadow_requests_total":
                m = models.setdefault(model, {"versions": {}, "variants": {}, "shadow": {}})
                shadow = m["shadow"].setdefault(version, {})
                outcome = labels.get("outcome", "")
                shadow[outcome] = shadow.get(outcome, 0) + int(value)
    for m in models.values():
        for e in m["versions"].values():
            buckets = sorted(e["latency_buckets"].items())
            # +inf as null (JSON has no infinity)
            e["latency_buckets"] = [[None if math.isinf(b) else b, c] for b, c in buckets]
            p50 = histogram_quantile(0.5, buckets)
            p99 = histogram_quantile(0.99, buckets)
            e["p50_ms"] = None if p50 is None else p50 * 1000
            e["p99_ms"] = None if p99 is None else p99 * 1000
    return models
