"""``keel card``: a model version's card, as Markdown and self-contained HTML."""

from __future__ import annotations

from pathlib import Path

import typer

from keel.cli._app import JSON, PROJECT, _project, app
from keel.cli._render import console, emit_json


@app.command("card")
def card_cmd(
    ref: str = typer.Argument(..., help="Model version: name/VERSION or name@alias."),
    out: Path = typer.Option(
        None, "--out", "-o", help="Folder for card.md and card.html (default: cards/NAME-VERSION)."
    ),
    evidence: int = typer.Option(None, help="Use this evidence id (default: the latest)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Write the model card of a version — intended use, data, training, evaluation with
    intervals, fairness, explanations, robustness, privacy, gates and overrides, monitoring
    plan, and an EU AI Act Annex IV / NIST AI RMF table of what is evidenced and what is
    missing — as card.md and card.html (one file, no external resources). With --json, each
    point not fully evidenced comes with its items missing, its items only stated as a plan
    (stated_only) and what backs the items found (backed_by).

    Example: keel card adult-income@production --out cards/production
    """
    from keel import registry
    from keel.audit.card import model_card

    with _project(project) as proj:
        mv = registry.get_version(proj.store, ref)
        folder = out if out is not None else proj.root / "cards" / f"{mv.name}-{mv.version}"
        card = model_card(proj.store, mv.ref, evidence_id=evidence)
    paths = card.write(folder)
    if as_json:
        emit_json(
            {
                "model": mv.ref,
                "paths": {k: str(p) for k, p in paths.items()},
                "missing": [
                    {
                        "framework": r["framework"],
                        "point": r["point"],
                        "status": r["status"],
                        "missing": r["missing"],
                        "stated_only": r["stated_only"],
                        "backed_by": r["backed_by"],
                    }
                    for r in card.missing()
                ],
            }
        )
        return
    console.print(f"model card of [bold]{mv.ref}[/bold]", highlight=False)
    for kind, path in paths.items():
        console.print(f"  {kind}: {path}", highlight=False, soft_wrap=True)
