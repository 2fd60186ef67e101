"""Model cards: self-contained HTML, the evidence's figures, missing evidence named as
missing, overrides, the project's statements, and `keel card`."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from xml.etree import ElementTree

import pytest
import yaml

from keel import project as keel_project
from keel import registry
from keel.audit._card_blocks import num
from keel.audit._evidence import audit, get_evidence, save_evidence
from keel.audit.card import model_card, write_card
from keel.cli import main
from keel.data import get_dataset, ingest, load_profile
from keel.datasets import adult
from keel.errors import InvalidInput, NotFound
from keel.train import train

INTENDED = "Pre-screening of loan applications; an officer decides."
CARD = {
    "intended_use": INTENDED,
    "users": ["credit officers", "applicants (affected)"],
    "limitations": ["not validated under age 21 <review>", "1994 US census data"],
}
AUDIT = {
    "sensitive": ["sex"],
    "policy": ["performance.roc_auc >= 0.6", "fairness.sex.demographic_parity_difference <= 0.001"],
}
REASON = "risk committee accepted the sex gap, ticket RISK-42"


@pytest.fixture(scope="module")
def carded(tmp_path_factory):
    root = tmp_path_factory.mktemp("card") / "proj"
    root.mkdir()
    adult("train").sample(2000, random_state=3).to_csv(root / "adult.csv", index=False)
    proj = keel_project.init(root, name="card")
    cfg = root / "keel.yaml"
    settings = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**settings, "audit": AUDIT, "card": CARD}))
    proj.close()
    proj = keel_project.open_project(root)
    ingest(proj.store, root / "adult.csv", name="adult")
    mv = train(proj.store, "adult", "income", params={"n_estimators": 20}, seed=0).register(
        proj.store, "adult"
    )
    ev = audit(
        proj.store,
        mv.ref,
        sections=["performance", "fairness", "explanations"],
        n_boot=20,
        sample=100,
        seed=1,
    )
    registry.set_alias(proj.store, mv.ref, "production", override=REASON)
    yield proj, root, mv, ev
    proj.close()


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        self.tags.append((tag, dict(attrs)))


def _section(md: str, title: str) -> str:
    m = re.search(rf"^## \d+\. {re.escape(title)}\n(.*?)(?=^## \d+\. |\Z)", md, re.M | re.S)
    assert m, title
    return m.group(1).strip()


def test_html_is_self_contained(carded, tmp_path):
    proj, _, mv, ev = carded
    paths = write_card(proj.store, mv.ref, tmp_path / "out", evidence_id=ev.id)
    assert set(paths) == {"markdown", "html"}
    page = paths["html"].read_text(encoding="utf-8")
    parser = _Tags()
    parser.feed(page)
    parser.close()
    tags = {t for t, _ in parser.tags}
    assert "svg" in tags and {"script", "link", "img", "iframe"}.isdisjoint(tags)
    for _, attrs in parser.tags:
        for name in ("src", "href", "xlink:href", "action"):
            value = attrs.get(name)
            assert value is None or value.startswith("#"), (name, value)
    assert "http://" not in page and "https://" not in page and "url(" not in page
    charts = re.findall(r"<svg\b.*?</svg>", page, re.S)
    assert len(charts) >= 4  # metrics, reliability, selection rate by sex, importance
    for chart in charts:
        ElementTree.fromstring(chart)  # each chart is well-formed on its own
    assert "<title>log_loss" not in page  # a loss is not drawn on the [0, 1] score axis
    assert "&lt;review&gt;" in page and "<review>" not in page  # statements are escaped
    assert paths["markdown"].read_text(encoding="utf-8").startswith(f"# Model card: {mv.ref}")
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_figures_equal_the_evidence(carded):
    proj, _, mv, ev = carded
    card = model_card(proj.store, f"{mv.name}@production", evidence_id=ev.id)
    assert card.ref == mv.ref
    for name in ("performance", "fairness", "explanations"):
        assert card.sections[name] == ev.doc[name]
    md, page = card.markdown(), card.html()
    perf = ev.doc["performance"]
    for metric in ("roc_auc", "accuracy", "f1"):
        m = perf[metric]
        assert f"| {metric} | {num(m['value'])} | {num(m['ci_low'])} | {num(m['ci_high'])} |" in md
        bar = re.search(rf'data-value="([^"]+)"><title>{metric}: ', page)
        assert bar and float(bar.group(1)) == m["value"]
        whisker = re.search(
            rf'data-value="[^"]+"><title>{metric}: [^<]*</title></rect><g [^>]*'
            r'data-low="([^"]+)" data-high="([^"]+)"',
            page,
        )
        assert whisker and float(whisker.group(1)) == m["ci_low"]
        assert float(whisker.group(2)) == m["ci_high"]
    sex = ev.doc["fairness"]["sex"]
    dpd = sex["demographic_parity_difference"]
    assert f"| demographic_parity_difference | {num(dpd['value'])} |" in md
    for g in sex["groups"]:
        bar = re.search(rf'data-value="([^"]+)"><title>{re.escape(g["key"])}: ', page)
        assert bar and float(bar.group(1)) == g["selection_rate"]
    shap = ev.doc["explanations"]["global"]["mean_abs_shap"]
    top = max(shap, key=shap.get)
    bar = re.search(rf'data-value="([^"]+)"><title>{re.escape(top)}: ', page)
    assert bar and float(bar.group(1)) == shap[top]
    ece = perf["calibration"]["ece"]
    assert f"{num(ece['value'])} [{num(ece['ci_low'])}, {num(ece['ci_high'])}]" in md
    assert page.count("<circle") == sum(
        b["mean_predicted"] is not None for b in perf["calibration"]["reliability"]
    )
    (ds,) = card.sections["data"]["datasets"]
    stored = get_dataset(proj.store, "adult")
    assert ds["sha"] == stored.sha and ds["profile"] == load_profile(proj.store, stored)
    assert f"| adult/1 | train | {stored.sha} | 2,000 |" in md
    training = card.sections["training"]
    assert training["seed"] == 0 and training["model_params"]["n_estimators"] == 20


def test_missing_evidence_is_listed_not_filled(carded):
    proj, _, mv, ev = carded
    card = model_card(proj.store, mv.ref, evidence_id=ev.id)
    assert "robustness" not in ev.doc and card.sections["robustness"] is None
    rows = {r["point"]: r for r in card.compliance["annex_iv"] + card.compliance["nist_measure"]}
    assert rows["MEASURE 2.7"]["status"] == "missing"
    assert rows["MEASURE 2.7"]["missing"] == ["robustness evidence"]
    assert rows["2"]["status"] == "partial" and "robustness evidence" in rows["2"]["missing"]
    assert rows["MEASURE 2.11"]["status"] == "present"
    assert rows["7"]["status"] == rows["8"]["status"] == rows["9"]["status"] == "missing"
    md = card.markdown()
    assert _section(md, "Robustness") == "> **Missing:** the evidence has no robustness section"
    assert _section(md, "Privacy") == "> **Missing:** the evidence has no privacy section"
    assert "| MEASURE 2.7 | Security and resilience evaluated | Robustness | missing |" in md
    assert '<td class="status-missing">missing</td>' in card.html()
    assert any(r["point"] == "MEASURE 2.7" for r in card.missing())


def test_sections_other_audits_add_are_rendered(carded):
    proj, _, mv, ev = carded
    robustness = {
        "hopskipjump": {
            "success_rate": {"value": 0.25, "ci_low": 0.125, "ci_high": 0.375},
            "budget": 0.5,
        },
        "noise": [{"sigma": 0.1, "accuracy": 0.81}, {"sigma": 0.5, "accuracy": 0.64}],
    }
    doc = {k: v for k, v in ev.doc.items() if k not in ("created_at", "created_by")}
    mitigation = {
        "method": "threshold_optimizer",
        "accuracy": {"before": 0.85, "after": 0.83, "change": -0.02},
    }
    newer = save_evidence(
        proj.store, mv.ref, {**doc, "robustness": robustness, "mitigation": mitigation}
    )
    card = model_card(proj.store, mv.ref)  # the latest evidence by default
    assert card.sections["reproducibility"]["evidence_id"] == newer.id
    rows = {r["point"]: r for r in card.compliance["nist_measure"]}
    assert rows["MEASURE 2.7"]["status"] == "present"
    part = _section(card.markdown(), "Robustness")
    assert "| hopskipjump.success_rate | 0.250 | 0.125 | 0.375 |" in part
    assert "| hopskipjump.budget | 0.500 | — | — |" in part
    assert "| sigma | accuracy |\n|---|---|\n| 0.100 | 0.810 |\n| 0.500 | 0.640 |" in part
    part = _section(card.markdown(), "Mitigation")
    assert "- **method**: threshold_optimizer" in part
    assert "| accuracy | 0.850 | 0.830 | -0.020 |" in part
    assert get_evidence(proj.store, mv.ref, id=ev.id).doc == ev.doc


def test_override_on_the_alias_shows_on_the_card(carded):
    proj, _, mv, ev = carded
    card = model_card(proj.store, mv.ref, evidence_id=ev.id)
    gates = card.sections["gates"]
    assert [c["passed"] for c in gates["checks"]] == [True, False]
    (override,) = gates["overrides"]
    assert override["reason"] == REASON and override["alias"] == "production"
    assert override["failed"][0].startswith("fairness.sex.demographic_parity_difference")
    assert gates["alias_moves"][-1]["why"] == f"[gate override: {REASON}]"
    part = _section(card.markdown(), "Gates and overrides")
    assert REASON in part and "| fairness.sex.demographic_parity_difference <= 0.001 |" in part
    assert "FAIL" in part and "overridden 1 time(s)" in card.markdown()


def test_statements_from_keel_yaml_or_not_stated(carded, monkeypatch):
    proj, _, mv, ev = carded
    md = model_card(proj.store, mv.ref, evidence_id=ev.id).markdown()
    stated = _section(md, "Intended use and limits")
    assert INTENDED in stated and "- 1994 US census data" in stated
    assert "### Human oversight\n\n_not stated_" in stated
    monkeypatch.setattr(proj.store, "settings", {"audit": AUDIT})
    card = model_card(proj.store, mv.ref, evidence_id=ev.id)
    part = _section(card.markdown(), "Intended use and limits")
    assert INTENDED not in card.markdown() and part.count("_not stated_") == 4
    row = card.compliance["annex_iv"][0]
    assert row["point"] == "1" and row["missing"] == ["intended use", "users and affected persons"]
    monkeypatch.setattr(proj.store, "settings", {"audit": {**AUDIT, "intended_use": "From audit"}})
    assert "From audit" in model_card(proj.store, mv.ref, evidence_id=ev.id).markdown()
    plan = {"drift": "weekly PSI per feature", "owner": None}
    monkeypatch.setattr(proj.store, "settings", {"audit": AUDIT, "card": {"monitoring": plan}})
    card = model_card(proj.store, mv.ref, evidence_id=ev.id)
    assert card.sections["monitoring"]["plan"] == {"drift": "weekly PSI per feature"}
    assert "- **drift**: weekly PSI per feature" in _section(card.markdown(), "Monitoring plan")
    nine = {r["point"]: r for r in card.compliance["annex_iv"]}["9"]
    assert nine["status"] == "partial"  # a plan with no record of monitoring done
    assert nine["stated_only"] == ["monitoring plan"]
    json.dumps(card.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ({"intended_usage": "x"}, r"card\.intended_usage: unknown key; expected some of"),
        ({"limitations": 3}, r"card\.limitations: expected text or a list of texts, got 3"),
        ("everything", r"card: expected a mapping"),
    ],
)
def test_bad_card_settings_name_the_key(carded, monkeypatch, card, expected):
    proj, _, mv, ev = carded
    monkeypatch.setattr(proj.store, "settings", {"audit": AUDIT, "card": card})
    with pytest.raises(InvalidInput, match=expected):
        model_card(proj.store, mv.ref, evidence_id=ev.id)


def test_a_version_without_evidence_is_not_found(carded, tmp_path, capsys):
    proj, root, _, _ = carded
    mv2 = train(proj.store, "adult", "income", params={"n_estimators": 5}, seed=2).register(
        proj.store, "adult"
    )
    with pytest.raises(NotFound, match=rf"{mv2.ref}: .*no audit evidence.*keel audit {mv2.ref}"):
        model_card(proj.store, mv2.ref)
    out = tmp_path / "none"
    assert main(["card", mv2.ref, "-C", str(root), "--out", str(out)]) == 1
    assert "keel audit" in capsys.readouterr().err and not out.exists()


def test_cli_writes_the_card_and_prints_its_paths(carded, tmp_path, capsys):
    proj, root, mv, _ = carded
    out = tmp_path / "cli"
    assert main(["card", f"{mv.name}@production", "-C", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out / "card.md") in printed and str(out / "card.html") in printed
    assert (out / "card.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert main(["card", mv.ref, "-C", str(root), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == mv.ref and result["paths"]["html"] == str(out / "card.html")
    assert {"point": "MEASURE 2.12", "status": "missing"}.items() <= next(
        r for r in result["missing"] if r["point"] == "MEASURE 2.12"
    ).items()
    # each point carries what is only planned and what backs what was found, as the card does
    card = model_card(proj.store, mv.ref)
    expected = {
        (r["framework"], r["point"]): (r["stated_only"], r["backed_by"]) for r in card.missing()
    }
    got = {
        (r["framework"], r["point"]): (r["stated_only"], r["backed_by"]) for r in result["missing"]
    }
    assert got == expected
    assert any(b["where"] for r in result["missing"] for b in r["backed_by"])
    # a monitoring plan with no record of monitoring done is stated only
    cfg = root / "keel.yaml"
    settings = cfg.read_text()
    plan = {"monitoring": {"drift": "weekly PSI per feature"}}
    cfg.write_text(yaml.safe_dump({**yaml.safe_load(settings), "card": {**CARD, **plan}}))
    try:
        assert main(["card", mv.ref, "-C", str(root), "--out", str(out), "--json"]) == 0
    finally:
        cfg.write_text(settings)
    result = json.loads(capsys.readouterr().out)
    nine = next(r for r in result["missing"] if r["point"] == "9")
    assert nine["framework"] == "EU AI Act Annex IV" and nine["status"] == "partial"
    assert nine["stated_only"] == ["monitoring plan"]


def test_a_mitigated_version_shows_its_parents_search_and_no_monitoring_claim(carded):
    from keel.audit import mitigate
    from keel.train import search

    proj, _, _, _ = carded
    found = search(
        proj.store, "adult", "income", n_trials=2, executor="inline", seed=0, progress=False
    )
    parent = found.final.register(proj.store, "adult")
    child = mitigate(proj.store, parent.ref, "reweigh", "sex").version
    audit(proj.store, child.ref, sections=["performance"], n_boot=20)
    card = model_card(proj.store, child.ref)
    md = card.markdown()
    assert f"the search that made {parent.ref}" in md
    assert "No hyper-parameter search" not in md
    rows = {r["point"]: r for r in card.compliance["nist_measure"]}
    assert rows["MEASURE 3.1"]["status"] != "present"  # a plan alone is not tracking
