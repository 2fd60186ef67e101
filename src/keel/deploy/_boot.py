"""The container's entry point: serve the graph the image holds with keel's server.

    python -m keel.deploy serve [--model-dir /srv/keel/model] [--store /var/lib/keel | --team-store]
                                [--keys /etc/keel/keys/keys.json] [--host 0.0.0.0] [--port 8080]

At start it checks ``model.onnx`` against the sha256 in ``keel-deploy.json`` (the build
checked it too), opens a store in ``--store`` (an ``emptyDir``: the root filesystem is
read-only) and registers the graph there under the model's own name and version number,
with the alias it was deployed from (and ``production``), so answers, metrics and the
prediction log name the same version as the project the image came from. Then it serves
it with keel's server on every interface; keel refuses that without API keys, and the key
file is reread when its Secret changes.

With ``--team-store`` the pod keeps nothing of its own: it opens the team's store from
``KEEL_STORE`` and ``KEEL_BLOBS`` (and ``AWS_*`` for S3), which the manifests take from a
Secret. That store must hold the model version the image was built from, exported with this
very graph (its ``export.onnx`` tag is the graph's sha256), or the pod refuses to start. It
then serves that pinned version and logs its predictions there, under the real version, so
``keel monitor`` on any machine sees the pod's traffic. It writes no registry rows.

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

from keel.errors import InvalidInput, KeelError, NotFound, StoreError, UnsafeArtifact

DEFAULT_MODEL_DIR = "/srv/keel/model"
STORE_KEYS = (
    "KEEL_STORE (postgresql://USER:PASSWORD@HOST:5432/DB), KEEL_BLOBS (s3://BUCKET/PREFIX) "
    "and, for S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (AWS_ENDPOINT_URL for "
    "an S3-compatible store)"
)


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
    where = p.add_mutually_exclusive_group()
    where.add_argument("--store", default="/var/lib/keel", help="A writable folder for the store.")
    where.add_argument(
        "--team-store",
        action="store_true",
        help="Serve from, and log to, the team store in KEEL_STORE and KEEL_BLOBS.",
    )
    p.add_argument("--keys", default=None, help="API keys JSON (from 'keel key').")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--log-sample", type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        serve_image(
            args.model_dir,
            None if args.team_store else args.store,
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
    store_dir: str | Path | None,
    *,
    keys: str | Path | None = None,
    host: str = "0.0.0.0",
    port: int = 8080,
    log_sample: float = 1.0,
) -> None:
    """Check the image's graph, seed the pod's store (``store_dir``) and serve until
    stopped. ``store_dir`` None: serve from the team store (see :func:`open_team_store`)."""
    from keel.serve import KeyRing, PredictionLog, serve
    from keel.store import Store

    manifest, graph = read_manifest(model_dir)
    if store_dir is None:
        store = open_team_store()
    else:
        folder = Path(store_dir)
        folder.mkdir(parents=True, exist_ok=True)
        store = Store.open(f"sqlite:///{folder / 'store.db'}", folder / "blobs")
    try:
        if store_dir is None:
            ref = check_team_store(store, manifest)
            print(
                f"keel deploy: serving {ref} from the team store {store.safe_url}, blobs "
                f"{store.blobs.location}",
                file=sys.stderr,
                flush=True,
            )
        else:
            ref = seed_store(store, manifest, graph)
        route = f"{manifest['model']['name']}={ref}"
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


def open_team_store() -> Any:
    """The team store from ``KEEL_STORE`` (PostgreSQL) and ``KEEL_BLOBS``, opened. A missing
    setting is one line naming the keys the store's Secret must hold; no URL is echoed (it
    may hold a password)."""
    from keel import config
    from keel.store import Store

    url, blobs = str(config.get("KEEL_STORE") or ""), str(config.get("KEEL_BLOBS") or "")
    missing = [name for name, value in (("KEEL_STORE", url), ("KEEL_BLOBS", blobs)) if not value]
    if missing:
        raise InvalidInput(
            f"--team-store: {' and '.join(missing)} not set; the store's Secret (envFrom) must "
            f"hold {STORE_KEYS}"
        )
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in ("postgresql", "postgres"):
        raise InvalidInput(
            f"--team-store: KEEL_STORE: expected a postgresql:// URL (the team's server), got "
            f"a {scheme!r} URL"
        )
    store = Store(url, blobs)
    _check_holds_a_store(store)
    return store.connect()


def _check_holds_a_store(store: Any) -> None:
    """Refuse a database with no keel schema: opening a store creates one, and a pod must
    not make a new team store in whatever database its Secret happens to name."""
    from sqlalchemy.exc import SQLAlchemyError

    from keel.store import _engine

    engine = _engine.create(store.url)
    try:
        revision = _engine.current_revision(engine)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's own message, if any
        first = (str(cause).strip() or type(exc).__name__).splitlines()
        raise StoreError(
            f"--team-store: cannot open the team store at {store.safe_url}: {first[0]}"
        ) from None
    finally:
        engine.dispose()
    if revision is None:
        raise InvalidInput(
            f"--team-store: KEEL_STORE: the database at {store.safe_url} holds no keel store; "
            "the pod makes none: point KEEL_STORE at the store the image was built from"
        )


def check_team_store(store: Any, manifest: dict[str, Any]) -> str:
    """The route (``NAME/VERSION``) of the version the image was built from, once ``store``
    is shown to hold it exported with the image's very graph; :class:`UnsafeArtifact`
    otherwise (another project's store, or a version exported again since the build)."""
    from keel import registry

    model = manifest["model"]
    ref = f"{model['name']}/{int(model['version'])}"
    want = manifest["graph"]["sha256"]
    where = f"the team store {store.safe_url}"
    try:
        mv = registry.get_version(store, ref)
    except NotFound as exc:
        raise UnsafeArtifact(
            f"{where} does not hold {ref}, which this image was built from ({exc}); point "
            "KEEL_STORE at the store the image came from"
        ) from None
    have = mv.tags.get("export.onnx")
    if have != want:
        got = f"sha256 {have}" if have else "no exported graph"
        raise UnsafeArtifact(
            f"{where} has {got} for {ref}, the image's graph is sha256 {want}; refusing to "
            "log another graph's predictions under this version (rebuild the image with "
            "keel deploy k8s from this store)"
        )
    if not store.blobs.exists(have):
        raise UnsafeArtifact(
            f"{ref}'s exported graph (sha256 {have}) is missing from the blob store "
            f"{store.blobs.location}"
        )
    return ref
