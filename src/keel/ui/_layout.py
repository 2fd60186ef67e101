"""The page shell every dashboard page shares: head (our CSS, no inline script or style),
the navigation, a main element, and the page's data as an inert JSON block that its script
reads (``<script type="application/json">`` is data, not code, so the CSP allows it)."""

from __future__ import annotations

from typing import Any

from keel.serve._http import dumps
from keel.ui._http import esc

__all__ = ["NAV", "json_block", "page"]

#: The navigation, in order: (label, path). A page module adds nothing here; a page that is
#: not built yet is served by :mod:`keel.ui._coming`.
NAV: tuple[tuple[str, str], ...] = (
    ("Runs", "/runs"),
    ("Compare", "/compare"),
    ("Models", "/models"),
    ("Releases", "/releases"),
    ("Monitoring", "/monitoring"),
    ("Pipelines", "/pipelines"),
)


def json_block(element_id: str, data: Any) -> str:
    """``data`` as JSON inside an inert script element, with ``<``, ``>``, ``&`` and the
    line separators escaped so no text in it can close the element."""
    text = dumps(data).decode("utf-8")
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, rep)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


def page(
    app: Any,
    title: str,
    body: str,
    *,
    active: str = "",
    scripts: tuple[str, ...] = (),
    styles: tuple[str, ...] = (),
    data: Any = None,
) -> str:
    """A whole HTML page. ``body`` is HTML the caller built with :func:`esc` around every
    value; ``scripts``/``styles`` are file names under ``static/``; ``data`` is handed to
    the page's script as the JSON block ``#keel-data``."""
    current = ' aria-current="page"'
    links = "".join(
        f'<a href="{esc(path)}"{current if path == active else ""}>{esc(label)}</a>'
        for label, path in NAV
    )
    css = "".join(
        f'<link rel="stylesheet" href="{esc(app.static_url(s))}">' for s in ("keel.css", *styles)
    )
    js = "".join(
        f'<script src="{esc(app.static_url(s))}" defer></script>' for s in ("keel.js", *scripts)
    )
    icon = app.static_url("favicon.svg")
    blob = json_block("keel-data", data) if data is not None else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)} · keel</title><link rel="icon" href="{esc(icon)}">{css}{js}</head>'
        '<body><header class="top"><a class="brand" href="/runs">keel</a>'
        f'<nav aria-label="main">{links}</nav></header>'
        f'<main id="main">{body}</main>{blob}</body></html>'
    )
