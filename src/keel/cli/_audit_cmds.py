"""``keel audit`` and ``keel gate``: the evidence a model carries, and the policy it must pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from keel.cli._app import JSON, PROJECT, _project, app
from keel.cli._render import console, emit_json, err_console, four_fifths, table


@app.command("audit")
def audit_cmd(
    ref: str = typer.Argument(
        None, help="Model version to audit: name/VERSION or name@alias (or use --predictions)."
    ),
    sensitive: list[str] = typer.Option(
        None, help="Sensitive column (repeat); default: audit.sensitive in keel.yaml."
    ),
    section: list[str] = typer.Option(
        None, help="Only these sections (repeat): performance, fairness, explanations, …"
    ),
    n_boot: int = typer.Option(200, help="Bootstrap replicates for the intervals."),
    seed: int = typer.Option(0, help="Seed for every sample, bootstrap and attack."),
    predictions: Path = typer.Option(
        None, help="Audit a file of predictions instead (CSV/Parquet): a vendor's scores."
    ),
    label: str = typer.Option(None, help="With --predictions: the true-label column."),
    score: str = typer.Option(None, help="With --predictions: the score column."),
    threshold: float = typer.Option(0.5, help="With --predictions: positive when score ≥ this."),
    positive: str = typer.Option(None, help="With --predictions: the positive label."),
    out: Path = typer.Option(None, help="Also write the evidence JSON to this file."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Audit a model version on its hold-out rows — performance with intervals, calibration,
    slices, fairness by group, explanations — and store the evidence; or audit a file of
    predictions alone.

    Example: keel audit adult-income/1 --sensitive sex --sensitive race
             keel audit --predictions scores.csv --label y --score p --sensitive sex
    """
    from keel.errors import InvalidInput

    if predictions is not None:
        if ref is not None:
            raise InvalidInput("audit: give a model or --predictions, not both")
        if not label or not score:
            raise InvalidInput("audit --predictions: --label and --score are required")
        from keel.audit._predictions import audit_predictions, read_predictions_file

        frame = read_predictions_file(predictions)
        pos: Any = positive
        if positive is not None and frame[label].dtype.kind in "iu":
            try:
                pos = int(positive)
            except ValueError:
                raise InvalidInput(
                    f"--positive: expected one of the labels, got {positive!r}"
                ) from None
        doc = audit_predictions(
            frame,
            label=label,
            score=score,
            threshold=threshold,
            sensitive=sensitive or [],
            pos_label=pos,
            n_boot=n_boot,
            seed=seed,
            source=str(predictions),
        )
        _write(out, doc)
        if as_json:
            emit_json(doc)
            return
        _print_evidence(doc, f"predictions in {predictions}")
        return
    if ref is None:
        raise InvalidInput("audit: expected a model version (name/VERSION) or --predictions FILE")
    from rich.progress import Progress

    from keel.audit._evidence import audit

    with _project(project) as proj, Progress(console=console, transient=True) as bar:
        task = bar.add_task("audit", total=None)

        def progress(name: str | None, done: float, total: int) -> None:
            bar.update(task, total=total, completed=done, description=name or "done")

        ev = audit(
            proj.store,
            ref,
            sections=section or None,
            sensitive=sensitive or None,
            n_boot=n_boot,
            seed=seed,
            progress=None if as_json else progress,
        )
    _write(out, ev.doc)
    if as_json:
        emit_json(ev.to_dict())
        return
    _print_evidence(ev.doc, f"{ev.ref} (evidence {ev.id})")


def _write(path: Path | None, doc: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(doc, indent=1, allow_nan=False))


def _fmt_ci(entry: Any) -> list[Any]:
    if not isinstance(entry, dict):
        return [entry, None, None]
    return [entry.get("value"), entry.get("ci_low"), entry.get("ci_high")]


def _print_evidence(doc: dict[str, Any], what: str) -> None:
    perf = doc.get("performance")
    if perf:
        names = [k for k, v in perf.items() if isinstance(v, dict) and "value" in v]
        table(
            f"performance of {what} (95% bootstrap intervals)",
            ["metric", "value", "low", "high"],
            [[k, *_fmt_ci(perf[k])] for k in names],
        )
        cal = perf.get("calibration") or {}
        if "ece" in cal:
            ece = _fmt_ci(cal["ece"])
            console.print(
                f"calibration: ECE {_num(ece[0])} [{_num(ece[1])}, {_num(ece[2])}], "
                f"Brier {_num(cal.get('brier'))}"
            )
        worst = (perf.get("slices") or {}).get("worst") or []
        metric = (perf.get("slices") or {}).get("metric")
        if worst:
            table(
                "worst slices",
                ["feature", "slice", "rows", str(metric), "overall"],
                [
                    [
                        w.get("feature"),
                        w.get("slice"),
                        w.get("count"),
                        w.get(metric),
                        w.get("overall"),
                    ]
                    for w in worst[:5]
                ],
            )
    fair = doc.get("fairness")
    if fair:
        rows = []
        for key, ev in fair.items():
            if key == "about":
                continue
            for name in (
                "demographic_parity_difference",
                "equalized_odds_difference",
                "equal_opportunity_difference",
                "disparate_impact_ratio",
            ):
                rows.append([key, name, *_fmt_ci(ev.get(name))])
        table("fairness", ["groups", "disparity", "value", "low", "high"], rows)
        for key, ev in fair.items():
            line = four_fifths(key, ev) if key != "about" else None
            if line:
                console.print(line, highlight=False, soft_wrap=True)
        for key, ev in fair.items():
            small = (ev.get("small_groups") or {}).get("groups") if key != "about" else None
            if small:
                console.print(
                    f"[yellow]{key}[/yellow]: {len(small)} group(s) under "
                    f"{ev['small_groups']['min_rows']} rows ({', '.join(map(str, small[:5]))}"
                    f"{', …' if len(small) > 5 else ''}); their rates are noisy"
                )
    expl = doc.get("explanations")
    if expl:
        shap = (expl.get("global") or {}).get("mean_abs_shap")
        if isinstance(shap, dict):
            top = sorted(shap.items(), key=lambda kv: -(kv[1] or 0))[:8]
            importance = [[feature, value] for feature, value in top]
            table("global importance (mean |SHAP|)", ["feature", "mean |SHAP|"], importance)
    rob = doc.get("robustness") or {}
    hsj = rob.get("hopskipjump") or {}
    if isinstance(hsj, dict) and "success_rate" in hsj:
        console.print(
            f"robustness: HopSkipJump success {_num(_value(hsj.get('success_rate')))} "
            f"(valid rows {_num(_value(hsj.get('valid_success_rate')))}), accuracy under "
            f"attack {_num(_value(hsj.get('accuracy_under_attack')))}; worst accuracy under "
            f"noise {_num(_value((rob.get('noise') or {}).get('worst_accuracy')))}"
        )
    mia = (doc.get("privacy") or {}).get("mia") or {}
    if "auc" in mia:
        dp = (doc.get("privacy") or {}).get("dp") or {}
        eps = dp.get("epsilon")
        console.print(
            f"privacy: membership inference AUC {_num(_value(mia.get('auc')))}, advantage "
            f"{_num(_value(mia.get('advantage')))}; differentially private: "
            f"{'yes, ε=' + str(eps) if dp.get('differentially_private') else 'no'}"
        )
    for name, why in (doc.get("skipped") or {}).items():
        console.print(f"[yellow]skipped {name}[/yellow]: {why}")
    timings = doc.get("timings_s") or {}
    if timings:
        console.print(
            "timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()), highlight=False
        )


def _value(x: Any) -> Any:
    return x.get("value") if isinstance(x, dict) else x


def _num(x: Any) -> str:
    return "—" if x is None else f"{x:.4f}"


@app.command("gate")
def gate_cmd(
    ref: str = typer.Argument(..., help="Model version: name/VERSION or name@alias."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Check a model version's latest evidence against the project's audit policy
    (keel.yaml: audit.policy); exits 1 when a rule fails, or when the policy has no rules
    (unless keel.yaml sets audit.allow_empty: true).

    Example: keel gate adult-income/2
    """
    from keel.audit.gates import gate

    with _project(project) as proj:
        result = gate(proj.store, ref)
    if as_json:
        emit_json(result.to_dict())
    elif result.checks:
        table(
            f"gates for {result.model} (evidence {result.evidence_id})",
            ["rule", "value", "result"],
            [
                [
                    c["rule"],
                    c["value"] if c["value"] is not None else c.get("missing"),
                    "pass" if c["passed"] else "FAIL",
                ]
                for c in result.checks
            ],
        )
    elif result.passed:
        console.print(f"[yellow]gate: no rules[/yellow] for {result.model}: {result.note}")
    else:
        err_console.print(
            f"[bold red]gate: no rules[/bold red] for {result.model}: {result.note}",
            soft_wrap=True,
        )
    if not result.passed:
        raise typer.Exit(1)


@app.command("defend")
def defend_cmd(
    ref: str = typer.Argument(..., help="Model version to harden: name/VERSION or name@alias."),
    rows: int = typer.Option(500, help="Training rows to attack for augmentation."),
    eval_rows: int = typer.Option(100, help="Hold-out rows attacked before and after."),
    seed: int = typer.Option(0, help="Seed for the samples and the attack."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Adversarial training: attack correctly classified training rows with the
    counterfactual search (valid rows only, the project's frozen features unchanged), add
    each minimal flipping row with its true label and refit the same model kind; then attack
    the old and the new model on the same hold-out rows (HopSkipJump and the counterfactual
    search). The refit is kept, and registered as the next version, only when its valid-row
    robustness rises by at least 0.01 and its hold-out accuracy falls by at most 0.01;
    otherwise nothing is registered. Prints the verdict, then the figures before and after.

    Example: keel defend adult-income/1 --rows 500
    """
    from keel.audit import adversarial_training

    with _project(project) as proj:
        mv, result = adversarial_training(
            proj.store, ref, n_rows=rows, eval_rows=eval_rows, seed=seed
        )
    if as_json:
        emit_json({"model": mv.ref if mv else None, **result})
        return
    colour = "green" if result["kept"] else "yellow"
    console.print(
        f"[{colour}]{escape(result['verdict'])}[/{colour}]", highlight=False, soft_wrap=True
    )
    if mv is not None:
        console.print(f"[green]registered[/green] {mv.ref}", highlight=False)
    table(
        f"adversarial training of {ref}",
        ["", "before", "after"],
        [[k, v, result["after"].get(k)] for k, v in result["before"].items()],
    )


@app.command("epsilon")
def epsilon_cmd(
    ref: str = typer.Argument(..., help="Model version whose data to use: name/VERSION."),
    epsilon: list[float] = typer.Option(
        None, help="Privacy budgets ε (repeat; default 0.1 0.5 1 5 10 inf)."
    ),
    repeats: int = typer.Option(3, help="DP fits per ε (new noise each)."),
    seed: int = typer.Option(0, help="Seed of the first fit."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Hold-out accuracy of differentially private models (diffprivlib) at each ε, on a
    model version's training and hold-out rows: the price of privacy on this data.

    Example: keel epsilon adult-income/1 --epsilon 0.5 --epsilon 1 --epsilon 5
    """
    from keel.audit import accuracy_vs_epsilon

    kw: dict[str, Any] = {"repeats": repeats, "seed": seed}
    if epsilon:
        kw["epsilons"] = epsilon
    with _project(project) as proj:
        out = accuracy_vs_epsilon(proj.store, ref, **kw)
    if as_json:
        emit_json(out)
        return
    table(
        f"accuracy vs ε on {out['ref']} (majority class: {out['majority_class_accuracy']:.4f})",
        ["model", "ε", "accuracy", "± std"],
        [[r["model"], r["epsilon"], r["accuracy"], r["accuracy_std"]] for r in out["rows"]],
    )
