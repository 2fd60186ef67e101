"""Opening a store that is up to date reads its revision with plain SQL: no Alembic import,
which alone costs every ``keel`` command about a quarter of a second."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from keel.store import Store, _engine


def test_head_from_the_version_files_is_alembics() -> None:
    assert _engine.head_revision() == _engine.alembic_head_revision()


def test_opening_a_store_at_head_imports_no_alembic(any_store: Store, tmp_path: Path) -> None:
    code = (
        "import sys; from keel.store import Store; "
        f"s = Store.open({any_store.url!r}, {str(tmp_path / 'b')!r}); "
        "print(s.schema_revision(), 'alembic' in sys.modules); s.close()"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [_engine.head_revision(), "False"], done.stderr


def test_a_fresh_store_is_still_migrated(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/fresh.db", tmp_path / "b")
    assert _engine.current_revision(store.engine) == _engine.head_revision()
    store.close()
