"""``keel export`` and ``keel bundle``: the model at the edge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from keel.cli._app import JSON, PROJECT, _project, app
from keel.cli._render import console, emit_json, table


def tradeoff_table(report: Any) -> None:
    front = set(report.pareto())
    rows = report.to_dict()["rows"]
    table(
        "trade-off (ONNX Runtime, 1 thread; * = Pareto front: no variant smaller, faster "
        "and better at once)",
        ["", "variant", "model", "size KB", "1 row ms", "1,000 rows ms", "metric", "value"],
        [
            [
                "*" if r["variant"] in front else "",
                r["variant"],
                r["model"],
                f"{r['bytes'] / 1024:,.0f}",
                f"{r['ms_1']:.3f}",
                f"{r['ms_1000']:.2f}",
                r["metric"],
                r["value"],
            ]
            for r in rows
        ],
    )


@app.command("export")
def export_cmd(
    ref: str = typer.Argument(..., help="Model reference: name, name/VERSION or name@alias."),
    quantize: str = typer.Option(None, help="int8: quantize float weights (MLP, linear)."),
    prune: str = typer.Option(
        None, help="Fewer trees: 'max-drop=0.002' (metric drop allowed) or 'trees=100'."
    ),
    distill: str = typer.Option(
        None, help="Shallow LightGBM student on soft labels: 'trees=60,leaves=8' ('' = defaults)."
    ),
    tolerance: str = typer.Option(
        None, help="Parity limits, e.g. 'max_abs_diff=1e-3,label_agreement=0.99'."
    ),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Export the whole pipeline as one ONNX graph, check parity on the hold-out rows, and
    make smaller variants (each a new version) with their size/latency/metric trade-off.

    Example: keel export adult-income@candidate --prune max-drop=0.002 --distill ''
    """
    from keel.export import Tolerance, export_variants, parse_spec

    limits = parse_spec(tolerance, "--tolerance")
    tol = Tolerance(**limits) if limits else None
    with _project(project) as proj:
        base, report, refs = export_variants(
            proj.store,
            ref,
            quantize=quantize,
            prune=parse_spec(prune, "--prune"),
            distill=parse_spec(distill, "--distill"),
            tolerance=tol,
        )
    if as_json:
        emit_json({**base.to_dict(), "variants": refs, "trade_off": report.to_dict()})
        return
    p = base.parity
    console.print(
        f"[green]exported[/green] {base.model_ref}: {base.size_bytes / 1024:,.0f} KB ONNX, "
        f"parity on {p.rows:,} hold-out rows: labels agree {p.label_agreement:.4%}, "
        f"max |Δp| {p.max_abs_diff:.2e}, p99 {p.p99_abs_diff:.2e}"
    )
    tradeoff_table(report)


@app.command("bundle")
def bundle_cmd(
    ref: str = typer.Argument(..., help="Model reference (exported first if needed)."),
    out: Path = typer.Option(..., "--out", "-o", help="New folder, or a .tar.gz with --archive."),
    archive: bool = typer.Option(False, help="Write one deterministic .tar.gz."),
    key: Path = typer.Option(None, help="Ed25519 private key (PEM) to sign the manifest."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Write an edge bundle: model.onnx, a (signed) manifest and a runner that needs only
    onnxruntime and numpy.

    Example: keel bundle adult-income@candidate --out adult.tar.gz --archive --key edge.pem
    """
    from keel import registry
    from keel.export import export, load_export, load_private_key, write_bundle

    with _project(project) as proj:
        mv = registry.get_version(proj.store, ref)
        if "export.onnx" not in mv.tags:
            export(proj.store, mv.ref)
        graph, parity = load_export(proj.store, mv.ref)
        path = write_bundle(
            graph,
            out=out,
            model_name=mv.name,
            model_version=mv.version,
            input_schema=mv.input_schema,
            output_schema=mv.output_schema,
            parity=parity,
            signing_key=load_private_key(key) if key else None,
            archive=archive,
        )
    if as_json:
        emit_json({"bundle": str(path), "model": mv.ref, "signed": key is not None})
        return
    console.print(f"[green]bundle[/green] {path} ({mv.ref}{', signed' if key else ''})")
    check = " --public-key PUBLIC.pem" if key else ""
    if archive:  # members sit under one folder named like the archive: NAME/runner.py
        runner = f"{Path(path).name.removesuffix('.tgz').removesuffix('.tar.gz')}/runner.py"
        console.print(f"get the runner: tar -xzf {path} {runner}", highlight=False)
        console.print(f"run it: python {runner} {path} --input rows.csv{check}", highlight=False)
    else:
        console.print(
            f"run it: python {path}/runner.py {path} --input rows.csv{check}", highlight=False
        )


@app.command("signing-key")
def signing_key_cmd(
    out: Path = typer.Argument(..., help="Private key file to write (PEM); NAME.pub beside it."),
    as_json: bool = JSON,
) -> None:
    """Make an Ed25519 key pair for signing bundles: the private key (mode 600) for
    'keel bundle --key', the public one for the runner's --public-key.

    Example: keel signing-key edge.pem   # writes edge.pem and edge.pub
    """
    import os

    from keel.errors import InvalidInput
    from keel.export import generate_keypair

    public_path = out.with_suffix(".pub")
    for p in (out, public_path):
        if p.exists():
            raise InvalidInput(f"signing-key: {p} exists; refusing to overwrite a key")
    private, public = generate_keypair()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    public_path.write_bytes(public)
    if as_json:
        emit_json({"private": str(out), "public": str(public_path)})
        return
    console.print(f"[green]key pair[/green] {out} (private, keep it secret) and {public_path}")
