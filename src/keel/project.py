"""A keel project: a folder with ``keel.yaml`` and its store (``.keel/``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from keel import config
from keel.errors import InvalidInput, NotFound
from keel.store import FileBlobStore, Store, open_blobs

__all__ = ["Project", "init", "open_project"]

CONFIG_FILE = "keel.yaml"
#: The top-level keys of keel.yaml (a misspelt one is an error, not a silent no-op).
#: ``meta`` holds whatever else a team wants to keep there; ``ui`` the dashboard's
#: (``servers``: running servers other than loopback ones whose /metrics it may read).
SETTINGS_KEYS = (
    "name",
    "format_version",
    "store",
    "blobs",
    "audit",
    "card",
    "monitor",
    "pipeline",
    "ui",
    "meta",
)
STATE_DIR = ".keel"


class Project:
    """A project folder and its store. ``Project(root)`` stores configuration only;
    :attr:`store` opens (and migrates) the store on first use."""

    def __init__(self, root: str | Path, settings: dict[str, Any] | None = None) -> None:
        self.root = Path(root).resolve()
        self.settings = settings or {}
        self._store: Store | None = None

    @property
    def name(self) -> str:
        return str(self.settings.get("name") or self.root.name)

    @property
    def store_url(self) -> str:
        url = config.get("KEEL_STORE") or self.settings.get("store") or ""
        return str(url) or f"sqlite:///{self.root / STATE_DIR / 'store.db'}"

    @property
    def blob_location(self) -> str:
        """Where the blobs are (a folder, ``file:///PATH`` or ``s3://BUCKET/PREFIX``):
        ``KEEL_BLOBS``, else keel.yaml's ``blobs`` (a relative folder is taken from the
        project folder), else the project's ``.keel/blobs`` folder."""
        env = config.get("KEEL_BLOBS")
        if env:
            return str(env)
        setting = self.settings.get("blobs")
        if setting is None or setting == "":
            return str(self.root / STATE_DIR / "blobs")
        if not isinstance(setting, str):
            raise InvalidInput(
                f"{CONFIG_FILE} blobs: expected a folder, file:///PATH or s3://BUCKET/PREFIX, "
                f"got {type(setting).__name__} {setting!r}"
            )
        if "://" in setting or Path(setting).is_absolute():
            return setting
        return str(self.root / setting)

    @property
    def _blobs_setting(self) -> str:
        """What named the blob location, for error messages."""
        return "KEEL_BLOBS" if config.get("KEEL_BLOBS") else f"{CONFIG_FILE} blobs"

    @property
    def blob_root(self) -> Path:
        """The blob folder; an error when the blobs are in object storage."""
        blobs = open_blobs(self.blob_location, setting=self._blobs_setting)
        if not isinstance(blobs, FileBlobStore):
            raise InvalidInput(f"{self._blobs_setting}: {blobs.location} is not a folder")
        return blobs.root

    @property
    def store(self) -> Store:
        if self._store is None:
            blobs = open_blobs(self.blob_location, setting=self._blobs_setting)
            self._store = Store(self.store_url, blobs).connect()
            self._store.settings = self.settings
            self._store.project_root = self.root
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.root)!r})"


def init(path: str | Path = ".", *, name: str | None = None) -> Project:
    """Create a project in ``path`` (made if missing): ``keel.yaml`` and an empty store.

    Running it again on an existing project leaves its settings as they are.
    """
    root = Path(path)
    if root.exists() and not root.is_dir():
        raise InvalidInput(f"project path {str(root)!r}: expected a folder, got a file")
    root.mkdir(parents=True, exist_ok=True)
    cfg = root / CONFIG_FILE
    if cfg.exists():
        project = open_project(root)
    else:
        settings = {"name": name or root.resolve().name, "format_version": 1}
        tmp = cfg.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(settings, sort_keys=False))
        os.replace(tmp, cfg)
        project = Project(root, settings)
    project.store  # noqa: B018 - create and migrate the store now
    return project


def open_project(path: str | Path | None = None) -> Project:
    """The project at ``path``, or at ``KEEL_PROJECT``, or the nearest folder upward holding
    ``keel.yaml``."""
    start = Path(path or str(config.get("KEEL_PROJECT") or "") or Path.cwd()).resolve()
    for folder in [start, *start.parents]:
        cfg = folder / CONFIG_FILE
        if cfg.is_file():
            return Project(folder, _read_settings(cfg))
        if path is not None:
            break
    raise NotFound(
        f"no keel project at {str(start)!r} (no {CONFIG_FILE} there or above); "
        "create one with: keel init"
    )


def _read_settings(cfg: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(cfg.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InvalidInput(
            f"{cfg.name}{where}: not valid YAML ({exc.__class__.__name__})"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{cfg.name}: expected a mapping of settings, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(SETTINGS_KEYS))
    if unknown:
        import difflib

        near = difflib.get_close_matches(unknown[0], SETTINGS_KEYS, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise InvalidInput(
            f"{cfg.name}: unknown setting {unknown[0]!r}{hint}; expected some of "
            f"{', '.join(SETTINGS_KEYS)}"
        )
    return data
