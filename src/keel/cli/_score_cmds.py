"""``keel score``: a registered model over a Parquet or CSV file, in this process or on Ray."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer

from keel.cli._app import JSON, PROJECT, _project, app
from keel.cli._render import console, emit_json, lineage_tree


@app.command("score")
def score_cmd(
    ref: str = typer.Argument(
        ..., metavar="MODEL", help="Model: NAME (newest version), NAME@ALIAS or NAME/VERSION."
    ),
    data: Path = typer.Argument(..., help="The rows to score: a .parquet or .csv file."),
    executor: str = typer.Option(
        "inline", help="inline: in this process; ray: Ray Data on a cluster (or a local Ray)."
    ),
    name: str = typer.Option(
        None, "--name", "-n", help="Dataset for the predictions (default: MODEL-scores)."
    ),
    use: str = typer.Option(
        "auto",
        help="onnx: the exported graph (keel export first); model: the registered model; "
        "auto: the graph when there is one.",
    ),
    batch_rows: int = typer.Option(4096, help="Rows scored in one model call."),
    ray_address: str = typer.Option(
        None, help="Ray cluster to run on, host:port (default: $RAY_ADDRESS, else a local Ray)."
    ),
    concurrency: int = typer.Option(
        None, help="Most Ray actors scoring at once (default: the cluster's CPUs)."
    ),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Score every row of DATA with MODEL and store the predictions as a dataset whose
    lineage names the model version and the input file's sha256. Nothing is stored unless
    every row was scored.

    Example: keel score adult-income@production new-applicants.parquet
             keel score adult-income/3 big.csv --executor ray --ray-address 10.0.0.5:6379
    """
    from keel import store as st
    from keel.serve import score

    # Ray's driver prints its cluster's warnings to stdout; keel's answer alone goes there
    with _project(project) as proj, contextlib.redirect_stdout(sys.stderr):
        res = score(
            proj.store,
            ref,
            data,
            executor=executor,
            name=name,
            use=use,
            batch_rows=batch_rows,
            address=ray_address,
            concurrency=concurrency,
        )
        root = st.lineage(proj.store, "dataset", res.dataset.sha)
        details = {(n.kind, n.id): st.describe(proj.store, n) for n in root.walk()}
    if as_json:
        emit_json({**res.to_dict(), "lineage": root.to_dict()})
        return
    what = "its exported ONNX graph" if res.used == "onnx" else "the registered model"
    console.print(
        f"[green]scored[/green] {res.rows:,} rows of {data.name} with {res.model} ({what}) "
        f"{res.executor}, in {res.seconds:.2f} s → dataset {res.dataset.ref} "
        f"sha256 {res.dataset.sha[:12]}",
        highlight=False,
    )
    console.print("[bold]lineage[/bold]")
    console.print(lineage_tree(root, details))
