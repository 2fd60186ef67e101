"""``keel deploy``: hand a release to the platform a team runs (Kubernetes, KServe)."""

from __future__ import annotations

from pathlib import Path

import typer

from keel.cli._app import JSON, PROJECT, _project, app
from keel.cli._render import console, emit_json

deploy_app = typer.Typer(
    help="Write what a platform needs to run a model: an image and its manifests.",
    no_args_is_help=True,
)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("k8s")
def k8s_cmd(
    ref: str = typer.Argument(
        ..., help="Model to deploy: NAME (newest), NAME@ALIAS or NAME/VERSION."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write (new or empty)."),
    kserve: bool = typer.Option(False, help="Also write a KServe InferenceService (v2 protocol)."),
    release: Path = typer.Option(
        None, help="keel serve's release YAML: the alias's weight sets KServe's canary percent."
    ),
    image: str = typer.Option(
        None, help="Image as the cluster pulls it (default keel-NAME:VERSION)."
    ),
    name: str = typer.Option(None, help="Kubernetes name (default: from the model name)."),
    namespace: str = typer.Option(None, help="Namespace (default: kubectl's current one)."),
    replicas: int = typer.Option(2, help="Fewest replicas (the autoscaler's minimum)."),
    max_replicas: int = typer.Option(6, help="Most replicas the autoscaler may run."),
    cpu: str = typer.Option("500m", help="CPU request per pod."),
    cpu_limit: str = typer.Option("1", help="CPU limit per pod."),
    memory: str = typer.Option("512Mi", help="Memory request and limit per pod."),
    target_cpu: int = typer.Option(70, help="Autoscaler's target CPU use, % of the request."),
    keys_secret: str = typer.Option(
        None, help="Secret holding keys.json from 'keel key' (default NAME-keys)."
    ),
    allow_namespace: list[str] = typer.Option(
        None, help="Another namespace whose pods may call the server (repeatable)."
    ),
    store_secret: str = typer.Option(
        None,
        help="Serve from, and log predictions to, the team store: the Secret holding "
        "KEEL_STORE, KEEL_BLOBS and AWS_* (the pod's environment).",
    ),
    store_port: list[int] = typer.Option(
        None,
        help="With --store-secret: a TCP port the pod may connect to (repeatable; "
        "default 5432 and 443).",
    ),
    force: bool = typer.Option(False, help="Write into a folder that holds other files."),
    project: Path = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Write an image's build context (Dockerfile, the exported ONNX graph, serving
    requirements) and Kubernetes manifests for a model; --kserve adds an InferenceService.
    No secret is written: the manifests name the Secret that holds the API keys.
    --store-secret NAME: the pod serves this version from the team store and logs its
    predictions there (keel monitor sees them); the Secret NAME holds the store's settings.

    Example: keel deploy k8s adult@production --out deploy/adult --image reg.example/adult:3
             keel deploy k8s adult@candidate --out deploy/cand --kserve --release release.yaml
             keel deploy k8s adult@production --out deploy/adult --store-secret keel-store
    """
    from keel.deploy import deploy_k8s

    with _project(project) as proj:
        res = deploy_k8s(
            proj.store,
            ref,
            out,
            image=image,
            name=name,
            kserve=kserve,
            release_file=release,
            force=force,
            namespace=namespace,
            replicas=replicas,
            max_replicas=max_replicas,
            cpu=cpu,
            cpu_limit=cpu_limit,
            memory=memory,
            target_cpu_percent=target_cpu,
            keys_secret=keys_secret,
            allow_namespaces=tuple(allow_namespace or ()),
            store_secret=store_secret,
            **({"store_ports": tuple(store_port)} if store_port else {}),
        )
    if as_json:
        emit_json(res)
        return
    canary = f", canary {res['canary_percent']}%" if res["canary_percent"] is not None else ""
    console.print(
        f"[green]deploy[/green] {res['out']}: {res['model']} as {res['image']}{canary} "
        f"({len(res['files'])} files)",
        highlight=False,
    )
    for note in res["notes"]:
        console.print(f"note: {note}", highlight=False)
    for step in res["next"]:
        console.print(f"  {step}", highlight=False)
