"""``keel serve``, ``keel key`` and ``keel labels``: models behind HTTP, and their ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from keel.cli._app import JSON, PROJECT, _project, app
from keel.cli._render import console, emit_json


@app.command("serve")
def serve_cmd(
    routes: list[str] = typer.Argument(
        None, help="Models to serve: NAME (its 'production' alias), NAME@ALIAS or NAME/VERSION."
    ),
    release: Path = typer.Option(
        None, help="YAML of releases: a route's versions by weight (canary) and a shadow."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to bind (non-loopback needs --keys)."),
    port: int = typer.Option(8080, help="Port to listen on."),
    alias: str = typer.Option("production", help="Alias a bare NAME resolves to."),
    keys: Path = typer.Option(
        None, help="API keys JSON (from 'keel key'); enables auth. Reread when it changes."
    ),
    public_metrics: bool = typer.Option(
        False, help="Serve /metrics without a key although --keys is given."
    ),
    max_batch_rows: int = typer.Option(256, help="Most rows merged into one model run."),
    max_wait_ms: float = typer.Option(1.0, help="How long a batch may wait for more requests."),
    log_sample: float = typer.Option(1.0, help="Share of predictions kept in the log (0-1)."),
    watch_seconds: float = typer.Option(
        2.0, help="How often to look for alias moves and reload by itself (0: never)."
    ),
    head_timeout: float = typer.Option(
        5.0, help="Close a connection whose request head is not complete within this (s)."
    ),
    max_connections: int = typer.Option(
        4096, help="Most open connections; one past it is answered 503 and closed."
    ),
    workers: int = typer.Option(
        1,
        help="Server processes behind the one port (1 to 4 per CPU); each follows alias "
        "moves within --watch-seconds, and one that dies is restarted.",
    ),
    on_ray: bool = typer.Option(
        False,
        "--ray",
        help="Run the server as Ray Serve replicas on the Ray cluster at $RAY_ADDRESS (else a "
        "local Ray); needs keel[ray].",
    ),
    replicas: int = typer.Option(None, help="With --ray: how many replicas serve (default 2)."),
    project: Path = PROJECT,
) -> None:
    """Serve registered models over HTTP: Open Inference Protocol v2, keel JSON, MLflow
    /invocations, health, readiness and Prometheus metrics. Predictions are logged to the
    store for monitoring.

    Example: keel serve adult-income --port 8080
             keel serve --release release.yaml   # e.g. production 90 / candidate 10
             keel serve adult-income --workers 4  # four processes on one port
             keel serve adult-income --ray --replicas 8  # Ray Serve replicas
    """
    from keel.errors import InvalidInput
    from keel.serve import KeyRing, PredictionLog, load_releases, serve

    if not 0 <= port <= 65535:
        raise InvalidInput(f"--port: expected a port number 0-65535, got {port}")
    served: list[Any] = [*(routes or []), *(load_releases(release) if release else [])]
    if not served:
        raise InvalidInput("serve: expected at least one model to serve, or --release FILE")
    if not 0.0 <= log_sample <= 1.0:
        raise InvalidInput(f"--log-sample: expected a share between 0 and 1, got {log_sample}")
    settings: dict[str, Any] = {
        "alias": alias,
        "max_batch_rows": max_batch_rows,
        "max_wait_ms": max_wait_ms,
        "watch_seconds": watch_seconds,
        "head_timeout_s": head_timeout,
        "max_connections": max_connections,
        "public_metrics": public_metrics,
    }
    if release and not on_ray:  # re-read when it changes (Ray's nodes may not have the file)
        settings["release_file"] = str(Path(release).resolve())
    if replicas is not None and not on_ray:
        raise InvalidInput("--replicas: applies with --ray (Ray Serve replicas); see --workers")
    if on_ray:
        from keel.serve._ray import serve_on_ray

        if workers != 1:
            raise InvalidInput("serve: --ray runs --replicas on Ray; leave --workers out")
        with _project(project) as proj:
            root = proj.root
        serve_on_ray(
            root,
            served,
            replicas=2 if replicas is None else replicas,
            host=host,
            port=port,
            keys_file=keys,
            log_sample=log_sample,
            **settings,
        )
        return
    if workers != 1:
        from keel.serve._workers import check_workers, serve_workers

        check_workers(workers)
        if keys:
            KeyRing.from_file(keys)  # a bad key file is refused before any worker starts
        with _project(project) as proj:
            root = proj.root
        serve_workers(
            workers,
            root,
            served,
            host=host,
            port=port,
            keys_file=keys,
            log_sample=log_sample,
            **settings,
        )
        return
    ring = KeyRing.from_file(keys) if keys else None
    with _project(project) as proj:
        with PredictionLog(proj.store, sample_rate=log_sample) as sink:
            serve(
                proj.store,
                served,
                host=host,
                port=port,
                keys=ring,
                sink=sink,
                **settings,
            )


@app.command("release")
def release_cmd(
    ref: str = typer.Argument(..., help="Model version to release: NAME/VERSION."),
    alias_name: str = typer.Argument(..., metavar="ALIAS", help="Alias to move, e.g. production."),
    why: str = typer.Option("", help="Why (recorded with the move)."),
    override: str = typer.Option(
        None, help="Move a gated alias although the audit gates fail; the reason is recorded."
    ),
    server: str = typer.Option(
        None, help="A running server's URL: reload it now instead of at its next poll."
    ),
    key: str = typer.Option(
        None, envvar="KEEL_API_KEY", help="API key with the admin scope (or $KEEL_API_KEY)."
    ),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Move an alias to a version (recorded: who, when, why) and, with --server, have the
    server load, warm and swap it in now; the old version keeps serving if it fails to load.

    Example: keel release adult-income/4 production --why "beat v3" --server http://127.0.0.1:8080
    """
    from keel.serve import release

    with _project(project) as proj:
        out = release(
            proj.store,
            ref,
            alias_name,
            why=why,
            override=override,
            server_url=server,
            api_key=key,
        )
    if as_json:
        emit_json(out)
        return
    console.print(f"[green]{out['model'].split('/')[0]}@{alias_name}[/green] → {out['model']}")
    for r in out["reloaded"] or []:
        where = r["model"] + (f" ({r['variant']})" if r.get("variant") else "")
        if not r["ok"]:
            code = (r.get("error") or {}).get("code", "load_failed")
            console.print(f"[red]{where}: failed to load ({code}); still serving {r['from']}[/red]")
        elif r["changed"]:
            console.print(f"{where}: swapped version {r['from']} → {r['to']}")
        else:
            console.print(f"{where}: unchanged (version {r['to']})")


@app.command("compare")
def compare_cmd(
    model: str = typer.Argument(..., help="Registered model whose served versions to compare."),
    since: str = typer.Option(None, help="Only predictions at or after (ISO time or epoch s)."),
    until: str = typer.Option(None, help="Only predictions before (ISO time or epoch s)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Compare the versions that served MODEL, from the prediction log: traffic, latency,
    agreement on the same requests, and metrics once labels arrive ('keel labels ingest').

    Example: keel compare adult-income --since 2026-11-27T09:00
    """
    from keel.serve import comparison

    with _project(project) as proj:
        out = comparison(
            proj.store, model, since=_when(since, "--since"), until=_when(until, "--until")
        )
    if as_json:
        emit_json(out)
        return
    comparison_tables(out)


def _when(text: str | None, flag: str) -> float | None:
    from datetime import datetime

    from keel.errors import InvalidInput

    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise InvalidInput(
            f"{flag}: expected an ISO time (2026-11-27T09:00) or epoch seconds, got {text!r}"
        ) from None


def comparison_tables(out: dict) -> None:
    """Print a :func:`keel.serve.comparison` report as two tables."""
    from keel.cli._render import table

    versions = out["versions"]
    if not versions:
        console.print(f"no logged predictions of {out['model']} in that window")
        return
    metric_names = sorted({m for v in versions.values() for m in v["metrics"]})
    table(
        f"{out['model']}: versions served",
        ["version", "aliases", "requests", "rows", "p50 ms", "p99 ms", "labeled", *metric_names],
        [
            [
                v,
                ", ".join(r["aliases"]),
                r["requests"],
                r["rows"],
                r["latency_ms"]["p50"],
                r["latency_ms"]["p99"],
                r["labeled"],
                *[r["metrics"].get(m) for m in metric_names],
            ]
            for v, r in versions.items()
        ],
    )
    for v, r in versions.items():
        for metric, why in (r.get("missing_metrics") or {}).items():
            console.print(f"[yellow]{v}: no {metric}: {why}[/yellow]")
        if r.get("invalid_labels"):
            console.print(
                f"[yellow]{v}: {r['invalid_labels']} label(s) skipped (no class)[/yellow]"
            )
    if out["pairs"]:
        table(
            "agreement on the same requests",
            ["versions", "rows", "agree", "agreement"],
            [
                [k.replace(":", " vs "), p["rows"], p["agree"], p["agreement"]]
                for k, p in out["pairs"].items()
            ],
        )


@app.command("key")
def key_cmd(
    name: str = typer.Argument(..., help="Who the key is for; or 'revoke' followed by a name."),
    revoked: str = typer.Argument(None, metavar="[NAME]", help="With 'revoke': the key to revoke."),
    scope: list[str] = typer.Option(["predict"], help="predict and/or admin."),
    keys: Path = typer.Option(Path("keys.json"), help="Key file to add the hashed key to."),
    as_json: bool = JSON,
) -> None:
    """Make an API key: the token is printed once; only its sha256 is stored in the key file.
    'keel key revoke NAME' removes a key; a running server refuses it within a second.
    The key file is locked while it changes, so concurrent commands lose nothing.

    Example: keel key gateway-7 --scope predict --keys keys.json
             keel key revoke gateway-7 --keys keys.json
    """
    from keel.errors import InvalidInput
    from keel.serve import add_key, revoke_key

    if name == "revoke":
        if not revoked:
            raise InvalidInput("keel key revoke NAME: name the key to revoke")
        gone = revoke_key(keys, revoked)
        if as_json:
            emit_json({"revoked": revoked, "count": len(gone), "keys": str(keys)})
            return
        console.print(f"[green]revoked[/green] {revoked} in {keys}")
        return
    if revoked is not None:
        raise InvalidInput(f"keel key: one name expected, got {name!r} and {revoked!r}")
    token, key = add_key(keys, name, scope)
    if as_json:
        emit_json({"name": name, "token": token, "scopes": sorted(key.scopes), "keys": str(keys)})
        return
    console.print(f"[green]key[/green] {name} ({', '.join(sorted(key.scopes))}) added to {keys}")
    console.print(f"token (shown once): {token}")


labels_app = typer.Typer(help="Delayed ground truth for logged predictions.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")


@labels_app.command("ingest")
def labels_ingest(
    path: Path = typer.Argument(..., help="CSV or Parquet of request ids and true labels."),
    id_col: str = typer.Option("request_id", help="Column holding the request id."),
    label_col: str = typer.Option("y", help="Column holding the true label."),
    model: str = typer.Option(None, help="Only for this model's predictions."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Join delayed labels to logged predictions by request id.

    Example: keel labels ingest outcomes.csv --id-col request_id --label-col y
    """
    from keel.serve import ingest_labels

    with _project(project) as proj:
        out = ingest_labels(proj.store, path, id_col=id_col, label_col=label_col, model=model)
    if as_json:
        emit_json(out)
        return
    console.print(
        f"[green]labels[/green] {out['rows']:,} rows: {out['matched']:,} matched logged "
        f"predictions, {out['unmatched']:,} did not"
    )
