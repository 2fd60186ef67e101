"""Copying every blob of one store into another (the blob half of ``keel store migrate``).

Resumable: a blob the destination already holds is not sent again, so running the copy again
after an interruption carries on where it stopped. Every hash is checked: a source blob is
read with its sha256 checked (a folder's blob is streamed and hashed by the destination's
put), the id the destination computes must be the source's, and with ``verify`` (the default)
every blob is read back from the destination with its hash checked, those it held before
included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from keel.errors import UnsafeArtifact
from keel.store._s3 import BlobInfo

__all__ = ["CopyReport", "copy_blobs"]


@dataclass
class CopyReport:
    copied: int = 0
    already_there: int = 0
    bytes_copied: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "copied": self.copied,
            "already_there": self.already_there,
            "bytes_copied": self.bytes_copied,
        }


def copy_blobs(
    src: Any,
    dst: Any,
    *,
    verify: bool = True,
    progress: Callable[[BlobInfo, bool], None] | None = None,
) -> CopyReport:
    """Copy every blob of ``src`` that ``dst`` lacks; ``progress(info, copied)`` is called
    after each blob. Raises UnsafeArtifact, naming the blob, on any hash mismatch."""
    report = CopyReport()
    for info in src.iter_blobs():
        there = dst.exists(info.sha)
        if not there:
            path = getattr(src, "path", None)
            if path is not None:  # a folder: stream the file, the destination hashes it
                got = dst.put_file(path(info.sha))
            else:
                got = dst.put_bytes(src.get_bytes(info.sha))  # read with its hash checked
            if got != info.sha:
                raise UnsafeArtifact(
                    f"blob {info.sha[:12]}… of {src.location} does not match its sha256 "
                    f"(its bytes hash to {got[:12]}…): it was modified after it was stored; "
                    "not copied"
                )
            report.copied += 1
            report.bytes_copied += info.size
        else:
            report.already_there += 1
        if verify:
            dst.get_bytes(info.sha)  # UnsafeArtifact names it if the copy there is not intact
        if progress is not None:
            progress(info, not there)
    return report
