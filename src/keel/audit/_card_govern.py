"""The governance part of a model card as blocks: gates and overrides, lifecycle, monitoring
plan, conformity, the compliance table and what it takes to repeat the audit; and
:func:`build`, which lays out every section of the card in order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keel.audit._card_blocks import (
    EVIDENCE_BLOCKS,
    NOT_STATED,
    Block,
    _kv,
    _missing,
    _p,
    _stated,
    _table,
    _when,
)

__all__ = ["build", "summary"]


def _gates(s: Mapping[str, Any]) -> list[Block]:
    g = s["gates"]
    out: list[Block] = []
    if g.get("error"):
        out.append(_missing(f"the project's policy could not be checked: {g['error']}"))
    elif not g["rules"]:
        out.append(_missing("the project's policy has no rules (keel.yaml: audit.policy)"))
    else:
        guarded = ", ".join(g["gated_aliases"]) or "none"
        out.append(_p(f"Policy from keel.yaml (audit.policy); it guards the aliases: {guarded}."))
        out.append(
            _table(
                ["rule", "value", "result"],
                [
                    [
                        c["rule"],
                        c["value"] if c["value"] is not None else c.get("missing"),
                        "pass" if c["passed"] else "FAIL",
                    ]
                    for c in g["checks"] or []
                ],
                "gates on this evidence",
            )
        )
    out.append({"kind": "h3", "text": "Overrides"})
    if g["overrides"]:
        out.append(
            _table(
                ["when", "alias", "who", "reason", "failed rules"],
                [
                    [
                        _when(o.get("at")),
                        o.get("alias"),
                        o.get("who"),
                        o.get("reason"),
                        "; ".join(map(str, o.get("failed") or [])),
                    ]
                    for o in g["overrides"]
                ],
                "gate overrides recorded for this version",
            )
        )
    else:
        out.append(_p("No gate was overridden for this version."))
    out.append({"kind": "h3", "text": "Alias moves"})
    if g["alias_moves"]:
        out.append(
            _table(
                ["when", "alias", "from", "to", "who", "why"],
                [
                    [
                        _when(h.get("at")),
                        h.get("alias"),
                        _ver(h.get("from_version")),
                        _ver(h.get("to_version")),
                        h.get("who"),
                        h.get("why") or "",
                    ]
                    for h in g["alias_moves"]
                ],
                "aliases moved to or from this version",
            )
        )
    else:
        out.append(_p("No alias has pointed at this version."))
    return out


def _ver(v: Any) -> str:
    return "—" if v is None else f"v{v}"


def _lifecycle(s: Mapping[str, Any]) -> list[Block]:
    lc = s["lifecycle"]
    me = s["model"]["version"]
    return [
        _table(
            ["version", "registered", "by", "kind", "aliases", "run", "description"],
            [
                [
                    (f"v{v['version']} (this card)" if v["version"] == me else f"v{v['version']}"),
                    _when(v["created_at"]),
                    v["created_by"],
                    v["flavor"],
                    ", ".join(v["aliases"]) or "—",
                    (v["run_id"] or "—")[:12],
                    v["description"] or "",
                ]
                for v in lc["versions"]
            ],
            "versions of this model",
        ),
        _table(
            ["evidence", "audited", "by", "sections"],
            [
                [a["id"], _when(a["created_at"]), a["created_by"], ", ".join(a["sections"])]
                for a in lc["audits"]
            ],
            "audits of this version",
        ),
    ]


def _monitoring(s: Mapping[str, Any]) -> list[Block]:
    m = s["monitoring"]
    out: list[Block] = [
        {"kind": "h3", "text": "Plan"},
        _p("As stated by the project in keel.yaml (a plan: what is meant to happen)."),
        _stated(m["plan"]),
    ]
    if m.get("alert_rules"):
        out.append(_kv([("alert rules declared (monitor.alerts)", ", ".join(m["alert_rules"]))]))
    out += [{"kind": "h3", "text": "Feedback and appeal"}, _stated(m["feedback"])]
    out.append({"kind": "h3", "text": "Records from deployment"})
    log = m.get("prediction_log")
    if log:
        out.append(
            _kv(
                [
                    ("prediction log", f"{log['rows']:,} rows in {log['segments']} segment(s)"),
                    ("first / last prediction", f"{_when(log['first'])} / {_when(log['last'])}"),
                ]
            )
        )
    else:
        out.append(_missing("no prediction of this version is in the prediction log"))
    passes = m.get("passes") or []
    if passes:
        checked = {c.get("window") for c in m.get("alert_checks") or []}
        fired = m.get("alerts") or []
        out.append(
            _table(
                ["pass", "when", "rows", "labelled", "served", "drift share", "alert rules"],
                [
                    [
                        p["id"],
                        _when(p["at"]),
                        (p.get("window") or {}).get("rows"),
                        (p.get("window") or {}).get("labeled"),
                        p.get("served") or "—",
                        (p.get("values") or {}).get("drift.share"),
                        "checked" if _window_key(s, p) in checked else "not checked",
                    ]
                    for p in passes
                ],
                "monitoring passes over this version's traffic",
            )
        )
        if fired:
            out.append(
                _table(
                    ["when", "rule", "value", "severity"],
                    [
                        [_when(a.get("at")), a.get("rule"), a.get("value"), a.get("severity")]
                        for a in fired
                    ],
                    "alerts fired on those windows",
                )
            )
    else:
        out.append(_missing("no monitoring pass has covered this version's traffic"))
    return out


def _window_key(s: Mapping[str, Any], p: Mapping[str, Any]) -> str:
    from keel.audit._card_records import window_key

    return window_key(s["model"]["name"], p.get("window") or {})


def _conformity(s: Mapping[str, Any]) -> list[Block]:
    c = s["conformity"]
    out = [
        {"kind": "h3", "text": "Standards applied"},
        _stated(c["standards"]),
        {"kind": "h3", "text": "EU declaration of conformity"},
        _stated(c["declaration_of_conformity"]),
    ]
    doc = c.get("declaration_file")
    if doc:
        out.append(_kv([("file", doc["path"]), ("bytes", doc["bytes"]), ("sha256", doc["sha256"])]))
    elif c["declaration_of_conformity"]:
        out.append(_missing("no such file in the project folder: only its place is stated"))
    return out


def _compliance(s: Mapping[str, Any]) -> list[Block]:
    comp = s["compliance"]
    out: list[Block] = [
        _p(
            "Each point with the card sections that evidence it and what backs it. A point is "
            "present when every item it needs is a record the store holds for this version "
            "(registry, lineage, run, audit evidence, prediction log, monitoring passes, alert "
            "checks) or a declaration only the project can make (intended use, users, "
            "limitations, standards); partial when an item is missing or only planned in "
            "keel.yaml with no record that it is done; missing when nothing was found. What is "
            "missing is named, not filled in."
        )
    ]
    for key, caption in (
        ("annex_iv", "EU AI Act (Regulation (EU) 2024/1689), Annex IV technical documentation"),
        ("nist_measure", "NIST AI RMF 1.0, MEASURE function"),
    ):
        out.append(
            {
                "kind": "table",
                "headers": [
                    "point",
                    "requirement",
                    "card sections",
                    "status",
                    "backed by",
                    "missing or only planned",
                ],
                "rows": [
                    [
                        r["point"],
                        r["title"],
                        ", ".join(r["sections"]),
                        r["status"],
                        "; ".join(
                            f"{b['where']}" + (" (plan only)" if b["found"] == "plan" else "")
                            for b in r["backed_by"]
                        )
                        or "—",
                        "; ".join(r["missing"] + [f"{x} (only planned)" for x in r["stated_only"]])
                        or "—",
                    ]
                    for r in comp[key]
                ],
                "caption": caption,
                "status_column": 3,
            }
        )
    return out


def _reproducibility(s: Mapping[str, Any]) -> list[Block]:
    r = s["reproducibility"]
    st = r["settings"]
    out: list[Block] = [
        _kv(
            [
                ("evidence", f"{r['evidence_id']} (format {r['evidence_format']})"),
                ("evidence sha256", str(r["evidence_sha"] or "—")),
                ("audited", f"{_when(r['audited_at'])} by {r['audited_by'] or '—'}"),
                ("seed", st.get("seed")),
                ("bootstrap replicates", st.get("n_boot")),
                ("sample for costly sections", st.get("sample")),
                ("sections run", ", ".join(st.get("sections") or []) or "—"),
            ]
        )
    ]
    libs = r["libraries"]
    if libs:
        out.append(
            _table(
                ["library", "version"],
                [[k, v or "not installed"] for k, v in libs.items()],
                "library versions",
            )
        )
    if r["timings_s"]:
        out.append(
            _table(["section", "seconds"], [[k, v] for k, v in r["timings_s"].items()], "timings")
        )
    return out


_GOVERN = (
    ("gates", "Gates and overrides", _gates),
    ("lifecycle", "Lifecycle", _lifecycle),
    ("monitoring", "Monitoring plan", _monitoring),
    ("conformity", "Conformity", _conformity),
    ("compliance", "Compliance", _compliance),
    ("reproducibility", "Reproducibility", _reproducibility),
)


def build(sections: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every section of the card: ``{"id", "title", "blocks"}``, in reading order."""
    return [
        {"id": key, "title": title, "blocks": make(sections)}
        for key, title, make in (*EVIDENCE_BLOCKS, *_GOVERN)
    ]


def summary(sections: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The lines at the top of the card: what it is, and the state of its evidence."""
    m = sections["model"]
    comp = sections["compliance"]
    rows = comp["annex_iv"] + comp["nist_measure"]
    counts = {k: sum(r["status"] == k for r in rows) for k in ("present", "partial", "missing")}
    g = sections["gates"]
    if g.get("error") or not g["rules"]:
        gates = "not checked" if g.get("error") else "no policy"
    else:
        failed = sum(not c["passed"] for c in g["checks"] or [])
        gates = "all pass" if not failed else f"{failed} of {len(g['rules'])} fail"
    if g["overrides"]:
        gates += f"; overridden {len(g['overrides'])} time(s)"
    return [
        ("model", f"{m['ref']} ({m['flavor']}, {m['task']})"),
        ("intended use", _first(sections["intended_use"]["intended_use"])),
        ("gates", gates),
        (
            "compliance points",
            f"{counts['present']} present, {counts['partial']} partial, "
            f"{counts['missing']} missing",
        ),
        (
            "evidence",
            f"{sections['reproducibility']['evidence_id']}, audited "
            f"{_when(sections['reproducibility']['audited_at'])}",
        ),
    ]


def _first(value: Any) -> str:
    if value is None:
        return NOT_STATED
    if isinstance(value, list):
        return "; ".join(map(str, value))
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)
