"""What a deployment carries: one registered version's exported ONNX graph and what keel's
server needs to answer for it (name, version, schemas, parity), and the canary share.

Everything is read and checked here, before a byte is written: a version with no exported
graph, an unknown model or alias, or a release file that does not name the deployed alias
is refused with the fix in the message."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput

FORMAT = "keel-deploy"
FORMAT_VERSION = 1
GRAPH = "model.onnx"
MANIFEST = "keel-deploy.json"

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 45  # KServe adds suffixes ("-predictor-00001-deployment") to the 63 allowed


@dataclass
class Plan:
    """One version to deploy: its graph and manifest, the Kubernetes name, and the canary
    share of traffic (None: it takes all traffic, no canary)."""

    model: str
    version: int
    alias: str | None
    graph: bytes
    manifest: dict[str, Any]
    name: str
    canary_percent: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def graph_sha256(self) -> str:
        return hashlib.sha256(self.graph).hexdigest()

    @property
    def ref(self) -> str:
        return f"{self.model}/{self.version}"

    def manifest_bytes(self) -> bytes:
        return (json.dumps(self.manifest, indent=2, sort_keys=True) + "\n").encode()


def k8s_name(text: str) -> str:
    """A DNS-1123 label from a model name: lower case, other characters as '-'."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if name and not name[0].isalpha():
        name = f"m-{name}"
    return name[:MAX_NAME].rstrip("-")


def check_k8s_name(name: str, flag: str = "--name") -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME or not _DNS_LABEL.match(name):
        raise InvalidInput(
            f"{flag}: expected a Kubernetes name (lower-case letters, digits and '-', starting "
            f"with a letter, at most {MAX_NAME} characters), got {name!r}"
        )
    return name


def plan(
    store: Any, ref: str, *, name: str | None = None, release_file: str | Path | None = None
) -> Plan:
    """Resolve ``ref`` (``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION``) and gather what the
    image holds. Refuses a version without an exported ONNX graph (run ``keel export``)."""
    from keel import registry
    from keel.export import load_export

    mv = registry.get_version(store, ref)
    _, _, alias = registry.parse_ref(ref)
    if "export.onnx" not in mv.tags:
        raise InvalidInput(
            f"model {mv.ref} has no exported ONNX graph; run `keel export {ref}` first"
        )
    graph, parity = load_export(store, mv.ref)
    k8s = check_k8s_name(name) if name is not None else k8s_name(mv.name)
    if not k8s:
        raise InvalidInput(f"model name {mv.name!r} gives no Kubernetes name; give one with --name")
    check_k8s_name(k8s)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {"name": mv.name, "version": mv.version, "ref": mv.ref, "alias": alias},
        "task": mv.task,
        "source_flavor": mv.flavor,
        "input_schema": mv.input_schema,
        "output_schema": mv.output_schema,
        "metrics": mv.metrics,
        "parity": parity,
        "graph": {"file": GRAPH, "sha256": hashlib.sha256(graph).hexdigest(), "size": len(graph)},
    }
    out = Plan(mv.name, mv.version, alias, graph, manifest, k8s)
    if release_file is not None:
        out.canary_percent, out.notes = canary_percent(release_file, mv.name, alias, mv.version)
    return out


def canary_percent(
    release_file: str | Path, model: str, alias: str | None, version: int
) -> tuple[int | None, list[str]]:
    """The deployed variant's share of its release's traffic, in whole percent (KServe's
    ``canaryTrafficPercent``), from the release YAML that ``keel serve --release`` reads.
    None when the variant is the release's main one (the largest weight): it takes the
    traffic the canary leaves."""
    from keel.serve import load_releases

    where = f"--release {release_file}"
    releases = [r for r in load_releases(release_file) if (r.model or r.name) == model]
    if not releases:
        raise InvalidInput(f"{where}: no release serves model {model!r}")
    if len(releases) > 1:
        names = ", ".join(repr(r.name) for r in releases)
        raise InvalidInput(f"{where}: several releases serve model {model!r} ({names})")
    rel = releases[0]
    weights = {str(k): float(w) for k, w in rel.variants.items()}
    if len(weights) > 2:
        raise InvalidInput(
            f"{where}: release {rel.name!r} splits traffic {len(weights)} ways "
            f"({', '.join(weights)}); KServe keeps two revisions (stable and canary)"
        )
    mine = alias if alias in weights else (str(version) if str(version) in weights else None)
    if mine is None:
        raise InvalidInput(
            f"{where}: release {rel.name!r} has no variant {alias or version!r}; "
            f"expected one of {', '.join(weights)}"
        )
    notes = []
    if rel.shadow is not None:
        notes.append(
            f"release {rel.name!r} shadows to {rel.shadow!r}; KServe has no shadow, so the "
            "InferenceService leaves it out"
        )
    total = sum(weights.values())
    share = weights[mine] / total
    if len(weights) == 1 or share > 0.5 or (share == 0.5 and mine == next(iter(weights))):
        return None, notes
    percent = round(100 * share)
    return min(max(percent, 1), 99), notes
