"""A version's model card in the dashboard: rendered in place and downloadable.

The card's HTML (:meth:`keel.audit.Card.html`) is one self-contained page with an inline
stylesheet, which this dashboard's CSP (``style-src 'self'``) would refuse, and a frame of
it would be refused too (``frame-ancestors 'none'``). So the page shows the card's body
rebuilt through an allowlist (:func:`clean_card_html`): known tags and attributes only
(headings two levels down, landmarks as plain blocks, the charts as SVG figures with their
captions), text and attribute values escaped again, links only to the card's own sections, ids
prefixed so they cannot clash with the page's; its look comes from ``models.css``. The
downloads (``card.md``, ``card.html``) are the card's files exactly as ``keel card``
writes them, sent as attachments."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from keel.ui._http import Request, Response, esc

__all__ = ["card_download", "card_fragment", "clean_card_html"]

_TAGS = frozenset(
    "h3 h4 h5 p ol ul li section table caption thead tbody tr th td dl dt "
    "dd pre strong em code a span div br figure figcaption "
    "svg g title line rect circle path text".split()
)
_VOID = frozenset({"br"})
_ATTRS = frozenset(
    "class id role aria-label href x y x1 y1 x2 y2 cx cy r d width height viewbox fill stroke "
    "stroke-width stroke-dasharray text-anchor font-size "
    # the card's charts (keel.audit._card_svg) carry each mark's exact figures as data
    "data-value data-low data-high data-x data-y data-series data-mark".split()
)
#: SVG attribute names are case-sensitive: HTMLParser lowers them, we restore them.
_CASE = {"viewbox": "viewBox"}
#: The card's headings two levels down (it sits under the page's h1 and its own h2), and its
#: landmarks as plain blocks (the page has its own main and navigation).
_SHIFT = {"h1": "h3", "h2": "h4", "h3": "h5", "main": "div", "header": "div", "nav": "div"}
_DROP_CONTENT = frozenset({"script", "style", "head", "template", "iframe", "object"})
PREFIX = "card-"


class _Clean(HTMLParser):
    """Rebuild the body of a card from its tokens, keeping only what is allowed."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.in_body = False
        self.skip = 0  # depth inside an element whose content is dropped
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = _SHIFT.get(tag, tag)
        if tag == "body":
            self.in_body = True
            return
        if tag in _DROP_CONTENT:
            self.skip += 1
            return
        if not self.in_body or self.skip or tag not in _TAGS:
            return
        kept = []
        for name, value in attrs:
            if name not in _ATTRS or value is None:
                continue
            if name == "href":
                if not value.startswith("#"):
                    continue
                value = "#" + PREFIX + value[1:]
            elif name == "id":
                value = PREFIX + value
            kept.append(f' {_CASE.get(name, name)}="{esc(value)}"')
        self.out.append(f"<{tag}{''.join(kept)}>")
        if tag not in _VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if _SHIFT.get(tag, tag) not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        tag = _SHIFT.get(tag, tag)
        if tag == "body":
            self.in_body = False
            return
        if tag in _DROP_CONTENT:
            self.skip = max(0, self.skip - 1)
            return
        if not self.in_body or self.skip or tag not in _TAGS or tag in _VOID:
            return
        if tag in self.open:  # close what is open down to it; a stray end tag is dropped
            while self.open:
                top = self.open.pop()
                self.out.append(f"</{top}>")
                if top == tag:
                    break

    def handle_data(self, data: str) -> None:
        if self.in_body and not self.skip:
            self.out.append(esc(data))

    def result(self) -> str:
        self.close()
        return "".join(self.out) + "".join(f"</{t}>" for t in reversed(self.open))


def clean_card_html(page: str) -> str:
    """The body of the card page ``page``, rebuilt through the allowlist (see the module's
    docstring): safe to put inside a dashboard page as it is."""
    parser = _Clean()
    parser.feed(page)
    return parser.result()


def card_fragment(store: Any, ref: str, evidence_id: int | None = None) -> str:
    """The card of version ``ref`` as HTML for the version page: the cleaned card, or a note
    saying why there is none (no evidence yet, a malformed ``card:`` setting)."""
    from keel.audit import model_card
    from keel.errors import KeelError

    try:
        card = model_card(store, ref, evidence_id=evidence_id)
    except KeelError as exc:  # no evidence yet, a malformed card: setting, a missing blob
        return f'<p class="muted" data-testid="card-missing">No model card: {esc(exc)}</p>'
    return f'<div class="card-doc" data-testid="card">{clean_card_html(card.html())}</div>'


def card_download(request: Request, ref: str, kind: str) -> Response:
    """``card.md`` or ``card.html`` of version ``ref`` as an attachment named after it."""
    from keel.audit import model_card

    evidence = request.query.get("evidence")
    evidence_id = int(evidence) if evidence and evidence.isdigit() else None
    card = model_card(request.app.store, ref, evidence_id=evidence_id)
    text, ctype = (
        (card.markdown(), b"text/markdown; charset=utf-8")
        if kind == "md"
        else (card.html(), b"text/html; charset=utf-8")
    )
    filename = ref.replace("/", "-") + f"-card.{kind}"
    headers = [
        (b"content-disposition", f'attachment; filename="{filename}"'.encode()),
        (b"cache-control", b"no-store"),
    ]
    return Response(text.encode("utf-8"), 200, headers, ctype)
