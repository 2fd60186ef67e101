"""Images and sequences as data sets: .npz and image-folder ingest, tensor columns, profiles,
windowing a series, and the refusals that leave the store unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from keel.cli import main
from keel.data import (
    Schema,
    get_dataset,
    ingest,
    list_datasets,
    load_frame,
    load_profile,
    tensor_array,
    windows,
)
from keel.datasets import bikeshare, digits, write_digits_npz
from keel.errors import InvalidInput
from keel.store import _tables


def counts(store) -> tuple[int, int, int]:
    with store.read() as conn:
        return tuple(
            conn.execute(select(func.count()).select_from(t)).scalar()
            for t in (_tables.datasets, _tables.sources, _tables.lineage)
        )


def npz(tmp_path: Path, name: str = "a.npz", **arrays) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


# .npz


def test_an_npz_becomes_a_tensor_dataset(store, tmp_path) -> None:
    x = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
    y = np.arange(40) % 3
    res = ingest(store, npz(tmp_path, X=x, y=y))
    ds = res.dataset
    assert (ds.name, ds.kind, ds.n_rows) == ("a", "tensors", 40)
    col = ds.schema["columns"][0]
    assert col == {
        "name": "X",
        "type": "tensor",
        "nullable": False,
        "dtype": "float32",
        "shape": [1, 8, 8],
    }
    assert ds.schema["columns"][1]["type"] == "int"
    frame = load_frame(store, ds)
    assert frame["X"].dtype == object
    cell = frame["X"][3]
    assert cell.shape == (1, 8, 8) and cell.dtype == np.float32 and cell.flags.c_contiguous
    np.testing.assert_array_equal(tensor_array(frame, col), x)
    np.testing.assert_array_equal(
        tensor_array(frame["X"], Schema.from_dict(ds.schema).columns[0]), x
    )
    assert frame["y"].tolist() == y.tolist()


def test_the_same_arrays_are_the_same_version(store, tmp_path) -> None:
    x, y = np.ones((30, 4), np.float32), np.arange(30) % 2
    first = ingest(store, npz(tmp_path, X=x, y=y)).dataset
    again = ingest(store, npz(tmp_path, X=x, y=y)).dataset
    assert (again.version, again.sha) == (first.version, first.sha)
    changed = ingest(store, npz(tmp_path, X=x * 2, y=y)).dataset
    assert changed.version == 2 and changed.sha != first.sha


def test_a_1d_x_is_one_number_per_row_and_string_labels_are_kept(store, tmp_path) -> None:
    res = ingest(store, npz(tmp_path, X=np.arange(30.0), y=np.array(["a", "b", "c"] * 10)))
    assert res.dataset.schema["columns"][0]["shape"] == [1]
    assert res.dataset.schema["columns"][1]["type"] == "category"
    assert load_frame(store, res.dataset)["y"][:3].tolist() == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        ({"X": np.ones((3, 2)), "labels": np.ones(3)}, ["no 'y'", "'X', 'labels'"]),
        ({"inputs": np.ones((3, 2)), "y": np.ones(3)}, ["no 'X'", "'inputs', 'y'"]),
        ({"X": np.ones((3, 2)), "y": np.ones(4)}, ["'X' has 3 rows", "'y' has 4"]),
        ({"X": np.array([[1.0], [np.nan]]), "y": np.ones(2)}, ["'X' row 1", "NaN"]),
        ({"X": np.ones((2, 1)), "y": np.array([1.0, np.inf])}, ["'y' row 1"]),
        ({"X": np.ones((2, 1)), "y": np.ones((2, 2))}, ["'y' must be 1-D", "[2, 2]"]),
        ({"X": np.array(["a", "b"]), "y": np.ones(2)}, ["'X' must hold numbers", "<U1"]),
    ],
)
def test_bad_npz_files_are_refused_and_change_nothing(store, tmp_path, arrays, words) -> None:
    before = counts(store)
    with pytest.raises(InvalidInput) as err:
        ingest(store, npz(tmp_path, "bad.npz", **arrays))
    assert "bad.npz" in str(err.value)
    for word in words:
        assert word in str(err.value)
    assert counts(store) == before


def test_an_object_array_is_refused_without_unpickling(store, tmp_path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, X=np.array([{"a": 1}, None], dtype=object), y=np.ones(2))
    with pytest.raises(InvalidInput, match="array 'X' holds Python objects"):
        ingest(store, path)
    assert counts(store) == (0, 0, 0)


def test_a_file_that_is_not_an_npz_is_refused(store, tmp_path) -> None:
    path = tmp_path / "fake.npz"
    path.write_text("not a zip")
    with pytest.raises(InvalidInput, match="fake.npz cannot be read as a NumPy .npz"):
        ingest(store, path)


def test_one_class_warns(store, tmp_path) -> None:
    res = ingest(
        store, npz(tmp_path, X=np.random.default_rng(1).random((40, 3)), y=np.zeros(40, int))
    )
    assert any("one class (0)" in w for w in res.warnings)


# images


def write_png(path: Path, size=(8, 6), value=128, mode="L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 0, 255)
    Image.new(mode, size, color).save(path)


def test_an_image_folder_is_labelled_by_sub_folder(store, tmp_path) -> None:
    root = tmp_path / "shapes"
    for i in range(3):
        write_png(root / "cat" / f"{i}.png", value=255 - i)
        write_png(root / "dog" / f"{i}.PNG", value=i)
    res = ingest(store, root)
    ds = res.dataset
    assert (ds.name, ds.kind, ds.n_rows) == ("shapes", "tensors", 6)
    assert ds.schema["columns"][0]["shape"] == [1, 6, 8]  # [C, H, W]
    frame = load_frame(store, ds)
    assert frame["y"].tolist() == ["cat"] * 3 + ["dog"] * 3
    x = tensor_array(frame, ds.schema["columns"][0])
    assert x.dtype == np.float32 and x[:3].min() > 0.99 and x[3:].max() < 0.01
    assert counts(store)[1] == 6  # every (distinct) image is a source of the dataset


def test_color_images_have_three_channels_and_labels_can_come_from_a_csv(store, tmp_path) -> None:
    root = tmp_path / "pics"
    write_png(root / "a.png", mode="RGB", value=255)
    write_png(root / "b.jpg", mode="RGB", value=0)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\nb.jpg,no\na.png,yes\n")
    res = ingest(store, root, labels=labels)
    assert res.dataset.schema["columns"][0]["shape"] == [3, 6, 8]
    frame = load_frame(store, res.dataset)
    assert frame["y"].tolist() == ["no", "yes"]
    assert frame["X"][1][0].max() == pytest.approx(1.0) and frame["X"][1][2].max() == 1.0


def test_mixed_sizes_are_refused_naming_the_first_odd_file(store, tmp_path) -> None:
    root = tmp_path / "mixed"
    write_png(root / "a" / "1.png")
    write_png(root / "a" / "2.png")
    write_png(root / "b" / "3.png", size=(9, 9))
    write_png(root / "b" / "4.png", size=(7, 7))
    with pytest.raises(InvalidInput) as err:
        ingest(store, root)
    message = str(err.value)
    assert "'b/3.png' is 9x9" in message and "expected 8x6" in message and "a/1.png" in message
    assert counts(store) == (0, 0, 0)


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("loose", "not in a sub-folder"),
        ("empty", "no PNG or JPEG"),
        ("broken", "cannot be read as an image"),
    ],
)
def test_bad_image_folders_are_refused(store, tmp_path, setup, words) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    if setup == "loose":
        write_png(root / "x.png")
    elif setup == "broken":
        (root / "a").mkdir()
        (root / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InvalidInput, match=words):
        ingest(store, root)
    assert counts(store) == (0, 0, 0)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("name,label\na.png,x\n", "expected columns 'file' and 'label'"),
        ("file,label\nmissing.png,x\n", "line 2: image 'missing.png' not found"),
        ("file,label\n../a.png,x\n", "outside"),
        ("file,label\na.png,x\na.png,y\n", "line 3: 'a.png' is listed twice"),
    ],
)
def test_bad_label_files_are_refused(store, tmp_path, text, words) -> None:
    root = tmp_path / "pics"
    write_png(root / "a.png")
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    with pytest.raises(InvalidInput, match=words):
        ingest(store, root, labels=labels)
    assert counts(store) == (0, 0, 0)


# the built-in digits


def test_digits_are_scaled_images_and_ingest_as_npz(store, tmp_path) -> None:
    x, y = digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32 and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0 and sorted(set(y.tolist())) == list(range(10))
    res = ingest(store, write_digits_npz(tmp_path))
    prof = load_profile(store, res.dataset)["columns"]["X"]
    assert prof["shape"] == [1, 8, 8] and prof["dtype"] == "float32"
    assert prof["min"] == 0.0 and prof["max"] == 1.0 and 0 < prof["mean"] < 1
    assert 0 < prof["row_mean"]["0.05"] < prof["row_mean"]["0.95"] < 1
    assert json.dumps(prof)  # plain JSON


# windows


def series_dataset(store, tmp_path, values, times=None, name="s"):
    import pandas as pd

    frame = pd.DataFrame({"v": values})
    if times is not None:
        frame["t"] = times
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    return ingest(store, path, name=name).dataset


def test_windows_take_the_past_and_predict_the_future(store, tmp_path) -> None:
    src = series_dataset(store, tmp_path, np.arange(200.0))
    res = windows(store, "s", "v", window=5, horizon=2, season=10)
    ds = res.dataset
    assert ds.kind == "tensors" and ds.schema["columns"][0]["shape"] == [5]
    frame = load_frame(store, ds)
    assert list(frame.columns) == ["X", "y", "time", "naive_10"]
    x = tensor_array(frame, ds.schema["columns"][0])
    # first sample: target at step 10 (the seasonal value needs 10 steps before it)
    assert frame["time"][0] == 10 and frame["y"][0] == 10.0 and frame["naive_10"][0] == 0.0
    assert x[0].tolist() == [4.0, 5.0, 6.0, 7.0, 8.0]  # ends horizon (2) steps before y
    assert (x.max(axis=1) < frame["y"].to_numpy()).all()  # no input from y's future
    assert len(frame) == 190
    with store.read() as conn:
        edge = conn.execute(
            select(_tables.lineage).where(_tables.lineage.c.child_id == ds.sha)
        ).one()
    assert (edge.parent_kind, edge.parent_id, edge.role) == ("dataset", src.sha, "windowed_from")


def test_windows_sort_by_time_and_mind_the_gaps(store, tmp_path) -> None:
    times = [t for t in range(60) if t != 30]
    series_dataset(store, tmp_path, [float(t) for t in times][::-1], times[::-1])
    res = windows(store, "s", "v", window=4, time_col="t", season=None)
    frame = load_frame(store, res.dataset)
    assert frame["time"].is_monotonic_increasing
    assert 30 not in frame["time"].tolist() and 33 not in frame["time"].tolist()
    assert any("dropped" in w for w in res.warnings)
    filled = windows(store, "s", "v", window=4, time_col="t", season=None, fill=0, name="f")
    assert len(load_frame(store, filled.dataset)) == 56


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"column": "v", "window": 500}, "window 500"),
        ({"column": "v", "window": 0}, "window: expected a whole number"),
        ({"column": "v", "window": 3, "horizon": 0}, "horizon: expected"),
        ({"column": "c", "window": 3}, "'c' of s/1: expected a column of type int or float"),
        ({"column": "nope", "window": 3}, "no such column"),
        ({"column": "v", "window": 3, "time_col": "c"}, "the time column 'c'"),
    ],
)
def test_bad_windows_are_refused(store, tmp_path, kwargs, words) -> None:
    import pandas as pd

    path = tmp_path / "s.csv"
    pd.DataFrame({"v": np.arange(300.0), "c": ["a", "b", "c"] * 100}).to_csv(path, index=False)
    ingest(store, path, name="s")
    before = counts(store)
    with pytest.raises(InvalidInput, match=words):
        windows(store, "s", **kwargs)
    assert counts(store) == before


@pytest.mark.slow
@pytest.mark.parametrize("window", [24, 168])
def test_bikeshare_windows(store, tmp_path, window) -> None:
    frame = bikeshare()
    frame["hour"] = (frame["day"] - 1) * 24 + frame["hr"]
    path = tmp_path / "bikeshare.csv"
    frame.to_csv(path, index=False)
    ingest(store, path)
    res = windows(store, "bikeshare", "bikers", window=window, time_col="hour", fill=0)
    out = load_frame(store, res.dataset)
    assert len(out) == 365 * 24 - 168
    x = tensor_array(out, res.dataset.schema["columns"][0])
    assert x.shape == (len(out), window)
    # the seasonal value is the same hour one week earlier
    assert (out["time"] - 168).isin(frame["hour"]).sum() > 0.9 * len(out)
    naive_rmse = float(np.sqrt(((out["y"] - out["naive_168"]) ** 2).mean()))
    assert 50 < naive_rmse < 200
    prof = load_profile(store, res.dataset)["columns"]["X"]
    assert len(prof["position_mean"]) == window


# CLI


def test_cli_ingests_npz_and_windows_a_series(tmp_path, capsys) -> None:
    assert main(["init", str(tmp_path / "p")]) == 0
    capsys.readouterr()
    project = ["-C", str(tmp_path / "p")]
    x = np.random.default_rng(2).random((40, 2, 3)).astype(np.float32)
    path = npz(tmp_path, "cli.npz", X=x, y=np.arange(40) % 2)
    assert main(["ingest", str(path), *project, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dataset"]["kind"] == "tensors"
    assert main(["datasets", "cli", *project]) == 0
    assert "tensor float32 [2, 3]" in capsys.readouterr().out
    series_path = tmp_path / "series.csv"
    series_path.write_text("v\n" + "\n".join(str(i % 7) for i in range(100)) + "\n")
    assert main(["ingest", str(series_path), *project]) == 0
    capsys.readouterr()
    args = ["windows", "series", "-c", "v", "-w", "8", "--season", "7", *project, "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dataset"]["name"] == "series-w8-h1" and out["dataset"]["n_rows"] == 92
    assert main(["windows", "series", "-c", "v", "-w", "200", *project]) == 2
    assert "window 200" in capsys.readouterr().err


def test_cli_refuses_an_npz_without_y(tmp_path, capsys) -> None:
    assert main(["init", str(tmp_path / "p")]) == 0
    path = npz(tmp_path, "noy.npz", X=np.ones((3, 2)))
    assert main(["ingest", str(path), "-C", str(tmp_path / "p")]) == 2
    assert "no 'y'" in capsys.readouterr().err
    assert list_datasets is not None and get_dataset is not None


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"name": "X", "type": "tensor", "shape": [3]}, "needs dtype"),
        ({"name": "X", "type": "tensor", "dtype": "float32", "shape": [0]}, "needs shape"),
        ({"name": "X", "type": "float", "dtype": "float32"}, "apply to tensor columns"),
    ],
)
def test_tensor_schema_entries_are_checked(entry, words) -> None:
    with pytest.raises(InvalidInput, match=words):
        Schema.from_dict({"columns": [entry]})
