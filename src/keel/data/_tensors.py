"""Reading tensor data sets: a NumPy ``.npz`` of arrays ``X`` and ``y``, or a folder of
PNG/JPEG images labelled by sub-folder name or by a CSV of ``file,label``.

Both give an Arrow table with a tensor column ``X`` and a label column ``y`` (the
target), its schema and a ``SourceInfo`` naming every file read, so the data set is
stored, hashed, profiled and traced like any other. The rules:

- ``.npz``: loaded with ``allow_pickle=False`` (an object array is refused, never
  unpickled). ``X`` is ``[N, *shape]``; a 1-D ``X`` is one number per row and becomes
  shape ``[1]``. ``X`` holds numbers or booleans; NaN or infinity in ``X`` or in a float
  ``y`` is refused, naming the first row (a network cannot learn from it, and the server
  refuses it too). ``y`` is 1-D, one value per row; its type is inferred as for a CSV
  column (int, float, bool, category, string).
- Images: PNG or JPEG (suffix ``.png``, ``.jpg``, ``.jpeg``, any case), decoded with
  Pillow, as ``float32 [C, H, W]`` in [0, 1]: ``C = 1`` when every image is grayscale,
  else ``C = 3`` (RGB; alpha is dropped, grayscale images repeated on three channels).
  All images must have one size; the first of another size is refused naming it, its
  size and the size expected. Rows are in sorted path order.
"""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from keel.data._read import SourceInfo, file_sha256
from keel.data._tensor import tensor_column, tensor_schema
from keel.data._types import TENSOR_DTYPES
from keel.errors import InvalidInput

__all__ = ["IMAGE_SUFFIXES", "read_images", "read_npz"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def _info(uri: Path, files: list[Path], fmt: str, rows: int) -> SourceInfo:
    files = sorted(files)
    sizes = [f.stat().st_size for f in files]
    return SourceInfo(
        uri=str(uri),
        path=[str(f) for f in files],
        format=fmt,
        sha256=[file_sha256(f) for f in files],
        size=sum(sizes),
        sizes=sizes,
        rows=rows,
    )


def read_npz(source: str | Path) -> tuple[pa.Table, Any, SourceInfo]:
    """The arrays ``X`` and ``y`` of an ``.npz`` file as a table, its schema and source."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise InvalidInput(f"{str(source)!r}: no such file; check the path")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidInput(
            f"{path.name} cannot be read as a NumPy .npz file (np.savez): {exc}"
        ) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise InvalidInput(
            f"{path.name} holds one array (a .npy), not arrays X and y; write it with "
            f"np.savez(path, X=..., y=...)"
        )
    try:
        with loaded as npz:
            names = sorted(npz.files)
            missing = [n for n in ("X", "y") if n not in names]
            if missing:
                raise InvalidInput(
                    f"{path.name}: expected arrays 'X' (inputs) and 'y' (target), but it has "
                    f"no {' and no '.join(repr(m) for m in missing)}; it holds "
                    f"{', '.join(repr(n) for n in names) or 'no arrays'} "
                    f"(write it with np.savez(path, X=..., y=...))"
                )
            x, y = _load_array(npz, "X", path), _load_array(npz, "y", path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidInput(f"{path.name} cannot be read as a NumPy .npz file: {exc}") from None
    table, schema = _tensor_table(x, y, path.name)
    return table, schema, _info(path.resolve(), [path.resolve()], "npz", len(x))


def _load_array(npz: Any, name: str, path: Path) -> np.ndarray:
    try:
        return np.asarray(npz[name])
    except ValueError as exc:  # an object array, refused by allow_pickle=False
        if "pickle" in str(exc):
            raise InvalidInput(
                f"{path.name}: array {name!r} holds Python objects (dtype object); keel never "
                f"unpickles data: save numbers (or, for y, fixed-width strings) instead"
            ) from None
        raise InvalidInput(f"{path.name}: array {name!r} cannot be read: {exc}") from None


def _tensor_table(x: np.ndarray, y: np.ndarray, where: str) -> tuple[pa.Table, Any]:
    from keel.data._schema import ColumnSchema, Schema

    if x.ndim == 0 or x.dtype.name not in TENSOR_DTYPES:
        raise InvalidInput(
            f"{where}: array 'X' must hold numbers or booleans with one row per sample, got "
            f"dtype {x.dtype} and shape {list(x.shape)}"
        )
    if y.ndim != 1:
        raise InvalidInput(
            f"{where}: array 'y' must be 1-D (one target per row), got shape {list(y.shape)}"
        )
    if len(x) != len(y):
        raise InvalidInput(
            f"{where}: 'X' has {len(x):,} rows but 'y' has {len(y):,}; they must match"
        )
    if len(x) == 0:
        raise InvalidInput(f"{where}: 'X' and 'y' have no rows")
    if x.ndim == 1:
        x = x[:, None]
    _refuse_non_finite(x, "X", where)
    y_col = _label_column(y, where)
    table = pa.table({"X": tensor_column(x), "y": y_col})
    y_schema = _infer_label(table["y"])
    schema = Schema(columns=[ColumnSchema(**tensor_schema("X", x)), y_schema])
    return table.set_column(1, "y", _cast_label(table["y"], y_schema)), schema


def _refuse_non_finite(values: np.ndarray, name: str, where: str) -> None:
    if values.dtype.kind != "f":
        return
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        raise InvalidInput(
            f"{where}: array {name!r} row {row} holds NaN or infinity ({int(bad.sum()):,} rows "
            f"do); expected finite numbers: fill or drop those rows before ingesting"
        )


def _label_column(y: np.ndarray, where: str) -> pa.Array:
    if y.dtype.kind not in "biufUS":
        raise InvalidInput(
            f"{where}: array 'y' must hold numbers, booleans or strings, got dtype {y.dtype}"
        )
    _refuse_non_finite(y[:, None] if y.dtype.kind == "f" else y, "y", where)
    if y.dtype.kind == "S":
        y = y.astype("U")
    if y.dtype.kind == "U":
        return pa.array(y.tolist(), pa.string())
    return pa.array(y)


def _infer_label(y: pa.ChunkedArray) -> Any:
    from keel.data._schema import infer_schema

    col = infer_schema(pa.table({"y": y}), null_values=()).columns[0]
    return col


def _cast_label(y: pa.ChunkedArray, col: Any) -> pa.ChunkedArray:
    from keel.data._cast import cast_column

    return cast_column(y, col, ()).values


def label_warnings(schema: Any, table: pa.Table, where: str) -> list[str]:
    """One class only in a label ``y`` that is not a float: a classifier cannot learn."""
    col = schema.column("y")
    if col.type == "float":
        return []
    distinct = pa.compute.unique(table["y"]).to_pylist()
    if len(distinct) == 1:
        return [
            f"{where}: the label column 'y' holds one class ({distinct[0]!r}) in every row; a "
            f"classifier needs at least two (training will refuse it)"
        ]
    return []


# Images


def read_images(
    folder: str | Path, *, labels: str | Path | None = None
) -> tuple[pa.Table, Any, SourceInfo]:
    """A folder of PNG/JPEG images as a table (``X`` float32 ``[C, H, W]`` in [0, 1], ``y``
    the label), its schema and its source. Labels are the names of the sub-folders that
    hold the images (``cats/1.png``), or with ``labels`` a CSV with columns ``file``
    (a path relative to ``folder``) and ``label``."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InvalidInput(f"{str(folder)!r}: no such folder of images; check the path")
    root = root.resolve()
    if labels is not None:
        items, csv_path = _labels_from_csv(root, Path(labels).expanduser())
        extra = [csv_path]
    else:
        items, extra = _labels_from_folders(root), []
    images = _decode_all(root, items)
    x = np.stack(images)
    y = np.array([label for _, label in items])
    table, schema = _tensor_table(x, y, root.name)
    files = [root / rel for rel, _ in items] + extra
    return table, schema, _info(root, files, "images", len(items))


def _labels_from_folders(root: Path) -> list[tuple[str, str]]:
    items = []
    loose = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        rel = path.relative_to(root)
        if len(rel.parts) == 1:
            loose.append(rel.as_posix())
            continue
        items.append((rel.as_posix(), rel.parts[0]))
    if loose:
        raise InvalidInput(
            f"{root.name}: image {loose[0]!r} is not in a sub-folder; labels come from "
            f"sub-folder names (cat/1.png, dog/2.png), or give a CSV of file,label (--labels)"
        )
    if not items:
        raise InvalidInput(
            f"{root.name}: no PNG or JPEG images ({', '.join(IMAGE_SUFFIXES)}) in its "
            f"sub-folders; expected one sub-folder per label holding the images"
        )
    return sorted(items, key=lambda item: (item[1], item[0]))


def _labels_from_csv(root: Path, path: Path) -> tuple[list[tuple[str, str]], Path]:
    if not path.is_file():
        raise InvalidInput(f"labels file {str(path)!r} does not exist; check the path")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path.name} cannot be read as UTF-8 text: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    if "file" not in header or "label" not in header:
        raise InvalidInput(
            f"{path.name}: expected columns 'file' and 'label', got {header or 'no header'}"
        )
    reader.fieldnames = header
    items, seen = [], {}
    for line, row in enumerate(reader, 2):
        rel, label = (row.get("file") or "").strip(), (row.get("label") or "").strip()
        if not rel or not label:
            raise InvalidInput(f"{path.name} line {line}: 'file' and 'label' must both be given")
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            raise InvalidInput(f"{path.name} line {line}: {rel!r} is outside {root.name}")
        if not target.is_file():
            raise InvalidInput(f"{path.name} line {line}: image {rel!r} not found in {root.name}")
        if target.suffix.lower() not in IMAGE_SUFFIXES:
            raise InvalidInput(
                f"{path.name} line {line}: {rel!r} is not a PNG or JPEG "
                f"({', '.join(IMAGE_SUFFIXES)})"
            )
        key = target.relative_to(root).as_posix()
        if key in seen:
            raise InvalidInput(f"{path.name} line {line}: {rel!r} is listed twice")
        seen[key] = line
        items.append((key, label))
    if not items:
        raise InvalidInput(f"{path.name}: a header but no rows; expected one row per image")
    return sorted(items, key=lambda item: (item[1], item[0])), path.resolve()


def _decode_all(root: Path, items: list[tuple[str, str]]) -> list[np.ndarray]:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - pillow is a dependency of keel[torch]
        raise InvalidInput("reading images needs Pillow: pip install 'keel[torch]'") from None
    opened = []
    expected = None
    gray = True
    for rel, _ in items:
        try:
            with Image.open(root / rel) as img:
                img.load()
                size = img.size
                if expected is None:
                    expected = (rel, size)
                elif size != expected[1]:
                    raise InvalidInput(
                        f"{root.name}: image {rel!r} is {size[0]}x{size[1]} (width x height), "
                        f"but the images must share one size: expected {expected[1][0]}x"
                        f"{expected[1][1]} like {expected[0]!r}; resize them first"
                    )
                gray = gray and img.mode in _GRAY_MODES
                opened.append(img.convert("RGB") if img.mode not in _GRAY_MODES else img.copy())
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise InvalidInput(f"{root.name}: {rel!r} cannot be read as an image: {exc}") from None
    return [_to_chw(img, gray) for img in opened]


def _to_chw(img: Any, gray: bool) -> np.ndarray:
    if gray:
        values = np.asarray(img.convert("L"), dtype=np.float32)[None] / 255.0
    else:
        values = np.asarray(img.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
    return np.ascontiguousarray(values, dtype=np.float32)
