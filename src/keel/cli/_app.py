"""The ``keel`` command. Thin: parse, call the Python API, render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from keel.cli._render import console, emit_json, fmt, lineage_tree, table, when

app = typer.Typer(
    name="keel",
    help="keel: from raw data to an audited, deployed and watched model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        import keel

        print(f"keel {keel.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """keel: from raw data to an audited, deployed and watched model."""


JSON = typer.Option(False, "--json", help="Print JSON for scripts instead of tables.")
PROJECT = typer.Option(
    None, "--project", "-C", help="Project folder (default: find keel.yaml upward)."
)


def _project(path: Path | None) -> Any:
    from keel.project import open_project

    return open_project(path)


def _parse_params(items: list[str]) -> dict[str, Any]:
    from keel.errors import InvalidInput

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise InvalidInput(f"--param: expected KEY=VALUE, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


@app.command()
def init(
    path: Path = typer.Argument(Path("."), help="Folder for the project (created if missing)."),
    name: str = typer.Option(None, help="Project name (default: the folder's name)."),
    as_json: bool = JSON,
) -> None:
    """Create a keel project: keel.yaml and an embedded store (SQLite) in .keel/.

    Example: keel init credit-model
    """
    from keel.project import init as do_init

    with do_init(path, name=name) as proj:
        info = {"root": str(proj.root), "name": proj.name, "store": proj.store.safe_url}
    if as_json:
        emit_json(info)
    else:
        console.print(f"[green]project[/green] {info['name']} at {info['root']} ({info['store']})")


@app.command()
def ingest(
    source: str = typer.Argument(
        None, help="CSV, Parquet or .npz file, or a folder of images (omit with --sql)."
    ),
    name: str = typer.Option(None, "--name", "-n", help="Dataset name (default: file stem)."),
    schema: Path = typer.Option(None, help="Schema YAML to validate against (default: inferred)."),
    sql: str = typer.Option(None, help="A DuckDB SQL query over files, instead of SOURCE."),
    fmt_: str = typer.Option(None, "--format", help="csv or parquet (default: from the suffix)."),
    delimiter: str = typer.Option(
        None, "--delimiter", "-d", help="CSV field separator, e.g. ';' or tab (default: sniffed)."
    ),
    on_error: str = typer.Option(
        "raise", help="raise: reject the file; quarantine: keep good rows."
    ),
    labels: Path = typer.Option(
        None, help="For an image folder: a CSV of file,label (default: sub-folder names)."
    ),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Read, validate and profile a file into an immutable, content-hashed dataset.

    Example: keel ingest adult.csv --name adult --on-error quarantine
             keel ingest digits.npz           # arrays X and y: a tensor dataset
             keel ingest photos/ --labels labels.csv
    """
    from keel.data import ingest as do_ingest

    with _project(project) as proj:
        res = do_ingest(
            proj.store,
            source,
            name=name,
            schema=schema,
            sql=sql,
            format=fmt_,
            on_error=on_error,
            delimiter=delimiter,
            labels=labels,
        )
    _print_ingested(res, as_json)


@app.command()
def windows(
    dataset: str = typer.Argument(..., help="Time-series dataset: name, name/VERSION or sha."),
    column: str = typer.Option(..., "--column", "-c", help="The numeric column to forecast."),
    window: int = typer.Option(..., "--window", "-w", help="Past values in each sample."),
    horizon: int = typer.Option(1, help="Steps after the window's end to predict."),
    time_col: str = typer.Option(None, help="Column ordering the rows (default: stored order)."),
    season: int = typer.Option(168, help="Lag of the seasonal-naive baseline column; 0: none."),
    fill: float = typer.Option(None, help="Value for missing time steps (default: drop)."),
    name: str = typer.Option(None, "--name", "-n", help="New dataset name."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Turn a time series into sequence samples (X: past WINDOW values, y: the value HORIZON
    steps later, time, naive_SEASON), stored as a new dataset with lineage to DATASET.

    Example: keel windows bikeshare --column bikers --window 168
    """
    from keel.data import windows as do_windows

    with _project(project) as proj:
        res = do_windows(
            proj.store,
            dataset,
            column,
            window=window,
            horizon=horizon,
            time_col=time_col,
            name=name,
            season=season or None,
            fill=fill,
        )
    _print_ingested(res, as_json)


def _print_ingested(res: Any, as_json: bool) -> None:
    out = {
        "dataset": res.dataset.to_dict(),
        "problems": len(res.problems),
        "warnings": res.warnings,
    }
    if res.quarantine:
        out["quarantine"] = res.quarantine.to_dict()
    if as_json:
        emit_json(out)
        return
    d = res.dataset
    console.print(
        f"[green]dataset[/green] {d.ref}  {d.n_rows:,} rows × {d.n_cols} columns  "
        f"sha256 {d.sha[:12]}"
    )
    if res.quarantine:
        q = res.quarantine
        console.print(f"[yellow]quarantine[/yellow] {q.ref}  {q.n_rows:,} bad rows kept aside")
    for warning in res.warnings:
        console.print(f"[yellow]warning[/yellow] {warning}")


@app.command()
def datasets(
    name: str = typer.Argument(
        None,
        metavar="[NAME]",
        help="Show one dataset: NAME (its newest version), NAME/VERSION or a sha256 prefix.",
    ),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """List datasets and their versions, or show one: its versions, schema and profile.

    Example: keel datasets --json
             keel datasets adult/1   # versions, schema, profile summary
    """
    from keel.data import list_datasets

    with _project(project) as proj:
        if name:
            _show_dataset(proj.store, name, as_json)
            return
        items = list_datasets(proj.store)
    if as_json:
        emit_json([d.to_dict() for d in items])
        return
    table(
        "datasets",
        ["ref", "kind", "rows", "cols", "sha256", "created"],
        [[d.ref, d.kind, f"{d.n_rows:,}", d.n_cols, d.sha[:12], when(d.created_at)] for d in items],
    )


def _show_dataset(store: Any, ref: str, as_json: bool) -> None:
    from keel.data import get_dataset, list_datasets, load_profile
    from keel.errors import NotFound

    ds = get_dataset(store, ref)
    versions = [d for d in list_datasets(store) if d.name == ds.name]
    try:
        prof: dict[str, Any] | None = load_profile(store, ds)
    except NotFound:
        prof = None
    if as_json:
        emit_json(
            {
                "dataset": ds.to_dict(),
                "versions": [d.to_dict() for d in versions],
                "profile": prof,
            }
        )
        return
    table(
        f"dataset {ds.name}: versions",
        ["ref", "", "kind", "rows", "cols", "sha256", "created", "by"],
        [
            [
                d.ref,
                "shown" if d.version == ds.version else "",
                d.kind,
                f"{d.n_rows:,}",
                d.n_cols,
                d.sha[:12],
                when(d.created_at),
                d.created_by,
            ]
            for d in versions
        ],
    )
    stats = (prof or {}).get("columns") or {}
    table(
        f"{ds.ref}: schema and profile ({ds.n_rows:,} rows)",
        ["column", "type", "nullable", "missing", "distinct", "min", "mean", "max", "top"],
        [_column_row(c, stats.get(c["name"]) or {}) for c in ds.schema.get("columns") or []],
    )
    if prof is None:
        console.print(f"{ds.ref} has no stored profile")


def _column_row(col: dict[str, Any], st: dict[str, Any]) -> list[Any]:
    top = sorted((st.get("top") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k} ({v:,})" for k, v in top[:3])
    typ = col.get("type")
    if typ == "tensor":
        typ = f"tensor {col.get('dtype')} {col.get('shape')}"
        q = st.get("row_mean") or {}
        if q:
            shown = f"row mean p5 {fmt(q.get('0.05'))}, p50 {fmt(q.get('0.5'))}, p95 " + fmt(
                q.get("0.95")
            )
    return [
        col.get("name"),
        typ,
        "yes" if col.get("nullable") else "no",
        st.get("null_count"),
        st.get("distinct"),
        st.get("min"),
        st.get("mean"),
        st.get("max"),
        shown + (", …" if len(top) > 3 else ""),
    ]


@app.command()
def train(
    dataset: str = typer.Argument(..., help="Dataset reference: name, name/VERSION or sha prefix."),
    target: str = typer.Option(..., "--target", "-t", help="The column to predict."),
    model: str = typer.Option("lightgbm", "--model", "-m", help="Model from the zoo."),
    param: list[str] = typer.Option([], "--param", "-p", help="KEY=VALUE model parameter."),
    features: Path = typer.Option(None, help="Feature spec YAML (default: inferred)."),
    holdout: str = typer.Option(None, help="Hold-out dataset (default: a split of DATASET)."),
    split: str = typer.Option("stratified", help="random, stratified, time or group."),
    test_size: float = typer.Option(0.2, help="Hold-out fraction when splitting."),
    time_col: str = typer.Option(None, help="Column ordering rows for --split time."),
    group_col: str = typer.Option(None, help="Column of groups for --split group."),
    trials: int = typer.Option(0, help="Optuna trials; 0 trains once with the parameters given."),
    executor: str = typer.Option("process", help="Executor for trials: process, inline or ray."),
    seed: int = typer.Option(0, help="Random seed: same data, spec and seed give same metrics."),
    experiment: str = typer.Option("default", help="Experiment the run belongs to."),
    register_as: str = typer.Option(None, "--register", help="Register the model under this name."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Train a model (or search its parameters with --trials) and record the run.

    Example: keel train adult-train -t income --holdout adult-test --trials 20 --register income
    """
    from keel import train as t
    from keel.errors import InvalidInput
    from keel.registry import check_name

    if trials < 0:
        raise InvalidInput(f"--trials: expected 0 (train once) or a positive number, got {trials}")
    if register_as:
        check_name(register_as, "--register")
    common: dict[str, Any] = dict(
        model=model,
        features=features,
        holdout=holdout,
        split=split,
        seed=seed,
        experiment=experiment,
        test_size=test_size,
        time_col=time_col,
        group_col=group_col,
        params=_parse_params(param),
    )
    with _project(project) as proj:
        if trials > 0:
            res = t.search(
                proj.store,
                dataset,
                target,
                n_trials=trials,
                executor=executor,
                progress=not as_json,
                **common,
            )
            final = res.final
        else:
            with _epoch_bar(model, common["params"], not as_json) as bar:
                final = t.train(proj.store, dataset, target, on_epoch=bar, **common)
        out: dict[str, Any] = {
            "run_id": final.run_id,
            "model": model,
            "task": final.task,
            "metrics": final.metrics,
            "baseline": final.baseline,
            "warnings": final.warnings,
        }
        if final.epochs:
            out["epochs"] = final.epochs
        if register_as:
            out["registered"] = final.register(proj.store, register_as).ref
    if as_json:
        emit_json(out)
        return
    base_name = "baseline (mean)" if final.task == "regression" else "baseline (majority)"
    naive = {
        k.removeprefix("seasonal_naive_"): v
        for k, v in final.baseline.items()
        if k.startswith("seasonal_naive_")
    }
    table(
        f"run {final.run_id[:12]} — {model} ({final.task}), hold-out metrics",
        ["metric", "value", base_name, *(["seasonal naive"] if naive else [])],
        [
            [k, v, final.baseline.get(k), *([naive.get(k)] if naive else [])]
            for k, v in final.metrics.items()
        ],
    )
    if final.epochs:
        e = final.epochs
        stopped = " (early stopping)" if e["epochs_run"] < (e["epochs"] or 0) else ""
        console.print(
            f"epochs: {e['epochs_run']} of {e['epochs']} run{stopped}; best epoch "
            f"{e['best_epoch']} (val loss {e['best_val_loss']:.4f}), its weights kept"
        )
    for warning in final.warnings:
        console.print(f"[yellow]warning[/yellow] {warning}")
    if register_as:
        console.print(f"[green]registered[/green] {out['registered']}")


def _epoch_bar(model: str, params: dict[str, Any], enabled: bool) -> Any:
    """A progress bar over the epochs of a torch model (quiet for other kinds)."""
    from keel.train import EpochProgress, get_kind

    kind = get_kind(model)
    epochs = {**kind.defaults, **params}.get("epochs")
    if kind.flavor == "torch" and isinstance(epochs, int) and epochs >= 1:
        return EpochProgress(epochs, f"train {model}", enabled)
    return EpochProgress(1, f"train {model}", False)


@app.command()
def runs(
    run_id: str = typer.Argument(
        None, metavar="[ID]", help="Show this run in full (its id or a unique prefix)."
    ),
    experiment: str = typer.Option(None, help="Only runs of this experiment."),
    limit: int = typer.Option(20, help="How many of the newest runs."),
    id_option: str = typer.Option(None, "--id", help="Same as ID."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """List runs with their parameters and last metric values, or show one run in full:
    parameters, metrics, tags, artifacts, the data it was made from and what was
    registered from it.

    Example: keel runs --experiment adult-demo --limit 5
             keel runs 3f2a9c1e   # one run
    """
    from keel.errors import InvalidInput
    from keel.train import list_runs

    if run_id and id_option and run_id != id_option:
        raise InvalidInput(f"runs: give the run as ID or --id, not both ({run_id}, {id_option})")
    run_id = run_id or id_option
    with _project(project) as proj:
        if run_id:
            _show_run(proj.store, run_id, as_json)
            return
        data = list_runs(proj.store, experiment, limit)
    if as_json:
        emit_json(data)
        return
    keys = sorted({k for r in data for k in r["metrics"]})[:6]
    table(
        "runs",
        ["id", "experiment", "status", "model", *keys, "seconds"],
        [
            [
                r["id"][:12],
                r["experiment"],
                r["status"],
                r["params"].get("model", r["tags"].get("model", "")),
                *[r["metrics"].get(k) for k in keys],
                r["wall_time"],
            ]
            for r in data
        ],
    )


def _show_run(store: Any, run_id: str, as_json: bool) -> None:
    from keel import registry
    from keel import store as st
    from keel.train import get_run

    data = get_run(store, run_id)
    root = st.lineage(store, "run", data["id"])
    details = {(n.kind, n.id): st.describe(store, n) for n in root.walk()}
    registered = [
        v.ref
        for m in registry.list_models(store)
        for v in registry.list_versions(store, m["name"])
        if v.run_id == data["id"]
    ]
    if as_json:
        emit_json({**data, "lineage": root.to_dict(), "registered": registered})
        return
    console.print(
        f"[bold]run {data['id']}[/bold]  experiment {data['experiment']}, {data['status']}, "
        f"seed {data['seed']}, {fmt(data['wall_time'])} s, by {data['created_by']} at "
        f"{when(data['created_at'])}, git {data['git_commit'] or '—'}",
        highlight=False,
    )
    table("params", ["param", "value"], [[k, v] for k, v in data["params"].items()])
    table(
        "metrics (last value)",
        ["metric", "value", "steps"],
        [[k, v, len(data["metric_history"][k])] for k, v in data["metrics"].items()],
    )
    table("tags", ["tag", "value"], [[k, v] for k, v in data["tags"].items()])
    if data["artifacts"]:
        table(
            "artifacts",
            ["artifact", "sha256", "bytes"],
            [[k, v["sha"][:12], v["size"]] for k, v in data["artifacts"].items()],
        )
    details[("run", data["id"])] = {"label": f"{data['id'][:12]} (this run)"}
    console.print("[bold]lineage[/bold]: made from")
    console.print(lineage_tree(root, details))
    console.print(f"registered as: {', '.join(registered) or 'nothing'}", highlight=False)


@app.command()
def models(
    name: str = typer.Argument(None, help="Show the versions of this model."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """List registered models, or the versions of one with their aliases and metrics.

    Example: keel models adult-income
    """
    from keel import registry

    with _project(project) as proj:
        if name:
            versions = registry.list_versions(proj.store, name)
            if as_json:
                emit_json([v.to_dict() for v in versions])
                return
            table(
                f"model {name}",
                ["version", "aliases", "flavor", "task", "run", "metrics", "created"],
                [
                    [
                        v.version,
                        ", ".join(v.aliases),
                        v.flavor,
                        v.task,
                        (v.run_id or "")[:12],
                        " ".join(f"{k}={fmt(m)}" for k, m in list(v.metrics.items())[:3]),
                        when(v.created_at),
                    ]
                    for v in versions
                ],
            )
            return
        items = registry.list_models(proj.store)
    if as_json:
        emit_json(items)
        return
    table(
        "models",
        ["name", "latest", "versions", "aliases"],
        [
            [
                m["name"],
                m["latest"],
                m["versions"],
                ", ".join(f"{a}→{v}" for a, v in m["aliases"].items()),
            ]
            for m in items
        ],
    )


@app.command()
def alias(
    ref: str = typer.Argument(..., help="Model version: name/VERSION (or name@other-alias)."),
    alias_name: str = typer.Argument(
        ..., metavar="ALIAS", help="Alias such as candidate or production."
    ),
    why: str = typer.Option("", help="Reason, kept in the audit trail."),
    override: str = typer.Option(
        None, help="Move a gated alias although the audit gates fail; the reason is recorded."
    ),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Point an alias at a model version; every move is recorded (who, when, why). A gated
    alias (production, by the project's audit policy) needs the version to pass 'keel gate'.

    Example: keel alias adult-income/3 production --why "passed review"
    """
    from keel import registry

    with _project(project) as proj:
        mv = registry.set_alias(proj.store, ref, alias_name, why=why, override=override)
        history = registry.alias_history(proj.store, mv.name)
    if as_json:
        emit_json({"model": mv.ref, "alias": alias_name, "history": history})
        return
    console.print(f"[green]{mv.name}@{alias_name}[/green] → version {mv.version}")


@app.command()
def lineage(
    ref: str = typer.Argument(
        None,
        help="Model reference: name, name/VERSION or name@alias. With --request: the model "
        "that answered (optional).",
    ),
    request: str = typer.Option(
        None,
        "--request",
        "-r",
        metavar="RID",
        help="A served prediction's request id (x-request-id): walk from its logged answer.",
    ),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Walk a model's lineage: model → run → dataset(s) → source file(s); or, with
    --request, a served prediction's: log segment → model version → run → dataset(s) →
    source file(s).

    Example: keel lineage adult-income@candidate
             keel lineage --request 4f1c9a adult-income
    """
    from keel import registry
    from keel import store as st
    from keel.errors import InvalidInput

    if request is not None:
        _prediction_lineage(request, ref, project, as_json)
        return
    if ref is None:
        raise InvalidInput(
            "lineage: expected a model reference (name, name/VERSION or name@alias) or "
            "--request RID, got neither"
        )
    with _project(project) as proj:
        mv = registry.get_version(proj.store, ref)
        root = st.lineage(proj.store, "model", mv.ref)
        details = {(n.kind, n.id): st.describe(proj.store, n) for n in root.walk()}
    details[("model", mv.ref)] = {
        "label": mv.ref,
        **{k: v for k, v in list(mv.metrics.items())[:2]},
    }
    if as_json:
        emit_json(
            {"tree": root.to_dict(), "details": {f"{k}:{i}": d for (k, i), d in details.items()}}
        )
        return
    console.print(lineage_tree(root, details))


def _prediction_lineage(rid: str, model: str | None, project: Path | None, as_json: bool) -> None:
    """``keel lineage --request RID [MODEL]``: the logged answers to that request and, for
    each log segment holding one, everything it came from down to the source files."""
    from keel import store as st

    with _project(project) as proj:
        found = _served(proj.store, rid, model)
        trees = {f["segment"]: st.lineage(proj.store, "predictions", f["segment"]) for f in found}
        nodes = [n for t in trees.values() for n in t.walk()]
        details = {(n.kind, n.id): st.describe(proj.store, n) for n in nodes}
    for seg in trees:
        details[("predictions", seg)] = {"label": f"prediction log segment {seg[:12]}…"}
    sources = {
        n.id: {
            "uri": details[(n.kind, n.id)].get("label"),
            "sha256": n.id,
            "bytes": details[(n.kind, n.id)].get("bytes"),
        }
        for n in nodes
        if n.kind == "source"
    }
    if as_json:
        emit_json(
            {
                "request_id": rid,
                "predictions": found,
                "lineage": {seg: t.to_dict() for seg, t in trees.items()},
                "details": {f"{k}:{i}": d for (k, i), d in details.items()},
                "sources": list(sources.values()),
            }
        )
        return
    for f in found:
        answer = f["label"] if f["label"] is not None else f["prediction"]
        console.print(
            f"request [bold]{rid}[/bold] row {f['row']}: {f['model']}/{f['version']} answered "
            f"{answer!r} at {when(f['ts'])}",
            highlight=False,
        )
    for t in trees.values():
        console.print(lineage_tree(t, details))
    for src in sources.values():
        console.print(f"source {src['uri']} sha256 {src['sha256']}", highlight=False)


def _served(store: Any, rid: str, model: str | None) -> list[dict[str, Any]]:
    """The logged answers to request ``rid`` (of ``model``: a name, or one version by
    name/VERSION or name@alias); one line naming what was asked when there are none."""
    from keel import registry
    from keel.errors import InvalidInput, NotFound
    from keel.serve import find_predictions
    from keel.serve._traffic import check_request_id

    try:
        check_request_id(rid)
    except InvalidInput as exc:
        raise InvalidInput("--request: " + str(exc).split(": ", 1)[1]) from None
    name, version = model, None
    if model is not None and ("/" in model or "@" in model):
        mv = registry.get_version(store, model)
        name, version = mv.name, mv.version
    elif model is not None:
        registry.check_name(model, "MODEL")
    found = [
        f
        for f in find_predictions(store, rid, model=name)
        if version is None or f["version"] == version
    ]
    if not found:
        of = f" of {model!r}" if model else ""
        raise NotFound(
            f"--request: no logged prediction{of} has request id {rid!r} (a server logs its "
            "answers within seconds; --log-sample below 1 skips some)"
        )
    return found


def _fair_served_table(f: dict[str, Any]) -> None:
    groups = sorted(f["served"]["selection_rate"])
    p = f["parity"]
    table(
        f"{f['ref']} (ThresholdOptimizer) exported to ONNX and served as {f['route']} on "
        f"127.0.0.1: {f['rows']:,} hold-out rows in {f['requests']} requests",
        ["decisions", "accuracy", f"DP difference ({f['sensitive']})"]
        + [f"selection rate {g}" for g in groups],
        [
            [
                what,
                f[key]["accuracy"],
                f[key]["dp_difference"],
                *[f[key]["selection_rate"][g] for g in groups],
            ]
            for key, what in (
                ("served", "served (ONNX, drawn per request id)"),
                ("in_process", "in process"),
            )
        ],
    )
    console.print(
        f"export parity on {p['rows']:,} rows: labels agree {p['label_agreement']:.4%}; "
        f"a repeated request got the same decisions: {'yes' if f['repeat_same'] else 'NO'}; "
        f"the model reads {f['sensitive']!r} at decision time (declared in its input schema "
        "and on its card: using it may be unlawful in some jurisdictions)"
    )


@app.command()
def demo(
    folder: Path = typer.Option(
        None, help="Where to create the demo project (default: a temp folder)."
    ),
    trials: int = typer.Option(12, help="Optuna trials."),
    executor: str = typer.Option("process", help="process, inline or ray."),
    act: str = typer.Option(
        "all",
        help="all: acts one (Adult) and two (bike sharing); torch: act three, a PyTorch CNN "
        "on 8x8 digits attacked, hardened, exported to int8 and served (needs keel\\[torch]).",
    ),
    as_json: bool = JSON,
) -> None:
    """The end-to-end demo on bundled UCI Adult: init → ingest → search → register → export →
    serve a canary and a shadow → compare.

    Example: keel demo --trials 8
             keel demo --act torch
    """
    import time

    from keel import registry
    from keel import store as st
    from keel.demo import run_demo
    from keel.errors import InvalidInput
    from keel.project import open_project

    if act not in ("all", "torch"):
        raise InvalidInput(f"--act: expected all or torch, got {act!r}")
    t0 = time.perf_counter()
    if act == "torch":
        _demo_torch(folder, as_json, t0)
        return
    res = run_demo(folder, n_trials=trials, executor=executor, progress=not as_json)
    seconds = time.perf_counter() - t0
    if as_json:
        emit_json(
            {
                **res.__dict__,
                "project": str(res.project),
                "seconds": seconds,
                "tradeoff": res.tradeoff.to_dict(),
                "card": res.card,
            }
        )
        return
    best = sorted(res.trials, key=lambda t: -t["value"])[:5]
    table(
        "best search trials (validation ROC AUC)",
        ["trial", "val_roc_auc", "n_estimators", "learning_rate", "num_leaves", "seconds"],
        [
            [
                t["number"],
                t["value"],
                t["params"]["n_estimators"],
                t["params"]["learning_rate"],
                t["params"]["num_leaves"],
                t["seconds"],
            ]
            for t in best
        ],
    )
    table(
        f"{res.model_ref} (alias production) on the hold-out set {res.datasets['holdout']}",
        ["metric", "value"],
        [[k, v] for k, v in res.metrics.items()],
    )
    a = res.audit
    table(
        "audit and gates (keel.yaml: audit.policy) — fairness by sex, before and after mitigation",
        ["version", "what", "accuracy", "roc_auc", "DP difference (sex)", "gates"],
        [
            [
                a[k]["ref"],
                what,
                a[k]["accuracy"],
                a[k]["roc_auc"],
                a[k]["dp_sex"],
                "pass" if a[k]["passed"] else "FAIL: " + "; ".join(a[k]["failed"]),
            ]
            for k, what in (
                ("best", "best of search"),
                ("reweigh", "reweighing"),
                ("threshold", "ThresholdOptimizer"),
            )
        ],
    )
    if a.get("override"):
        console.print(
            f"[yellow]production moved with a recorded override:[/yellow] {a['override']}"
        )
    if res.fair_served:
        _fair_served_table(res.fair_served)
    p = res.parity
    console.print(
        f"[bold]ONNX export[/bold] of {res.model_ref}: parity on {p['rows']:,} hold-out rows, "
        f"labels agree {p['label_agreement']:.4%}, max |Δp| {p['max_abs_diff']:.1e}"
    )
    from keel.cli._export_cmds import tradeoff_table

    tradeoff_table(res.tradeoff)
    from keel.cli._serve_cmds import comparison_tables

    t = res.traffic
    by_version = ", ".join(f"v{v}: {n:,}" for v, n in t["served_by_version"].items())
    console.print(
        f"[bold]served[/bold] {t['requests']:,} hold-out rows to {res.model_ref.split('/')[0]} "
        f"(production 90 / candidate 10, challenger in shadow) on 127.0.0.1 in "
        f"{t['seconds']:.1f} s ({t['requests_per_s']:,.0f} req/s); answered by {by_version}; "
        f"{t['labels_matched']:,} labels joined by request id"
    )
    comparison_tables(res.comparison)
    with open_project(res.project) as proj:
        root = st.lineage(proj.store, "model", res.model_ref)
        details = {(n.kind, n.id): st.describe(proj.store, n) for n in root.walk()}
        mv = registry.get_version(proj.store, res.model_ref)
    details[("model", mv.ref)] = {"label": f"{mv.ref} @ {', '.join(mv.aliases)}"}
    console.print("[bold]lineage[/bold]")
    console.print(lineage_tree(root, details))
    console.print(f"[bold]model card[/bold]: {res.card['html']} (and card.md beside it)")
    if res.monitoring_log:
        console.print("[bold]act two: watching a model on its own traffic[/bold] (bike sharing)")
        for line in res.monitoring_log:
            console.print(f"  {line}", highlight=False)
    console.print(f"project: {res.project}   total {seconds:.1f} s")


def _demo_torch(folder: Path | None, as_json: bool, t0: float) -> None:
    import tempfile
    import time

    from keel._demo_torch import run_torch_act

    root = folder or Path(tempfile.mkdtemp(prefix="keel-demo-torch-"))
    if not as_json:
        console.print("[bold]act three: a PyTorch image classifier[/bold] (8x8 digits)")
    say = (
        (lambda line: None)
        if as_json
        else (lambda line: console.print(f"  {line}", highlight=False))
    )
    out = run_torch_act(root, say=say)
    seconds = time.perf_counter() - t0
    if as_json:
        emit_json({**out, "project": str(root), "seconds": seconds})
        return
    console.print(f"project: {root}   total {seconds:.1f} s")
