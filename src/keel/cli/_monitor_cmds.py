"""``keel monitor run`` and ``keel monitor watch``: drift, quality, performance and fairness
of a served model's traffic, and the alerts they fire."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from keel.cli._app import JSON, PROJECT, _project, app
from keel.cli._render import console, emit_json, four_fifths, table

monitor_app = typer.Typer(help="Watch served models on their own traffic.", no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")


def _window(last: int | None, since: str | None, hours: float | None) -> dict[str, Any]:
    from keel.cli._serve_cmds import _when
    from keel.errors import InvalidInput

    given = [x is not None for x in (last, since, hours)]
    if sum(given) > 1:
        raise InvalidInput("monitor: give one of --last, --since or --hours")
    if hours is not None:
        if not hours > 0:
            raise InvalidInput(f"--hours: expected a number > 0, got {hours}")
        return {"since": time.time() - hours * 3600}
    if since is not None:
        return {"since": _when(since, "--since")}
    return {"last": last if last is not None else 10_000}


def _print(res: Any) -> None:
    v, w = res.values, res.window
    console.print(
        f"[bold]{res.model}[/bold]: {w['rows']:,} predictions ({w['labeled']:,} labelled), "
        f"versions {', '.join(map(str, w['versions']))}"
    )
    drift = v.get("drift") or {}
    feats = drift.get("features") or {}
    rows = [
        [
            name,
            f.get("test"),
            f.get("statistic"),
            f.get("p_value"),
            "DRIFT" if f.get("drift") else "",
        ]
        for name, f in feats.items()
    ]
    if rows:
        table(
            f"drift (share of drifted features: {drift.get('share', 0):.2f})",
            ["feature", "test", "statistic", "p-value", ""],
            rows,
        )
    _print_prediction_drift(v.get("prediction_drift") or {})
    _print_quality(v.get("quality") or {})
    perf = v.get("performance") or {}
    if perf.get("status") == "ok":
        names = [k for k, x in perf.items() if isinstance(x, dict) and "value" in x]
        table(
            "performance on labelled rows",
            ["metric", "value"],
            [[k, perf[k]["value"]] for k in names],
        )
    elif perf:
        console.print(
            f"performance: {perf.get('status')} ({perf.get('labeled')} labelled, "
            f"{perf.get('needed')} needed)"
        )
    _print_fairness(v.get("fairness"))
    for alert in res.alerts:
        console.print(
            f"[red]alert[/red] {alert['rule']} ({alert['severity']}): {alert['path']} = "
            f"{alert['value']:.4g} {alert['op']} {alert['threshold']:g}"
        )


def _print_prediction_drift(pred: dict[str, Any]) -> None:
    rows = [
        [
            name,
            f.get("test"),
            f.get("statistic"),
            f.get("p_value"),
            "DRIFT" if f.get("drift") else "",
        ]
        for name, f in pred.items()
        if isinstance(f, dict)
    ]
    if rows:
        table(
            f"prediction drift (served answers against the served version's answers on "
            f"{pred.get('reference_rows', 0):,} training rows)",
            ["output", "test", "statistic", "p-value", ""],
            rows,
        )


def _print_quality(quality: dict[str, Any]) -> None:
    if not quality:
        return
    cols = quality.get("columns") or {}
    bad = [(name, c) for name, c in cols.items() if c.get("issues")]
    if bad:
        table(
            "data quality: columns with issues",
            [
                "column",
                "issues",
                "missing",
                "missing before",
                "out of range",
                "unseen",
                "type errors",
            ],
            [
                [
                    name,
                    ", ".join(c["issues"]),
                    c.get("null_rate"),
                    c.get("reference_null_rate"),
                    c.get("out_of_range_rate"),
                    c.get("unseen_rate"),
                    c.get("type_errors"),
                ]
                for name, c in bad
            ],
        )
    else:
        console.print(f"data quality: no issues in {len(cols)} columns")
    for key, what in (
        ("missing_columns", "missing from the traffic"),
        ("extra_columns", "in the traffic but not the training data"),
    ):
        if quality.get(key):
            console.print(f"data quality: {what}: {', '.join(map(str, quality[key]))}")


def _print_fairness(fair: Any) -> None:
    if not fair:
        return
    if fair.get("status") != "ok":
        console.print(
            f"fairness: {fair.get('status')} ({fair.get('labeled')} labelled"
            + (f", {fair['needed']} needed)" if fair.get("needed") else ")")
        )
        return
    groups = {k: e for k, e in fair.items() if isinstance(e, dict) and k != "about"}
    names = (
        "demographic_parity_difference",
        "equalized_odds_difference",
        "equal_opportunity_difference",
        "disparate_impact_ratio",
    )
    table(
        "fairness on labelled rows",
        ["groups", "disparity", "value"],
        [[key, n, (e.get(n) or {}).get("value")] for key, e in groups.items() for n in names],
    )
    for key, e in groups.items():
        line = four_fifths(key, e)
        if line:
            console.print(line, highlight=False, soft_wrap=True)


@monitor_app.command("run")
def run_cmd(
    model: str = typer.Argument(..., help="Registered model whose traffic to check."),
    last: int = typer.Option(None, help="The newest N logged predictions (default 10,000)."),
    since: str = typer.Option(None, help="Predictions at or after (ISO time or epoch s)."),
    hours: float = typer.Option(None, help="Predictions of the last H hours."),
    min_labels: int = typer.Option(200, help="Fewer labelled rows: no performance figures."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """One monitoring pass: drift and data quality against the training data, performance
    and fairness once labels arrive, then the alert rules (keel.yaml: monitor.alerts).

    Example: keel monitor run adult-income --last 5000
    """
    from keel.monitor import monitor

    with _project(project) as proj:
        res = monitor(proj.store, model, min_labels=min_labels, **_window(last, since, hours))
    if as_json:
        emit_json(res.to_dict())
        return
    _print(res)


@monitor_app.command("watch")
def watch_cmd(
    model: str = typer.Argument(..., help="Registered model whose traffic to check."),
    every: float = typer.Option(300.0, help="Seconds between passes."),
    last: int = typer.Option(10_000, help="Each pass looks at the newest N predictions."),
    min_labels: int = typer.Option(200, help="Fewer labelled rows: no performance figures."),
    passes: int = typer.Option(0, help="Stop after this many passes (0: run until Ctrl-C)."),
    project: Path = PROJECT,
) -> None:
    """Run a monitoring pass every --every seconds until interrupted; each pass is recorded
    and fires the alert rules.

    Example: keel monitor watch adult-income --every 60
    """
    from keel.errors import InvalidInput
    from keel.monitor import monitor

    if not every > 0:
        raise InvalidInput(f"--every: expected seconds > 0, got {every}")
    done = 0
    with _project(project) as proj:
        while passes == 0 or done < passes:
            try:
                _print(monitor(proj.store, model, last=last, min_labels=min_labels))
            except InvalidInput as exc:  # e.g. no traffic yet: say so and keep watching
                console.print(f"[yellow]{exc}[/yellow]")
            done += 1
            if passes and done >= passes:
                break
            time.sleep(every)


@monitor_app.command("drift")
def drift_cmd(
    reference: str = typer.Argument(..., help="Reference dataset: NAME, NAME/VERSION or sha."),
    current: str = typer.Argument(..., help="Current dataset to compare with it."),
    column: list[str] = typer.Option(None, help="Only these columns (repeat)."),
    test: list[str] = typer.Option(
        None,
        help="Override a column's test: COLUMN=TEST (ks, wasserstein, psi, chisquare, "
        "jensenshannon); repeat.",
    ),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Drift and data quality of one stored dataset against another (e.g. this month's
    ingest against the training data), without a served model.

    Example: keel monitor drift bikes-early bikes-recent --test temp=psi
    """
    from keel.data import load_frame
    from keel.errors import InvalidInput
    from keel.monitor import Reference, drift_report, quality_report

    tests: dict[str, str] = {}
    for item in test or []:
        col, sep, name = item.partition("=")
        if not sep or not col or not name:
            raise InvalidInput(f"--test: expected COLUMN=TEST, got {item!r}")
        tests[col] = name
    with _project(project) as proj:
        ref = Reference.from_dataset(proj.store, reference)
        frame = load_frame(proj.store, current)
        cols = list(column) if column else [c for c in frame.columns if c in ref.columns]
        report = drift_report(ref, frame, columns=cols, tests=tests or None)
        quality = quality_report(ref, frame, columns=cols)
    if as_json:
        emit_json({"drift": report, "quality": quality})
        return
    rows = [
        [
            name,
            f.get("test"),
            f.get("statistic"),
            f.get("p_value"),
            "DRIFT" if f.get("drift") else "",
        ]
        for name, f in report["features"].items()
    ]
    table(
        f"{current} against {reference}: {report['n_drifted']} of {report['n_features']} "
        f"columns drifted (share {report['share']:.2f})",
        ["column", "test", "statistic", "p-value", ""],
        rows,
    )
    issues = quality.get("columns_with_issues") or []
    if issues:
        console.print(f"data quality issues in: {', '.join(map(str, issues))}")
