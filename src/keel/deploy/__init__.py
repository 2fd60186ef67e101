"""keel.deploy: hand a release to the platform a team runs.

``deploy_k8s`` writes, for one registered version's exported ONNX graph, an image's build
context (a Dockerfile for a minimal non-root image holding the graph and keel's server,
without the training stack) and Kubernetes manifests (Deployment, Service,
HorizontalPodAutoscaler, PodDisruptionBudget, NetworkPolicy), and with ``kserve=True`` a
KServe InferenceService whose canary share comes from keel's release weights::

    from keel.deploy import deploy_k8s
    deploy_k8s(store, "adult@candidate", "deploy/adult", kserve=True,
               release_file="release.yaml", image="registry.example/adult:4")

The image runs ``python -m keel.deploy serve``: the graph is checked against its sha256,
registered in the pod's own store under its model name and version, and served by keel's
server (Open Inference Protocol v2, keel JSON, MLflow scoring) with API keys from a Secret.
With ``store_secret="NAME"`` the pod instead serves that version from the team store whose
settings the Secret NAME holds (``serve --team-store``), once it has checked the store holds
the version with this very graph, and logs its predictions there.
"""

from keel.deploy._boot import (
    check_team_store,
    open_team_store,
    read_manifest,
    seed_store,
    serve_image,
)
from keel.deploy._image import (
    SERVE_REQUIREMENTS,
    TEAM_STORE_REQUIREMENTS,
    dockerfile,
    requirements,
)
from keel.deploy._manifests import Settings, inference_service, kubernetes_objects
from keel.deploy._plan import Plan, canary_percent, k8s_name, plan
from keel.deploy._write import deploy_k8s, render

__all__ = [
    "SERVE_REQUIREMENTS",
    "TEAM_STORE_REQUIREMENTS",
    "Plan",
    "Settings",
    "canary_percent",
    "check_team_store",
    "deploy_k8s",
    "dockerfile",
    "inference_service",
    "k8s_name",
    "kubernetes_objects",
    "open_team_store",
    "plan",
    "read_manifest",
    "render",
    "requirements",
    "seed_store",
    "serve_image",
]
