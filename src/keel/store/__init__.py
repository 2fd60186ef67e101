"""keel.store: SQL metadata (SQLite by default, PostgreSQL by URL), blobs, migrations, lineage."""

from keel.store._blobs import FileBlobStore, MemoryBlobStore, sha256_file
from keel.store._lineage import LineageNode, describe, lineage
from keel.store._store import Store

__all__ = [
    "FileBlobStore",
    "LineageNode",
    "MemoryBlobStore",
    "Store",
    "describe",
    "lineage",
    "sha256_file",
]
