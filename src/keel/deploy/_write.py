"""Write a deployment folder: all of it, or nothing.

Every file is rendered in memory first; then they are written into a new temporary folder
beside ``out`` and moved into place. A bad model, flag or release file is refused before
anything touches ``out``; a folder that holds other files is refused unless ``force``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from keel.deploy._boot import STORE_KEYS
from keel.deploy._image import dockerfile, dockerignore, requirements
from keel.deploy._manifests import (
    KEYS_FILE,
    Settings,
    inference_service,
    keys_secret,
    kubernetes_objects,
)
from keel.deploy._plan import GRAPH, MANIFEST, Plan, plan
from keel.errors import InvalidInput

WHEELS_README = (
    "Put keel's wheel here (pip wheel --no-deps PATH_TO_KEEL -w wheels/) when keel is not on "
    "the package index the image build uses.\n"
)


def to_yaml(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


def render(p: Plan, settings: Settings, kserve: bool = False) -> dict[str, bytes]:
    """Relative path → bytes of every file the folder gets."""
    files: dict[str, bytes] = {
        "Dockerfile": dockerfile(p, team_store=settings.team_store).encode(),
        ".dockerignore": dockerignore().encode(),
        "requirements-serve.txt": requirements(team_store=settings.team_store).encode(),
        "wheels/README.txt": WHEELS_README.encode(),
        f"model/{GRAPH}": p.graph,
        f"model/{MANIFEST}": p.manifest_bytes(),
    }
    for name, obj in kubernetes_objects(p, settings).items():
        files[f"k8s/{name}"] = to_yaml(obj).encode()
    if kserve:
        files["kserve/inferenceservice.yaml"] = to_yaml(inference_service(p, settings)).encode()
    return files


def deploy_k8s(
    store: Any,
    ref: str,
    out: str | Path,
    *,
    image: str | None = None,
    name: str | None = None,
    kserve: bool = False,
    release_file: str | Path | None = None,
    force: bool = False,
    **settings: Any,
) -> dict[str, Any]:
    """Write the image's build context and the manifests for ``ref`` to ``out``.

    ``image`` defaults to ``keel-NAME:VERSION``; ``settings`` are :class:`Settings` fields
    (``namespace``, ``replicas``, ``cpu``, ``store_secret``, ...). ``release_file`` (the YAML
    ``keel serve --release`` reads) sets KServe's canary share. Returns what was written.

    With ``store_secret`` the pod serves ``ref``'s version from the team store the Secret
    names (it refuses to start unless that store holds the version with this very graph)
    and logs its predictions there."""
    if release_file is not None and not kserve:
        raise InvalidInput("--release: sets the KServe canary share; give --kserve with it")
    if settings.get("store_ports") is not None and settings.get("store_secret") is None:
        raise InvalidInput(
            "--store-port: opens the pod to the team store's ports; give --store-secret with it"
        )
    Settings(image=image or "keel", **settings).check()  # flags first: they cost nothing
    p = plan(store, ref, name=name, release_file=release_file)
    cfg = Settings(image=image or f"keel-{p.name}:{p.version}", **settings)
    files = render(p, cfg, kserve=kserve)
    target = Path(out)
    _check_out(target, files, force)
    _write_all(target, files)
    secret = keys_secret(p, cfg)
    ns = f" -n {cfg.namespace}" if cfg.namespace else ""
    steps = [
        f"docker build -t {cfg.image} {target}",
        f"kubectl create secret generic {secret} --from-file={KEYS_FILE}=KEYS.json{ns}",
    ]
    notes = list(p.notes)
    if cfg.store_secret is not None:
        steps.append(
            f"kubectl create secret generic {cfg.store_secret} --from-env-file=STORE.env{ns}"
        )
        notes.append(
            f"the Secret {cfg.store_secret!r} gives the pod its environment: {STORE_KEYS}; "
            f"the store must hold {p.ref} exported with this graph (the pod checks at start)"
        )
        if getattr(store, "dialect", None) == "sqlite":
            notes.append(
                f"{p.ref} comes from a SQLite store here: the pod starts only if the team store "
                "in the Secret holds it exported with this same graph"
            )
    steps.append(f"kubectl apply -f {target / ('kserve' if kserve else 'k8s')}")
    return {
        "model": p.ref,
        "alias": p.alias,
        "out": str(target),
        "image": cfg.image,
        "graph_sha256": p.graph_sha256,
        "files": sorted(files),
        "keys_secret": secret,
        "store_secret": cfg.store_secret,
        "canary_percent": p.canary_percent,
        "notes": notes,
        "next": steps,
    }


def _check_out(out: Path, files: dict[str, bytes], force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out}: exists and is not a folder")
    if not out.is_dir() or force:
        return
    ours = {Path(f).parts[0] for f in files} | {"kserve"}
    others = sorted(p.name for p in out.iterdir() if p.name not in ours)
    if others and not (out / "model" / MANIFEST).is_file():
        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
        raise InvalidInput(
            f"--out {out}: the folder holds other files ({shown}); give an empty or new "
            "folder, or --force to write beside them"
        )
    if others:
        raise InvalidInput(
            f"--out {out}: a keel deploy folder with other files added ({others[0]}); "
            "give --force to write over it"
        )


def _write_all(out: Path, files: dict[str, bytes]) -> None:
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        for rel, data in files.items():
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if not out.exists():
            os.replace(tmp, out)
            return
        for rel in files:  # an existing folder: move each file over its old copy
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
