"""Notifiers: log, file, memory, and the signed webhook against a real HTTP receiver."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from keel.errors import InvalidInput
from keel.monitor.notify import (
    DeliveryFailed,
    FileNotifier,
    LogNotifier,
    MemoryNotifier,
    WebhookNotifier,
    check_address,
    check_url,
    notifier_from_config,
    sign,
    verify_signature,
)
from keel.types import Notifier

SECRET = "s3cr3t-hmac-key-for-tests"
PUBLIC = "93.184.216.34"  # a global address; tests never connect to it
ALERT = {"rule": "input-drift", "model": "churn", "severity": "warning", "value": 0.42}


class Receiver:
    """A real HTTP server on 127.0.0.1 that verifies each request's signature. ``script``
    gives the status of each request in turn (the last repeats); ``"hang"`` waits (up to
    5 s, until closed) before answering; ``location`` goes with 3xx answers."""

    def __init__(self, script: list[Any] | None = None, location: str = "") -> None:
        self.script = list(script or [204])
        self.location = location
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = verify_signature(SECRET, body, self.headers, tolerance_s=60)
                n = len(receiver.requests)
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body, "ok": ok}
                )
                step = receiver.script[min(n, len(receiver.script) - 1)]
                if step == "hang":
                    receiver.release.wait(5)
                    step = 204
                status = step if ok else 401
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.allow = [f"127.0.0.1:{self.port}"]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KEEL_TEST_WEBHOOK_SECRET", SECRET)
    return "KEEL_TEST_WEBHOOK_SECRET"


def webhook(rx: Receiver, secret_env: str, **kw: Any) -> WebhookNotifier:
    kw.setdefault("backoff_s", 0.01)
    return WebhookNotifier(rx.url, allow=rx.allow, secret_env=secret_env, name="hook", **kw)


# -- the protocol and the simple notifiers ------------------------------------------------


def test_every_notifier_follows_the_protocol(tmp_path, secret_env):
    made = [
        LogNotifier(),
        FileNotifier(tmp_path / "a.jsonl"),
        MemoryNotifier(),
        WebhookNotifier(
            "https://hooks.example.com/x", allow=["hooks.example.com"], secret_env=secret_env
        ),
    ]
    for n in made:
        assert isinstance(n, Notifier)
        assert isinstance(n.name, str)


def test_log_notifier_logs_at_the_severity(caplog):
    with caplog.at_level(logging.INFO, logger="keel.alerts"):
        LogNotifier().send({**ALERT, "severity": "critical", "message": "drift!"})
        LogNotifier().send({**ALERT, "severity": "info", "message": "fyi"})
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.CRITICAL, "drift!"),
        (logging.INFO, "fyi"),
    ]


def test_file_notifier_appends_whole_lines_from_many_threads(tmp_path):
    path = tmp_path / "deep" / "alerts.jsonl"
    notifier = FileNotifier(path)
    pad = "x" * 5000  # lines longer than a pipe buffer still land whole

    def burst(i: int) -> None:
        for j in range(50):
            notifier.send({**ALERT, "i": i, "j": j, "pad": pad})

    threads = [threading.Thread(target=burst, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 400
    assert {(d["i"], d["j"]) for d in map(json.loads, lines)} == {
        (i, j) for i in range(8) for j in range(50)
    }


def test_memory_notifier_keeps_what_it_was_sent():
    m = MemoryNotifier("mem")
    m.send(ALERT)
    assert m.sent == [ALERT]
    with pytest.raises(DeliveryFailed):
        MemoryNotifier(fail=True).send(ALERT)


# -- signatures ---------------------------------------------------------------------------


def test_verify_signature_refuses_tampering_wrong_keys_and_replays():
    body = json.dumps(ALERT).encode()
    now = 1_764_000_000
    headers = {"x-keel-timestamp": str(now), "X-Keel-Signature": sign(SECRET, body, now)}
    assert verify_signature(SECRET, body, headers, tolerance_s=300, now=now + 10)
    assert not verify_signature(SECRET, body + b" ", headers, tolerance_s=300, now=now)
    assert not verify_signature("other", body, headers, tolerance_s=300, now=now)
    assert not verify_signature(SECRET, body, headers, tolerance_s=300, now=now + 301)
    moved = {**headers, "x-keel-timestamp": str(now + 5)}  # the timestamp is signed too
    assert not verify_signature(SECRET, body, moved, tolerance_s=300, now=now)
    assert not verify_signature(SECRET, body, {}, tolerance_s=300, now=now)


def test_webhook_body_is_signed_and_the_receiver_verifies_it(secret_env):
    with Receiver([204]) as rx:
        webhook(rx, secret_env).send(ALERT)
    (req,) = rx.requests
    assert req["ok"] and req["path"] == "/hook"
    assert json.loads(req["body"]) == ALERT
    assert req["headers"]["X-Keel-Signature"].startswith("sha256=")
    assert req["headers"]["Content-Type"] == "application/json"


def test_webhook_with_the_wrong_secret_is_refused_by_the_receiver(monkeypatch, secret_env):
    monkeypatch.setenv(secret_env, "not-the-secret")
    with Receiver([204]) as rx:
        with pytest.raises(DeliveryFailed, match="401"):
            webhook(rx, secret_env).send(ALERT)
    assert [r["ok"] for r in rx.requests] == [False]


def test_missing_secret_fails_naming_the_variable_and_sends_nothing(monkeypatch):
    monkeypatch.delenv("KEEL_TEST_NO_SUCH_SECRET", raising=False)
    with Receiver() as rx:
        hook = WebhookNotifier(rx.url, allow=rx.allow, secret_env="KEEL_TEST_NO_SUCH_SECRET")
        with pytest.raises(DeliveryFailed, match="KEEL_TEST_NO_SUCH_SECRET"):
            hook.send(ALERT)
    assert rx.requests == []


# -- retries and timeouts -----------------------------------------------------------------


def test_webhook_retries_a_receiver_that_fails_twice_then_succeeds(secret_env):
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(s)
        time.sleep(s)

    with Receiver([503, 500, 200]) as rx:
        webhook(rx, secret_env, attempts=5, backoff_s=0.02, sleep=sleep).send(ALERT)
    assert len(rx.requests) == 3 and all(r["ok"] for r in rx.requests)
    deliveries = {r["headers"]["X-Keel-Delivery"] for r in rx.requests}
    assert len(deliveries) == 1  # one delivery id across retries, for receivers to dedupe
    assert len(waits) == 2 and 0 <= waits[0] <= 0.02 and 0 <= waits[1] <= 0.04


def test_webhook_attempts_are_bounded(secret_env):
    with Receiver([503]) as rx:
        with pytest.raises(DeliveryFailed, match="503 after 3 attempts") as info:
            webhook(rx, secret_env, attempts=3).send(ALERT)
    assert info.value.attempts == 3 and len(rx.requests) == 3


def test_webhook_total_time_is_bounded(secret_env):
    """With a fake clock: no back-off is started that would end past ``max_total_s``."""
    clock = [0.0]
    calls: list[float] = []

    def transport(url, body, headers, timeout_s, address):
        calls.append(timeout_s)
        clock[0] += 4.0
        return 503

    class Highest:
        def uniform(self, a: float, b: float) -> float:
            return b

    def sleep(s: float) -> None:
        clock[0] += s

    hook = WebhookNotifier(
        "https://hooks.example.com/x",
        allow=["hooks.example.com:443"],
        secret_env=secret_env,
        attempts=10,
        max_total_s=10,
        backoff_s=1,
        timeout_s=5,
        transport=transport,
        resolver=lambda host, port: [PUBLIC],
        sleep=sleep,
        clock=lambda: clock[0],
        rng=Highest(),  # type: ignore[arg-type]
    )
    with pytest.raises(DeliveryFailed) as info:
        hook.send(ALERT)
    # t=0 try (4 s), wait 1 -> t=5 try (timeout capped at the 5 s left), t=9, wait 4 > 1 left
    assert info.value.attempts == 2
    assert calls == [5, 5]
    assert clock[0] <= 10


def test_webhook_request_times_out(secret_env):
    with Receiver(["hang"]) as rx:
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match="timed out"):
            webhook(rx, secret_env, attempts=1, timeout_s=0.2).send(ALERT)
        assert time.monotonic() - started < 2


# -- SSRF ---------------------------------------------------------------------------------


def test_loopback_not_in_the_allow_list_is_refused(secret_env):
    with Receiver() as rx:
        with pytest.raises(InvalidInput, match="not in the allow-list"):
            WebhookNotifier(rx.url, allow=["hooks.example.com:443"], secret_env=secret_env)
        other_port = f"127.0.0.1:{rx.port + 1 if rx.port < 65535 else rx.port - 1}"
        with pytest.raises(InvalidInput, match="not in the allow-list"):
            WebhookNotifier(rx.url, allow=[other_port], secret_env=secret_env)
        with pytest.raises(InvalidInput, match="not in the allow-list"):
            check_url(f"http://localhost:{rx.port}/", rx.allow)
        hook = webhook(rx, secret_env)
        hook.allow = ("hooks.example.com:443",)  # checked again at each send
        with pytest.raises(DeliveryFailed, match="not in the allow-list"):
            hook.send(ALERT)
    assert rx.requests == []


def _named(rx: Receiver, secret_env: str, allow: list[str], **kw: Any) -> WebhookNotifier:
    """A webhook to the receiver by the name ``localhost`` (which resolves to 127.0.0.1)."""
    kw.setdefault("backoff_s", 0.01)
    url = f"http://localhost:{rx.port}/hook"
    return WebhookNotifier(url, allow=allow, secret_env=secret_env, name="hook", **kw)


def test_a_listed_name_that_resolves_to_loopback_is_refused(secret_env):
    with Receiver() as rx:
        hook = _named(rx, secret_env, [f"localhost:{rx.port}"])
        with pytest.raises(
            DeliveryFailed,
            match=r"'localhost' resolves to 127\.0\.0\.1: a "
            r"loopback address.*'127\.0\.0\.0/8'",
        ) as info:
            hook.send(ALERT)
    assert info.value.attempts == 0
    assert rx.requests == []


@pytest.mark.parametrize("grant", ["127.0.0.1", "127.0.0.0/8", "{port}", "::1, 127.0.0.1"])
def test_a_name_pointing_at_an_explicitly_listed_address_or_range_is_delivered(secret_env, grant):
    with Receiver() as rx:
        grants = [g.strip() for g in grant.format(port=f"127.0.0.1:{rx.port}").split(",")]
        _named(rx, secret_env, [f"localhost:{rx.port}", *grants]).send(ALERT)
    (req,) = rx.requests
    assert req["ok"] and req["headers"]["Host"] == f"localhost:{rx.port}"


def test_an_address_entry_for_another_port_does_not_grant_the_address(secret_env):
    with Receiver() as rx:
        other = rx.port + 1 if rx.port < 65535 else rx.port - 1
        hook = _named(rx, secret_env, [f"localhost:{rx.port}", f"127.0.0.1:{other}"])
        with pytest.raises(DeliveryFailed, match="loopback"):
            hook.send(ALERT)
    assert rx.requests == []


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.0.7", "private"),
        ("100.64.0.1", "non-global"),
        ("0.0.0.0", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("fd00::5", "private"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_internal_addresses_behind_a_listed_name_are_refused(secret_env, address, kind):
    sent: list[str] = []

    def transport(url, body, headers, timeout_s, addr):
        sent.append(addr)
        return 204

    hook = WebhookNotifier(
        "https://hooks.example.com/x",
        allow=["hooks.example.com"],
        secret_env=secret_env,
        transport=transport,
        resolver=lambda host, port: [address],
    )
    with pytest.raises(DeliveryFailed, match=f"a {kind} address"):
        hook.send(ALERT)
    assert sent == []
    assert check_address(PUBLIC, 443, []) == PUBLIC
    with pytest.raises(InvalidInput, match=kind):
        check_address(address, 443, ["hooks.example.com"])


def test_dns_is_asked_once_per_alert_and_every_attempt_goes_to_the_checked_address(secret_env):
    """DNS rebinding: the name is public when checked, loopback a moment later."""
    asked: list[str] = []
    sent: list[tuple[str, str]] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return [PUBLIC] if len(asked) == 1 else ["127.0.0.1"]

    def transport(url, body, headers, timeout_s, address):
        sent.append((urlsplit(url).hostname, address))
        return 503

    hook = WebhookNotifier(
        "https://hooks.example.com/x",
        allow=["hooks.example.com"],
        secret_env=secret_env,
        attempts=3,
        backoff_s=0.001,
        transport=transport,
        resolver=rebinding,
    )
    with pytest.raises(DeliveryFailed, match="503 after 3 attempts"):
        hook.send(ALERT)
    assert asked == ["hooks.example.com"]
    assert sent == [("hooks.example.com", PUBLIC)] * 3


def test_the_real_transport_connects_to_the_checked_address_keeping_the_name(secret_env):
    """``hooks.example.com`` does not resolve here: a delivery proves http_post connected to
    the address the resolver gave, with the name as the Host header."""
    with Receiver() as rx:
        hook = WebhookNotifier(
            f"http://hooks.example.com:{rx.port}/hook",
            allow=[f"hooks.example.com:{rx.port}", "127.0.0.1"],
            secret_env=secret_env,
            resolver=lambda host, port: [PUBLIC.replace("93", "0", 1), "127.0.0.1"],
        )
        hook.send(ALERT)  # the first address (0.184.216.34, reserved) is skipped
    (req,) = rx.requests
    assert req["ok"] and req["headers"]["Host"] == f"hooks.example.com:{rx.port}"


def test_a_name_that_does_not_resolve_fails_without_a_request(secret_env):
    def nowhere(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    hook = WebhookNotifier(
        "https://hooks.example.com/x",
        allow=["hooks.example.com"],
        secret_env=secret_env,
        resolver=nowhere,
    )
    with pytest.raises(DeliveryFailed, match="cannot resolve 'hooks.example.com'") as info:
        hook.send(ALERT)
    assert info.value.attempts == 0


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ("127.0.0.0/33", "expected an address range"),
        ("127.0.0.1/8", "expected an address range"),
        ("10.0.0.0/08", "must be written as '10.0.0.0/8'"),
        ("http://hooks.example.com/", "not a URL"),
    ],
)
def test_bad_range_entries_are_refused(entry, match):
    with pytest.raises(InvalidInput, match=match):
        check_url("https://hooks.example.com/", ["hooks.example.com", entry])


def test_a_range_permits_addresses_but_lists_no_url():
    with pytest.raises(InvalidInput, match="not in the allow-list"):
        check_url("http://127.0.0.1:8080/", ["127.0.0.0/8"])
    assert check_address("10.9.8.7", 80, ["10.0.0.0/8"]) == "10.9.8.7"
    assert check_address("fd00::5", 80, ["fd00::/8"]) == "fd00::5"


def test_a_redirect_to_an_unlisted_host_is_not_followed(secret_env):
    with Receiver() as unlisted:
        with Receiver([302], location=unlisted.url) as rx:
            with pytest.raises(DeliveryFailed, match="302.*never follow redirects"):
                webhook(rx, secret_env, attempts=3).send(ALERT)
    assert len(rx.requests) == 1  # a redirect is a failure, not retried
    assert unlisted.requests == []


def test_a_redirect_to_a_listed_host_is_not_followed_either(secret_env):
    with Receiver([307]) as rx:
        rx.location = rx.url + "/elsewhere"
        with pytest.raises(DeliveryFailed, match="307"):
            webhook(rx, secret_env).send(ALERT)
    assert [r["path"] for r in rx.requests] == ["/hook"]


@pytest.mark.parametrize(
    ("url", "allow", "why"),
    [
        ("http://hooks.example.com@evil.example/", ["hooks.example.com:80"], "user-info"),
        ("http://hooks.example.com:80@evil.example/", ["hooks.example.com:80"], "user-info"),
        ("http://2130706433/", ["127.0.0.1:80"], "non-standard encoding"),
        ("http://0x7f000001/", ["127.0.0.1:80"], "non-standard encoding"),
        ("http://127.1/", ["127.0.0.1:80"], "non-standard encoding"),
        ("http://0177.0.0.1/", ["127.0.0.1:80"], "non-standard encoding"),
        ("http://[::ffff:127.0.0.1]/", ["127.0.0.1:80"], "must be written as"),
        ("file:///etc/passwd", ["127.0.0.1:80"], "http or https"),
        ("gopher://hooks.example.com/", ["hooks.example.com:70"], "http or https"),
        ("http://hooks.example.com\\@evil.example/", ["hooks.example.com:80"], "plain ASCII"),
        ("http://hooks.example.com:8443/", ["hooks.example.com"], "not in the allow-list"),
        ("http://evil.example#@hooks.example.com/", ["hooks.example.com:80"], "allow-list"),
        ("http://hooks.example.com.evil.example/", ["hooks.example.com:80"], "allow-list"),
        ("http://hooks%2eexample.com/", ["hooks.example.com:80"], "host name"),
        ("http://hooks.example.com:99999/", ["hooks.example.com:80"], "port"),
    ],
)
def test_ssrf_tricks_are_refused(url, allow, why):
    with pytest.raises(InvalidInput, match=why):
        check_url(url, allow)


def test_allowed_urls_pass_with_exact_host_and_port():
    allow = ["hooks.example.com", "127.0.0.1:8080", "[::1]:9000"]
    assert check_url("https://HOOKS.example.com/x?y=1", allow) == (
        "https",
        "hooks.example.com",
        443,
    )
    assert check_url("http://127.0.0.1:8080/", allow)[2] == 8080
    assert check_url("http://[::1]:9000/", allow)[1] == "::1"
    with pytest.raises(InvalidInput, match="allow_hosts"):
        check_url("http://127.0.0.1:8080/", ["2130706433:8080"])


def test_secrets_and_url_paths_stay_out_of_messages(secret_env, caplog):
    url = "https://hooks.example.com/services/T000/B000/tokenpart"
    with pytest.raises(InvalidInput) as info:
        check_url(url, ["other.example.com"])
    assert "tokenpart" not in str(info.value)
    with Receiver([500]) as rx:
        hook = WebhookNotifier(
            rx.url + "/tokenpart", allow=rx.allow, secret_env=secret_env, attempts=1
        )
        with pytest.raises(DeliveryFailed) as failed:
            hook.send(ALERT)
    assert SECRET not in str(failed.value) and "tokenpart" not in str(failed.value)
    assert "tokenpart" not in repr(hook) and SECRET not in repr(vars(hook))


# -- configuration ------------------------------------------------------------------------


def test_notifiers_from_config(tmp_path, secret_env):
    f = notifier_from_config("ops", {"type": "file", "path": "a.jsonl"}, base_dir=tmp_path)
    assert isinstance(f, FileNotifier) and f.path == tmp_path / "a.jsonl"
    w = notifier_from_config(
        "pager",
        {"type": "webhook", "url": "https://hooks.example.com/k", "secret_env": secret_env},
        allow=["hooks.example.com:443"],
    )
    assert isinstance(w, WebhookNotifier) and w.name == "pager"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"type": "sms"}, r"monitor\.notifiers\.x\.type: expected one of"),
        ({"type": "file"}, r"monitor\.notifiers\.x\.path: expected a non-empty string"),
        ({"type": "log", "levle": 1}, r"monitor\.notifiers\.x: unknown key 'levle'"),
        (
            {"type": "webhook", "url": "https://evil.example/", "secret_env": "S"},
            r"monitor\.notifiers\.x: webhook URL .* not in the allow-list",
        ),
        (
            {"type": "webhook", "url": "https://hooks.example.com/", "secret_env": "a b"},
            r"secret_env: expected the name of an environment variable",
        ),
        (
            {
                "type": "webhook",
                "url": "https://hooks.example.com/",
                "secret_env": "S",
                "attempts": 0,
            },
            r"monitor\.notifiers\.x\.attempts: expected an integer from 1 to 20",
        ),
        (
            {
                "type": "webhook",
                "url": "https://hooks.example.com/",
                "secret_env": "S",
                "timeout_s": -1,
            },
            r"monitor\.notifiers\.x\.timeout_s: expected a number of seconds",
        ),
        ("webhook", r"monitor\.notifiers\.x: expected a mapping"),
    ],
)
def test_bad_notifier_config_names_the_field(spec, match):
    with pytest.raises(InvalidInput, match=match):
        notifier_from_config("x", spec, allow=["hooks.example.com:443"])


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    for t in set(threading.enumerate()) - before:
        t.join(6)


def test_an_evaluated_alert_reaches_a_real_receiver_signed(store, secret_env):
    from keel.monitor.alerts import AlertRule, evaluate

    rule = AlertRule.parse({"name": "input-drift", "condition": "drift.share > 0.3"})
    rule = AlertRule(**{**vars(rule), "notify": ("hook",)})
    with Receiver([204]) as rx:
        fired = evaluate(
            store,
            "churn",
            {"drift": {"share": 0.5}},
            rules=[rule],
            notifiers=[webhook(rx, secret_env)],
            window="w1",
        )
    assert fired[0].deliveries == {"hook": "ok"}
    (req,) = rx.requests
    assert req["ok"] and json.loads(req["body"])["rule"] == "input-drift"
    (delivery,) = store.events("alert_delivery")
    assert delivery["payload"]["ok"] is True and SECRET not in json.dumps(delivery)
