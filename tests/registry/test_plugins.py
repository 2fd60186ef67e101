"""The registry runs alias checks as plug-ins (keel.plugins): it never imports keel.audit,
yet the gates run on every alias move, and an install without checks fails closed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from keel import plugins, registry
from keel.errors import ValidationFailed
from tests.registry.test_registry import _register


def test_keel_declares_its_own_plugins():
    from keel.audit.gates import enforce
    from keel.pipeline import run_pipeline

    assert plugins.plugins("alias_checks")["gates"] is enforce
    assert plugins.get("alert_actions", "pipeline") is run_pipeline
    with pytest.raises(plugins.PluginMissing, match=r"no alert_actions plug-in named 'x'"):
        plugins.get("alert_actions", "x")
    with pytest.raises(Exception, match="plug-in group: expected one of"):
        plugins.plugins("nope")


def test_a_registered_check_refuses_a_move_and_changes_nothing(any_store):
    v1, v2 = _register(any_store), _register(any_store)
    registry.set_alias(any_store, v1.ref, "production")
    seen = []

    def four_eyes(store, ref, alias, *, override, who):
        seen.append((ref, alias, override))
        if alias == "production" and override is None:
            raise ValidationFailed(f"alias {alias!r}: {ref} needs a second reviewer")
        return ["second reviewer"] if override else []

    plugins.register("alias_checks", "four-eyes", four_eyes)
    try:
        with pytest.raises(ValidationFailed, match="needs a second reviewer"):
            registry.set_alias(any_store, v2.ref, "production")
        assert registry.get_version(any_store, "m@production").version == 1
        moved = registry.set_alias(any_store, v2.ref, "production", override="ok by ana")
        assert "production" in moved.aliases
        assert "[gate override: ok by ana]" in registry.alias_history(any_store, "m")[-1]["why"]
    finally:
        plugins.unregister("alias_checks", "four-eyes")
    assert seen[0] == (v2.ref, "production", None)
    registry.set_alias(any_store, v1.ref, "production")  # the check is gone


def test_no_alias_checks_at_all_fails_closed(any_store, monkeypatch):
    v = _register(any_store)
    monkeypatch.setitem(plugins._declared, "alias_checks", {})
    with pytest.raises(plugins.PluginMissing, match="no alias checks are installed"):
        registry.set_alias(any_store, v.ref, "candidate")
    assert registry.get_version(any_store, v.ref).aliases == []


def test_gates_run_when_only_the_registry_is_imported(tmp_path):
    """A process that imports keel.registry and keel.project, nothing of keel.audit, still
    has its production move refused by the project's gates."""
    script = textwrap.dedent(
        f"""
        import sys
        import yaml
        from keel import project, registry
        from keel.errors import ValidationFailed
        root = {str(tmp_path)!r}
        proj = project.init(root, name="p")
        cfg = proj.root / "keel.yaml"
        settings = yaml.safe_load(cfg.read_text())
        settings["audit"] = {{"policy": ["performance.roc_auc >= 0.8"]}}
        cfg.write_text(yaml.safe_dump(settings))
        proj.close()
        proj = project.open_project(root)
        assert not any(m.startswith("keel.audit") for m in sys.modules), "audit imported"
        sha = proj.store.blobs.put_bytes(b"x")
        mv = registry.register(proj.store, "m", artifact_sha=sha, flavor="sklearn",
            task="classification", input_schema=[{{"name": "x", "type": "float"}}],
            output_schema={{"task": "classification", "classes": [0, 1]}})
        try:
            registry.set_alias(proj.store, mv.ref, "production")
        except ValidationFailed as exc:
            print("refused:", exc)
        print("aliases:", registry.get_version(proj.store, mv.ref).aliases)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout and "no audit evidence" in out.stdout
    assert "aliases: []" in out.stdout
