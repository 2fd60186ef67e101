"""``keel deploy k8s``: the manifests fit the Kubernetes and KServe schemas, hold the
security settings a platform team asks for, name the keys' Secret without holding a key,
and bad input writes nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from keel.cli import main
from tests.deploy._support import load_yaml, make_project, validate_k8s, validate_kserve

KINDS = {
    "deployment.yaml": "Deployment",
    "service.yaml": "Service",
    "hpa.yaml": "HorizontalPodAutoscaler",
    "pdb.yaml": "PodDisruptionBudget",
    "networkpolicy.yaml": "NetworkPolicy",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("proj")
    make_project(root).close()
    return root


def keel(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def deploy(capsys, project: Path, *args) -> dict:
    code, out, err = keel(capsys, "deploy", "k8s", *args, "--project", project, "--json")
    assert code == 0, err
    return json.loads(out)


def objects(folder: Path) -> dict[str, dict]:
    found = {p.name: load_yaml(p) for p in sorted((folder / "k8s").glob("*.yaml"))}
    if (folder / "kserve").is_dir():
        found.update({p.name: load_yaml(p) for p in (folder / "kserve").glob("*.yaml")})
    return found


@pytest.fixture(scope="module")
def written(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "adult"
    code = main(
        [
            "deploy",
            "k8s",
            "adult@production",
            "--out",
            str(out),
            "--kserve",
            "--image",
            "registry.example/keel/adult:1",
            "--namespace",
            "models",
            "--allow-namespace",
            "gateway",
            "--project",
            str(project),
        ]
    )
    assert code == 0
    return out


def test_every_kubernetes_manifest_fits_its_openapi_schema(written):
    objs = objects(written)
    assert {n: o["kind"] for n, o in objs.items() if n in KINDS} == KINDS
    for name in KINDS:
        validate_k8s(objs[name])  # raises on any misfit, unknown fields included
        assert objs[name]["metadata"]["namespace"] == "models"


def test_the_inference_service_fits_kserves_crd(written):
    isvc = objects(written)["inferenceservice.yaml"]
    validate_kserve(isvc)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    (c,) = isvc["spec"]["predictor"]["containers"]
    assert c["image"] == "registry.example/keel/adult:1"
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]  # production: no canary


@pytest.mark.parametrize(
    "name, path, value",
    [
        ("deployment.yaml", ["spec", "replicas"], "two"),
        ("deployment.yaml", ["spec", "template", "spec", "containers", 0, "securty"], {}),
        ("hpa.yaml", ["spec", "metrics", 0, "resource", "target", "averageUtilization"], "70%"),
        ("service.yaml", ["spec", "ports", 0, "port"], "http"),
        ("networkpolicy.yaml", ["spec", "ingress", 0, "fromm"], []),
        ("pdb.yaml", ["spec", "selector", "matchLabels"], ["a"]),
    ],
)
def test_kubernetes_validation_fails_on_a_broken_manifest(written, name, path, value):
    obj = objects(written)[name]
    _set(obj, path, value)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(obj)


@pytest.mark.parametrize(
    "path, value",
    [
        (["spec", "predictor", "canaryTrafficPercent"], "ten"),
        (["spec", "predictor", "containers", 0, "ports", 0, "containerPort"], "8080"),
        (["spec", "predictor", "canaryTraficPercent"], 10),  # misspelt: unknown field
        (["apiVersion"], "serving.kserve.io/v1alpha1"),
        (["spec", "predictor", "containers", 0, "securityContext", "runAsNonRoot"], "yes"),
    ],
)
def test_kserve_validation_fails_on_a_broken_inference_service(written, path, value):
    obj = objects(written)["inferenceservice.yaml"]
    _set(obj, path, value)
    with pytest.raises(jsonschema.ValidationError):
        validate_kserve(obj)


def _set(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def test_pods_run_locked_down_with_probes_and_resources(written):
    objs = objects(written)
    dep_pod = objs["deployment.yaml"]["spec"]["template"]["spec"]
    assert dep_pod["securityContext"]["runAsNonRoot"] is True
    assert dep_pod["securityContext"]["runAsUser"] != 0
    assert dep_pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert dep_pod["automountServiceAccountToken"] is False
    isvc_pod = objs["inferenceservice.yaml"]["spec"]["predictor"]
    for pod in (dep_pod, isvc_pod):
        (c,) = pod["containers"]
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        (port,) = c["ports"]
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["containerPort"]}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["containerPort"]}
        assert c["args"][c["args"].index("--port") + 1] == str(port["containerPort"])
        assert set(c["resources"]["requests"]) == {"cpu", "memory"}
        assert set(c["resources"]["limits"]) == {"cpu", "memory"}
        # the only writable paths are the pod's volumes
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert c["args"][c["args"].index("--store") + 1] in mounts
        assert "emptyDir" in volumes[mounts["/var/lib/keel"]["name"]]
        assert mounts["/etc/keel/keys"]["readOnly"] is True
    # KServe's custom predictor: its container name, the v2 protocol, a Knative port name
    (c,) = isvc_pod["containers"]
    assert c["name"] == "kserve-container"
    assert {"name": "PROTOCOL", "value": "v2"} in c["env"]
    assert c["ports"][0]["name"] in ("http1", "h2c")


def test_service_autoscaler_budget_and_policy_select_the_deployments_pods(written):
    objs = objects(written)
    dep = objs["deployment.yaml"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]

    def selects(sel: dict) -> bool:
        return bool(sel) and all(pod_labels.get(k) == v for k, v in sel.items())

    assert selects(dep["spec"]["selector"]["matchLabels"])
    assert selects(objs["service.yaml"]["spec"]["selector"])
    assert selects(objs["pdb.yaml"]["spec"]["selector"]["matchLabels"])
    assert selects(objs["networkpolicy.yaml"]["spec"]["podSelector"]["matchLabels"])
    target = objs["hpa.yaml"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", dep["metadata"]["name"])
    assert objs["hpa.yaml"]["spec"]["minReplicas"] == dep["spec"]["replicas"]
    policy = objs["networkpolicy.yaml"]["spec"]
    assert policy["egress"] == [] and "Egress" in policy["policyTypes"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}} in (
        rule["from"]
    )
    assert objs["service.yaml"]["spec"]["ports"][0]["targetPort"] == "http"


def test_no_key_is_written_only_the_secrets_name(project, tmp_path, capsys):
    from keel.serve import add_key

    keys = tmp_path / "keys.json"
    token, key = add_key(keys, "gateway", ["predict"])
    out = tmp_path / "out"
    res = deploy(
        capsys, project, "adult@production", "--out", out, "--kserve", "--keys-secret", "ks"
    )
    assert res["keys_secret"] == "ks"
    text = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert token.encode() not in text and key.sha256.encode() not in text
    for name, obj in objects(out).items():
        assert obj["kind"] != "Secret", name
        assert "stringData" not in json.dumps(obj) and '"data"' not in json.dumps(obj)
    pod = objects(out)["deployment.yaml"]["spec"]["template"]["spec"]
    (keys_volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert keys_volume["secret"]["secretName"] == "ks"
    assert any("kubectl create secret generic ks" in step for step in res["next"])


def test_the_dockerfile_builds_a_minimal_non_root_image_holding_the_checked_graph(project, written):
    from keel import registry
    from keel.project import open_project

    docker = (written / "Dockerfile").read_text()
    graph = (written / "model" / "model.onnx").read_bytes()
    sha = hashlib.sha256(graph).hexdigest()
    with open_project(project) as proj:
        mv = registry.get_version(proj.store, "adult@production")
        assert proj.store.blobs.get_bytes(mv.tags["export.onnx"]) == graph
    stages = docker.split("\nFROM ")
    assert len(stages) == 3  # the header, a build stage and the final one
    final = stages[-1]
    assert f'echo "{sha}  /srv/keel/model/model.onnx" | sha256sum --check' in stages[1]
    assert f'echo "{sha}  /srv/keel/model/model.onnx" | sha256sum --check' in final
    users = [line.split()[1] for line in final.splitlines() if line.startswith("USER ")]
    assert users and all(u.split(":")[0] not in ("0", "root") for u in users)
    assert "HEALTHCHECK" in final and "/readyz" in final
    for tool in ("apt-get install", "gcc", "build-essential", "pip install", "apk add"):
        assert tool not in final, tool
    assert "pip uninstall" in final and "pip uninstall" in stages[1]
    assert "--no-deps" in stages[1] and "-r /tmp/requirements-serve.txt" in stages[1]
    assert '"-m", "keel.deploy"' in final
    reqs = (written / "requirements-serve.txt").read_text()
    for training in ("scikit-learn", "lightgbm", "optuna", "fairlearn", "torch", "skl2onnx"):
        assert training not in reqs
    ignore = (written / ".dockerignore").read_text().splitlines()
    assert ignore[0] == "*" and "!model/" in ignore


# ------------------------------------------------------------------ canary from releases


def _release(tmp_path: Path, variants: dict, shadow: str | None = None) -> Path:
    doc = {"name": "adult", "variants": variants}
    if shadow:
        doc["shadow"] = shadow
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump({"releases": [doc]}))
    return path


@pytest.mark.parametrize(
    "variants, ref, percent",
    [
        ({"production": 90, "candidate": 10}, "adult@candidate", 10),
        ({"production": 3, "candidate": 1}, "adult@candidate", 25),
        ({"production": 90, "candidate": 10}, "adult@production", None),
        ({"production": 90, "2": 10}, "adult/2", 10),
    ],
)
def test_canary_percent_comes_from_keels_release_weights(
    project, tmp_path, capsys, variants, ref, percent
):
    rel = _release(tmp_path, variants, shadow="production")
    out = tmp_path / "out"
    res = deploy(capsys, project, ref, "--out", out, "--kserve", "--release", rel)
    isvc = objects(out)["inferenceservice.yaml"]
    validate_kserve(isvc)
    assert isvc["spec"]["predictor"].get("canaryTrafficPercent") == percent
    assert res["canary_percent"] == percent
    assert any("shadow" in n for n in res["notes"])


# ------------------------------------------------------------------ bad input


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["adult/3"], 2, "has no exported ONNX graph; run `keel export adult/3` first"),
        (["adult"], 2, "run `keel export adult` first"),  # the newest version, 3
        (["nosuch@production"], 1, "no model named 'nosuch'"),
        (["adult@staging"], 1, "no alias 'staging'"),
        (["adult/9"], 1, "no version 9"),
        (["adult@production", "--replicas", "0"], 2, "--replicas"),
        (["adult@production", "--max-replicas", "1"], 2, "--max-replicas"),
        (["adult@production", "--cpu", "lots"], 2, "--cpu"),
        (["adult@production", "--memory", "1 GB"], 2, "--memory"),
        (["adult@production", "--name", "Adult_Model"], 2, "--name"),
        (["adult@production", "--namespace", "-x"], 2, "--namespace"),
        (["adult@production", "--image", "has space:1"], 2, "--image"),
        (["adult@production", "--release", "release.yaml"], 2, "give --kserve"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(project, tmp_path, capsys, args, code, needle):
    out = tmp_path / "out"
    got, _, err = keel(capsys, "deploy", "k8s", *args, "--out", out, "--project", project)
    assert got == code
    assert needle in _one_error_line(err)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary folder left


@pytest.mark.parametrize(
    "variants, ref, needle",
    [
        ({"production": 90, "candidate": 10}, "adult/1", "has no variant 1"),
        ({"production": 80, "candidate": 10, "3": 10}, "adult@candidate", "3 ways"),
    ],
)
def test_a_release_that_does_not_fit_is_refused(project, tmp_path, capsys, variants, ref, needle):
    rel = _release(tmp_path, variants)
    out = tmp_path / "out"
    code, _, err = keel(
        capsys, "deploy", "k8s", ref, "--out", out, "--kserve", "--release", rel,
        "--project", project,
    )  # fmt: skip
    assert code == 2
    assert needle in _one_error_line(err)
    assert not out.exists()


def test_a_folder_of_other_files_is_refused_unless_forced(project, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, _, err = keel(
        capsys, "deploy", "k8s", "adult@production", "--out", out, "--project", project
    )
    assert code == 2
    assert "notes.txt" in _one_error_line(err) and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    deploy(capsys, project, "adult@production", "--out", out, "--force")
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "k8s" / "deployment.yaml").is_file()
    # a folder keel deploy wrote may be written again without --force
    (out / "notes.txt").unlink()
    res = deploy(capsys, project, "adult@candidate", "--out", out)
    assert res["model"] == "adult/2"
    manifest = json.loads((out / "model" / "keel-deploy.json").read_text())
    assert manifest["model"]["ref"] == "adult/2"


def test_a_file_as_out_is_refused(project, tmp_path, capsys):
    out = tmp_path / "out.yaml"
    out.write_text("x")
    code, _, err = keel(
        capsys, "deploy", "k8s", "adult@production", "--out", out, "--project", project
    )
    assert code == 2 and "not a folder" in _one_error_line(err)
    assert out.read_text() == "x"


def test_store_secret_from_a_sqlite_project_says_the_team_store_must_hold_the_version(
    project, tmp_path, capsys
):
    out = tmp_path / "out"
    res = deploy(
        capsys, project, "adult@production", "--out", out, "--kserve", "--store-secret", "ts"
    )
    assert res["store_secret"] == "ts"
    assert any("SQLite" in n and "adult/1" in n for n in res["notes"])
    for name, obj in objects(out).items():
        if name == "inferenceservice.yaml":
            validate_kserve(obj)
        else:
            validate_k8s(obj)
    (c,) = objects(out)["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    assert c["envFrom"] == [{"secretRef": {"name": "ts", "optional": False}}]
