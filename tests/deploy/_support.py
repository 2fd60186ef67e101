"""Helpers for keel.deploy's tests: a project with exported model versions, and schema
validation of manifests (Kubernetes' OpenAPI schemas through kubernetes-validate, and
KServe's published InferenceService CRD through jsonschema)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

FIXTURES = Path(__file__).parent / "fixtures"
KSERVE_CRD = FIXTURES / "serving.kserve.io_inferenceservices.yaml"
K8S_VERSION = "1.37.0"


def load_yaml(path: Path) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(path.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - safe loader


def validate_k8s(obj: dict[str, Any]) -> None:
    """Raise kubernetes_validate.ValidationError unless ``obj`` fits the Kubernetes
    OpenAPI schema of its kind (strict: a field the schema does not know fails too)."""
    import kubernetes_validate

    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that lists its
    properties and does not keep unknown fields: what the API server's pruning and
    ``kubectl --validate=strict`` do to a field the CRD does not declare."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def kserve_validator() -> Any:
    """A jsonschema validator of the InferenceService v1beta1 openAPIV3Schema."""
    import jsonschema

    crd = load_yaml(KSERVE_CRD)
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["spec"]["group"] == "serving.kserve.io"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    schema["properties"]["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$"},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": False,
    }
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    schema["properties"]["apiVersion"] = {"const": "serving.kserve.io/v1beta1"}
    schema["properties"]["kind"] = {"const": "InferenceService"}
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate_kserve(obj: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless ``obj`` fits KServe's CRD schema."""
    import jsonschema

    errors = sorted(kserve_validator().iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        raise jsonschema.ValidationError(
            "; ".join(f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in errors[:5])
        )


def make_project(root: Path) -> Any:
    """A keel project with model ``adult``: versions 1 (production) and 2 (candidate)
    exported, version 3 not exported."""
    from keel import registry
    from keel.data import ingest
    from keel.datasets import adult
    from keel.export import export
    from keel.project import init
    from keel.train import train

    proj = init(root)
    store = proj.store
    df = adult("train").sample(2000, random_state=0)
    df.to_csv(root / "adult.csv", index=False)
    ingest(store, root / "adult.csv", name="adult")
    result = train(store, "adult", "income", params={"n_estimators": 20}, seed=2)
    v1 = result.register(store, "adult")
    v2 = result.register(store, "adult")
    result.register(store, "adult")
    for mv in (v1, v2):
        export(store, mv.ref)
    registry.set_alias(store, v1.ref, "production", override="deploy tests: no audit")
    registry.set_alias(store, v2.ref, "candidate")
    return proj
