"""keel.store: SQL metadata (SQLite by default, PostgreSQL by URL), blobs (a folder, or S3 by
URL), migrations, lineage."""

from keel.store._activity import Activity, activity
from keel.store._blobs import BlobInfo, FileBlobStore, MemoryBlobStore, open_blobs, sha256_file
from keel.store._copy import CopyReport, copy_blobs
from keel.store._gc import GcReport, collect_garbage
from keel.store._lineage import LineageNode, describe, lineage
from keel.store._migrate import MigrateReport, migrate_store
from keel.store._s3 import S3BlobStore
from keel.store._store import Store

__all__ = [
    "Activity",
    "BlobInfo",
    "CopyReport",
    "FileBlobStore",
    "GcReport",
    "LineageNode",
    "MemoryBlobStore",
    "MigrateReport",
    "S3BlobStore",
    "Store",
    "activity",
    "collect_garbage",
    "copy_blobs",
    "describe",
    "lineage",
    "migrate_store",
    "open_blobs",
    "sha256_file",
]
