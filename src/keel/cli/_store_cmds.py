"""``keel gc``, ``keel store migrate`` and ``keel log``: the store's garbage, moving it to a
team store, and who changed it."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from keel.cli._app import JSON, PROJECT, _project, app
from keel.cli._render import console, emit_json, table

store_app = typer.Typer(help="The project's store: move it to a team store.", no_args_is_help=True)
app.add_typer(store_app, name="store")


@app.command("gc")
def gc_cmd(
    grace_hours: float = typer.Option(
        24.0, "--grace-hours", min=0.0, help="Spare unnamed blobs younger than this (hours)."
    ),
    yes: bool = typer.Option(False, "--yes", help="Delete them (default: a dry run that reports)."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Blobs that no record names (left by interrupted work): reported, deleted with --yes.
    Only those older than the grace period go, so a writer about to name a blob keeps it.
    Works on the project folder's blobs and on S3 (KEEL_BLOBS=s3://BUCKET/PREFIX).

    Example: keel gc                      # dry run: what would go, and how many bytes
             keel gc --yes --grace-hours 48
    """
    from keel.store import collect_garbage

    with _project(project) as proj:
        where = proj.store.blobs.location
        report = collect_garbage(proj.store, grace_s=grace_hours * 3600, delete=yes)
    if as_json:
        emit_json({**report.to_dict(), "blobs": str(where), "grace_hours": grace_hours})
        return
    verb = "[green]deleted[/green]" if report.deleted else "would delete"
    console.print(
        f"{verb} {len(report.garbage)} unnamed blob(s), {report.bytes:,} bytes, from {where}; "
        f"kept {report.kept} named, spared {report.young} unnamed younger than "
        f"{grace_hours:g} h",
        highlight=False,
    )
    if not yes and report.garbage:
        console.print("dry run: nothing was deleted; run again with --yes to delete them")


@store_app.command("migrate")
def migrate_cmd(
    to_store: str = typer.Option(
        ..., "--to-store", help="Destination database URL (postgresql://USER@HOST/DB)."
    ),
    to_blobs: str = typer.Option(
        ..., "--to-blobs", help="Destination blobs: a folder, file:///PATH or s3://BUCKET/PREFIX."
    ),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Copy this project's records and blobs into a team store, every hash checked. Blobs go
    first, so no copied record names a missing blob. A destination holding different records
    under the same keys is refused, naming them, and nothing is written. Run it again after
    an interruption: what is there already is skipped.

    Example: keel store migrate --to-store postgresql://keel@db/keel --to-blobs s3://team-ml/keel
    """
    from keel.errors import InvalidInput
    from keel.store import Store, migrate_store, open_blobs

    with _project(project) as proj:
        dst_blobs = open_blobs(to_blobs, setting="--to-blobs")
        if not to_store.strip():
            raise InvalidInput("--to-store: expected a database URL (postgresql://...), got ''")
        try:
            dst = Store.open(to_store, dst_blobs)
        except InvalidInput as exc:  # its message names the setting a project's store uses
            raise InvalidInput(str(exc).replace("KEEL_STORE", "--to-store", 1)) from None
        try:
            if dst.safe_url == proj.store.safe_url and dst_blobs.location == (
                proj.store.blobs.location
            ):
                raise InvalidInput(
                    f"--to-store/--to-blobs: {dst.safe_url} with {dst_blobs.location} is this "
                    "project's own store; expected another"
                )
            src_where = f"{proj.store.safe_url} + {proj.store.blobs.location}"

            def progress(name: str, rows: int) -> None:
                if not as_json:
                    print(f"  {name}: {rows} record(s) copied", file=sys.stderr, flush=True)

            report = migrate_store(proj.store, dst, progress=progress)
            dst_where = f"{dst.safe_url} + {dst_blobs.location}"
        finally:
            dst.close()
    data = report.to_dict()
    if as_json:
        emit_json({**data, "from": src_where, "to": dst_where})
        return
    blobs = report.blobs
    copied = sum(report.copied.values())
    there = sum(report.already_there.values())
    console.print(
        f"[green]migrated[/green] {src_where} → {dst_where}: {copied} record(s) copied, "
        f"{there} already there; {blobs.copied} blob(s) copied ({blobs.bytes_copied:,} bytes), "
        f"{blobs.already_there} already there; every blob's sha256 checked",
        highlight=False,
    )
    names = sorted(set(report.copied) | set(report.already_there))
    rows = [
        [n, report.copied.get(n, 0), report.already_there.get(n, 0)]
        for n in names
        if report.copied.get(n, 0) or report.already_there.get(n, 0)
    ]
    if rows:
        table("records", ["table", "copied", "already there"], rows)


@app.command("log")
def log_cmd(
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Newest changes to list."),
    user: str = typer.Option(None, "--user", help="Only this user's changes."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Who changed the shared store, newest first: ingests, runs, registrations, alias
    moves (with their reason), audits, pipeline runs and gate overrides, each with its user
    (KEEL_USER, else the account the command ran as).

    Example: keel log -n 20
             keel log --user alice --json
    """
    import datetime

    from keel.store import activity

    with _project(project) as proj:
        found = activity(proj.store, limit=limit, who=user)
    if as_json:
        emit_json({"activity": [a.to_dict() for a in found]})
        return
    rows = [
        [
            datetime.datetime.fromtimestamp(a.at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            a.who,
            a.action,
            a.subject,
            a.detail,
        ]
        for a in found
    ]
    table("who did what (UTC)", ["at", "who", "action", "subject", "detail"], rows)
