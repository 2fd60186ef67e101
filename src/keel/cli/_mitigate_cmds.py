"""``keel mitigate``: a fairer version of a model, with its before/after table."""

from __future__ import annotations

from pathlib import Path

import typer

from keel.cli._app import JSON, PROJECT, _project, app
from keel.cli._render import console, emit_json, table


@app.command("mitigate")
def mitigate_cmd(
    ref: str = typer.Argument(..., help="Model version to mitigate: name/VERSION or name@alias."),
    method: str = typer.Option(
        ..., help="reweigh (pre-processing), expgrad (in-processing) or threshold (post)."
    ),
    sensitive: list[str] = typer.Option(
        ..., help="Sensitive column (repeat for intersectional groups)."
    ),
    constraint: str = typer.Option(
        "demographic_parity",
        help="demographic_parity, equalized_odds or equal_opportunity (reweigh: the first).",
    ),
    seed: int = typer.Option(0, help="Seed of the randomized decisions (expgrad, threshold)."),
    name: str = typer.Option(None, help="Register under this name (default: the model's)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Make a new version of a model that treats the sensitive groups more alike, and print
    accuracy, selection rate by group and every disparity before and after, on the
    hold-out rows.

    Example: keel mitigate adult-income/1 --method threshold --sensitive sex
    """
    from keel.audit.mitigate import METHODS, mitigate, table_rows
    from keel.errors import InvalidInput

    if method not in METHODS:
        raise InvalidInput(f"--method: expected one of {', '.join(METHODS)}, got {method!r}")
    options = {} if method == "reweigh" else {"seed": seed}
    with _project(project) as proj:
        version, result = mitigate(
            proj.store,
            ref,
            method,
            list(sensitive),
            constraint=constraint,
            name=name,
            **options,
        )
    if as_json:
        emit_json(result)
        return
    table(
        f"{method} ({constraint}) on {result['parent']} → {version.ref}: hold-out, "
        f"{result['rows']} rows",
        ["figure", "before", "after", "change"],
        table_rows(result),
    )
    console.print(
        f"registered [bold]{version.ref}[/bold] ({version.flavor}); "
        f"lineage: keel lineage {version.ref}",
        highlight=False,
    )
