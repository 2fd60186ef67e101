"""Placeholders for the pages that are not built yet, so the navigation never leads to a
404. A page module that lands takes its path from here: the first module in
:func:`keel.ui._app._routes` to claim a path serves it; delete the name from ``COMING``."""

from __future__ import annotations

from collections.abc import Callable

from keel.ui._app import Route
from keel.ui._http import Request, Response, esc, html_response
from keel.ui._layout import page

__all__ = ["COMING", "ROUTES"]

#: path -> what the page will show.
COMING: dict[str, str] = {}


def _coming(path: str) -> Callable[[Request], Response]:
    def view(request: Request) -> Response:
        title = path.strip("/").split("/")[0].capitalize()
        body = (
            f'<section class="coming" data-testid="coming-soon"><h1>{esc(title)}</h1>'
            f'<p class="coming-note">Coming: this page is not built yet.</p>'
            f"<p>{esc(COMING[path])}</p></section>"
        )
        return html_response(page(request.app, title, body, active="/" + path.split("/")[1]))

    return view


ROUTES = tuple(Route("GET", path, _coming(path)) for path in COMING)
