"""Writers for a model card's blocks: Markdown, and one self-contained HTML file (inline CSS,
inline SVG charts, no script and no external URL)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from keel.audit import _card_svg as svg
from keel.audit._card_blocks import NOT_STATED

__all__ = ["html", "markdown"]


def _md_cell(text: Any) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return lines


def _md_block(b: dict[str, Any]) -> list[str]:
    kind = b["kind"]
    if kind == "p":
        return [b["text"], ""]
    if kind == "h3":
        return [f"### {b['text']}", ""]
    if kind == "kv":
        return [f"- **{_md_cell(k)}**: {_md_cell(v)}" for k, v in b["rows"]] + [""]
    if kind == "list":
        return [f"- {_md_cell(i)}" for i in b["items"]] + [""]
    if kind == "missing":
        if b["text"] == NOT_STATED:
            return [f"_{NOT_STATED}_", ""]
        return [f"> **Missing:** {b['text']}", ""]
    if kind == "pre":
        return ["```text", b["text"].rstrip(), "```", ""]
    if kind == "table":
        if not b["rows"]:
            return [f"_{b['caption'] or 'table'}: none_", ""]
        cap = [f"*{b['caption']}*", ""] if b.get("caption") else []
        return cap + _md_table(b["headers"], b["rows"]) + [""]
    if kind == "figure":  # the picture is in the HTML card; its figures are in the tables
        return [f"*Figure (drawn in card.html): {_md_cell(b['caption'])}*", ""]
    return []  # charts: the tables beside them carry the same figures


def markdown(title: str, meta: str, summary: list[tuple[str, str]], layout: list[dict]) -> str:
    lines = [f"# {title}", "", meta, ""]
    lines += _md_table(["", ""], [[f"**{k}**", v] for k, v in summary]) + [""]
    for i, sec in enumerate(layout, 1):
        lines += [f"## {i}. {sec['title']}", ""]
        for b in sec["blocks"]:
            lines += _md_block(b)
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b;
  max-width: 980px; margin: 0 auto; padding: 24px 28px 64px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e4e4e4; }
h3 { font-size: 16px; margin: 18px 0 6px; }
.meta { color: #555; margin: 0 0 14px; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 13px; }
caption { text-align: left; color: #555; font-style: italic; padding: 2px 0; }
th, td { border: 1px solid #dcdcdc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0 12px; }
dl.kv dt { font-weight: 600; } dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.missing { background: #fff4e5; border-left: 4px solid #d9822b; padding: 6px 10px; margin: 6px 0; }
.notstated { color: #8a5a00; font-style: italic; }
.status-present { background: #e6f4ea; } .status-partial { background: #fff4e5; }
.status-missing { background: #fde8e8; font-weight: 600; }
pre { background: #f6f6f6; padding: 8px 10px; overflow-x: auto; font-size: 12px; }
nav ol { columns: 3; font-size: 13px; } svg.chart { display: block; margin: 6px 0 14px;
  font-family: system-ui, sans-serif; max-width: 100%; height: auto; }
.summary td:first-child { font-weight: 600; }
figure { margin: 8px 0 16px; } figcaption { color: #444; font-size: 13px; max-width: 560px; }
@media print { nav { display: none; } h2 { break-after: avoid; } }
"""


def _looks_numeric(text: str) -> bool:
    t = text.replace(",", "").replace("—", "").strip()
    if not t:
        return False
    try:
        float(t)
    except ValueError:
        return False
    return True


def _html_table(b: dict[str, Any]) -> str:
    status_col = b.get("status_column")
    head = "".join(f"<th>{escape(str(h))}</th>" for h in b["headers"])
    body = []
    for r in b["rows"]:
        cells = []
        for j, c in enumerate(r):
            text = str(c)
            cls = []
            if j == status_col:
                cls.append(f"status-{escape(text)}")
            elif _looks_numeric(text):
                cls.append("num")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{escape(b['caption'])}</caption>" if b.get("caption") else ""
    if not b["rows"]:
        return f'<p class="notstated">{escape(b.get("caption") or "table")}: none</p>'
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _chart(b: dict[str, Any]) -> str:
    if b["chart"] == "interval_bars":
        return svg.interval_bars(b["rows"], b["label"])
    if b["chart"] == "bars":
        return svg.bars(b["rows"], b["label"], refs=b.get("refs") or ())
    if b["chart"] == "reliability":
        return svg.reliability(b["points"], b["label"])
    if b["chart"] == "xy":
        return svg.xy(
            b["series"],
            b["label"],
            b.get("x_label", ""),
            b.get("y_label", ""),
            x_log=bool(b.get("x_log")),
            y_range=b.get("y_range", (0.0, 1.0)),
        )
    return ""


def _figure(b: dict[str, Any]) -> str:
    if b["chart"] == "bars":
        drawn = svg.bars(b["rows"], b["label"], lo=b.get("lo", 0.0), hi=b.get("hi"))
    else:
        drawn = _chart(b)
    if not drawn:
        return ""
    return f"<figure>{drawn}<figcaption>{escape(b['caption'])}</figcaption></figure>"


def _html_block(b: dict[str, Any]) -> str:
    kind = b["kind"]
    if kind == "p":
        return f"<p>{escape(b['text'])}</p>"
    if kind == "h3":
        return f"<h3>{escape(b['text'])}</h3>"
    if kind == "kv":
        items = "".join(f"<dt>{escape(str(k))}</dt><dd>{escape(str(v))}</dd>" for k, v in b["rows"])
        return f'<dl class="kv">{items}</dl>'
    if kind == "list":
        return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in b["items"]) + "</ul>"
    if kind == "missing":
        if b["text"] == NOT_STATED:
            return f'<p class="notstated">{NOT_STATED}</p>'
        return f'<p class="missing"><strong>Missing:</strong> {escape(b["text"])}</p>'
    if kind == "pre":
        return f"<pre>{escape(b['text'])}</pre>"
    if kind == "table":
        return _html_table(b)
    if kind == "chart":
        return _chart(b)
    if kind == "figure":
        return _figure(b)
    return ""


def html(title: str, meta: str, summary: list[tuple[str, str]], layout: list[dict]) -> str:
    toc = "".join(f'<li><a href="#{escape(s["id"])}">{escape(s["title"])}</a></li>' for s in layout)
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in summary)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f'<header><h1>{escape(title)}</h1><p class="meta">{escape(meta)}</p>',
        f'<table class="summary"><tbody>{rows}</tbody></table></header>',
        f"<nav><ol>{toc}</ol></nav><main>",
    ]
    for i, sec in enumerate(layout, 1):
        parts.append(f'<section id="{escape(sec["id"])}"><h2>{i}. {escape(sec["title"])}</h2>')
        parts += [_html_block(b) for b in sec["blocks"]]
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"
