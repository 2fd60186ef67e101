"""Model cards claim only what stored evidence shows: compliance statuses (a plan alone is
partial, records make a point present), lineage facts followed through mitigations (search,
seed, split inherited from the version mitigated from), and pictures drawn exactly when
their evidence is there, with the evidence's figures."""

from __future__ import annotations

import re
from xml.etree import ElementTree

import pandas as pd
import pytest
import yaml

from keel import project as keel_project
from keel import registry
from keel.audit import mitigate
from keel.audit._evidence import audit, get_evidence, save_evidence
from keel.audit.card import model_card
from keel.data import ingest
from keel.datasets import adult
from keel.train import get_run, search, train

CARD = {
    "intended_use": "Pre-screening of loan applications; an officer decides.",
    "users": ["credit officers", "applicants (affected)"],
    "limitations": ["1994 US census data"],
    "human_oversight": "An officer reviews every refusal.",
    "monitoring": "Weekly drift and delayed-label accuracy; owner: risk team.",
}
AUDIT = {"sensitive": ["sex"], "policy": ["performance.roc_auc >= 0.5"]}
ALERTS = [{"name": "input-drift", "condition": "drift.share > 0.5"}]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A real search → register → mitigate chain on 1,500 Adult rows: adult/1 from a
    two-trial search; adult/2 reweighed, adult/3 thresholded, adult/4 expgrad from adult/1;
    adult/5 thresholded from adult/2; adult/6 trained with given parameters."""
    root = tmp_path_factory.mktemp("card-ev") / "proj"
    root.mkdir()
    adult("train").sample(1500, random_state=3).to_csv(root / "adult.csv", index=False)
    keel_project.init(root, name="card-ev").close()
    cfg = root / "keel.yaml"
    settings = yaml.safe_load(cfg.read_text())
    settings |= {"audit": AUDIT, "card": CARD, "monitor": {"alerts": ALERTS}}
    cfg.write_text(yaml.safe_dump(settings))
    proj = keel_project.open_project(root)
    st = proj.store
    ingest(st, root / "adult.csv", name="adult")
    found = search(
        st,
        "adult",
        "income",
        n_trials=2,
        executor="inline",
        seed=4,
        params={"n_estimators": 20},
        progress=False,
    )
    base = found.final.register(st, "adult")
    v = {"base": base}
    v["reweigh"] = mitigate(st, base.ref, "reweigh", "sex").version
    v["threshold"] = mitigate(st, base.ref, "threshold", "sex", seed=7).version
    v["expgrad"] = mitigate(st, base.ref, "expgrad", "sex", max_iter=3).version
    v["twice"] = mitigate(st, v["reweigh"].ref, "threshold", "sex").version
    v["plain"] = train(st, "adult", "income", params={"n_estimators": 10}, seed=2).register(
        st, "adult"
    )
    audit(
        st,
        base.ref,
        sections=["performance", "fairness", "robustness", "privacy"],
        n_boot=20,
        sample=60,
    )
    for key in ("reweigh", "threshold", "expgrad", "twice", "plain"):
        audit(st, v[key].ref, sections=["performance", "fairness"], n_boot=20, sample=60)
    yield proj, root, v
    proj.close()


def _rows(card) -> dict[str, dict]:
    return {r["point"]: r for r in card.compliance["annex_iv"] + card.compliance["nist_measure"]}


def _figures(page: str) -> list[tuple[ElementTree.Element, str]]:
    """Each picture of an HTML card: its SVG parsed as XML, and its caption."""
    out = []
    for svg, caption in re.findall(
        r"<figure>(<svg\b.*?</svg>)<figcaption>(.*?)</figcaption></figure>", page, re.S
    ):
        out.append((ElementTree.fromstring(svg), caption))
    return out


def _section_html(page: str, sid: str) -> str:
    m = re.search(rf'<section id="{sid}">(.*?)</section>', page, re.S)
    assert m, sid
    return m.group(1)


def _points(svg: ElementTree.Element) -> list[dict[str, str]]:
    return [dict(e.attrib) for e in svg.iter() if "data-x" in e.attrib]


# ------------------------------------------------------------------------ inheritance


@pytest.mark.parametrize("key", ["reweigh", "threshold", "expgrad"])
def test_a_mitigated_version_inherits_its_parents_search_and_seed(chain, key):
    proj, _, v = chain
    base = v["base"]
    base_run = get_run(proj.store, base.run_id)
    card = model_card(proj.store, v[key].ref)
    t = card.sections["training"]
    assert t["mitigated_from"] == [{"ref": base.ref, "method": key}]
    assert t["search"]["run_id"] == base_run["tags"]["search_run"]
    assert t["search"]["inherited_from"] == base.ref and t["search"]["n_trials"] == 2
    assert t["seed"] == base_run["seed"] == 4 and t["inherited"]["seed"] == base.ref
    md = card.markdown()
    assert "No hyper-parameter search" not in md
    assert f"Inherited from {base.ref}: the parameters come from the search" in md
    assert f"- **seed**: 4 (inherited from {base.ref})" in md
    if key == "threshold":  # its own seed keys the row draws, not the training
        assert t["mitigation_seed"] == 7
        assert "- **mitigation seed (row draws)**: 7" in md


def test_inheritance_follows_a_chain_of_mitigations(chain):
    proj, _, v = chain
    card = model_card(proj.store, v["twice"].ref)
    t = card.sections["training"]
    assert [c["ref"] for c in t["mitigated_from"]] == [v["reweigh"].ref, v["base"].ref]
    assert t["search"]["inherited_from"] == v["base"].ref
    assert t["inherited"]["seed"] == v["base"].ref
    assert f"lineage {v['twice'].ref} ← {v['reweigh'].ref} ← {v['base'].ref}" in card.markdown()


def test_only_a_version_without_search_in_its_lineage_says_so(chain):
    proj, _, v = chain
    base = model_card(proj.store, v["base"].ref)
    assert base.sections["training"]["search"]["inherited_from"] is None
    assert base.sections["training"]["inherited"] == {}
    assert "Inherited from" not in base.markdown()
    plain = model_card(proj.store, v["plain"].ref)
    assert plain.sections["training"]["search"] is None
    assert "No hyper-parameter search in this version's run" in plain.markdown()


# ------------------------------------------------------------------------ statuses


def test_a_monitoring_plan_alone_is_partial_and_records_make_it_present(chain):
    from keel.monitor import monitor
    from keel.serve import PredictionLog, ingest_labels
    from tests.monitor.test_monitor_run import _entries

    proj, root, v = chain
    st = proj.store
    mv = v["base"]
    before = _rows(model_card(st, mv.ref))
    for point in ("9", "MEASURE 2.4", "MEASURE 3.1"):
        assert before[point]["status"] == "partial", point
        assert before[point]["stated_only"] == ["monitoring plan"]
    assert "predictions logged in deployment" in before["MEASURE 2.4"]["missing"]
    assert before["MEASURE 4.2"]["status"] == "missing"
    nothing = dict(st.settings)
    nothing.pop("monitor")
    nothing["card"] = {k: x for k, x in CARD.items() if k != "monitoring"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(st, "settings", nothing)
        assert _rows(model_card(st, mv.ref))["MEASURE 3.1"]["status"] == "missing"

    test = adult("test").sample(200, random_state=1).reset_index(drop=True)
    with PredictionLog(st) as log:
        log.record(_entries(registry.load(st, mv.ref), test, mv.version, 0, 1_000_000.0))
    logged = _rows(model_card(st, mv.ref))
    assert logged["MEASURE 2.4"]["status"] == "partial"  # logged, not yet watched
    assert logged["MEASURE 2.4"]["missing"] == ["monitoring results from deployment"]
    assert any(
        b["where"].startswith("prediction log: 200 rows")
        for b in logged["MEASURE 2.4"]["backed_by"]
    )
    pd.DataFrame({"request_id": [f"r{i}" for i in range(200)], "y": list(test["income"])}).to_csv(
        root / "labels.csv", index=False
    )
    ingest_labels(st, root / "labels.csv", label_col="y")
    monitor(st, "adult", min_labels=50)
    card = model_card(st, mv.ref)
    after = _rows(card)
    for point in ("9", "MEASURE 2.4", "MEASURE 3.1", "MEASURE 4.2"):
        assert after[point]["status"] == "present", (point, after[point])
    assert any(
        "alert rules checked on 1 window" in b["where"] for b in after["MEASURE 3.1"]["backed_by"]
    )
    (p,) = card.sections["monitoring"]["passes"]
    assert p["served"] == mv.ref and p["window"]["rows"] == 200
    part = _section_html(card.html(), "monitoring")
    assert "200 rows in 1 segment(s)" in part and ">checked<" in part
    # the records are this version's: another version of the name gains nothing
    other = _rows(model_card(st, v["plain"].ref))
    assert (
        other["MEASURE 3.1"]["status"] == "partial" and other["MEASURE 4.2"]["status"] == "missing"
    )


def test_statements_are_declarations_or_plans(chain, tmp_path):
    proj, root, v = chain
    st = proj.store
    rows = _rows(model_card(st, v["base"].ref))
    assert rows["1"]["status"] == "present"  # intended use and users: declared, plus records
    assert {b["found"] for b in rows["1"]["backed_by"]} == {"declared", "record"}
    assert rows["3"]["status"] == "partial"  # human oversight is only planned
    assert rows["3"]["stated_only"] == ["human-oversight measures"] and rows["3"]["missing"] == []
    assert rows["MEASURE 3.3"]["status"] == "missing"  # no feedback channel stated
    assert rows["7"]["status"] == rows["8"]["status"] == "missing"
    card = dict(CARD, feedback="Appeals through the branch.", standards=["ISO/IEC 23894:2023"])
    card["declaration_of_conformity"] = "docs/doc-2025.pdf"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(st, "settings", {**st.settings, "card": card})
        rows = _rows(model_card(st, v["base"].ref))
        assert rows["MEASURE 3.3"]["status"] == "partial"  # a channel stated, no record of use
        assert rows["7"]["status"] == "present"  # standards: the project's declaration
        assert rows["8"]["status"] == "partial"  # a place named, no file there
        (root / "docs").mkdir()
        (root / "docs" / "doc-2025.pdf").write_bytes(b"%PDF-1.4 declaration")
        conf = model_card(st, v["base"].ref)
        assert _rows(conf)["8"]["status"] == "present"
        assert conf.sections["conformity"]["declaration_file"]["bytes"] == 20
        assert "file docs/doc-2025.pdf (sha256" in _rows(conf)["8"]["backed_by"][0]["where"]


def test_a_section_that_measured_nothing_backs_nothing(chain):
    proj, _, v = chain
    st = proj.store
    ev = get_evidence(st, v["plain"].ref)
    doc = {k: x for k, x in ev.doc.items() if k not in ("created_at", "created_by")}
    unsupported = {"fgsm": {"supported": False, "reason": "no gradients"}}
    save_evidence(st, v["plain"].ref, {**doc, "robustness": unsupported})
    rows = _rows(model_card(st, v["plain"].ref))
    assert rows["MEASURE 2.7"]["status"] == "missing"
    measured = {"fgsm": {"supported": True, "success_rate": 0.5, "eps": 0.1}}
    save_evidence(st, v["plain"].ref, {**doc, "robustness": measured})
    card = model_card(st, v["plain"].ref)
    rows = _rows(card)
    evid = card.sections["reproducibility"]["evidence_id"]
    assert rows["MEASURE 2.7"]["status"] == "present"
    assert rows["MEASURE 2.7"]["backed_by"][0]["where"] == f"evidence {evid}: robustness section"


# ------------------------------------------------------------------------ pictures


def _expected_curves(rob: dict) -> dict[str, tuple[str, list[tuple[float, float]]]]:
    """Per attack: its norm and the (budget, success rate) points its evidence gives, from
    ``curve`` where it has one, else ``by_eps``."""
    out = {}
    for name, rep in rob.items():
        if not isinstance(rep, dict) or rep.get("supported") is False:
            continue
        if rep.get("curve"):
            pts = [(c["budget"], c["success_rate"]) for c in rep["curve"]]
        elif rep.get("by_eps"):
            pts = [(c["eps"], c["success_rate"]) for c in rep["by_eps"]]
        else:
            continue
        out[name] = (str(rep.get("norm") or "budget"), pts)
    return out


def _drawn(figs) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for svg, _ in figs:
        for p in _points(svg):
            out.setdefault(p["data-series"], []).append((float(p["data-x"]), float(p["data-y"])))
    return out


def test_robustness_pictures_follow_the_evidence(chain):
    proj, _, v = chain
    ev = get_evidence(proj.store, v["base"].ref)
    expected = _expected_curves(ev.doc["robustness"])
    assert expected  # the base's audit attacked it
    figs = _figures(_section_html(model_card(proj.store, v["base"].ref).html(), "robustness"))
    assert len(figs) == len({norm for norm, _ in expected.values()})  # one per budget norm
    drawn = _drawn(figs)
    assert drawn == {name: sorted(pts) for name, (_, pts) in expected.items()}
    captions = " ".join(c for _, c in figs)
    assert f"evidence {ev.id}" in captions
    for name, rep in ev.doc["robustness"].items():
        if name in expected:
            key = "curve" if isinstance(rep, dict) and rep.get("curve") else "by_eps"
            assert f"robustness.{name}.{key}" in captions
    for key in ("threshold", "plain"):  # no robustness section: no picture
        page = model_card(proj.store, v[key].ref).html()
        assert _figures(_section_html(page, "robustness")) == []


def test_robustness_picture_prefers_the_curve(chain):
    proj, _, v = chain
    st = proj.store
    ev = get_evidence(st, v["base"].ref)
    doc = {k: x for k, x in ev.doc.items() if k not in ("created_at", "created_by")}
    curve = [
        {"budget": b, "success_rate": r}
        for b, r in ((0.0, 0.0), (0.1, 0.3), (0.2, 0.45), (0.4, 0.9))
    ]
    by_eps = [{"eps": 0.1, "success_rate": 0.2}, {"eps": 0.3, "success_rate": 0.5}]
    rob = {
        "about": doc["robustness"].get("about", {}),
        "pgd": {"norm": "linf", "n_rows": 60, "curve": curve, "by_eps": by_eps},
        "fgsm": {"norm": "linf", "n_rows": 60, "by_eps": by_eps},
        "zoo": {"supported": False, "reason": "not run", "by_eps": by_eps},
    }
    newer = save_evidence(st, v["base"].ref, {**doc, "robustness": rob})
    page = model_card(st, v["base"].ref, evidence_id=newer.id).html()
    ((svg, caption),) = _figures(_section_html(page, "robustness"))  # both L-infinity
    assert _drawn([(svg, caption)]) == {
        "pgd": [(c["budget"], c["success_rate"]) for c in curve],
        "fgsm": [(0.1, 0.2), (0.3, 0.5)],
    }
    assert "robustness.pgd.curve" in caption and "robustness.fgsm.by_eps" in caption
    assert "zoo" not in caption and "LINF distance" in caption


def test_privacy_pictures(chain):
    proj, _, v = chain
    st = proj.store
    mia = get_evidence(st, v["base"].ref).doc["privacy"]["mia"]
    page = model_card(st, v["base"].ref).html()
    ((svg, caption),) = _figures(_section_html(page, "privacy"))  # not DP: advantage only
    bars = [e for e in svg.iter() if e.tag.endswith("rect") and "data-value" in e.attrib]
    assert [float(b.attrib["data-value"]) for b in bars] == [
        mia["threshold"]["advantage"],
        mia["art_black_box"]["advantage"],
    ]
    assert "privacy.mia.threshold.advantage" in caption
    assert _figures(_section_html(model_card(st, v["plain"].ref).html(), "privacy")) == []

    dp = []
    for eps in (1.0, 8.0):
        mv = train(
            st, "adult", "income", model="dp_logistic_regression", params={"epsilon": eps}, seed=0
        ).register(st, "adult-dp")
        dp.append(
            (mv, audit(st, mv.ref, sections=["performance", "privacy"], n_boot=20, sample=60))
        )
    card = model_card(st, dp[0][0].ref)
    figs = _figures(_section_html(card.html(), "privacy"))
    assert len(figs) == 2
    svg, caption = figs[1]
    pts = _points(svg)
    acc = [p for p in pts if p["data-series"] == "hold-out accuracy"]
    adv = [p for p in pts if p["data-series"] == "membership-inference advantage"]
    assert [float(p["data-x"]) for p in acc] == [1.0, 8.0] and len(adv) == 2
    assert [float(p["data-y"]) for p in acc] == [
        e.doc["performance"]["accuracy"]["value"] for _, e in dp
    ]
    assert [float(p["data-y"]) for p in adv] == [
        e.doc["privacy"]["mia"]["advantage"] for _, e in dp
    ]
    assert [p.get("data-mark") for p in acc] == ["this version", None]
    assert "privacy.dp.epsilon" in caption and f"{dp[1][0].ref} ε 8.000" in caption


def test_a_single_dp_version_has_no_epsilon_picture(chain):
    proj, _, v = chain
    st = proj.store
    mv = train(
        st, "adult", "income", model="dp_gaussian_nb", params={"epsilon": 2.0}, seed=0
    ).register(st, "adult-nb")
    audit(st, mv.ref, sections=["performance", "privacy"], n_boot=20, sample=60)
    card = model_card(st, mv.ref)
    assert len(card.sections["related"]["dp_versions"]) == 1
    ((only, caption),) = _figures(_section_html(card.html(), "privacy"))
    assert "advantage of each attack" in caption


def test_mitigation_trade_off_picture(chain):
    proj, _, v = chain
    st = proj.store
    made = [v["reweigh"], v["threshold"], v["expgrad"]]
    card = model_card(st, v["threshold"].ref)
    ((svg, caption),) = _figures(_section_html(card.html(), "mitigation"))
    pts = _points(svg)
    assert len(pts) == 1 + len(made)  # the base and each mitigation of it
    table = card.sections["mitigation"]
    dpd = table["fairness"]["sex"]["demographic_parity_difference"]
    (base,) = [p for p in pts if p.get("data-mark") == "base"]
    assert (
        float(base["data-x"]) == dpd["before"]
        and float(base["data-y"]) == table["accuracy"]["before"]
    )
    (me,) = [p for p in pts if p.get("data-mark") == "this version"]
    assert float(me["data-x"]) == dpd["after"] and float(me["data-y"]) == table["accuracy"]["after"]
    for mv in made:
        assert any(p["data-series"].startswith(f"{mv.ref}: ") for p in pts)
    assert f"each mitigation of {v['base'].ref}" in caption and "mitigation.json" in caption
    # the base's card compares the mitigations made from it
    base_page = model_card(st, v["base"].ref).html()
    ((svg, _),) = _figures(_section_html(base_page, "mitigation"))
    assert len(_points(svg)) == 1 + len(made)
    # the second mitigation's family is that of its own parent
    ((svg, _),) = _figures(_section_html(model_card(st, v["twice"].ref).html(), "mitigation"))
    assert len(_points(svg)) == 2
    # no mitigation around it: no picture
    assert _figures(_section_html(model_card(st, v["plain"].ref).html(), "mitigation")) == []
