"""The Kubernetes objects, as plain dicts: a Deployment, Service, HorizontalPodAutoscaler,
PodDisruptionBudget and NetworkPolicy, and KServe's InferenceService.

The pod runs keel's server from the image (``python -m keel.deploy serve``) as a non-root
user on a read-only root filesystem: the only writable paths are two ``emptyDir`` volumes,
the pod's own store (``/var/lib/keel``: the model registered from the image, and the
prediction log) and ``/tmp``. API keys (the JSON of key hashes that ``keel key`` writes)
come from a Secret mounted read-only at ``/etc/keel/keys``; keel rereads the file when the
Secret changes, so a revoked key stops working without a restart. No key is ever written
here: the manifests name the Secret, and ``kubectl create secret`` makes it.

With ``store_secret`` (``keel deploy k8s --store-secret NAME``) the pod serves from, and logs
its predictions to, the team's store instead (``python -m keel.deploy serve --team-store``):
the container takes its environment from that Secret (``envFrom``: ``KEEL_STORE``,
``KEEL_BLOBS`` and the ``AWS_*`` keys; no value of it is ever written here), has no store
``emptyDir`` (``/tmp`` stays the only writable path), and the NetworkPolicy lets it reach DNS
and the store's ports (``store_ports``: PostgreSQL's 5432 and S3's 443 unless given).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from keel.deploy._plan import Plan, check_k8s_name
from keel.errors import InvalidInput

PORT = 8080
STORE_DIR = "/var/lib/keel"
KEYS_DIR = "/etc/keel/keys"
KEYS_FILE = "keys.json"
MODEL_DIR = "/srv/keel/model"
UID = 10001
STORE_PORTS = (5432, 443)  # PostgreSQL, S3 (HTTPS)

_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$")
_MEMORY = re.compile(r"^[0-9]+(Ki|Mi|Gi)?$")


@dataclass(frozen=True)
class Settings:
    """How the release runs on the cluster.

    image: the image built from the Dockerfile, as the cluster pulls it.
    namespace: where the objects go (None: kubectl's current namespace).
    replicas / max_replicas: the autoscaler's range (and the Deployment's start).
    cpu / memory: each pod's request; cpu_limit and memory (again) its limit.
    target_cpu_percent: the autoscaler's target average CPU use, of the request.
    keys_secret: the Secret holding ``keys.json`` (made by ``keel key``).
    allow_namespaces: namespaces (besides the release's own) whose pods may call it.
    store_secret: the Secret holding the team store's settings (KEEL_STORE, KEEL_BLOBS,
        AWS_*): the pod serves from and logs to the team store. None: the pod's own store.
    store_ports: with ``store_secret``, the TCP ports the pod may open connections to
        (the PostgreSQL server's and the object store's).
    """

    image: str
    namespace: str | None = None
    replicas: int = 2
    max_replicas: int = 6
    cpu: str = "500m"
    cpu_limit: str = "1"
    memory: str = "512Mi"
    target_cpu_percent: int = 70
    keys_secret: str | None = None
    allow_namespaces: tuple[str, ...] = ()
    store_secret: str | None = None
    store_ports: tuple[int, ...] = STORE_PORTS

    def check(self) -> None:
        if (
            not isinstance(self.image, str)
            or not self.image
            or any(c.isspace() for c in self.image)
        ):
            raise InvalidInput(f"--image: expected an image reference, got {self.image!r}")
        if self.namespace is not None:
            check_k8s_name(self.namespace, "--namespace")
        if not isinstance(self.replicas, int) or self.replicas < 1:
            raise InvalidInput(f"--replicas: expected an integer >= 1, got {self.replicas!r}")
        if not isinstance(self.max_replicas, int) or self.max_replicas < self.replicas:
            raise InvalidInput(
                f"--max-replicas: expected an integer >= --replicas ({self.replicas}), "
                f"got {self.max_replicas!r}"
            )
        for flag, value in (("--cpu", self.cpu), ("--cpu-limit", self.cpu_limit)):
            if not _CPU.match(str(value)):
                raise InvalidInput(f"{flag}: expected a CPU quantity (500m, 1, 1.5), got {value!r}")
        if not _MEMORY.match(str(self.memory)):
            raise InvalidInput(
                f"--memory: expected a memory quantity (512Mi, 1Gi), got {self.memory!r}"
            )
        if not 1 <= self.target_cpu_percent <= 100:
            raise InvalidInput(
                f"--target-cpu: expected a percent from 1 to 100, got {self.target_cpu_percent!r}"
            )
        if self.keys_secret is not None:
            check_k8s_name(self.keys_secret, "--keys-secret")
        for ns in self.allow_namespaces:
            check_k8s_name(ns, "--allow-namespace")
        if self.store_secret is not None:
            check_k8s_name(self.store_secret, "--store-secret")
        for port in self.store_ports:
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise InvalidInput(f"--store-port: expected a port number 1-65535, got {port!r}")
        if self.store_secret is not None and not self.store_ports:
            raise InvalidInput(
                "--store-port: expected at least one port with --store-secret, got none"
            )

    @property
    def team_store(self) -> bool:
        return self.store_secret is not None


def _meta(plan: Plan, s: Settings, name: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name or plan.name, "labels": labels(plan)}
    if s.namespace:
        meta["namespace"] = s.namespace
    return meta


def labels(plan: Plan) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": plan.name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "keel",
        "keel.dev/model-version": str(plan.version),
    }


def selector(plan: Plan) -> dict[str, str]:
    return {"app.kubernetes.io/name": plan.name, "app.kubernetes.io/component": "model-server"}


def keys_secret(plan: Plan, s: Settings) -> str:
    return s.keys_secret or f"{plan.name}-keys"


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def container(plan: Plan, s: Settings, kserve: bool = False) -> dict[str, Any]:
    """keel's server. For KServe (Knative) the container is ``kserve-container``, declares
    the v2 protocol in ``PROTOCOL`` (KServe's custom-predictor convention), names its port
    ``http1`` (Knative allows only http1 and h2c) and has no startup probe. With a team
    store its environment comes from the store's Secret and it has no store volume."""
    store_args = ["--team-store"] if s.team_store else ["--store", STORE_DIR]
    out: dict[str, Any] = {
        "name": "kserve-container" if kserve else "keel",
        "image": s.image,
        "imagePullPolicy": "IfNotPresent",
        "args": [
            "serve",
            "--port",
            str(PORT),
            "--keys",
            f"{KEYS_DIR}/{KEYS_FILE}",
            *store_args,
        ],
        "ports": [
            {"name": "http1" if kserve else "http", "containerPort": PORT, "protocol": "TCP"}
        ],
        "env": [
            {"name": "HOME", "value": "/tmp"},
            {"name": "OMP_NUM_THREADS", "value": "1"},
            *([{"name": "PROTOCOL", "value": "v2"}] if kserve else []),
        ],
        "readinessProbe": _probe("/readyz", 5, 3),
        "livenessProbe": _probe("/healthz", 10, 3),
        "startupProbe": _probe("/healthz", 2, 60),
        "resources": {
            "requests": {"cpu": s.cpu, "memory": s.memory},
            "limits": {"cpu": s.cpu_limit, "memory": s.memory},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            *([] if s.team_store else [{"name": "store", "mountPath": STORE_DIR}]),
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "keys", "mountPath": KEYS_DIR, "readOnly": True},
        ],
    }
    if s.team_store:  # KEEL_STORE, KEEL_BLOBS, AWS_*: by name only, never a value
        out["envFrom"] = [{"secretRef": {"name": s.store_secret, "optional": False}}]
    if kserve:
        del out["startupProbe"]
    return out


def volumes(plan: Plan, s: Settings, kserve: bool = False) -> list[dict[str, Any]]:
    own_store = [] if s.team_store else [{"name": "store", "emptyDir": {"sizeLimit": "1Gi"}}]
    return [
        *own_store,
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {
            "name": "keys",
            "secret": {
                "secretName": keys_secret(plan, s),
                # readable by the pod's group (fsGroup); Knative pods get no fsGroup, so
                # there the file (key hashes, no key) is world-readable inside the pod
                "defaultMode": 0o444 if kserve else 0o440,
                "items": [{"key": KEYS_FILE, "path": KEYS_FILE}],
            },
        },
    ]


def pod_spec(plan: Plan, s: Settings) -> dict[str, Any]:
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container(plan, s)],
        "volumes": volumes(plan, s),
    }


def deployment(plan: Plan, s: Settings) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(plan, s),
        "spec": {
            "replicas": s.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(plan)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels(plan),
                    "annotations": {
                        "keel.dev/model": plan.ref,
                        "keel.dev/graph-sha256": plan.graph_sha256,
                    },
                },
                "spec": pod_spec(plan, s),
            },
        },
    }


def service(plan: Plan, s: Settings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(plan, s),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(plan),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def autoscaler(plan: Plan, s: Settings) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(plan, s),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": plan.name},
            "minReplicas": s.replicas,
            "maxReplicas": s.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": s.target_cpu_percent,
                        },
                    },
                }
            ],
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                }
            },
        },
    }


def disruption_budget(plan: Plan, s: Settings) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(plan, s),
        "spec": {
            # a drain takes one pod at a time (with --replicas 1 that is the only one)
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(plan)},
        },
    }


def network_policy(plan: Plan, s: Settings) -> dict[str, Any]:
    """Pods of the same namespace (and of ``allow_namespaces``) may reach the server's port;
    nothing else may. The server opens no connection out when its store is in the pod; with
    a team store it may reach DNS and the store's ports (``store_ports``), nothing else."""
    sources: list[dict[str, Any]] = [{"podSelector": {}}]
    sources += [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
        for ns in s.allow_namespaces
    ]
    egress: list[dict[str, Any]] = []
    if s.team_store:
        dns = [{"protocol": proto, "port": 53} for proto in ("UDP", "TCP")]
        store = [{"protocol": "TCP", "port": port} for port in s.store_ports]
        egress = [{"ports": dns}, {"ports": store}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(plan, s),
        "spec": {
            "podSelector": {"matchLabels": selector(plan)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": PORT}]}],
            "egress": egress,
        },
    }


def inference_service(plan: Plan, s: Settings) -> dict[str, Any]:
    """KServe's InferenceService with a custom predictor: keel's server in the image, which
    speaks the Open Inference Protocol v2 (``/v2/models/NAME/infer``) itself. With a canary
    share, applying it over the running one sends that share to the new revision."""
    meta = _meta(plan, s)
    meta["annotations"] = {
        "keel.dev/model": plan.ref,
        "keel.dev/graph-sha256": plan.graph_sha256,
    }
    predictor: dict[str, Any] = {"minReplicas": s.replicas, "maxReplicas": s.max_replicas}
    if plan.canary_percent is not None:
        predictor["canaryTrafficPercent"] = plan.canary_percent
    # Knative admits a pod-level securityContext only behind a feature flag: the
    # container's own securityContext carries the same settings.
    predictor["containers"] = [container(plan, s, kserve=True)]
    predictor["volumes"] = volumes(plan, s, kserve=True)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {"predictor": predictor},
    }


def kubernetes_objects(plan: Plan, s: Settings) -> dict[str, dict[str, Any]]:
    """File name → object, for ``k8s/``."""
    return {
        "deployment.yaml": deployment(plan, s),
        "service.yaml": service(plan, s),
        "hpa.yaml": autoscaler(plan, s),
        "pdb.yaml": disruption_budget(plan, s),
        "networkpolicy.yaml": network_policy(plan, s),
    }
