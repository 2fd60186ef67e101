"""``keel deploy``: hand a release to the platform a team runs (Kubernetes, KServe)."""

from __future__ import annotations

import typer

from keel.cli._app import app

deploy_app = typer.Typer(
    help="Write what a platform needs to run a model: an image and its manifests.",
    no_args_is_help=True,
)
app.add_typer(deploy_app, name="deploy")
