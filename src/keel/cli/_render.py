"""Rendering for the CLI: rich tables and trees for people, JSON for scripts."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

# Piped output is for copying ids and grepping: don't wrap it at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str, sort_keys=True))


def when(ts: float | None) -> str:
    if not ts:
        return ""
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return "" if v is None else str(v)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, title_justify="left", header_style="bold", min_width=len(title) + 2)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[fmt(v) for v in r])
    console.print(t)


def lineage_tree(root: Any, details: dict[tuple[str, str], dict[str, Any]]) -> Tree:
    def label(node: Any) -> str:
        d = details.get((node.kind, node.id), {})
        extra = ", ".join(f"{k}={fmt(v)}" for k, v in d.items() if k != "label")
        role = f" [dim]({node.role})[/dim]" if node.role else ""
        return f"[bold]{node.kind}[/bold] {d.get('label', node.id)}{role}" + (
            f" [dim]{extra}[/dim]" if extra else ""
        )

    tree = Tree(label(root))

    def add(parent_tree: Tree, node: Any) -> None:
        for p in node.parents:
            add(parent_tree.add(label(p)), p)

    add(tree, root)
    return tree


def four_fifths(key: str, ev: Any) -> str | None:
    """One line on the four-fifths rule for the fairness evidence ``ev`` of sensitive
    ``key`` — the same verdict as the model card's; None when ``ev`` has no such rule."""
    ff = ev.get("four_fifths_rule") if isinstance(ev, dict) else None
    if not ff:
        return None
    di = ev.get("disparate_impact_ratio")
    di = di.get("value") if isinstance(di, dict) else di
    limit = f"{ff['threshold']:g}" if isinstance(ff.get("threshold"), float | int) else "—"
    ratio = "undefined" if di is None else f"{di:.4f}"
    ref = ff.get("reference_group")
    if ff.get("passed") is None:
        why = f"disparate-impact ratio {ratio}"
        return f"[yellow]four-fifths rule not checked[/yellow] for {key}: {why}"
    if ff.get("passed"):
        return (
            f"four-fifths rule passes for {key}: disparate-impact ratio {ratio} ≥ {limit} "
            f"(reference group {ref})"
        )
    below = ", ".join(map(str, ff.get("failing_groups") or [])) or "none"
    return (
        f"[bold red]four-fifths rule FAILS[/bold red] for {key}: disparate-impact ratio "
        f"{ratio} is under {limit} (reference group {ref}; groups below: {below})"
    )
