"""Docs are tests: the README's Python example runs as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert out.count("[") >= 3  # three rows of class probabilities were printed
    assert (tmp_path / "credit" / "keel.yaml").is_file()


def test_readme_yaml_examples_are_accepted(tmp_path, monkeypatch):
    """Every YAML block of the README is a valid policy, alert set, pipeline or release."""
    import yaml

    from keel.audit import Policy
    from keel.monitor import AlertConfig
    from keel.pipeline import Pipeline
    from keel.serve import load_releases

    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S)
    kinds = []
    for text in blocks:
        data = yaml.safe_load(text)
        if "monitor" in data:
            assert AlertConfig.from_settings(data).rules
            kinds.append("monitor")
        elif "steps" in data:
            assert Pipeline.from_yaml(text).check()
            kinds.append("pipeline")
        elif "audit" in data:
            assert Policy.from_settings(data).rules
            kinds.append("policy")
        elif "store" in data or "blobs" in data:  # a project's keel.yaml naming a team store
            from keel.project import Project
            from keel.store._engine import normalise_url

            monkeypatch.delenv("KEEL_STORE", raising=False)
            monkeypatch.delenv("KEEL_BLOBS", raising=False)
            proj = Project(tmp_path, data)
            assert normalise_url(proj.store_url).startswith("postgresql+psycopg://")
            assert proj.blob_location.startswith("s3://")
            kinds.append("project")
        else:
            path = tmp_path / "release.yaml"
            path.write_text(text)
            assert load_releases(path)
            kinds.append("release")
    assert sorted(kinds) == ["monitor", "pipeline", "policy", "project", "release"]
