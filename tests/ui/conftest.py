"""Fixtures of the dashboard's browser tests: a demo project, ``keel ui`` serving it on
127.0.0.1, and headless Chromium driven by Playwright.

``chromium``
    Path of the Chromium to drive: ``KEEL_CHROMIUM``, default ``/usr/bin/chromium`` (Debian's
    package; ``.ci/run`` installs it). No browser is ever downloaded (never
    ``playwright install``). Missing: the tests skip, except under ``CI``, where they fail.
``browser``
    One headless Chromium for the session (``--no-sandbox``: CI runs as root).
``ui_project``
    A project made by keel's demo (``run_demo``: 2 search trials in-process, 200 requests,
    act two's monitoring and pipeline included), made once per session, plus the run
    :data:`XSS_NAME` (params and a tag that are markup too) for the escaping tests.
    ``KEEL_UI_DEMO=<folder>``: copy a demo project made before instead (the demo takes
    about a minute), for quick re-runs.
``ui``
    ``keel ui`` over that project on 127.0.0.1 (any free port), no keys: ``.url``.
``ui_bikes``
    ``keel ui`` over ``<demo>/bikes``, the project of the demo's monitoring act.
``ui_keys``
    ``keel ui`` over the same project with API keys: ``.url``, ``.admin`` and ``.reader``
    (the tokens of a key with the ``admin`` scope and one without).
``page``
    A fresh browser context and page (1280x800). It records console errors, uncaught page
    errors, failed requests and any dialog (dismissed); the test fails at teardown if
    there was one, unless the test allowed it with ``page_log.allow(pattern)``.
``axe_check(page)``
    Runs axe-core (vendored in ``tests/ui/vendor``) in the page; returns the violations of
    impact serious or critical.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

VENDOR = Path(__file__).parent / "vendor"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
XSS_NAME = "<script>alert(1)</script>"
XSS_EXPERIMENT = "escaping"
SWEEP = "sweep"  # SWEEP_RUNS runs, sweep-00 ...: model logreg/lightgbm alternating, roc_auc
SWEEP_RUNS = 12  # curves of 20 steps ending near 0.70 + 0.02 * (5 i mod 12)
VIEWPORT = {"width": 1280, "height": 800}


def _missing(reason: str) -> None:
    if "CI" in os.environ:
        pytest.fail(f"{reason} (CI is set: the browser tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    path = os.environ.get("KEEL_CHROMIUM") or DEFAULT_CHROMIUM
    found = shutil.which(path)
    if not found:
        _missing(f"no Chromium at {path} (apt-get install chromium, or set KEEL_CHROMIUM)")
    return str(found)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Any, chromium: str) -> Iterator[Any]:
    b = playwright.chromium.launch(
        executable_path=chromium,
        headless=True,
        args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    )
    yield b
    b.close()


# -- the project and the servers ---------------------------------------------------------


@pytest.fixture(scope="session")
def ui_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's project (experiments, runs with curves, adult-income with evidence and
    aliases; version 1 fails the fairness gate; act two's monitoring and pipeline), plus
    the experiment :data:`SWEEP` (known params and curves, for sorting, filtering and
    comparing), and one run whose name, tag and params are markup. The demo's second act
    (monitoring, alerts, the retrain pipeline) is its own project, ``<demo>/bikes``."""
    from keel.demo import run_demo
    from keel.project import open_project
    from keel.train import start_run

    root = tmp_path_factory.mktemp("ui") / "demo"
    made = os.environ.get("KEEL_UI_DEMO")
    if made:  # a demo project made before (run_demo): copied, so the tests never change it
        shutil.copytree(made, root)
    else:
        run_demo(root, n_trials=2, executor="inline", progress=False, requests=200)
    with open_project(root) as proj:
        for i in range(SWEEP_RUNS):  # known values for the sort, filter and compare tests
            model = "lightgbm" if i % 2 else "logreg"
            with start_run(proj.store, SWEEP, seed=i, tags={"name": f"sweep-{i:02d}"}) as run:
                run.log_params({"model": model, "learning_rate": 0.01 * (i + 1), "depth": i % 4})
                final = 0.70 + 0.02 * (5 * i % SWEEP_RUNS)  # not in the order of i
                for step in range(20):
                    run.log_metrics(
                        {"roc_auc": final - 0.2 * 0.8**step, "loss": 1.0 / (1 + step + i)},
                        step=step,
                    )
        run = start_run(proj.store, XSS_EXPERIMENT, tags={"name": XSS_NAME, "note": XSS_NAME})
        run.log_params({"model": '"><img src=x onerror=alert(2)>', "depth": 3})
        for step in range(5):
            run.log_metrics({"roc_auc": 0.5 + step / 10, "loss": 1.0 / (1 + step)}, step=step)
        run.end()
    return root


@dataclass
class UiServer:
    url: str
    server: Any
    admin: str | None = None
    reader: str | None = None


@pytest.fixture(scope="session")
def ui_start() -> Any:
    """``keel.ui.start`` (asked for before the demo project, so a missing one skips fast)."""
    try:
        from keel.ui import start
    except ImportError as exc:
        pytest.skip(f"keel.ui.start is not there yet ({exc})")
    return start


@pytest.fixture(scope="session")
def ui(ui_start: Any, ui_project: Path) -> Iterator[UiServer]:
    server = ui_start(ui_project, host="127.0.0.1", port=0)
    yield UiServer(server.url.rstrip("/"), server)
    server.stop()


@pytest.fixture(scope="session")
def ui_bikes(ui_start: Any, ui_project: Path) -> Iterator[UiServer]:
    """``keel ui`` over the demo's second project (drift, alerts, the retrain pipeline)."""
    server = ui_start(ui_project / "bikes", host="127.0.0.1", port=0)
    yield UiServer(server.url.rstrip("/"), server)
    server.stop()


@pytest.fixture(scope="session")
def ui_keys(ui_start: Any, ui_project: Path) -> Iterator[UiServer]:
    from keel.serve import ApiKey, KeyRing

    admin, admin_key = ApiKey.create("ui-admin", ("admin",))
    reader, reader_key = ApiKey.create("ui-reader", ("predict",))
    server = ui_start(ui_project, host="127.0.0.1", port=0, keys=KeyRing([admin_key, reader_key]))
    yield UiServer(server.url.rstrip("/"), server, admin=admin, reader=reader)
    server.stop()


# -- pages -------------------------------------------------------------------------------


@dataclass
class PageLog:
    """What went wrong in a page: console errors, uncaught exceptions, failed requests,
    dialogs. ``allow(pattern)`` accepts the entries a test expects (a 404 it asked for)."""

    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def problems(self) -> list[str]:
        entries = [
            *(f"console error: {m}" for m in self.console),
            *(f"uncaught: {m}" for m in self.page_errors),
            *(f"request failed: {m}" for m in self.failed_requests),
            *(f"dialog: {m}" for m in self.dialogs),
        ]
        return [e for e in entries if not any(p.search(e) for p in self.allowed)]

    def watch(self, page: Any) -> None:
        def on_console(msg: Any) -> None:
            if msg.type == "error":
                loc = msg.location or {}
                self.console.append(f"{msg.text} ({loc.get('url', '')}:{loc.get('lineNumber')})")

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))

        def on_failed(req: Any) -> None:
            if req.failure != "net::ERR_ABORTED":  # cancelled by the next navigation
                self.failed_requests.append(f"{req.method} {req.url}: {req.failure}")

        page.on("requestfailed", on_failed)
        page.on("dialog", on_dialog)


def new_page(browser: Any, log: PageLog, **context: Any) -> tuple[Any, Any]:
    ctx = browser.new_context(viewport=VIEWPORT, **context)
    ctx.set_default_timeout(15_000)
    pg = ctx.new_page()
    log.watch(pg)
    return ctx, pg


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_CALL_SKIPPED] = report.skipped
    return report


_CALL_SKIPPED = pytest.StashKey[bool]()


def _check_log(request: pytest.FixtureRequest, log: PageLog) -> None:
    if request.node.stash.get(_CALL_SKIPPED, False):
        return  # a page not built yet: what it logged is no finding
    problems = log.problems()
    if problems:
        pytest.fail("the page reported:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def page(request: pytest.FixtureRequest, browser: Any, page_log: PageLog) -> Iterator[Any]:
    ctx, pg = new_page(browser, page_log)
    yield pg
    ctx.close()
    _check_log(request, page_log)


@pytest.fixture
def admin_page(
    request: pytest.FixtureRequest, browser: Any, page_log: PageLog, ui_keys: UiServer
) -> Iterator[Any]:
    """A page whose browser answers the dashboard's Basic challenge with the admin key."""
    creds = {"username": "admin", "password": ui_keys.admin, "origin": ui_keys.url}
    ctx, pg = new_page(browser, page_log, http_credentials=creds)
    yield pg
    ctx.close()
    _check_log(request, page_log)


# -- accessibility -----------------------------------------------------------------------

SERIOUS = ("serious", "critical")


def axe_check(page: Any, impacts: tuple[str, ...] = SERIOUS) -> list[dict[str, Any]]:
    """Run axe-core in ``page`` (evaluated through the DevTools protocol, so the page's
    Content-Security-Policy, which forbids inline scripts, stays on) and return its
    violations of the given impacts, each with the selectors of the nodes at fault."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate((VENDOR / "axe.min.js").read_text(encoding="utf-8"))
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ['violations']});
            return r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5),
            }));
        }"""
    )
    return [v for v in result if v["impact"] in impacts]


def describe_violations(violations: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {v['impact']}: {v['id']} ({v['help']}) at {', '.join(v['nodes'])}" for v in violations
    )
