"""The server's parts without a socket: routes, the JSON-to-feed codec (it must feed the
graph exactly what keel.export.onnx_inputs does), the micro-batcher, the error middleware,
settings."""

from __future__ import annotations

import asyncio
import inspect
import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import keel.serve
from keel.errors import InvalidInput
from keel.export import onnx_inputs
from keel.serve import MemorySink, PredictionSink, Route, ServeConfig, ServeError, is_loopback
from keel.serve._batch import MicroBatcher
from keel.serve._codec import (
    F32_OVERFLOW,
    MAX_DETAILS,
    InputSpec,
    _slow_block,
    feed_from_columns,
    feed_from_records,
    feed_from_split,
)
from keel.serve._middleware import Errors, RequestId

SCHEMA = [
    {"name": "age", "type": "int"},
    {"name": "job", "type": "category"},
    {"name": "score", "type": "float"},
    {"name": "member", "type": "bool"},
    {"name": "city", "type": "string"},
]
SPEC = InputSpec.from_schema(SCHEMA)
ROWS = [
    {"age": 39, "job": "clerk", "score": 1.5, "member": True, "city": "Oslo", "extra": 1},
    {"age": None, "job": None, "score": 2, "member": False, "city": ""},
    {"age": 7.0, "job": "", "score": -3e10, "member": 1, "city": "Lima"},
]


def test_public_names_are_listed():
    public = {
        n
        for n, obj in vars(keel.serve).items()
        if not n.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__.startswith("keel.serve")
    }
    assert public <= set(keel.serve.__all__)
    assert all(hasattr(keel.serve, n) for n in keel.serve.__all__)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("adult", Route("adult", "adult", "production")),
        ("adult@candidate", Route("adult", "adult", "candidate")),
        ("adult/3", Route("adult", "adult", None, 3)),
        ("old=adult/3", Route("old", "adult", None, 3)),
    ],
)
def test_routes_parse(text, want):
    assert Route.parse(text) == want


@pytest.mark.parametrize("text", ["", "adult/x", "adult@1bad", "a b", "=adult"])
def test_bad_routes_are_refused(text):
    with pytest.raises(InvalidInput):
        Route.parse(text)


def test_the_feed_equals_what_export_feeds_the_graph():
    want = onnx_inputs(ROWS, SCHEMA)
    for block in (
        feed_from_records(ROWS, SPEC),
        feed_from_columns({n: [r.get(n) for r in ROWS] for n in SPEC.names}, SPEC),
        feed_from_split(
            {"columns": list(SPEC.names), "data": [[r[n] for n in SPEC.names] for r in ROWS]}, SPEC
        ),
    ):
        got = SPEC.graph_feed(block)
        assert list(got) == [
            c["name"] for c in SCHEMA if c["type"] not in ("category", "string")
        ] + [
            "job",
            "city",
        ]
        for name, arr in want.items():
            assert got[name].shape == (3, 1) and got[name].flags.c_contiguous
            if arr.dtype == object:
                assert got[name].tolist() == arr.tolist()
            else:
                np.testing.assert_array_equal(got[name], arr)


def test_rows_come_back_from_a_block():
    rows = SPEC.rows(feed_from_records(ROWS[:2], SPEC))
    assert rows[0] == {"age": 39.0, "job": "clerk", "score": 1.5, "member": 1.0, "city": "Oslo"}
    assert rows[1]["age"] is None and rows[1]["job"] is None and rows[1]["city"] is None


def test_every_bad_value_is_named_up_to_a_cap():
    bad = [{"age": "x", "job": 1, "score": [1], "member": "yes"}] + [{"age": "y"}] * 100
    with pytest.raises(ServeError) as info:
        feed_from_records(bad, SPEC)
    err = info.value
    assert err.code == "invalid_input" and err.status == 422
    assert len(err.details) == MAX_DETAILS
    assert err.details[:5] == [
        {"row": 0, "field": "age", "expected": "a number", "got": "'x'"},
        {"row": 1, "field": "age", "expected": "a number", "got": "'y'"},
        {"row": 2, "field": "age", "expected": "a number", "got": "'y'"},
        {"row": 3, "field": "age", "expected": "a number", "got": "'y'"},
        {"row": 4, "field": "age", "expected": "a number", "got": "'y'"},
    ]
    assert "(and " in err.message
    with pytest.raises(ServeError) as info:
        feed_from_records(
            [{"age": True, "job": "a", "score": 1, "member": True, "city": "b"}], SPEC
        )
    assert info.value.details == [{"row": 0, "field": "age", "expected": "a number", "got": "true"}]


_NUMBER = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False, max_value=3.4e38, min_value=-3.4e38),
)
_TEXT = st.one_of(st.none(), st.text(max_size=4))
_ROW = st.fixed_dictionaries(
    {"age": _NUMBER, "job": _TEXT, "score": _NUMBER, "member": _NUMBER, "city": _TEXT}
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_ROW, min_size=1, max_size=12))
def test_records_fast_path_equals_the_checked_path(rows):
    """Well-typed records take the fast path (values picked per row in C): the same block
    as the column-by-column checked path, None and "" alike missing text."""
    fast = feed_from_records(rows, SPEC)
    checked = _slow_block({n: [r[n] for r in rows] for n in SPEC.names}, SPEC)
    np.testing.assert_array_equal(fast["num"], checked["num"])
    assert fast["num"].dtype == np.float32 and fast["text"].dtype == object
    assert fast["text"].tolist() == checked["text"].tolist()
    split = {"columns": list(SPEC.names), "data": [[r[n] for n in SPEC.names] for r in rows]}
    assert feed_from_split(split, SPEC)["text"].tolist() == fast["text"].tolist()


def test_records_past_float32_missing_fields_and_non_objects_are_named():
    top = float(np.nextafter(F32_OVERFLOW, 0))
    ok = {"age": top, "job": None, "score": None, "member": 1, "city": "a"}
    assert feed_from_records([ok], SPEC)["num"][0, 0] == np.float32(3.4028235e38)
    big = dict(ok, age=F32_OVERFLOW)  # beside a missing value (NaN in the block)
    with pytest.raises(ServeError) as info:
        feed_from_records([ok, big], SPEC)
    assert info.value.details == [
        {
            "row": 1,
            "field": "age",
            "expected": "a number within float32 range",
            "got": repr(F32_OVERFLOW),
        }
    ]
    with pytest.raises(ServeError) as info:
        feed_from_records([ok, {k: v for k, v in ok.items() if k != "city"}], SPEC)
    assert info.value.details == [
        {"row": 1, "field": "city", "expected": "a string", "got": "missing"}
    ]
    with pytest.raises(ServeError) as info:
        feed_from_records([ok, ["a"], "b"], SPEC)
    assert [d["row"] for d in info.value.details] == [1, 2]
    assert info.value.details[0]["expected"] == "an object"


def test_columns_must_have_one_length():
    cols = {n: [r.get(n) for r in ROWS] for n in SPEC.names}
    cols["city"] = ["a"]
    with pytest.raises(ServeError) as info:
        feed_from_columns(cols, SPEC)
    assert info.value.details[0]["field"] == "city"


def test_memory_sink_is_a_prediction_sink_and_bounded():
    sink = MemorySink(max_entries=3)
    assert isinstance(sink, PredictionSink)
    sink.record([{"i": i} for i in range(5)])
    assert [e["i"] for e in sink.entries] == [2, 3, 4]
    sink.close()
    assert sink.closed


def _block(value: float, n: int = 1) -> dict[str, np.ndarray]:
    return {"num": np.full((n, 1), value, dtype=np.float32), "text": np.empty((n, 0), dtype=object)}


def test_a_lone_request_is_not_held_by_the_wait():
    runs = []

    def run(block):
        runs.append(len(block["num"]))
        if (block["num"] < 0).any():
            raise ValueError("negative")
        return {"y": block["num"] * 2}

    async def main():
        batcher = MicroBatcher(run, max_rows=8, max_wait_s=5.0)
        batcher.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await asyncio.wait_for(batcher.submit(_block(1.0), 1), 2)
        lone = loop.time() - t0
        # several at once: merged, each gets its own rows; a bad one fails alone
        results = await asyncio.wait_for(
            asyncio.gather(
                *(batcher.submit(_block(v, 2), 2) for v in (1.0, 2.0, -1.0, 3.0)),
                return_exceptions=True,
            ),
            5,
        )
        await batcher.close()
        return out, lone, results

    out, lone, results = asyncio.run(main())
    assert out["y"].tolist() == [[2.0]] and lone < 1.0
    assert [r["y"][:, 0].tolist() for r in results if not isinstance(r, Exception)] == [
        [2.0, 2.0],
        [4.0, 4.0],
        [6.0, 6.0],
    ]
    assert isinstance(results[2], ValueError)
    assert runs[1] == 8  # the four requests went as one run (then one by one to isolate)


def test_an_unexpected_failure_is_a_bare_500(caplog):
    async def broken(scope, receive, send):
        raise RuntimeError("secret at /srv/app/models.py line 3")

    app = RequestId(Errors(broken))
    sent = []

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    with caplog.at_level(logging.ERROR, logger="keel.serve"):
        asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 500
    body = sent[1]["body"].decode()
    assert "secret" not in body and ".py" not in body and "internal" in body
    rid = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert rid in body
    assert "secret" in caplog.text and rid in caplog.text  # the operator sees the cause


def test_settings_are_checked():
    with pytest.raises(InvalidInput, match="max_batch_rows"):
        ServeConfig(max_batch_rows=0)
    with pytest.raises(InvalidInput, match="max_wait_ms"):
        ServeConfig(max_wait_ms=-1)
    with pytest.raises(InvalidInput, match="unknown setting"):
        keel.serve.create_app(None, ["a"], max_rows=3)


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("host")


def _tensor_json(rows, name, kind):
    values = [r.get(name) for r in rows]
    if kind == "string":
        return {
            "name": name,
            "shape": [len(rows), 1],
            "datatype": "BYTES",
            "data": [v or "" for v in values],
        }
    datatype = "BOOL" if kind == "boolean" else "FP64"
    return {"name": name, "shape": [len(rows)], "datatype": datatype, "data": [[v] for v in values]}


def test_v2_tensors_give_the_same_block_as_rows():
    from keel.serve._oip import decode_inputs

    rows = [dict(r, member=bool(r["member"])) for r in ROWS]
    request = {
        "inputs": [_tensor_json(rows, n, k) for n, k in zip(SPEC.names, SPEC.kinds, strict=True)]
    }
    got = decode_inputs(request, SPEC, None)
    want = feed_from_records(rows, SPEC)
    np.testing.assert_array_equal(got["num"], want["num"])
    assert got["text"].tolist() == [[v or "" for v in r] for r in want["text"].tolist()]


def test_v2_tensor_problems_name_the_input():
    from keel.serve._oip import decode_inputs

    inputs = [_tensor_json(ROWS, n, k) for n, k in zip(SPEC.names, SPEC.kinds, strict=True)]
    inputs[0] = dict(inputs[0], shape=[2, 2])
    inputs[1] = dict(inputs[1], datatype="FP32")
    inputs.append({"name": "nope", "shape": [3], "datatype": "FP32", "data": [1, 2, 3]})
    with pytest.raises(ServeError) as info:
        decode_inputs({"inputs": inputs[:-2] + inputs[-1:]}, SPEC, None)
    fields = [d["field"] for d in info.value.details]
    assert fields == ["age", "job", "nope", "city"]  # bad shape, bad type, unknown, missing
