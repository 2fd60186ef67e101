"""The Models pages over real HTTP on 127.0.0.1 and a real project: LightGBM on a sample of
Adult (audited with every section) whose demographic parity fails the gate, its threshold
mitigation that passes, a version carrying torch-shaped evidence and one with none. Pages
render and escape, the JSON gives the evidence and its figures, alias moves pass or are
refused by the gates and are recorded with what the gates said, an override needs a reason
and the admin scope, CSRF is enforced, and the model card is shown in place and
downloadable."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from html.parser import HTMLParser
from typing import Any

import pytest
import yaml

from keel import registry
from keel.audit import alias_trail, audit, get_evidence, mitigate, save_evidence
from keel.data import ingest
from keel.datasets import adult
from keel.project import init, open_project
from keel.train import train
from keel.ui import start
from keel.ui._models_card import clean_card_html
from keel.ui._models_figures import evidence_figures, figure_html, wilson
from tests.ui._ui_helpers import XSS, get, get_json

NAME = "adult"
WHY_XSS = "<b>bold</b> move"
DESC_XSS = '"><img src=x onerror=alert(3)>'
CARD_XSS = "<script>alert('card')</script> pre-screening"
REASON = "risk committee accepted the gap, ticket RISK-42 <i>"


def _write_settings(root, audit_settings):
    cfg = root / "keel.yaml"
    settings = yaml.safe_load(cfg.read_text())
    settings["audit"] = audit_settings
    settings["card"] = {"intended_use": CARD_XSS, "limitations": [XSS]}
    cfg.write_text(yaml.safe_dump(settings))


def _torch_doc(base: dict[str, Any]) -> dict[str, Any]:
    """Evidence shaped as keel.audit writes it for a torch network (FGSM/PGD by ε through ART,
    Integrated Gradients with its completeness check, DP-SGD's spent ε)."""
    rows = [
        {"eps": e, "accuracy": a, "success_rate": s, "max_linf": e}
        for e, a, s in ((0.0, 0.97, 0.0), (0.05, 0.81, 0.17), (0.1, 0.52, 0.46), (0.2, 0.12, 0.88))
    ]

    def attack() -> dict[str, Any]:
        keys = {"eps_" + f"{r['eps']:g}".replace(".", "_"): r for r in rows}
        return {
            "supported": True,
            "norm": "linf",
            "eps": 0.1,
            "accuracy_under_attack": 0.52,
            "success_rate": 0.46,
            **keys,
            "by_eps": rows,
            "n_rows": 200,
        }

    return {
        "format": 1,
        "model": {**base["model"], "ref": f"{NAME}/3", "version": 3, "flavor": "torch"},
        "data": base["data"],
        "settings": base["settings"],
        "performance": base["performance"],
        "explanations": {
            "method": "integrated_gradients",
            "space": "log_odds",
            "class": ">50K",
            "baseline": "mean of the background's transformed features",
            "global": {"mean_abs_attribution": {"age": 0.31, "hours-per-week": 0.12, XSS: 0.05}},
            "completeness": {
                "max_relative_gap": 0.00042,
                "mean_relative_gap": 0.0001,
                "tolerance": 0.001,
                "passed": True,
                "rows": 500,
                "rows_within_tolerance": 500,
            },
        },
        "robustness": {"fgsm": attack(), "pgd": attack(), "clean_accuracy": 0.97},
        "privacy": {
            "mia": base["privacy"]["mia"],
            "dp": {
                "differentially_private": True,
                "epsilon": 2.93,
                "delta": 1e-5,
                "target_epsilon": 3.0,
                "max_grad_norm": 1.0,
                "mechanism": "DP-SGD (Opacus)",
            },
        },
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """adult/1: LightGBM, every section audited, fails the parity rule; adult/2: its
    threshold mitigation, passes; adult/3: torch-shaped evidence; adult/4: no evidence.
    candidate -> 1 (not gated), production -> 2 (gated, passed)."""
    root = tmp_path_factory.mktemp("ui-models") / "proj"
    root.mkdir()
    adult("train").sample(1500, random_state=3).to_csv(root / "adult.csv", index=False)
    init(root, name="models").close()
    _write_settings(root, {"sensitive": ["sex"]})
    with open_project(root) as proj:
        store = proj.store
        ingest(store, root / "adult.csv", name="adult")
        run = train(store, "adult", "income", params={"n_estimators": 20}, seed=0)
        v1 = run.register(store, NAME, DESC_XSS)
        ev1 = audit(store, v1.ref, n_boot=20, sample=100, seed=1)
        v2 = mitigate(store, v1.ref, "threshold", "sex").version
        ev2 = audit(store, v2.ref, sections=["performance", "fairness"], n_boot=20, seed=1)
        v3 = registry.register(
            store,
            NAME,
            artifact_sha=v1.artifact_sha,
            flavor="torch",
            task="classification",
            input_schema=v1.input_schema,
            output_schema=v1.output_schema,
            description="torch-shaped evidence",
        )
        save_evidence(store, v3.ref, _torch_doc(ev1.doc))
        registry.register(
            store,
            NAME,
            artifact_sha=v1.artifact_sha,
            flavor="lightgbm",
            task="classification",
            input_schema=v1.input_schema,
            output_schema=v1.output_schema,
        )
        registry.set_tag(store, v1.ref, "note", XSS)
    dp = [e.doc["fairness"]["sex"]["demographic_parity_difference"]["value"] for e in (ev1, ev2)]
    assert dp[1] < dp[0], dp  # the mitigation narrows the gap: the bar goes between them
    rule = f"fairness.sex.demographic_parity_difference <= {(dp[0] + dp[1]) / 2:.6f}"
    _write_settings(root, {"sensitive": ["sex"], "policy": ["performance.roc_auc >= 0.6", rule]})
    with open_project(root) as proj:
        registry.set_alias(proj.store, f"{NAME}/1", "candidate", why=WHY_XSS)
        registry.set_alias(proj.store, f"{NAME}/2", "production", why="passes")
    return root


@pytest.fixture(scope="module")
def served(project):
    with open_project(project) as proj, start(proj.store) as ui:
        yield ui, proj.store


# -- helpers -----------------------------------------------------------------------------------


def post(
    ui: Any, path: str, body: Any, *, origin: str | None = "self", csrf: bool = True, key=None
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if origin is not None:
        headers["origin"] = ui.url if origin == "self" else origin
    if csrf:
        headers["x-keel-csrf"] = "1"
    if key:
        headers["authorization"] = f"Bearer {key}"
    req = urllib.request.Request(ui.url + path, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def html(ui: Any, path: str) -> str:
    status, _, body = get(ui.url + path)
    assert status == 200, (path, status, body[:300])
    return body.decode("utf-8")


def production(store: Any) -> int:
    return registry.get_version(store, f"{NAME}@production").version


def trail_len(store: Any) -> int:
    return len(registry.alias_history(store, NAME))


class _Markup(HTMLParser):
    """Every element with its attributes, to check what a page could run."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.elements.append((tag, dict(attrs)))


def assert_inert(text: str) -> None:
    """No script but our own files and the inert JSON block, no event handler, no inline
    style, no frame, no link out of the dashboard."""
    parser = _Markup()
    parser.feed(text)
    for tag, attrs in parser.elements:
        if tag == "script":
            assert attrs.get("src", "").startswith("/static/") or attrs.get("type") == (
                "application/json"
            ), attrs
        assert tag not in ("iframe", "object", "embed", "img", "style"), tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name != "style", (tag, attrs)
            if name in ("href", "src", "action"):
                assert value and value.startswith(("/", "#")), (tag, name, value)


# -- pages -------------------------------------------------------------------------------------


def test_models_page_lists_models_with_versions_and_aliases(served):
    ui, _ = served
    text = html(ui, "/models")
    assert 'data-model="adult"' in text and 'href="/models/adult"' in text
    assert 'href="/models/adult/2">production → 2</a>' in text
    assert 'href="/models/adult/1">candidate → 1</a>' in text
    versions = re.search(r'<td class="versions">(.*?)</td>', text).group(1)
    assert re.findall(r'href="/models/adult/(\d)"', versions) == ["4", "3", "2", "1"]
    assert "demographic_parity_difference" in text  # the policy
    assert 'data-testid="coming-soon"' not in text
    assert_inert(text)
    status, body = get_json(ui.url + "/api/models")
    assert status == 200
    (model,) = body["models"]
    assert (model["name"], model["latest"], model["versions"]) == (NAME, 4, 4)
    assert model["aliases"].items() >= {"candidate": 1, "production": 2}.items()
    assert body["policy"]["gated_aliases"] == ["production"]


def test_models_page_of_an_empty_store_says_how_to_register(tmp_path):
    from keel.store import Store

    store = Store.open(f"sqlite:///{tmp_path}/store.db", tmp_path / "blobs")
    try:
        with start(store) as ui:
            text = html(ui, "/models")
            assert "No model is registered yet" in text
            assert get_json(ui.url + "/api/models")[1]["models"] == []
    finally:
        store.close()


def test_model_page_shows_aliases_versions_gates_and_history(served):
    ui, _ = served
    text = html(ui, f"/models/{NAME}")
    assert_inert(text)
    rows = dict(re.findall(r'data-testid="version-row" data-version="(\d)">(.*?)</tr>', text, re.S))
    assert set(rows) == {"1", "2", "3", "4"}
    assert "fails 1 of 2" in rows["1"] and "demographic_parity_difference" in rows["1"]
    assert "passes" in rows["2"] and "no evidence" in rows["4"]
    assert re.search(r'data-alias="production" data-gate="passed"', text)
    assert re.search(r'data-alias="candidate" data-gate="not_gated"', text)
    # the form the dashboard's script posts, with every version to choose from
    form = re.search(r'<form class="alias-form".*?</form>', text, re.S).group(0)
    assert 'action="/api/models/adult/aliases"' in form
    assert re.findall(r'<option value="(\d)"', form) == ["4", "3", "2", "1"]
    assert 'name="why"' in form and 'name="override"' in form and 'type="submit"' in form
    # the focus is the version production points at: its gates and evidence
    assert 'class="focus" data-version="2"' in text
    assert 'data-testid="gate-verdict">adult/2 passes the gates' in text


def test_a_version_asked_for_in_the_query_is_the_model_pages_focus(served):
    # the lineage graph and the Releases page link to /models/<name>?version=N
    ui, _ = served
    text = html(ui, f"/models/{NAME}?version=1")
    assert 'class="focus" data-version="1"' in text
    assert 'data-testid="gate-verdict">adult/1 fails the gates' in text
    status, _, body = get(ui.url + f"/models/{NAME}?version=9")
    assert status == 404 and b"no version &#x27;9&#x27; (newest is 4)" in body


def test_version_page_shows_gates_per_rule_and_the_evidence_as_figures(served):
    ui, _ = served
    text = html(ui, f"/models/{NAME}/1")
    assert_inert(text)
    checks = re.findall(r'data-testid="gate-check" data-passed="(\w+)">.*?<code>(.*?)</code>', text)
    assert [(p, r.split(" ")[0]) for p, r in checks] == [
        ("true", "performance.roc_auc"),
        ("false", "fairness.sex.demographic_parity_difference"),
    ]
    sections = set(re.findall(r'data-section="(\w+)" data-testid="figure"', text))
    assert sections == {"performance", "fairness", "explanations", "robustness", "privacy"}
    for title in (
        "Hold-out metrics",
        "Calibration",
        "Worst slices by accuracy",
        "Disparities by sex",
        "Selection rate by sex",
        "Top features (mean |SHAP|)",
        "hopskipjump: attack success by budget",
        "counterfactual: attack success by budget",
        "Accuracy under noise",
        "Membership inference: attack AUC",
        "Differential privacy",
    ):
        assert f'<span class="fig-title">{title}</span>' in text, title
    # each chart is an image with a name, and each mark carries its exact figure
    assert text.count('<svg class="chart" role="img" aria-label="') >= 9
    assert 'data-testid="card"' in text and "Model card: adult/1" in text


def test_a_version_without_evidence_says_so(served):
    ui, _ = served
    text = html(ui, f"/models/{NAME}/4")
    assert 'data-testid="no-evidence"' in text and "keel audit adult/4" in text
    assert 'data-testid="gates-error"' in text and 'data-testid="card-missing"' in text
    status, body = get_json(ui.url + f"/api/models/{NAME}/4/evidence")
    assert status == 404 and "adult/4 has no evidence" in body["error"]["message"]


def test_markup_stays_text_on_every_models_page(served):
    ui, _ = served
    for path in ("/models", f"/models/{NAME}", f"/models/{NAME}/1", f"/models/{NAME}/3"):
        text = html(ui, path)
        for raw in (XSS, WHY_XSS, DESC_XSS, CARD_XSS, "<i>"):
            assert raw not in text, (path, raw)
        assert_inert(text)
    model = html(ui, f"/models/{NAME}")
    assert "&lt;b&gt;bold&lt;/b&gt; move" in model  # the move's why
    version = html(ui, f"/models/{NAME}/1")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in version  # the tag
    assert "&quot;&gt;&lt;img src=x onerror=alert(3)&gt;" in version  # the description
    assert "&lt;script&gt;alert(&#x27;card&#x27;)&lt;/script&gt;" in version  # the card
    torch = html(ui, f"/models/{NAME}/3")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in torch  # a feature name in a chart


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/models/nope", "model &#x27;nope&#x27; is not registered"),
        ("/models/nope/1", "model &#x27;nope&#x27; is not registered"),
        (f"/models/{NAME}/99", "no version 99"),
        (f"/models/{NAME}/0", "no version &#x27;0&#x27;"),
        (f"/models/{NAME}/latest", "no version &#x27;latest&#x27;"),
        ("/models/%3Cscript%3Ealert(1)%3C%2Fscript%3E", "&#x27;&lt;script&gt;alert(1)&lt;"),
        (f"/models/{NAME}/99/card.md", "no version 99"),
    ],
)
def test_an_unknown_model_or_version_is_a_404_that_names_it(served, path, named):
    ui, _ = served
    status, _, body = get(ui.url + path)
    text = body.decode()
    assert status == 404 and named in text, text[-600:]
    assert "<script>alert" not in text and "Traceback" not in text


@pytest.mark.parametrize(
    ("path", "named"),
    [
        ("/api/models/nope", "'nope'"),
        (f"/api/models/{NAME}/7", "no version 7"),
        (f"/api/models/{NAME}/7/evidence", "no version 7"),
        (f"/api/models/{NAME}/1/evidence?evidence=999", "no evidence 999"),
    ],
)
def test_the_api_answers_404_naming_what_is_missing(served, path, named):
    ui, _ = served
    status, body = get_json(ui.url + path)
    assert status == 404 and body["error"]["code"] == "not_found"
    assert named in body["error"]["message"]


# -- the evidence as data ----------------------------------------------------------------------


def _figure(figures: list[dict], title: str) -> dict:
    found = [f for f in figures if f["title"] == title]
    assert len(found) == 1, [f["title"] for f in figures]
    return found[0]


def test_the_evidence_api_gives_the_document_and_its_figures(served):
    ui, store = served
    status, body = get_json(ui.url + f"/api/models/{NAME}/1/evidence")
    assert status == 200
    ev = get_evidence(store, f"{NAME}/1")
    assert body["id"] == ev.id and body["doc"] == json.loads(json.dumps(ev.doc))
    doc, figs = ev.doc, body["figures"]
    perf = _figure(figs, "Hold-out metrics")
    acc = next(r for r in perf["rows"] if r[0] == "accuracy")
    assert acc[1:] == [doc["performance"]["accuracy"][k] for k in ("value", "ci_low", "ci_high")]
    assert "log_loss" in [r[0] for r in _figure(figs, "Errors and losses")["rows"]]
    cal = _figure(figs, "Calibration")
    assert cal["points"] == doc["performance"]["calibration"]["reliability"]
    dis = _figure(figs, "Disparities by sex")
    dpd = next(r for r in dis["rows"] if r[0] == "demographic_parity_difference")
    assert dpd[2] <= dpd[1] <= dpd[3]
    sel = _figure(figs, "Selection rate by sex")
    groups = {g["key"]: g for g in doc["fairness"]["sex"]["groups"]}
    for key, rate, low, high in sel["rows"]:
        g = groups[key]
        assert rate == g["selection_rate"] and low <= rate <= high
        assert (low, high) == pytest.approx(wilson(g["tp"] + g["fp"], g["count"]))
    top = _figure(figs, "Top features (mean |SHAP|)")["rows"]
    shap = doc["explanations"]["global"]["mean_abs_shap"]
    assert top[0] == [max(shap, key=shap.get), max(shap.values())]
    # the valid-row attacks are drawn from their curve (the counterfactual search has no ε)
    for attack in ("hopskipjump", "counterfactual"):
        rep = doc["robustness"][attack]
        fig = _figure(figs, f"{attack}: attack success by budget")
        points = [[c["budget"], c["success_rate"]] for c in rep["curve"]]
        assert fig["series"][0]["points"] == points and len(points) > 1
        assert fig["x_label"] == f"budget: {rep['budget_unit']}"
    assert "by_eps" not in doc["robustness"]["counterfactual"]
    mia = _figure(figs, "Membership inference: attack AUC")
    assert mia["refs"] == [["chance", 0.5]]
    assert dict(mia["rows"])["threshold"] == doc["privacy"]["mia"]["threshold"]["auc"]


def test_torch_evidence_shows_robustness_by_epsilon_ig_completeness_and_dp_epsilon(served):
    ui, _ = served
    status, body = get_json(ui.url + f"/api/models/{NAME}/3/evidence")
    assert status == 200
    figs = body["figures"]
    for attack in ("fgsm", "pgd"):
        fig = _figure(figs, f"{attack}: accuracy and attack success by ε")
        assert fig["x_label"] == "ε (linf)"
        assert fig["series"][0]["points"] == [[0.0, 0.97], [0.05, 0.81], [0.1, 0.52], [0.2, 0.12]]
        assert fig["series"][1]["points"][-1] == [0.2, 0.88]
    ig = dict(_figure(figs, "Integrated Gradients completeness")["rows"])
    assert ig["passed"] == "yes" and ig["max relative gap"] == "0.00042"
    assert ig["rows within tolerance"] == "500 of 500"
    dp = dict(_figure(figs, "Differential privacy")["rows"])
    assert dp["ε spent"] == "2.93" and dp["target ε"] == "3" and dp["δ"] == "1e-05"
    top = _figure(figs, "Top features (mean |attribution|)")["rows"]
    assert top[0] == ["age", 0.31]
    text = html(ui, f"/models/{NAME}/3")
    assert "fgsm: accuracy and attack success by ε" in text and "ε spent" in text
    assert "Integrated Gradients completeness" in text


def test_robustness_figures_come_from_each_attacks_curve():
    """The valid-row attacks report a ``curve`` by budget (the counterfactual search has no
    ``by_eps`` at all); attacks reported by ε alone still draw from ``by_eps``."""
    curve = [{"budget": k, "success_rate": s} for k, s in ((1, 0.2), (2, 0.35), (3, 0.4))]
    by_eps = [{"eps": e, "accuracy": 1 - e, "success_rate": e} for e in (0.0, 0.1, 0.2)]
    doc = {
        "robustness": {
            "about": {"frozen": ["sex"]},
            "counterfactual": {
                "curve": curve,
                "norm": "features changed",
                "budget_unit": "features changed (valid rows)",
                "max_features": 3,
                "success_rate": 0.4,
                "accuracy_under_attack": 0.6,
                "n_rows": 50,
            },
            "fgsm": {"supported": True, "norm": "linf", "eps": 0.1, "by_eps": by_eps},
        }
    }
    figs = evidence_figures(doc)
    cf = _figure(figs, "counterfactual: attack success by budget")
    assert cf["series"] == [
        {"name": "attack success rate", "points": [[1, 0.2], [2, 0.35], [3, 0.4]]}
    ]
    assert cf["x_label"] == "budget: features changed (valid rows)"
    assert "50 correctly classified" in cf["note"] and "budget 3: success 0.4" in cf["note"]
    assert "accuracy under attack 0.6" in cf["note"]
    drawn = figure_html(cf)
    assert drawn.count("<title>") >= 3 and "counterfactual: attack success by budget" in drawn
    fgsm = _figure(figs, "fgsm: accuracy and attack success by ε")
    assert fgsm["series"][0]["points"] == [[0.0, 1.0], [0.1, 0.9], [0.2, 0.8]]


def test_wilson_intervals():
    assert wilson(0, 10)[0] == 0 and wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(3, 0) == (None, None)


def test_gates_and_version_api(served):
    ui, _ = served
    _, one = get_json(ui.url + f"/api/models/{NAME}/1/gates")
    assert one["result"]["passed"] is False
    assert [c["passed"] for c in one["result"]["checks"]] == [True, False]
    assert one["policy"]["gated_aliases"] == ["production"]
    _, two = get_json(ui.url + f"/api/models/{NAME}/2")
    assert two["version"]["aliases"] == ["production"] and two["gates"]["passed"] is True
    assert [e["ref"] for e in two["evidence"]] == [f"{NAME}/2"]
    _, model = get_json(ui.url + f"/api/models/{NAME}")
    assert [v["version"] for v in model["versions"]] == [4, 3, 2, 1]
    assert model["aliases"].items() >= {"candidate": 1, "production": 2}.items()
    # the history route is not read as a version
    _, hist = get_json(ui.url + f"/api/models/{NAME}/aliases")
    assert [m["alias"] for m in hist["history"]][:2] == ["candidate", "production"]


# -- moving an alias ---------------------------------------------------------------------------


def test_a_refused_move_names_the_failed_rules_and_changes_nothing(served):
    ui, store = served
    before, moves = production(store), trail_len(store)
    overrides = len(store.events("gate_override"))
    status, body = post(ui, f"/api/models/{NAME}/aliases", {"alias": "production", "version": 1})
    assert status == 409, body
    err = body["error"]
    assert err["code"] == "gates_failed" and err["version"] == 1 and err["request_id"]
    assert "fairness.sex.demographic_parity_difference" in err["message"]
    assert "Nothing moved" in err["message"] and "--override" not in err["message"]
    assert [c["path"] for c in err["failed"]] == ["fairness.sex.demographic_parity_difference"]
    assert production(store) == before and trail_len(store) == moves
    assert len(store.events("gate_override")) == overrides


def test_a_move_that_passes_is_recorded_with_its_gate_results(served):
    ui, store = served
    status, body = post(
        ui, f"/api/models/{NAME}/aliases", {"alias": "production", "version": "2", "why": "again"}
    )
    assert status == 200, body
    assert body["model"] == f"{NAME}/2" and body["alias"] == "production"
    gate = body["move"]["gate"]
    assert gate["status"] == "passed" and [c["passed"] for c in gate["checks"]] == [True, True]
    last = alias_trail(store, NAME)[-1]
    assert last["why"] == "again" and last["gate"]["status"] == "passed"
    # an alias no policy gates moves without gates, and says so
    status, body = post(ui, f"/api/models/{NAME}/aliases", {"alias": "canary", "version": 4})
    assert status == 200 and body["move"]["gate"] == {"status": "not_gated"}
    text = html(ui, f"/models/{NAME}")
    assert re.search(r'data-alias="canary" data-gate="not_gated"', text)


def test_an_override_needs_a_reason_and_is_recorded_with_the_failed_rules(served):
    ui, store = served
    moves = trail_len(store)
    for empty in ("", "   "):
        body = {"alias": "production", "version": 1, "override": empty}
        status, answer = post(ui, f"/api/models/{NAME}/aliases", body)
        assert status == 400 and answer["error"]["message"].startswith("override: give the reason")
    assert production(store) == 2 and trail_len(store) == moves
    body = {"alias": "production", "version": 1, "why": "ship it", "override": REASON}
    status, answer = post(ui, f"/api/models/{NAME}/aliases", body)
    assert status == 200, answer
    gate = answer["move"]["gate"]
    assert gate["status"] == "overridden" and gate["override"]["reason"] == REASON
    assert gate["override"]["failed"][0].startswith("fairness.sex.demographic_parity_difference")
    assert production(store) == 1
    text = html(ui, f"/models/{NAME}")
    assert "risk committee accepted the gap, ticket RISK-42 &lt;i&gt;" in text
    assert re.search(r'data-alias="production" data-gate="overridden"', text)
    # back to the version that passes
    assert post(ui, f"/api/models/{NAME}/aliases", {"alias": "production", "version": 2})[0] == 200


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"alias": "production", "version": 99}, 404, "model 'adult' has no version 99"),
        ({"alias": "production", "version": "x"}, 400, "version: expected a version number"),
        ({"alias": "production", "version": True}, 400, "version: expected a version number"),
        ({"alias": "production"}, 400, "version: give the version"),
        ({"version": 2}, 400, "alias: give the alias"),
        ({"alias": "9lives", "version": 2}, 400, "alias: expected a letter"),
        ({"alias": "production", "version": 2, "why": 3}, 400, "why: expected text"),
        ({"alias": "production", "version": 2, "who": "me"}, 400, "who: unknown field"),
        ({"alias": "production", "version": 2, "why": "x" * 2001}, 400, "why: at most 2000"),
        ([1, 2], 400, "expected a JSON object"),
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "the request body is empty"),
        (b" " * 70_000, 400, "the request body is over"),
    ],
)
def test_a_malformed_move_says_what_is_wrong_and_changes_nothing(served, body, status, message):
    ui, store = served
    moves = trail_len(store)
    got, answer = post(ui, f"/api/models/{NAME}/aliases", body)
    assert got == status and message in answer["error"]["message"], answer
    assert trail_len(store) == moves and production(store) == 2


def test_a_move_on_an_unknown_model_is_a_404(served):
    ui, store = served
    got, answer = post(ui, "/api/models/nope/aliases", {"alias": "production", "version": 1})
    assert got == 404 and "'nope'" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("origin", "csrf"), [("self", False), ("http://evil.example", True), (None, True)]
)
def test_a_move_without_the_csrf_header_or_from_another_origin_is_refused(served, origin, csrf):
    ui, store = served
    moves = trail_len(store)
    body = {"alias": "production", "version": 1, "override": "forged"}
    status, answer = post(ui, f"/api/models/{NAME}/aliases", body, origin=origin, csrf=csrf)
    assert status == 403 and answer["error"]["code"] == "forbidden"
    assert "X-Keel-CSRF" in answer["error"]["message"]
    assert trail_len(store) == moves and production(store) == 2


def test_with_keys_a_move_needs_the_admin_scope_and_records_the_key(project, tmp_path):
    from keel.serve import KeyRing, add_key

    path = tmp_path / "keys.json"
    admin, _ = add_key(path, "ops-admin", ["admin"])
    reader, _ = add_key(path, "viewer", ["predict"])
    with open_project(project) as proj, start(proj.store, keys=KeyRing.from_file(path)) as ui:
        store = proj.store
        moves = trail_len(store)
        body = {"alias": "staging", "version": 2, "why": "by key"}
        assert post(ui, f"/api/models/{NAME}/aliases", body)[0] == 401
        status, answer = post(ui, f"/api/models/{NAME}/aliases", body, key=reader)
        assert status == 403 and "admin" in answer["error"]["message"]
        assert trail_len(store) == moves
        # a reader sees the pages, and the form says what it needs
        status, _, page = get(ui.url + f"/models/{NAME}", {"authorization": f"Bearer {reader}"})
        assert status == 200 and b"Needs an API key with the admin scope" in page
        status, answer = post(ui, f"/api/models/{NAME}/aliases", body, key=admin)
        assert status == 200, answer
        assert alias_trail(store, NAME)[-1]["who"] == "ops-admin"


# -- the model card ----------------------------------------------------------------------------


def test_the_card_is_shown_in_place_through_the_allowlist(served):
    ui, _ = served
    text = html(ui, f"/models/{NAME}/1")
    card = re.search(
        r'<div class="card-doc" data-testid="card">(.*?)</section>\s*</article>', text, re.S
    )
    assert card, text[-2000:]
    inner = card.group(1)
    assert "Model card: adult/1" in inner and "Fairness" in inner and "<svg" in inner
    assert "<style" not in inner and "style=" not in inner and "<main" not in inner
    ids = re.findall(r' id="([^"]+)"', inner)
    assert ids and all(i.startswith("card-") for i in ids)
    assert all(h.startswith("#card-") for h in re.findall(r' href="([^"]+)"', inner))
    assert not re.search(r"<h[12][ >]", inner)  # the card's headings sit under the page's


def test_the_card_downloads_as_markdown_and_html(served):
    ui, store = served
    status, headers, body = get(ui.url + f"/models/{NAME}/1/card.md")
    assert status == 200 and headers["content-type"].startswith("text/markdown")
    assert headers["content-disposition"] == 'attachment; filename="adult-1-card.md"'
    md = body.decode()
    assert md.startswith("# Model card: adult/1") and CARD_XSS in md  # Markdown is text
    status, headers, body = get(ui.url + f"/models/{NAME}/1/card.html")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert headers["content-disposition"] == 'attachment; filename="adult-1-card.html"'
    page = body.decode()
    assert "<style>" in page and "<script" not in page  # keel card's self-contained file
    assert "&lt;script&gt;alert(&#x27;card&#x27;)" in page
    assert "default-src 'none'" in headers["content-security-policy"]
    status, _, _ = get(ui.url + f"/models/{NAME}/4/card.html")
    assert status == 404  # no evidence, no card
    status, body = get_json(ui.url + f"/api/models/{NAME}/1/card")
    assert status == 200 and body["ref"] == f"{NAME}/1" and "compliance" in body


def test_the_cards_figures_come_through_the_allowlist(served):
    ui, store = served
    from html import unescape

    from keel.audit import model_card

    page = model_card(store, f"{NAME}/1").html()
    text = html(ui, f"/models/{NAME}/1")
    inner = re.search(
        r'<div class="card-doc" data-testid="card">(.*?)</section>\s*</article>', text, re.S
    ).group(1)

    def captions(s: str) -> list[str]:
        return [unescape(c) for c in re.findall(r"<figcaption>(.*?)</figcaption>", s, re.S)]

    def marks(s: str) -> list[tuple[str, ...]]:
        found = re.findall(r'data-series="([^"]*)" data-x="([^"]*)" data-y="([^"]*)"', s)
        return sorted((unescape(a), x, y) for a, x, y in found)

    assert page.count("<figure>") >= 2 and inner.count("<figure>") == page.count("<figure>")
    assert captions(inner) == captions(page) and any("From evidence" in c for c in captions(page))
    assert marks(page) and marks(inner) == marks(page)  # each point keeps its exact figures
    assert re.findall(r'data-value="([^"]*)"', inner) == re.findall(r'data-value="([^"]*)"', page)
    assert 'viewBox="0 0 ' in inner  # SVG attribute names keep their case


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        '<p onclick="alert(1)">x</p>',
        '<a href="javascript:alert(1)">x</a>',
        '<a href="https://evil.example/">x</a>',
        "<img src=x onerror=alert(1)>",
        "<iframe srcdoc='<script>alert(1)</script>'></iframe>",
        '<svg><foreignObject><a xlink:href="javascript:alert(1)">x</a></foreignObject></svg>',
        "<style>body{display:none}</style>",
        '<p style="background:url(//evil)">x</p>',
        "<!-- <script>alert(1)</script> -->",
        "<math><mi><style><img src=x onerror=alert(1)></style></mi></math>",
        "<svg><script>alert(1)</script><animate onbegin=alert(1) attributeName=x></svg>",
        '<table><td title="</table><img src=x onerror=alert(1)>">x</td></table>',
        "<textarea></p><img src=x onerror=alert(1)></textarea>",
    ],
)
def test_the_card_allowlist_keeps_nothing_that_could_run(hostile):
    cleaned = clean_card_html(f"<html><body><p>card</p>{hostile}<p>end</p></body></html>")
    assert_inert(cleaned)
    lowered = cleaned.lower()
    for bad in ("<script", "javascript:", "onerror", "onclick", "onbegin", "<img", "<iframe"):
        assert bad not in lowered, cleaned
    assert "card" in cleaned and cleaned.endswith("<p>end</p>")
    assert clean_card_html(f"<body>{cleaned}</body>") == cleaned  # a fixed point
