"""Charts for the HTML model card, drawn as inline SVG: no script, no external file, no font
download. Each mark carries a ``<title>`` with its exact figure (a tooltip, and text a
screen reader or a test can read) and a ``data-value`` attribute."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

__all__ = ["bars", "interval_bars", "reliability", "xy"]

_W = 560
_LABEL_W = 190
_ROW_H = 22
_PAD = 24
_COLORS = {"bar": "#3a6ea5", "ref": "#b03a2e", "whisker": "#1b1b1b", "grid": "#d9d9d9"}
#: Colours of the series of an x–y chart, in order (colour-blind safe: Okabe–Ito).
_SERIES = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")


def _n(x: float) -> str:
    """A coordinate: short and locale-free."""
    return f"{x:.1f}"


def _v(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _label(text: str, limit: int = 28) -> str:
    return escape(text if len(text) <= limit else text[: limit - 1] + "…")


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _svg(height: float, body: list[str], label: str) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(label)}" width="{_W}" '
        f'height="{_n(height)}" viewBox="0 0 {_W} {_n(height)}">'
        f"<title>{escape(label)}</title>" + "".join(body) + "</svg>"
    )


def _axis(x0: float, x1: float, y0: float, y1: float, lo: float, hi: float) -> list[str]:
    out = []
    for i in range(5):
        t = lo + (hi - lo) * i / 4
        x = x0 + (x1 - x0) * i / 4
        out.append(
            f'<line x1="{_n(x)}" y1="{_n(y0)}" x2="{_n(x)}" y2="{_n(y1)}" '
            f'stroke="{_COLORS["grid"]}" stroke-width="1"/>'
            f'<text x="{_n(x)}" y="{_n(y1 + 14)}" font-size="10" text-anchor="middle">'
            f"{t:.3g}</text>"
        )
    return out


def _scale(
    values: Sequence[Any], lo: float | None = None, hi: float | None = None
) -> tuple[float, float, Callable[[float], float]]:
    """The axis range (``lo``/``hi`` unless given: 0 or the data's extent) and x of a value."""
    finite = [v for v in values if _finite(v)]
    lo = min([0.0, *finite]) if lo is None else lo
    hi = max([1e-12, *finite]) if hi is None else hi
    if hi <= lo:
        hi = lo + 1.0
    x0, x1 = _LABEL_W, _W - _PAD
    return lo, hi, lambda v: x0 + (x1 - x0) * (min(max(v, lo), hi) - lo) / (hi - lo)


def interval_bars(
    rows: Sequence[tuple[str, float | None, float | None, float | None]],
    label: str,
    lo: float | None = 0.0,
    hi: float | None = 1.0,
) -> str:
    """Horizontal bars (``value``) with whiskers (``low``–``high``): one row per metric."""
    rows = [r for r in rows if _finite(r[1])]
    if not rows:
        return ""
    values = [v for r in rows for v in r[1:] if _finite(v)]
    lo, hi, sx = _scale(values, lo, hi)
    top, height = 8.0, 8.0 + _ROW_H * len(rows) + 22
    body = _axis(_LABEL_W, _W - _PAD, top, top + _ROW_H * len(rows), lo, hi)
    for i, (name, value, low, high) in enumerate(rows):
        assert value is not None
        y = top + i * _ROW_H
        x_base = sx(max(lo, 0.0) if lo < 0 <= hi else lo)
        x_val = sx(value)
        tip = f"{name}: {_v(value)}"
        if _finite(low) and _finite(high):
            tip += f" (95% interval {_v(low)} to {_v(high)})"
        body.append(
            f'<text x="{_LABEL_W - 6}" y="{_n(y + 15)}" font-size="12" text-anchor="end">'
            f"{_label(name)}</text>"
            f'<rect x="{_n(min(x_base, x_val))}" y="{_n(y + 4)}" '
            f'width="{_n(max(abs(x_val - x_base), 0.5))}" height="{_ROW_H - 8}" '
            f'fill="{_COLORS["bar"]}" data-value="{value!r}"><title>{escape(tip)}</title></rect>'
        )
        if _finite(low) and _finite(high):
            assert low is not None and high is not None
            xl, xh, ym = sx(low), sx(high), y + _ROW_H / 2
            body.append(
                f'<g stroke="{_COLORS["whisker"]}" stroke-width="1.5" '
                f'data-low="{low!r}" data-high="{high!r}">'
                f'<line x1="{_n(xl)}" y1="{_n(ym)}" x2="{_n(xh)}" y2="{_n(ym)}"/>'
                f'<line x1="{_n(xl)}" y1="{_n(ym - 5)}" x2="{_n(xl)}" y2="{_n(ym + 5)}"/>'
                f'<line x1="{_n(xh)}" y1="{_n(ym - 5)}" x2="{_n(xh)}" y2="{_n(ym + 5)}"/>'
                "</g>"
            )
    return _svg(height, body, label)


def bars(
    rows: Sequence[tuple[str, float | None]],
    label: str,
    refs: Sequence[tuple[str, float]] = (),
    lo: float | None = 0.0,
    hi: float | None = None,
) -> str:
    """Horizontal bars, one per row, with optional vertical reference lines (``refs``)."""
    rows = [(n, v) for n, v in rows if _finite(v)]
    if not rows:
        return ""
    refs = [(n, v) for n, v in refs if _finite(v)]
    lo, hi, sx = _scale([v for _, v in rows] + [v for _, v in refs], lo, hi)
    top = 8.0 + (14.0 * len(refs))
    bottom = top + _ROW_H * len(rows)
    body = _axis(_LABEL_W, _W - _PAD, top, bottom, lo, hi)
    for i, (name, value) in enumerate(rows):
        assert value is not None
        y = top + i * _ROW_H
        x0 = sx(max(lo, 0.0))
        x1 = sx(value)
        body.append(
            f'<text x="{_LABEL_W - 6}" y="{_n(y + 15)}" font-size="12" text-anchor="end">'
            f"{_label(name)}</text>"
            f'<rect x="{_n(min(x0, x1))}" y="{_n(y + 4)}" width="{_n(max(abs(x1 - x0), 0.5))}" '
            f'height="{_ROW_H - 8}" fill="{_COLORS["bar"]}" data-value="{value!r}">'
            f"<title>{escape(name)}: {_v(value)}</title></rect>"
        )
    for j, (name, value) in enumerate(refs):
        x = sx(value)
        body.append(
            f'<line x1="{_n(x)}" y1="{_n(top - 4)}" x2="{_n(x)}" y2="{_n(bottom)}" '
            f'stroke="{_COLORS["ref"]}" stroke-dasharray="4 3" stroke-width="1.5" '
            f'data-value="{value!r}"><title>{escape(name)}: {_v(value)}</title></line>'
            f'<text x="{_n(min(x + 4, _W - 150))}" y="{_n(10 + 14 * j)}" font-size="10" '
            f'fill="{_COLORS["ref"]}">{escape(name)} {_v(value)}</text>'
        )
    return _svg(bottom + 22, body, label)


def reliability(points: Sequence[dict[str, Any]], label: str) -> str:
    """A reliability curve: mean predicted probability against the observed positive rate
    per bin, over the diagonal of perfect calibration; a point's area follows its count."""
    pts = [
        p
        for p in points
        if _finite(p.get("mean_predicted")) and _finite(p.get("fraction_positive"))
    ]
    if not pts:
        return ""
    size, pad = 300.0, 36.0
    x0, x1, y0, y1 = pad, pad + size, 10.0, 10.0 + size

    def sx(v: float) -> float:
        return x0 + (x1 - x0) * v

    def sy(v: float) -> float:
        return y1 - (y1 - y0) * v

    body = []
    for i in range(5):
        t = i / 4
        body.append(
            f'<line x1="{_n(sx(t))}" y1="{_n(y0)}" x2="{_n(sx(t))}" y2="{_n(y1)}" '
            f'stroke="{_COLORS["grid"]}"/>'
            f'<line x1="{_n(x0)}" y1="{_n(sy(t))}" x2="{_n(x1)}" y2="{_n(sy(t))}" '
            f'stroke="{_COLORS["grid"]}"/>'
            f'<text x="{_n(sx(t))}" y="{_n(y1 + 14)}" font-size="10" text-anchor="middle">'
            f"{t:g}</text>"
            f'<text x="{_n(x0 - 4)}" y="{_n(sy(t) + 3)}" font-size="10" text-anchor="end">'
            f"{t:g}</text>"
        )
    body.append(
        f'<line x1="{_n(sx(0))}" y1="{_n(sy(0))}" x2="{_n(sx(1))}" y2="{_n(sy(1))}" '
        f'stroke="{_COLORS["whisker"]}" stroke-dasharray="4 3"/>'
    )
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{_n(sx(p['mean_predicted']))},{_n(sy(p['fraction_positive']))}"
        for i, p in enumerate(pts)
    )
    body.append(f'<path d="{path}" fill="none" stroke="{_COLORS["bar"]}" stroke-width="2"/>')
    biggest = max(int(p.get("count") or 0) for p in pts) or 1
    for p in pts:
        r = 2.5 + 5.5 * math.sqrt(int(p.get("count") or 0) / biggest)
        tip = (
            f"predicted {_v(p['mean_predicted'])}, observed {_v(p['fraction_positive'])}, "
            f"{p.get('count')} rows"
        )
        body.append(
            f'<circle cx="{_n(sx(p["mean_predicted"]))}" cy="{_n(sy(p["fraction_positive"]))}" '
            f'r="{_n(r)}" fill="{_COLORS["bar"]}" data-value="{p["fraction_positive"]!r}">'
            f"<title>{escape(tip)}</title></circle>"
        )
    body.append(
        f'<text x="{_n((x0 + x1) / 2)}" y="{_n(y1 + 28)}" font-size="11" text-anchor="middle">'
        "mean predicted probability</text>"
        f'<text x="{_n(x1 + 8)}" y="{_n(y0 + 10)}" font-size="11">observed positive rate</text>'
    )
    return _svg(y1 + 36, body, label)


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    """Round tick values inside ``[lo, hi]``: 1, 2 and 5 times powers of ten."""
    if log:
        a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
        ticks = [10.0**k for k in range(a, b + 1) if lo <= 10.0**k <= hi]
        if len(ticks) < 3:
            ticks = sorted(
                m * 10.0**k for k in range(a, b + 1) for m in (1, 2, 5) if lo <= m * 10.0**k <= hi
            )
        return ticks or [lo, hi]
    raw = (hi - lo) / 5
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * 0.8)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def xy(
    series: Sequence[dict[str, Any]],
    label: str,
    x_label: str,
    y_label: str,
    *,
    x_log: bool = False,
    y_range: tuple[float, float] | None = (0.0, 1.0),
) -> str:
    """Points (and lines between them) on two numeric axes: one ``series`` is ``{"name",
    "points": [{"x", "y", "tip", "mark"?}], "line": bool}``. A point with ``mark`` (such as
    "base" or "this version") is drawn as a square and named in its tooltip. Each point is an
    element with ``data-series``, ``data-x`` and ``data-y``; points off a log axis (x ≤ 0) or
    not finite are left out."""
    kept = []
    for s in series:
        pts = [
            p
            for p in s.get("points") or []
            if _finite(p.get("x")) and _finite(p.get("y")) and (not x_log or p["x"] > 0)
        ]
        if pts:
            kept.append({**s, "points": pts})
    if not kept:
        return ""
    xs = [p["x"] for s in kept for p in s["points"]]
    ys = [p["y"] for s in kept for p in s["points"]]
    if x_log:
        xlo, xhi = min(xs) / 1.5, max(xs) * 1.5
    else:
        pad = (max(xs) - min(xs)) * 0.08 or max(abs(max(xs)) * 0.1, 0.05)
        xlo = 0.0 if min(xs) >= 0 else min(xs) - pad
        xhi = max(xs) + pad
    if y_range is None:
        pad = (max(ys) - min(ys)) * 0.15 or 0.02
        ylo, yhi = min(ys) - pad, max(ys) + pad
    else:
        ylo, yhi = y_range
    if yhi <= ylo:
        ylo, yhi = ylo - 0.5, yhi + 0.5
    legend_h = 16.0 * len(kept)
    x0, x1, y0 = 56.0, _W - _PAD, 30.0 + legend_h
    y1 = y0 + 220.0

    def sx(v: float) -> float:
        if x_log:
            t = (math.log10(v) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo))
        else:
            t = (v - xlo) / (xhi - xlo)
        return x0 + (x1 - x0) * min(max(t, 0.0), 1.0)

    def sy(v: float) -> float:
        return y1 - (y1 - y0) * min(max((v - ylo) / (yhi - ylo), 0.0), 1.0)

    body: list[str] = []
    for t in _ticks(xlo, xhi, x_log):
        body.append(
            f'<line x1="{_n(sx(t))}" y1="{_n(y0)}" x2="{_n(sx(t))}" y2="{_n(y1)}" '
            f'stroke="{_COLORS["grid"]}"/>'
            f'<text x="{_n(sx(t))}" y="{_n(y1 + 14)}" font-size="10" text-anchor="middle">'
            f"{t:.3g}</text>"
        )
    for t in _ticks(ylo, yhi, False):
        body.append(
            f'<line x1="{_n(x0)}" y1="{_n(sy(t))}" x2="{_n(x1)}" y2="{_n(sy(t))}" '
            f'stroke="{_COLORS["grid"]}"/>'
            f'<text x="{_n(x0 - 4)}" y="{_n(sy(t) + 3)}" font-size="10" text-anchor="end">'
            f"{t:.3g}</text>"
        )
    for i, s in enumerate(kept):
        color = _SERIES[i % len(_SERIES)]
        ly = 10.0 + 16.0 * i
        name = _label(s["name"], 80)
        body.append(
            f'<rect x="{_n(x0)}" y="{_n(ly - 8)}" width="10" height="10" fill="{color}"/>'
            f'<text x="{_n(x0 + 14)}" y="{_n(ly + 1)}" font-size="11">{name}</text>'
        )
        pts = sorted(s["points"], key=lambda p: p["x"]) if s.get("line") else s["points"]
        if s.get("line") and len(pts) > 1:
            path = " ".join(
                f"{'M' if j == 0 else 'L'}{_n(sx(p['x']))},{_n(sy(p['y']))}"
                for j, p in enumerate(pts)
            )
            body.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for p in pts:
            cx, cy = sx(p["x"]), sy(p["y"])
            tip = escape(str(p.get("tip") or f"{_v(p['x'])}, {_v(p['y'])}"))
            data = f'data-series="{escape(s["name"])}" data-x="{p["x"]!r}" data-y="{p["y"]!r}"' + (
                f' data-mark="{escape(p["mark"])}"' if p.get("mark") else ""
            )
            if p.get("mark"):
                body.append(
                    f'<rect x="{_n(cx - 5.5)}" y="{_n(cy - 5.5)}" width="11" height="11" '
                    f'fill="{color}" stroke="{_COLORS["whisker"]}" stroke-width="1.5" {data}>'
                    f"<title>{tip}</title></rect>"
                )
            else:
                body.append(
                    f'<circle cx="{_n(cx)}" cy="{_n(cy)}" r="4" fill="{color}" {data}>'
                    f"<title>{tip}</title></circle>"
                )
    body.append(
        f'<text x="{_n((x0 + x1) / 2)}" y="{_n(y1 + 30)}" font-size="11" text-anchor="middle">'
        f"{escape(x_label)}</text>"
        f'<text x="{_n(x0 - 40)}" y="{_n(y0 - 10)}" font-size="11">{escape(y_label)} ↑</text>'
    )
    return _svg(y1 + 38, body, label)
