"""``keel pipeline run|show|list``: the flow as cached, resumable steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from keel.cli._app import JSON, PROJECT, _project, app
from keel.cli._render import console, emit_json, table, when

pipeline_app = typer.Typer(
    help="Pipelines: steps whose outputs are cached by the hash of their inputs.",
    no_args_is_help=True,
)
app.add_typer(pipeline_app, name="pipeline")

_STYLE = {"ran": "green", "cached": "cyan", "failed": "red", "pending": "dim", "running": "yellow"}


def _short(output: Any) -> str:
    if not isinstance(output, dict):
        return "" if output is None else str(output)[:60]
    keys = ("dataset", "model", "alias", "evidence", "passed", "onnx_sha")
    parts = [f"{k}={output[k]}" for k in keys if k in output]
    return ", ".join(parts)[:80] or str(output)[:60]


def _render(run: Any, file: str = "FILE") -> None:
    color = "green" if run.status == "succeeded" else "red" if run.status == "failed" else "yellow"
    console.print(
        f"pipeline [bold]{run.pipeline}[/bold] run {run.id}: [{color}]{run.status}[/{color}] "
        f"(executor {run.executor}, started {when(run.created_at)})",
        highlight=False,
    )
    table(
        "steps",
        ["step", "kind", "status", "tries", "seconds", "output / error", "key"],
        [
            [
                s.name,
                s.kind,
                s.status,
                s.attempts,
                s.seconds,
                (s.error or "")[:120] if s.status == "failed" else _short(s.output),
                s.key[:12],
            ]
            for s in run.steps
        ],
    )
    failed = [s for s in run.steps if s.status == "failed"]
    if failed:
        console.print(
            f"[red]step {failed[0].name} failed[/red]: {failed[0].error}\n"
            f"resume with: keel pipeline run {file} --resume {run.id}",
            highlight=False,
            soft_wrap=True,
        )


@pipeline_app.command("run")
def run_cmd(
    file: Path = typer.Argument(..., help="The pipeline's YAML file."),
    executor: str = typer.Option(
        "inline", "--executor", "-e", help="inline (here), process (a local pool) or ray."
    ),
    resume: str = typer.Option(None, help="Continue this run (its id) from its failed step."),
    workers: int = typer.Option(None, help="Workers of the process pool or Ray (default: cores)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Run a pipeline: steps whose inputs did not change reuse their stored output; a failed
    step stops the run, which --resume (or running again) continues.

    Example: keel pipeline run pipeline.yaml --executor ray
    """
    from keel.pipeline import Pipeline, run_pipeline

    pipe = Pipeline.load(file)  # checked before the store is opened
    with _project(project) as proj:
        run = run_pipeline(proj.store, pipe, executor=executor, resume=resume, workers=workers)
    if as_json:
        emit_json(run.to_dict())
    else:
        _render(run, str(file))
    if run.status != "succeeded":
        raise typer.Exit(1)


@pipeline_app.command("show")
def show_cmd(
    run_id: str = typer.Argument(..., help="A pipeline run id (or its first 8+ characters)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Show a pipeline run: each step's status, tries, seconds, output and key.

    Example: keel pipeline show 3f2a9c1e
    """
    from keel.pipeline import get_pipeline_run

    with _project(project) as proj:
        run = get_pipeline_run(proj.store, run_id)
    if as_json:
        emit_json(run.to_dict())
    else:
        _render(run)


@pipeline_app.command("list")
def list_cmd(
    name: str = typer.Option(None, "--pipeline", help="Only runs of this pipeline."),
    limit: int = typer.Option(20, help="How many of the newest runs."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """The newest pipeline runs.

    Example: keel pipeline list --pipeline adult-income
    """
    from keel.pipeline import list_pipeline_runs

    with _project(project) as proj:
        runs = list_pipeline_runs(proj.store, name, limit=limit)
    if as_json:
        emit_json([r.to_dict() for r in runs])
        return
    table(
        "pipeline runs",
        ["id", "pipeline", "status", "executor", "started", "ended"],
        [
            [r.id, r.pipeline, r.status, r.executor, when(r.created_at), when(r.ended_at)]
            for r in runs
        ],
    )
