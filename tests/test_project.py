import pytest

from keel.errors import InvalidInput, NotFound
from keel.project import init, open_project


def test_init_creates_config_and_store_and_is_idempotent(tmp_path):
    with init(tmp_path / "p", name="credit") as proj:
        assert (tmp_path / "p" / "keel.yaml").is_file()
        assert proj.name == "credit"
        assert proj.store.schema_revision() is not None
    (tmp_path / "p" / "keel.yaml").write_text(
        "name: credit\nformat_version: 1\nmeta: {owner: ana}\n"
    )
    with init(tmp_path / "p", name="other") as again:
        assert again.name == "credit" and again.settings["meta"]["owner"] == "ana"


def test_a_misspelt_setting_is_an_error_not_ignored(tmp_path):
    init(tmp_path / "p").close()
    (tmp_path / "p" / "keel.yaml").write_text("name: p\naudt: {policy: []}\n")
    with pytest.raises(InvalidInput, match=r"unknown setting 'audt' \(did you mean 'audit'\?\)"):
        open_project(tmp_path / "p")


def test_open_finds_the_project_upward(tmp_path, monkeypatch):
    init(tmp_path).close()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    with open_project() as proj:
        assert proj.root == tmp_path.resolve()


def test_store_url_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KEEL_STORE", f"sqlite:///{tmp_path}/elsewhere.db")
    with init(tmp_path / "p") as proj:
        proj.store  # noqa: B018
        assert (tmp_path / "elsewhere.db").exists()
        assert not (tmp_path / "p" / ".keel" / "store.db").exists()


def test_missing_and_broken_projects_are_named(tmp_path):
    with pytest.raises(NotFound, match="no keel project.*keel init"):
        open_project(tmp_path)
    (tmp_path / "keel.yaml").write_text("name: [unclosed\n")
    with pytest.raises(InvalidInput, match="keel.yaml line"):
        open_project(tmp_path)
    (tmp_path / "keel.yaml").write_text("- a list\n")
    with pytest.raises(InvalidInput, match="expected a mapping"):
        open_project(tmp_path)
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InvalidInput, match="expected a folder"):
        init(f)
