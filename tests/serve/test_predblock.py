"""The server's columnar path into the prediction log writes the same rows as the per-row
path: the same columns, and inputs/outputs JSON that parse to the same values."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.serve._predblock import Block, block_table
from keel.serve._predlog import SEGMENT_SCHEMA, PredictionLog, _to_table, read_predictions
from keel.store import Store

NUM = ("age", "hours")
TEXT = ("city", "job")
NAMES = ("age", "city", "hours", "job")

texts = st.one_of(st.just(""), st.text(max_size=6))  # "" is a missing value
numbers = st.one_of(
    st.just(float("nan")),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.integers(-(10**6), 10**6).map(float),
)


def _entries(b: Block) -> list[dict]:
    """What the per-row path records for the same batch (see KeelApp._log_batch)."""
    out, row = [], 0
    for rid, ts, lat, n in zip(b.request_ids, b.ts, b.latency_ms, b.counts, strict=True):
        for _ in range(n):
            num = dict(zip(b.num_names, b.num[row].tolist(), strict=True))
            text = dict(zip(b.text_names, b.text[row].tolist(), strict=True))
            inputs = {k: None if v != v else v for k, v in num.items()}
            inputs.update({k: None if v == "" else v for k, v in text.items()})
            inputs = {k: inputs[k] for k in b.names}
            if b.prediction is not None:
                outputs = {"prediction": b.prediction[row].item()}
            else:
                probs = dict(zip(b.classes, b.probabilities[row].tolist(), strict=True))
                outputs = {"label": b.label.tolist()[row], "probabilities": probs}
            out.append(
                {
                    "request_id": rid,
                    "model": b.model,
                    "version": b.version,
                    "inputs": inputs,
                    "outputs": outputs,
                    "latency_ms": lat,
                    "ts": ts,
                }
            )
            row += 1
    return out


@st.composite
def blocks(draw, task: str = "binary"):
    counts = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    n = sum(counts)
    num = np.array(
        draw(st.lists(st.tuples(numbers, numbers), min_size=n, max_size=n)), dtype=np.float32
    ).reshape(n, 2)
    text = np.empty((n, 2), dtype=object)
    text[...] = draw(st.lists(st.tuples(texts, texts), min_size=n, max_size=n))
    k = len(counts)
    common = dict(
        model="m",
        version=3,
        request_ids=[f"r{i}" for i in range(k)],
        ts=[1000.0 + i for i in range(k)],
        latency_ms=[0.5 * (i + 1) for i in range(k)],
        counts=counts,
        names=NAMES,
        num_names=NUM,
        text_names=TEXT,
        num=num,
        text=text,
    )
    if task == "regression":
        pred = np.array(
            draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=n, max_size=n)), dtype=np.float32
        )
        return Block(**common, prediction=pred)
    classes = ("<=50K", ">50K") if task == "binary" else ("a", 'b"c', "ü")
    p = np.array(
        draw(
            st.lists(
                st.floats(0, 1, width=32), min_size=n * len(classes), max_size=n * len(classes)
            )
        ),
        dtype=np.float32,
    )
    probs = p.reshape(n, len(classes))
    label = np.array([classes[i] for i in probs.argmax(axis=1)], dtype=object)
    return Block(**common, label=label, probabilities=probs, classes=classes)


def _same(b: Block) -> None:
    fast = block_table(b, SEGMENT_SCHEMA)
    slow = _to_table(_entries(b))
    assert fast.schema == slow.schema
    for name in ("request_id", "ts", "model", "version", "latency_ms", "label", "prediction"):
        assert fast[name].to_pylist() == slow[name].to_pylist(), name
    assert np.allclose(
        fast["score"].to_pylist() if b.prediction is None else [0],
        slow["score"].to_pylist() if b.prediction is None else [0],
    )
    for name in ("inputs", "outputs"):
        for f, s in zip(fast[name].to_pylist(), slow[name].to_pylist(), strict=True):
            assert json.loads(f) == json.loads(s), (name, f, s)


@settings(max_examples=60, deadline=None)
@given(blocks())
def test_binary_classifier_blocks_match_the_row_path(b):
    _same(b)


@settings(max_examples=30, deadline=None)
@given(blocks(task="multi"))
def test_multiclass_blocks_with_escapes_match_the_row_path(b):
    _same(b)


@settings(max_examples=30, deadline=None)
@given(blocks(task="regression"))
def test_regressor_blocks_match_the_row_path(b):
    _same(b)


def test_sampling_keeps_whole_requests_and_blocks_mix_with_entries(tmp_path):
    store = Store.open(f"sqlite:///{tmp_path}/s.db", tmp_path / "blobs")
    text = np.array([["Oslo", ""], ["", "smith"], ["Rome", "x"]], dtype=object)
    b = Block(
        "m",
        3,
        ["r0", "r1"],
        [1000.0, 1001.0],
        [0.5, 1.0],
        [1, 2],
        NAMES,
        NUM,
        TEXT,
        np.array([[39, np.nan], [40, 38], [41, 1.5]], dtype=np.float32),
        text,
        np.array(["<=50K", ">50K", ">50K"], dtype=object),
        np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]], dtype=np.float32),
        ("<=50K", ">50K"),
    )
    with PredictionLog(store, sample_rate=0.5, seed=7) as log:
        for i in range(40):
            log.record_block(
                Block(**{**b.__dict__, "request_ids": [f"q{i}-{j}" for j in range(len(b.counts))]})
            )
        log.record(_entries(b))
    table = read_predictions(store, "m")
    ids = table["request_id"].to_pylist()
    kept = {r for r in ids if r.startswith("q")}
    assert 0 < len(kept) < 40 * len(b.counts)  # some requests kept, some left out
    per_request = dict(zip(b.request_ids, b.counts, strict=True))
    for r in kept:  # a kept request keeps all its rows
        assert ids.count(r) == per_request[f"r{r.split('-')[1]}"]
    store.close()


def test_integer_labels_match_the_row_path():
    text = np.array([["Oslo", ""], ["", "a\\b"]], dtype=object)
    b = Block(
        "m",
        1,
        ["r0"],
        [5.0],
        [0.25],
        [2],
        NAMES,
        NUM,
        TEXT,
        np.array([[1e20, np.nan], [-0.0, 1e-7]], dtype=np.float32),
        text,
        np.array([0, 1], dtype=np.int64),
        np.array([[0.7, 0.3], [0.1, 0.9]], dtype=np.float32),
        ("0", "1"),
    )
    _same(b)
    assert block_table(b, SEGMENT_SCHEMA)["label"].to_pylist() == ["0", "1"]


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_repeated_values_written_once_match_the_row_path(data):
    """Blocks with few distinct values (categorical columns, class labels, integer
    features) take the path that writes each distinct value once: the same rows."""
    n = data.draw(st.integers(8, 60))
    words = data.draw(st.lists(texts, min_size=1, max_size=4))
    nums = data.draw(st.lists(numbers, min_size=1, max_size=4))
    num = np.array([[data.draw(st.sampled_from(nums)) for _ in NUM] for _ in range(n)])
    text = np.empty((n, 2), dtype=object)
    text[...] = [[data.draw(st.sampled_from(words)) for _ in TEXT] for _ in range(n)]
    classes = ("a", 'b"c', "ü")
    probs = np.random.default_rng(n).random((n, 3)).astype(np.float32)
    b = Block(
        "m",
        3,
        ["r0", "r1"],
        [1000.0, 1001.0],
        [0.5, 1.5],
        [n - n // 2, n // 2],
        NAMES,
        NUM,
        TEXT,
        num.astype(np.float32),
        text,
        np.array([classes[i] for i in probs.argmax(axis=1)], dtype=object),
        probs,
        classes,
    )
    _same(b)
    assert json.loads(block_table(b, SEGMENT_SCHEMA)["inputs"][0].as_py())["city"] == (
        text[0, 0] or None
    )
