"""Notifiers: where an alert goes. Each is a :class:`keel.types.Notifier` — a ``name`` and
``send(alert)``, which returns once the alert is delivered and raises
:class:`DeliveryFailed` when it cannot be.

- :class:`LogNotifier` logs through :mod:`logging` (logger ``keel.alerts``), at a level
  that follows the alert's severity;
- :class:`FileNotifier` appends one JSON line per alert, each line in one ``write`` to a
  file opened for appending (under an exclusive lock where the OS has one), so lines from
  several processes never interleave;
- :class:`MemoryNotifier` keeps the alerts in a list: the in-memory twin for tests;
- :class:`WebhookNotifier` POSTs the alert as JSON, signed, to an allow-listed URL.

Webhook signature
-----------------
Each request carries::

    Content-Type: application/json
    X-Keel-Timestamp: 1764240000                 (Unix seconds when the request was signed)
    X-Keel-Signature: sha256=<hex>               (HMAC-SHA256 with the shared secret)
    X-Keel-Delivery: <uuid>                      (the same on every retry of one alert)

where ``<hex>`` is ``HMAC-SHA256(secret, b"<timestamp>." + body)`` over the exact body
bytes. A receiver recomputes it, compares in constant time and refuses a timestamp older
(or newer) than a few minutes, which stops replays: :func:`verify_signature` does all three.
The secret comes from the environment variable named by ``secret_env``; it is read when an
alert is sent and never appears in a message, a log line or an event.

Webhook safety
--------------
A webhook URL must be ``http`` or ``https`` and its ``host:port`` must be in the allow-list,
compared exactly after parsing (``hooks.example.com`` allows port 443 for https and 80 for
http). Refused: user-info (``http://allowed@evil/``), hosts that are IP literals in another
encoding (``http://2130706433/``, ``0x7f.1``, ``127.1``), non-ASCII or percent-encoded
hosts. Redirects are never followed: a 3xx answer is a failed delivery. Timeouts, refused
connections, 408, 429 and 5xx are retried with exponential back-off and full jitter,
bounded by ``attempts`` and ``max_total_s``; other answers fail at once.

A listed name is not trusted with whatever DNS says: each alert resolves the name once, and
an address that is not global (loopback, private, link-local such as 169.254.169.254,
shared, reserved, multicast, unspecified; IPv4-mapped IPv6 counts as its IPv4 address) is
refused unless the allow-list names it, as an IP entry (``127.0.0.1`` or ``127.0.0.1:8080``:
that port only) or a range (``10.0.0.0/8``, ``fd00::/8``). The request goes to the first
resolved address that passed, pinned for every retry of that alert, with the name kept as
the ``Host`` header and the TLS server name; so a name that DNS re-points between the check
and the connection (DNS rebinding) cannot reach another address. A range entry only permits
addresses; it does not list URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from keel.errors import InvalidInput, KeelError

__all__ = [
    "DeliveryFailed",
    "FileNotifier",
    "LogNotifier",
    "MemoryNotifier",
    "WebhookNotifier",
    "check_address",
    "check_url",
    "http_post",
    "resolve",
    "notifier_from_config",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Keel-Signature"
TIMESTAMP_HEADER = "X-Keel-Timestamp"
DELIVERY_HEADER = "X-Keel-Delivery"
_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_DEFAULT_PORT = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")

Transport = Callable[[str, bytes, Mapping[str, str], float, str], int]
"""The HTTP-out seam: ``transport(url, body, headers, timeout_s, address) -> status``. It
connects to ``address`` (the IP that was checked) and nowhere else, with the URL's host as
the ``Host`` header and TLS server name. It must not follow redirects; it raises
:class:`OSError` for timeouts and connection failures."""

Resolver = Callable[[str, int], Sequence[str]]
"""The DNS seam: ``resolve(host, port) -> IP addresses``, in order of preference; raises
:class:`OSError` when the name does not resolve."""


class DeliveryFailed(KeelError):
    """A notifier could not deliver an alert; ``attempts`` says how often it tried."""

    code = "delivery_failed"

    def __init__(self, message: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


# -- simple notifiers ---------------------------------------------------------------------


class LogNotifier:
    """Logs each alert on ``logger`` (default ``keel.alerts``): ``info`` alerts at INFO,
    ``warning`` at WARNING, ``critical`` at CRITICAL."""

    def __init__(self, name: str = "log", *, logger: str = "keel.alerts") -> None:
        self.name = name
        self.logger = logger

    def send(self, alert: Mapping[str, Any]) -> None:
        level = _LEVELS.get(str(alert.get("severity")), logging.WARNING)
        logging.getLogger(self.logger).log(level, "%s", alert.get("message") or dict(alert))

    def __repr__(self) -> str:
        return f"LogNotifier({self.name!r}, logger={self.logger!r})"


class FileNotifier:
    """Appends each alert as one JSON line to ``path`` (made with its folder if missing)."""

    def __init__(self, path: str | Path, name: str = "file") -> None:
        self.name = name
        self.path = Path(path)

    def send(self, alert: Mapping[str, Any]) -> None:
        line = (json.dumps(dict(alert), sort_keys=True, default=str) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DeliveryFailed(
                f"notifier {self.name!r}: cannot open {self.path}: {exc}"
            ) from None
        try:
            _lock(fd)
            view = memoryview(line)
            while view:  # one write in practice; a short write continues where it stopped
                view = view[os.write(fd, view) :]
        except OSError as exc:
            raise DeliveryFailed(
                f"notifier {self.name!r}: cannot write {self.path}: {exc}"
            ) from None
        finally:
            os.close(fd)  # closing releases the lock

    def __repr__(self) -> str:
        return f"FileNotifier({str(self.path)!r}, name={self.name!r})"


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: O_APPEND alone
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


class MemoryNotifier:
    """Keeps every alert it is sent in :attr:`sent`, in order (thread-safe): the in-memory
    twin of the other notifiers. ``fail=True`` makes each send raise :class:`DeliveryFailed`
    after recording the attempt, to test what happens when delivery fails."""

    def __init__(self, name: str = "memory", *, fail: bool = False) -> None:
        self.name = name
        self.fail = fail
        self.sent: list[dict[str, Any]] = []
        self._mutex = threading.Lock()

    def send(self, alert: Mapping[str, Any]) -> None:
        with self._mutex:
            self.sent.append(json.loads(json.dumps(dict(alert), default=str)))
        if self.fail:
            raise DeliveryFailed(f"notifier {self.name!r}: told to fail")

    def __repr__(self) -> str:
        return f"MemoryNotifier({self.name!r}, sent={len(self.sent)})"


# -- signing ------------------------------------------------------------------------------


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, str(int(timestamp)).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str | bytes,
    body: bytes,
    headers: Mapping[str, str] | Any,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> bool:
    """For receivers: True when ``headers`` (any mapping, or ``http.server``'s message)
    carry a valid ``X-Keel-Signature`` of ``body`` under ``secret`` with an
    ``X-Keel-Timestamp`` within ``tolerance_s`` seconds of ``now`` (default: the clock).
    ``body`` must be the exact bytes received, before any JSON parsing."""
    stamp, got = _header(headers, TIMESTAMP_HEADER), _header(headers, SIGNATURE_HEADER)
    if stamp is None or got is None or not stamp.strip().isdigit():
        return False
    timestamp = int(stamp.strip())
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), got.strip())


def _header(headers: Any, name: str) -> str | None:
    value = headers.get(name)
    if value is None and isinstance(headers, Mapping):
        value = next((v for k, v in headers.items() if str(k).lower() == name.lower()), None)
    return None if value is None else str(value)


# -- URL checks ---------------------------------------------------------------------------


def check_url(url: str, allow: Iterable[str]) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``url`` when it may receive webhooks, else
    :class:`InvalidInput` saying why. ``allow`` holds ``host:port`` (or ``host``: the
    scheme's default port) entries; see the module docstring for what is refused."""
    scheme, host, port = _split(url, "webhook URL")
    allowed, _ = _allow_list(allow)
    if (host, port) in allowed or (port == _DEFAULT_PORT[scheme] and (host, None) in allowed):
        return scheme, host, port
    listed = ", ".join(sorted(_show(h, p) for h, p in allowed)) or "nothing"
    raise InvalidInput(
        f"webhook URL {_redact(url)}: {_show(host, port)} is not in the allow-list "
        f"(allowed: {listed}); add it to monitor.allow_hosts to send there"
    )


def _split(url: Any, what: str) -> tuple[str, str, int]:
    if not isinstance(url, str) or not url:
        raise InvalidInput(f"{what}: expected an http(s) URL, got {url!r}")
    if any(c.isspace() or ord(c) < 32 or c == "\\" or ord(c) > 126 for c in url):
        raise InvalidInput(f"{what} {_redact(url)}: expected a plain ASCII URL without spaces")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORT:
        raise InvalidInput(f"{what} {_redact(url)}: expected an http or https URL, got {scheme!r}")
    if "@" in parts.netloc:
        raise InvalidInput(f"{what} {_redact(url)}: user-info ('user@') is not allowed in the URL")
    try:
        port = parts.port or _DEFAULT_PORT[scheme]
    except ValueError:
        raise InvalidInput(f"{what} {_redact(url)}: expected a port from 1 to 65535") from None
    return scheme, _check_host(parts.hostname or "", what, url), port


def _check_host(host: str, what: str, url: str) -> str:
    if not host:
        raise InvalidInput(f"{what} {_redact(url)}: expected a host name")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if str(ip) != host:
            raise InvalidInput(
                f"{what} {_redact(url)}: IP address {host!r} must be written as {str(ip)!r}"
            )
        return host
    labels = host.rstrip(".").split(".")
    if _NUMERIC_LABEL.match(labels[-1]) or _is_inet_aton(host):
        raise InvalidInput(
            f"{what} {_redact(url)}: {host!r} is an IP address in a non-standard encoding; "
            f"write it as a dotted quad and list it in the allow-list"
        )
    if not _HOSTNAME.match(host):
        raise InvalidInput(
            f"{what} {_redact(url)}: expected a host name of letters, digits, '-' and '.', "
            f"got {host!r}"
        )
    return host


def _is_inet_aton(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


AddressGrant = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]


def _allow_list(
    allow: Iterable[str],
) -> tuple[set[tuple[str, int | None]], list[AddressGrant]]:
    """The ``(host, port)`` entries that URLs must match, and the addresses (networks, with
    the port they are limited to) that resolved names may point at although not global: IP
    entries and ranges."""
    hosts: set[tuple[str, int | None]] = set()
    grants: list[AddressGrant] = []
    for entry in allow:
        network = _range_entry(entry)
        if network is not None:
            grants.append((network, None))
            continue
        host, port = _bare_ipv6(entry) or _allow_entry(entry)
        hosts.add((host, port))
        try:
            grants.append((ipaddress.ip_network(host), port))
        except ValueError:
            pass
    return hosts, grants


def _bare_ipv6(entry: Any) -> tuple[str, None] | None:
    """``::1`` (no brackets, so no port) as an entry; ``[::1]:9000`` goes through
    :func:`_allow_entry`."""
    if not isinstance(entry, str) or ":" not in entry or "[" in entry:
        return None
    try:
        ip = ipaddress.IPv6Address(entry.strip())
    except ValueError:
        return None
    if str(ip) != entry.strip().lower():
        raise InvalidInput(f"allow_hosts: address {entry!r} must be written as {str(ip)!r}")
    return str(ip), None


def _range_entry(entry: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if not isinstance(entry, str) or "/" not in entry or "://" in entry:
        return None
    text = entry.strip()
    try:
        network = ipaddress.ip_network(text)
    except ValueError as exc:
        if not re.fullmatch(r"[0-9a-fA-F.:]+/[0-9]+", text):
            return None  # not a range: refused as 'not a URL' by _allow_entry
        raise InvalidInput(
            f"allow_hosts: {entry!r}: expected an address range such as '10.0.0.0/8' ({exc})"
        ) from None
    if str(network) != text.lower():
        raise InvalidInput(f"allow_hosts: range {entry!r} must be written as {str(network)!r}")
    return network


def _allow_entry(entry: Any) -> tuple[str, int | None]:
    if not isinstance(entry, str) or not entry.strip():
        raise InvalidInput(f"allow_hosts: expected 'host:port' entries, got {entry!r}")
    text = entry.strip().lower()
    if "/" in text or "@" in text:
        raise InvalidInput(f"allow_hosts: expected 'host:port', not a URL, got {entry!r}")
    parts = urlsplit("//" + text)
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput(f"allow_hosts: {entry!r}: expected a port from 1 to 65535") from None
    return _check_host(parts.hostname or "", "allow_hosts entry", entry), port


def _show(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def _redact(url: str) -> str:
    """``scheme://host:port/…``: paths and queries of webhook URLs often hold tokens."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        tail = "/…" if parts.path.strip("/") or parts.query else ""
        return f"'{parts.scheme}://{netloc}{tail}'"
    except ValueError:
        return "'<unparsable URL>'"


# -- addresses ----------------------------------------------------------------------------


def resolve(host: str, port: int) -> list[str]:
    """The IP addresses DNS gives for ``host`` (the default :data:`Resolver`), in the
    order :func:`socket.getaddrinfo` returns them, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_address(address: str, port: int, allow: Iterable[str]) -> str:
    """``address`` when a webhook may connect to it on ``port``: a global address, or one
    that an IP or range entry of ``allow`` names; else :class:`InvalidInput` saying why."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise InvalidInput(f"address {address!r}: expected an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    kind = _non_global(ip)
    if kind is None:
        return address
    _, grants = _allow_list(allow)
    for network, only in grants:
        if ip.version == network.version and ip in network and only in (None, port):
            return address
    raise InvalidInput(
        f"{address}: a {kind} address, not a global one; list that address or its range "
        f"in monitor.allow_hosts (for example {str(ip)!r} or "
        f"'{ipaddress.ip_network(f'{ip}/{8 if ip.version == 4 else 64}', strict=False)}') "
        f"to send there"
    )


def _non_global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of internal address ``ip`` is, or None for a global unicast one."""
    for kind in ("loopback", "link-local", "unspecified", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{kind.replace('-', '_')}"):
            return kind
    return None if ip.is_global else "non-global"


# -- webhook ------------------------------------------------------------------------------


def http_post(
    url: str, body: bytes, headers: Mapping[str, str], timeout_s: float, address: str
) -> int:
    """POST ``body`` to ``url`` with :mod:`http.client` (which never follows redirects),
    connecting to ``address`` only, and return the status; the URL's host stays the ``Host``
    header and the TLS server name (checked against the certificate). The answer's body is
    read (at most 64 KiB) and dropped."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or _DEFAULT_PORT[parts.scheme.lower()]
    conn: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        ctx = ssl.create_default_context()
        conn = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)

    def pinned(where: tuple[str, int], timeout: Any, source: Any = None) -> socket.socket:
        return socket.create_connection((address, where[1]), timeout, source)

    # http.client opens its socket through this attribute (for HTTPS too, before wrapping
    # it with server_hostname=host): the connection goes to the checked address, not to
    # whatever the name resolves to now.
    conn._create_connection = pinned  # type: ignore[attr-defined]  # private, see above
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", target, body=body, headers=dict(headers))
        resp = conn.getresponse()
        resp.read(65536)
        return resp.status
    finally:
        conn.close()


class WebhookNotifier:
    """POSTs each alert as signed JSON to ``url``; see the module docstring.

    ``allow``: the ``host:port`` entries the URL must match. ``secret_env``: the environment
    variable holding the HMAC secret. ``timeout_s``: per request. ``attempts``: at most this
    many requests per alert. ``max_total_s``: no new attempt or back-off past this many
    seconds after the first. ``backoff_s``: the first back-off cap, doubled per retry (full
    jitter: a uniform wait between 0 and the cap). ``transport``, ``resolver``, ``sleep``,
    ``clock`` and ``rng`` are seams for tests."""

    def __init__(
        self,
        url: str,
        *,
        allow: Iterable[str],
        secret_env: str,
        name: str = "webhook",
        timeout_s: float = 5.0,
        attempts: int = 4,
        max_total_s: float = 30.0,
        backoff_s: float = 0.5,
        transport: Transport | None = None,
        resolver: Resolver | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.url = url
        self.allow = tuple(allow)
        self.secret_env = secret_env
        self.name = name
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.max_total_s = max_total_s
        self.backoff_s = backoff_s
        self.transport = transport or http_post
        self.resolver = resolver or resolve
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        check_url(url, self.allow)  # refuse a bad URL now rather than at the first alert
        if not isinstance(secret_env, str) or not re.fullmatch(
            r"[A-Za-z_][A-Za-z0-9_]*", secret_env
        ):
            raise InvalidInput(
                f"notifier {name!r}: secret_env: expected the name of an environment variable, "
                f"got {secret_env!r}"
            )

    def send(self, alert: Mapping[str, Any]) -> None:
        try:
            _, host, port = check_url(self.url, self.allow)
        except InvalidInput as exc:
            raise DeliveryFailed(f"notifier {self.name!r}: {exc}", attempts=0) from None
        secret = os.environ.get(self.secret_env, "")
        if not secret:
            raise DeliveryFailed(
                f"notifier {self.name!r}: environment variable {self.secret_env} (the webhook "
                f"secret) is not set",
                attempts=0,
            )
        address = self._address(host, port)
        body = json.dumps(dict(alert), sort_keys=True, default=str).encode()
        self._deliver(body, secret, str(uuid.uuid4()), address)

    def _address(self, host: str, port: int) -> str:
        """Resolve ``host`` once and return the first address that may be reached: the one
        every attempt of this alert connects to."""
        try:
            ipaddress.ip_address(host)
            found = [host]  # an IP literal: listed as such, no DNS
        except ValueError:
            try:
                found = [str(a) for a in self.resolver(host, port)]
            except OSError as exc:
                raise DeliveryFailed(
                    f"notifier {self.name!r}: webhook {_redact(self.url)}: cannot resolve "
                    f"{host!r} ({type(exc).__name__}: {exc}); nothing was sent",
                    attempts=0,
                ) from None
        refused = []
        for address in found:
            try:
                return check_address(address, port, self.allow)
            except InvalidInput as exc:
                refused.append(str(exc))
        why = refused[0] if refused else "no address at all"
        more = f" (and {len(refused) - 1} more refused)" if len(refused) > 1 else ""
        raise DeliveryFailed(
            f"notifier {self.name!r}: webhook {_redact(self.url)} refused before any request: "
            f"{host!r} resolves to {why}{more}",
            attempts=0,
        )

    def _deliver(self, body: bytes, secret: str, delivery: str, address: str) -> None:
        start = self.clock()
        problem, made = "", 0
        for attempt in range(1, max(1, self.attempts) + 1):
            left = self.max_total_s - (self.clock() - start)
            if attempt > 1:
                wait = self.rng.uniform(0, self.backoff_s * 2 ** (attempt - 2))
                if wait >= left:
                    break
                self.sleep(wait)
                left -= wait
            stamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "keel-alerts",
                TIMESTAMP_HEADER: str(stamp),
                SIGNATURE_HEADER: sign(secret, body, stamp),
                DELIVERY_HEADER: delivery,
            }
            made = attempt
            try:
                status = self.transport(
                    self.url, body, headers, max(0.05, min(self.timeout_s, left)), address
                )
            except ssl.SSLError as exc:  # a certificate problem does not go away on retry
                raise DeliveryFailed(
                    self._failed(f"failed TLS: {type(exc).__name__}", attempt), attempts=attempt
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                problem = _describe(exc, self.timeout_s)
                continue
            if 200 <= status < 300:
                return
            problem = f"answered {status}"
            if 300 <= status < 400:
                problem += " (a redirect; webhooks never follow redirects)"
            if status not in _RETRY_STATUS:
                raise DeliveryFailed(self._failed(problem, attempt), attempts=attempt)
        raise DeliveryFailed(self._failed(problem, made), attempts=made)

    def _failed(self, problem: str, attempts: int) -> str:
        return (
            f"notifier {self.name!r}: webhook {_redact(self.url)} {problem} "
            f"after {attempts} attempt{'s' if attempts != 1 else ''}"
        )

    def __repr__(self) -> str:
        return f"WebhookNotifier({_redact(self.url)}, name={self.name!r})"


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"timed out (timeout {timeout_s:g} s)"
    return f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(
        ": "
    )


# -- configuration ------------------------------------------------------------------------

_KEYS = {
    "log": {"type", "logger"},
    "file": {"type", "path"},
    "memory": {"type"},
    "webhook": {
        "type",
        "url",
        "secret_env",
        "timeout_s",
        "attempts",
        "max_total_s",
        "backoff_s",
    },
}


def notifier_from_config(
    name: str,
    spec: Mapping[str, Any],
    *,
    allow: Iterable[str] = (),
    base_dir: str | Path = ".",
    where: str = "monitor.notifiers",
) -> Any:
    """Build the notifier ``name`` from its YAML mapping (``type`` is ``log``, ``file``,
    ``memory`` or ``webhook``); a relative file path is taken from ``base_dir``. Raises
    :class:`InvalidInput` naming the field."""
    here = f"{where}.{name}"
    if not isinstance(spec, Mapping):
        raise InvalidInput(f"{here}: expected a mapping with a 'type', got {spec!r}")
    kind = spec.get("type")
    if kind not in _KEYS:
        raise InvalidInput(f"{here}.type: expected one of {', '.join(_KEYS)}, got {kind!r}")
    unknown = sorted(set(map(str, spec)) - _KEYS[kind])
    if unknown:
        raise InvalidInput(
            f"{here}: unknown key {unknown[0]!r} for a {kind} notifier; expected "
            f"{', '.join(sorted(_KEYS[kind]))}"
        )
    if kind == "log":
        return LogNotifier(name, logger=_text(spec, "logger", here, "keel.alerts"))
    if kind == "memory":
        return MemoryNotifier(name)
    if kind == "file":
        path = Path(_text(spec, "path", here, None))
        return FileNotifier(path if path.is_absolute() else Path(base_dir) / path, name)
    timeout_s = _number(spec, "timeout_s", here, 5.0)
    max_total_s = _number(spec, "max_total_s", here, 30.0)
    backoff_s = _number(spec, "backoff_s", here, 0.5)
    attempts = spec.get("attempts", 4)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 20:
        raise InvalidInput(f"{here}.attempts: expected an integer from 1 to 20, got {attempts!r}")
    try:
        return WebhookNotifier(
            _text(spec, "url", here, None),
            allow=allow,
            secret_env=_text(spec, "secret_env", here, None),
            name=name,
            attempts=attempts,
            timeout_s=timeout_s,
            max_total_s=max_total_s,
            backoff_s=backoff_s,
        )
    except InvalidInput as exc:
        raise InvalidInput(f"{here}: {exc}") from None


def _text(spec: Mapping[str, Any], key: str, here: str, default: str | None) -> str:
    value = spec.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{here}.{key}: expected a non-empty string, got {value!r}")
    return value


def _number(spec: Mapping[str, Any], key: str, here: str, default: float) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise InvalidInput(
            f"{here}.{key}: expected a number of seconds in (0, 3600], got {value!r}"
        )
    return float(value)
