"""Bundle archives: a deterministic .tar.gz out, and safe unpacking in.

Writing: members sorted by path under one top-level folder, plain files (0644) and folders
(0755) only, mtime 0, uid/gid 0 with no owner names, and a gzip header without a name or a
time, so the same folder always gives the same bytes.

Reading untrusted archives: every member is checked before anything is written (no
absolute paths, no '..', no backslash, colon or control character, no links, devices or
FIFOs, no duplicates, nothing inside a file); the files go into a temporary sibling of the
destination that is renamed into place, so a refused archive leaves nothing behind. The
rules live in the bundle's runner (``keel.export.runner``) so keel and a bundle on a
gateway apply the same ones.
"""

from __future__ import annotations

import gzip
import os
import tarfile
import tempfile
from pathlib import Path

from keel.errors import InvalidInput, NotFound, UnsafeArtifact
from keel.export import runner

__all__ = ["ARCHIVE_SUFFIXES", "archive_root", "extract_archive", "write_archive"]

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")


def archive_root(path: Path) -> str:
    """The top-level folder name inside the archive ``path``: its name less the suffix."""
    for suffix in ARCHIVE_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    raise InvalidInput(f"out: an archive name must end in .tar.gz or .tgz, got '{path.name}'")


def write_archive(folder: Path, out: Path) -> Path:
    """Pack ``folder`` into the .tar.gz ``out`` (atomically: a temporary file renamed)."""
    root = archive_root(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    tar.addfile(_info(root, tarfile.DIRTYPE, 0))
                    for rel, path in _entries(folder):
                        _add(tar, f"{root}/{rel}", path)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def extract_archive(tar_path: str | Path, dest: str | Path) -> Path:
    """Unpack the archive ``tar_path`` into the new (or empty) folder ``dest``; return the
    bundle folder inside it. Refuses unsafe archives with UnsafeArtifact, writing nothing."""
    tar_path, dest = Path(tar_path), Path(dest)
    if not tar_path.is_file():
        raise NotFound(f"archive '{tar_path}' does not exist")
    try:
        return runner.safe_extract(tar_path, dest)
    except runner.BundleError as exc:
        raise UnsafeArtifact(f"archive '{tar_path}': {exc}; nothing was unpacked") from None
    except runner.UsageError as exc:
        raise InvalidInput(f"dest: {exc}") from None


def _entries(folder: Path) -> list[tuple[str, Path]]:
    found = []
    for path in folder.rglob("*"):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise InvalidInput(f"{path}: only plain files and folders go into an archive")
        found.append((path.relative_to(folder).as_posix(), path))
    return sorted(found)


def _add(tar: tarfile.TarFile, name: str, path: Path) -> None:
    if path.is_dir():
        tar.addfile(_info(name, tarfile.DIRTYPE, 0))
        return
    with open(path, "rb") as f:
        tar.addfile(_info(name, tarfile.REGTYPE, path.stat().st_size), f)


def _info(name: str, kind: bytes, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info
