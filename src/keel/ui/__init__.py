"""keel.ui: the web dashboard, a read-mostly skin over the store and the Python API,
served by the model server's stack (uvicorn, keel.serve's guarded protocol and API keys).

::

    from keel.ui import start
    with start(".") as ui:          # 127.0.0.1, any free port
        print(ui.url)               # open it in a browser

    keel ui --port 8765             # the same from the shell

Binding anything but a loopback address needs API keys (``keys=KeyRing.from_file(..)``,
``keel ui --keys FILE``); a browser then asks for the key as the password (HTTP Basic),
and scripts send ``Authorization: Bearer KEY``. Without keys the dashboard answers only
requests addressed to a loopback name (no DNS rebinding).

Nothing is fetched from elsewhere: every script and style ships in ``static/`` (uPlot is
vendored in ``static/vendor`` with its licence). Every answer carries a strict
Content-Security-Policy (``script-src 'self'``, no inline script or style); pages escape
every value on the server, and the scripts put text in the DOM with ``textContent`` only.

Adding a page
-------------
A page is one module ``keel/ui/_<page>.py`` that exposes ``ROUTES``, a tuple of
:class:`Route` (method, path, handler, scope)::

    ROUTES = (
        Route("GET", "/models", models_view),               # the HTML page
        Route("GET", "/api/models", api_models),            # its JSON
        Route("POST", "/api/models/{name}/aliases", move, scope="admin"),
    )

and one line: the module's name in the ``modules`` tuple of ``keel.ui._app._routes``
(and, if it replaces a placeholder, its path taken out of ``keel.ui._coming.COMING``).

- A handler takes a :class:`keel.ui._http.Request` (``.params`` from ``{name}`` in the
  path, ``.query``, ``.headers``, ``.app.store``) and returns a response:
  ``html_response(page(request.app, title, body, active="/models", scripts=("models.js",),
  data={...}))`` for a page, ``json_response(obj)`` for the API. A plain function runs in a
  worker thread (store reads block); an ``async def`` runs on the event loop (streams).
- Every value put into HTML goes through :func:`keel.ui._http.esc`; data for the page's
  script goes in ``data=`` (an inert JSON block, ``#keel-data``), never into inline script.
- Failures: raise ``UiError(code, message)`` (codes in ``keel.ui._http.STATUS``), or
  keel's ``NotFound``/``InvalidInput``; under ``/api`` the answer is ``{"error": {"code",
  "message", "request_id", ...}}``, elsewhere an HTML page with the message. Never a
  traceback or a server path.
- ``scope``: ``"read"`` (default: any key when the dashboard has keys), ``"admin"`` (a key
  with the admin scope), None (public). Every method but GET/HEAD must pass the CSRF check:
  same Origin, and the header ``X-Keel-CSRF: 1`` (``keel.postJSON`` in keel.js sends it).
- Scripts go in ``static/`` (vanilla JS, no build step) and use ``keel.js``'s helpers
  (``keel.el``, ``keel.getJSON``, ``keel.data``).

Pages (each has its JSON under ``/api``): ``/runs`` (``/api/runs``, ``/api/columns``,
``/api/experiments``), ``/runs/<id>`` (``/api/runs/<id>``, ``/metrics``, ``/artifact``,
``/lineage``, ``/events``), ``/compare`` (``/api/compare``, ``/api/compare/curves``),
``/models``, ``/models/<name>``, ``/models/<name>/<version>`` (its gates, evidence, card;
``card.md`` and ``card.html`` downloads; ``POST /api/models/<name>/aliases``),
``/releases`` and ``/releases/<model>`` (traffic, the canary/shadow comparison, a request
id's prediction and its lineage), ``/monitoring`` and ``/monitoring/<model>`` (drift per
window, performance, fairness, alerts and their deliveries), ``/pipelines`` and
``/pipelines/<run id>`` (the step graph), and ``/static/...``.
"""

from keel.ui._app import Route, UiApp, create_app
from keel.ui._filter import FilterError, parse_filter
from keel.ui._http import UiError
from keel.ui._query import RunsQuery, column_keys, runs_page
from keel.ui._server import RunningUi, serve, start

__all__ = [
    "FilterError",
    "Route",
    "RunningUi",
    "RunsQuery",
    "UiApp",
    "UiError",
    "column_keys",
    "create_app",
    "parse_filter",
    "runs_page",
    "serve",
    "start",
]
