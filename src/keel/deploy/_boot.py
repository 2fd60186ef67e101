"""The container's entry point: serve the graph the image holds with keel's server.

    python -m keel.deploy serve [--model-dir /srv/keel/model] [--store /var/lib/keel]
                                [--keys /etc/keel/keys/keys.json] [--host 0.0.0.0] [--port 8080]

At start it checks ``model.onnx`` against the sha256 in ``keel-deploy.json`` (the build
checked it too), opens a store in ``--store`` (an ``emptyDir``: the root filesystem is
read-only) and registers the graph there under the model's own name and version number,
with the alias it was deployed from (and ``production``), so answers, metrics and the
prediction log name the same version as the project the image came from. Then it serves
it with keel's server on every interface; keel refuses that without API keys, and the key
file is reread when its Secret changes.

Nothing here imports the training stack (scikit-learn, LightGBM, fairlearn, ...): the
image installs keel without its dependencies and then only what serving needs
(``requirements-serve.txt``; see :data:`keel.deploy.SERVE_REQUIREMENTS`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput, KeelError, UnsafeArtifact

DEFAULT_MODEL_DIR = "/srv/keel/model"


def read_manifest(model_dir: str | Path) -> tuple[dict[str, Any], bytes]:
    """``keel-deploy.json`` and the graph it names, its sha256 and size checked."""
    from keel.deploy._plan import FORMAT, FORMAT_VERSION, MANIFEST

    folder = Path(model_dir)
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise InvalidInput(f"{path}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InvalidInput(f"{path}: expected a {FORMAT!r} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InvalidInput(
            f"{path}: format_version {manifest.get('format_version')!r} is not one this keel "
            f"reads ({FORMAT_VERSION})"
        )
    graph_info = manifest["graph"]
    graph_path = folder / Path(graph_info["file"]).name
    graph = graph_path.read_bytes()
    got = hashlib.sha256(graph).hexdigest()
    if got != graph_info["sha256"] or len(graph) != graph_info["size"]:
        raise UnsafeArtifact(
            f"{graph_path}: sha256 {got} does not match {graph_info['sha256']} in {MANIFEST}"
        )
    return manifest, graph


def seed_store(store: Any, manifest: dict[str, Any], graph: bytes) -> str:
    """Register ``graph`` in the pod's own (empty) ``store`` as the manifest's model and
    version number, tagged as exported, with its aliases; returns the route to serve.

    The registry numbers new versions from 1, so the rows are written directly: this store
    is the pod's, it holds this one version and nothing else."""
    from sqlalchemy import insert, select

    from keel import config
    from keel.store import _tables

    model = manifest["model"]
    name, version = model["name"], int(model["version"])
    graph_sha = store.blobs.put_bytes(graph)
    parity_sha = store.blobs.put_bytes(json.dumps(manifest.get("parity") or {}).encode())
    now, who = time.time(), config.user()
    aliases = sorted({"production", model.get("alias") or "production"})
    with store.write() as conn:
        t_versions = _tables.model_versions
        have = conn.execute(
            select(t_versions.c.version).where(
                t_versions.c.name == name, t_versions.c.version == version
            )
        ).first()
        if have is not None:  # a restarted container on the same emptyDir: already seeded
            return f"{name}/{version}"
        conn.execute(
            insert(_tables.registered_models).values(name=name, created_at=now, description="")
        )
        conn.execute(
            insert(t_versions).values(
                name=name,
                version=version,
                run_id=None,
                artifact_sha=graph_sha,
                flavor="onnx",
                task=manifest["task"],
                input_schema_json=json.dumps(manifest["input_schema"]),
                output_schema_json=json.dumps(manifest["output_schema"]),
                metrics_json=json.dumps(manifest.get("metrics") or {}),
                description=f"deployed from {model['ref']} by keel deploy",
                created_at=now,
                created_by=who,
            )
        )
        for key, value in (("export.onnx", graph_sha), ("export.parity", parity_sha)):
            conn.execute(
                insert(_tables.model_tags).values(name=name, version=version, key=key, value=value)
            )
        for alias in aliases:
            conn.execute(insert(_tables.aliases).values(name=name, alias=alias, version=version))
    return f"{name}/{version}"


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m keel.deploy")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="Serve the image's graph with keel's server.")
    p.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    p.add_argument("--store", default="/var/lib/keel", help="A writable folder for the store.")
    p.add_argument("--keys", default=None, help="API keys JSON (from 'keel key').")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--log-sample", type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        serve_image(
            args.model_dir,
            args.store,
            keys=args.keys,
            host=args.host,
            port=args.port,
            log_sample=args.log_sample,
        )
    except KeelError as exc:
        print(f"error ({exc.code}): {exc}", file=sys.stderr)
        return 2 if isinstance(exc, InvalidInput) else 1
    return 0


def serve_image(
    model_dir: str | Path,
    store_dir: str | Path,
    *,
    keys: str | Path | None = None,
    host: str = "0.0.0.0",
    port: int = 8080,
    log_sample: float = 1.0,
) -> None:
    """Check the image's graph, seed the pod's store and serve until stopped."""
    from keel.serve import KeyRing, PredictionLog, serve
    from keel.store import Store

    manifest, graph = read_manifest(model_dir)
    folder = Path(store_dir)
    folder.mkdir(parents=True, exist_ok=True)
    store = Store.open(f"sqlite:///{folder / 'store.db'}", folder / "blobs")
    try:
        route = f"{manifest['model']['name']}={seed_store(store, manifest, graph)}"
        ring = KeyRing.from_file(keys) if keys else None
        with PredictionLog(store, sample_rate=log_sample) as sink:
            serve(
                store,
                [route],
                host=host,
                port=port,
                keys=ring,
                sink=sink,
                watch_seconds=0,
                export_missing=False,
            )
    finally:
        store.close()
