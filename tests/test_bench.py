"""bench/run_all.py: ratios first, absolute figures only beside the CPU and load they came
from, and the CPU of the machine it runs on printed and recorded."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
README = BENCH.parent / "README.md"


@pytest.fixture
def run_all(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    for name in ("run_all", "_common"):
        sys.modules.pop(name, None)
    import run_all

    yield run_all
    for name in ("run_all", "_common"):
        sys.modules.pop(name, None)


def _cpuinfo_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def test_cpu_model_comes_from_cpuinfo_with_a_platform_fallback(run_all, monkeypatch):
    expected = _cpuinfo_model() or platform.processor() or platform.machine()
    assert run_all.cpu_model() == expected
    monkeypatch.setattr(sys.modules["_common"], "CPUINFO", Path("/nonexistent/cpuinfo"))
    assert run_all.cpu_model() == (platform.processor() or platform.machine() or "unknown")


def test_run_all_prints_this_cpu_and_warns_when_the_results_came_from_another(
    run_all, capsys, monkeypatch
):
    monkeypatch.setattr(run_all, "cpu_model", lambda: "Test CPU 9000")
    assert run_all.main(["--snippet-only"]) == 0
    out = capsys.readouterr().out
    assert "this machine: Test CPU 9000" in out
    assert "measured on AMD EPYC" in out and "compare ratios" in out


def test_a_run_records_the_cpu(run_all, tmp_path):
    path = run_all.record({"ingest": (True, 12.5)}, tmp_path / "run_all.json")
    doc = json.loads(path.read_text())
    assert doc["machine"]["cpu"] == run_all.cpu_model()
    assert doc["machine"]["loadavg_1_5_15_at_start"] and doc["benchmarks"]["ingest"]["ok"]


def test_the_snippet_leads_with_ratios_and_names_cpu_and_load_beside_absolutes(run_all):
    text = run_all.snippet(*[run_all.load(n) for n in run_all.NAMES])
    header = next(line for line in text.splitlines() if line.startswith("| Workload"))
    assert header.split("|")[2].strip().startswith("Ratio")  # the ratio comes first
    serve = json.loads((BENCH / "results" / "serve.json").read_text())["machine"]
    start, end = serve["loadavg_1_5_15_at_start"][0], serve["loadavg_1_5_15_at_end"][0]
    note = next(line for line in text.splitlines() if line.startswith("- Serve:"))
    assert serve["cpu"] in note and f"{start:g}" in note and f"{end:g}" in note
    assert "load average" in text


def test_the_readme_shows_the_snippet_and_no_absolute_serving_claim_without_its_cpu(run_all):
    text = README.read_text()
    snippet = run_all.snippet(*[run_all.load(n) for n in run_all.NAMES])
    assert snippet.split("\n", 1)[1].strip() in text  # the table the results back
    assert "on this machine" not in text.split("## Benchmarks", 1)[1].split("## Tests")[0]
