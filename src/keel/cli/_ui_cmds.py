"""``keel ui``: the web dashboard over the project's store."""

from __future__ import annotations

from pathlib import Path

import typer

from keel.cli._app import PROJECT, _project, app


@app.command("ui")
def ui_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to bind (non-loopback needs --keys)."),
    port: int = typer.Option(8765, help="Port to listen on."),
    keys: Path = typer.Option(
        None, help="API keys JSON (from 'keel key'); the browser asks for one as the password."
    ),
    poll: float = typer.Option(0.5, help="How often live pages look for new points (s)."),
    project: Path = PROJECT,
) -> None:
    """Open the web dashboard: runs (filter, sort, columns), a run's curves, lineage and live
    updates, comparisons of runs. Binds 127.0.0.1 unless given API keys.

    Example: keel ui --port 8765
    """
    from keel.errors import InvalidInput
    from keel.serve import KeyRing
    from keel.ui import serve

    if not 0 <= port <= 65535:
        raise InvalidInput(f"--port: expected a port number 0-65535, got {port}")
    ring = KeyRing.from_file(keys) if keys else None
    with _project(project) as proj:
        serve(proj.store, host=host, port=port, keys=ring, poll_s=poll)
