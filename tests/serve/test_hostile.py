"""A corpus of hostile bodies against each protocol's inference route of a live server:
deep nesting, huge numbers, NaN literals, wrong shapes and types, broken UTF-8, empty and
50 MB bodies, foreign content types. Each is answered 4xx with its code (400 malformed, 413
too large, 415 content type, 422 invalid; 400 on MLflow's /invocations, as MLflow answers),
as JSON with no traceback or path; the server holds no more than its body limit in memory
and answers correctly afterwards."""

from __future__ import annotations

import gc
import json
import pickle
import re
import select
import socket
import struct
import threading
import time
from typing import Any

import pytest

from keel.serve import STATUS, start
from keel.serve._mlflow import STATUS as MLFLOW_STATUS
from tests.serve._support import adult_store, assert_clean_error, call, records, train_lgb

PREDICT, INVOCATIONS, INFER = "/models/adult/predict", "/invocations", "/v2/models/adult/infer"
ROUTES = (PREDICT, INVOCATIONS, INFER)
LIMIT = 8 * 1024 * 1024  # the server's max_body_bytes (its default)
HUGE = 50 * 1024 * 1024
MAX_ROWS = 100


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    store, df = adult_store(root, rows=500)
    train_lgb(store, "adult")
    server = start(
        store, ["adult"], max_body_bytes=LIMIT, max_request_rows=MAX_ROWS, watch_seconds=0
    )
    server.store = store
    yield server, records(df, 1)[0]
    server.stop()
    store.close()


def good(path: str, row: dict[str, Any]) -> dict[str, Any]:
    """A valid body for the route at ``path``."""
    if path == PREDICT:
        return {"rows": [row]}
    if path == INVOCATIONS:
        return {"dataframe_records": [row]}
    return {"inputs": [tensor(k, v) for k, v in row.items()]}


def tensor(name: str, value: Any, **fields: Any) -> dict[str, Any]:
    datatype = "BYTES" if isinstance(value, str) else "FP32"
    return {"name": name, "shape": [1, 1], "datatype": datatype, "data": [value], **fields}


def with_literal(path: str, row: dict[str, Any], literal: bytes) -> bytes:
    """The good body with ``age`` set to a raw JSON ``literal``."""
    text = json.dumps(good(path, dict(row, age="<AGE>"))).encode()
    return text.replace(b'"<AGE>"', literal)


def v2(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The good OIP body with the ``age`` tensor's fields changed (None: removed)."""
    body = good(INFER, row)
    age = body["inputs"][0]
    assert age["name"] == "age"
    for key, value in changes.items():
        if value is None:
            age.pop(key)
        else:
            age[key] = value
    return body


def malformed(row: dict[str, Any]) -> list[tuple[str, str, bytes]]:
    """Bodies that are not JSON the server can parse: 400 on every route."""
    cases = []
    for path in ROUTES:
        cases += [
            (path, "deep-open", b"[" * 100_000),
            (path, "deep-balanced", b"[" * 100_000 + b"]" * 100_000),
            (path, "deep-object", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
            (path, "float-1e400", with_literal(path, row, b"1e400")),
            (path, "float-minus-1e400", with_literal(path, row, b"-1e400")),
            (path, "int-5000-digits", with_literal(path, row, b"9" * 5000)),
            # MLflow's client writes NaN for a missing value: /invocations reads it as null
            *([] if path == INVOCATIONS else [(path, "nan", with_literal(path, row, b"NaN"))]),
            (path, "infinity", with_literal(path, row, b"Infinity")),
            (path, "minus-infinity", with_literal(path, row, b"-Infinity")),
            (path, "utf8", with_literal(path, row, b'"\xff\xfe\xc3"')),
            (path, "lone-surrogate", with_literal(path, row, b'"\\ud800"')),
            (path, "empty", b""),
            (path, "cut", json.dumps(good(path, row)).encode()[:-3]),
            (path, "not-json", b"age=39&sex=Male"),
        ]
    return cases


def invalid(row: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """JSON of the wrong shape or types: 422, naming the field."""
    no_age = {k: v for k, v in row.items() if k != "age"}
    values = list(row.values())
    cols = list(row)
    return [
        (PREDICT, "body-scalar", 5),
        (PREDICT, "body-string", "rows"),
        (PREDICT, "body-array", [row]),
        (PREDICT, "rows-missing", {"rowz": [row]}),
        (PREDICT, "rows-empty", {"rows": []}),
        (PREDICT, "rows-scalar", {"rows": 5}),
        (PREDICT, "rows-string", {"rows": "abc"}),
        (PREDICT, "rows-list-of-lists", {"rows": [values]}),
        (PREDICT, "row-missing-field", {"rows": [no_age]}),
        (PREDICT, "row-only-extra-fields", {"rows": [{"bogus": 1, "other": "x"}]}),
        (PREDICT, "row-extra-and-missing", {"rows": [dict(no_age, agee=39)]}),
        (PREDICT, "number-as-string", {"rows": [dict(row, age="forty")]}),
        (PREDICT, "string-as-number", {"rows": [dict(row, sex=3)]}),
        (PREDICT, "number-as-bool", {"rows": [dict(row, age=True)]}),
        (PREDICT, "number-as-array", {"rows": [dict(row, age=[39])]}),
        (PREDICT, "number-as-object", {"rows": [dict(row, age={"v": 39})]}),
        (PREDICT, "float32-overflow", {"rows": [dict(row, age=1e300)]}),
        (PREDICT, "key-as-array", {"rows": [row], "key": [1]}),
        (INVOCATIONS, "body-scalar", 5),
        (INVOCATIONS, "no-format", {"rows": [row]}),
        (INVOCATIONS, "two-formats", {"dataframe_records": [row], "inputs": [row]}),
        (INVOCATIONS, "records-list-of-lists", {"dataframe_records": [values]}),
        (INVOCATIONS, "records-missing-field", {"dataframe_records": [no_age]}),
        (INVOCATIONS, "inputs-scalar", {"inputs": 5}),
        (INVOCATIONS, "instances-string", {"instances": "abc"}),
        (
            INVOCATIONS,
            "columns-unequal",
            {"inputs": {k: [v, v] for k, v in row.items()} | {"age": [1]}},
        ),
        (INVOCATIONS, "columns-scalars", {"inputs": row}),
        (INVOCATIONS, "split-scalar", {"dataframe_split": 5}),
        (INVOCATIONS, "split-short-row", {"dataframe_split": {"columns": cols, "data": [[1, 2]]}}),
        (
            INVOCATIONS,
            "split-columns-not-strings",
            {"dataframe_split": {"columns": [1], "data": [[1]]}},
        ),
        (INVOCATIONS, "split-data-scalar", {"dataframe_split": {"columns": cols, "data": 5}}),
        (
            INVOCATIONS,
            "split-wrong-type",
            {"dataframe_split": {"columns": cols, "data": [["x"] * len(cols)]}},
        ),
        (INFER, "body-scalar", 5),
        (INFER, "body-array", [tensor("age", 39)]),
        (INFER, "inputs-missing", {"outputs": []}),
        (INFER, "inputs-empty", {"inputs": []}),
        (INFER, "inputs-scalar", {"inputs": 5}),
        (INFER, "tensor-scalar", {"inputs": [5]}),
        (INFER, "input-missing", {"inputs": good(INFER, row)["inputs"][1:]}),
        (INFER, "input-unknown", {"inputs": [*good(INFER, row)["inputs"], tensor("bogus", 1.0)]}),
        (INFER, "shape-2d-wide", v2(row, shape=[1, 2])),
        (INFER, "shape-3d", v2(row, shape=[1, 1, 1])),
        (INFER, "shape-zero", v2(row, shape=[0])),
        (INFER, "shape-negative", v2(row, shape=[-1, 1])),
        (INFER, "shape-strings", v2(row, shape=["1"])),
        (INFER, "shape-missing", v2(row, shape=None)),
        (INFER, "shape-rows-differ", v2(row, shape=[2], data=[39, 40])),
        (INFER, "data-longer-than-shape", v2(row, data=[39, 40])),
        (INFER, "data-2d-longer-than-shape", v2(row, data=[[39, 40]])),
        (INFER, "data-missing", v2(row, data=None)),
        (INFER, "data-scalar", v2(row, data=39)),
        (INFER, "data-strings-in-fp32", v2(row, data=["39"])),
        (INFER, "bytes-for-a-number", v2(row, datatype="BYTES", data=["39"])),
        (
            INFER,
            "fp32-for-a-string",
            {"inputs": [tensor(k, v, datatype="FP32") for k, v in row.items()]},
        ),
        (INFER, "datatype-unknown", v2(row, datatype="COMPLEX64")),
        (INFER, "datatype-array", v2(row, datatype=["FP32"])),
        (INFER, "datatype-missing", v2(row, datatype=None)),
        (INFER, "parameters-array", v2(row, parameters=[1])),
        (INFER, "binary-size-without-binary", v2(row, parameters={"binary_data_size": 4})),
        (INFER, "request-parameters-array", good(INFER, row) | {"parameters": [1]}),
        (INFER, "outputs-name-array", good(INFER, row) | {"outputs": [{"name": ["label"]}]}),
        (INFER, "outputs-unknown", good(INFER, row) | {"outputs": [{"name": "bogus"}]}),
        (INFER, "outputs-repeated", good(INFER, row) | {"outputs": [{"name": "label"}] * 10**5}),
        (INFER, "outputs-scalar", good(INFER, row) | {"outputs": "label"}),
    ]


def media_types(row: dict[str, Any]) -> list[tuple[str, str, bytes, str | None]]:
    """Bodies under a content type the route does not take: 415."""
    body = {path: json.dumps(good(path, row)).encode() for path in ROUTES}
    pickled = pickle.dumps(good(PREDICT, row))
    cases = []
    for path in ROUTES:
        cases += [
            (path, "text-plain", body[path], "text/plain"),
            (path, "form", body[path], "application/x-www-form-urlencoded"),
            (path, "latin-1", body[path], "application/json; charset=latin-1"),
            (path, "pickle", pickled, "application/python-pickle"),
            (path, "octet-stream", body[path], "application/octet-stream"),
        ]
        if path != INFER:  # the OIP route takes no content type, as Triton's clients send
            cases.append((path, "none", body[path], None))
    return cases


# Names of the server's insides that must never reach a client.
_INSIDES = re.compile(
    r"\b\w+(Error|Exception)\b|orjson|numpy|onnxruntime|uvicorn|httptools|__\w+__|0x[0-9a-f]{6,}"
)


def check_error(status: int, data: bytes, code: str, what: str) -> None:
    expected = MLFLOW_STATUS[code] if what.startswith(INVOCATIONS) else STATUS[code]
    assert status == expected, f"{what}: {status} {data[:300]!r}"
    assert_clean_error(data, code)
    assert not _INSIDES.search(data.decode()), f"{what}: {data[:300]!r}"


@pytest.mark.parametrize("path", ROUTES)
def test_a_good_request_is_answered(setup, path):
    server, row = setup
    status, _, data = call(server.url, "POST", path, good(path, row))
    assert status == 200, data


@pytest.mark.parametrize(
    ("shape", "data"),
    [([1], [39]), ([1, 1], [39]), ([1, 1], [[39]]), ([1], [[39]])],
    ids=["1d", "2d", "2d-nested", "1d-nested"],
)
def test_oip_takes_1d_and_2d_tensors(setup, shape, data):
    server, row = setup
    status, _, body = call(server.url, "POST", INFER, v2(row, shape=shape, data=data))
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["shape"] == [1]


def test_malformed_bodies_are_400(setup):
    server, row = setup
    cases = malformed(row)
    for path, name, body in cases:
        status, _, data = call(server.url, "POST", path, body)
        check_error(status, data, "invalid_json", f"{path} {name}")
    assert len(cases) == 41


def test_wrong_shapes_and_types_are_422_naming_the_field(setup):
    server, row = setup
    cases = invalid(row)
    for path, name, body in cases:
        status, _, data = call(server.url, "POST", path, body)
        check_error(status, data, "invalid_input", f"{path} {name}")
        text = json.loads(data)
        error = text["error"] if path != INFER else text
        assert error["message"], name
    assert len(cases) >= 60


def test_other_content_types_are_415(setup):
    server, row = setup
    for path, name, body, media in media_types(row):
        status, _, data = call(server.url, "POST", path, body, content_type=media)
        check_error(status, data, "unsupported_media_type", f"{path} {name}")


def binary(row: dict[str, Any], **changed: tuple) -> bytes:
    """The good row as OIP binary tensors (a JSON header, then raw bytes); ``changed`` gives
    a tensor's ``(datatype, raw bytes[, binary_data_size])`` instead."""
    inputs, chunks = [], []
    for name, value in row.items():
        if isinstance(value, str):
            datatype, raw = "BYTES", struct.pack("<I", len(value.encode())) + value.encode()
        else:
            datatype, raw = "FP32", struct.pack("<f", value)
        datatype, raw, *size = changed.get(name, (datatype, raw))
        params = {"binary_data_size": size[0] if size else len(raw)}
        inputs.append({"name": name, "shape": [1, 1], "datatype": datatype, "parameters": params})
        chunks.append(raw)
    head = json.dumps({"inputs": inputs}).encode()
    return b"%d\n" % len(head) + head + b"".join(chunks)


def send_binary(url: str, body: bytes, length: str | None = None) -> tuple[int, bytes]:
    given, _, body = body.partition(b"\n")
    headers = {"Inference-Header-Content-Length": length or given.decode()}
    status, _, data = call(url, "POST", INFER, body, headers, "application/octet-stream")
    return status, data


def test_binary_tensors_are_checked_like_json_ones(setup):
    server, row = setup
    status, data = send_binary(server.url, binary(row))
    assert status == 200, data
    nan = struct.pack("<f", float("nan"))  # NaN is a missing value, as null in JSON
    status, data = send_binary(server.url, binary(row, age=("FP32", nan)))
    assert status == 200, data
    text = struct.pack("<I", 2)
    cases = {
        "header-length-not-a-number": (binary(row), "12x"),
        "header-length-past-the-body": (binary(row), "999999"),
        "size-past-the-body": (binary(row, age=("FP32", struct.pack("<f", 39), 4096)), None),
        "size-negative": (binary(row, age=("FP32", struct.pack("<f", 39), -4)), None),
        "fp32-three-bytes": (binary(row, age=("FP32", b"\x00\x00\x80")), None),
        "fp32-two-values": (binary(row, age=("FP32", struct.pack("<2f", 1, 2))), None),
        "fp32-infinity": (binary(row, age=("FP32", struct.pack("<f", float("inf")))), None),
        "fp64-past-float32": (binary(row, age=("FP64", struct.pack("<d", 1e300))), None),
        "bytes-for-a-number": (binary(row, age=("BYTES", text + b"39")), None),
        "bytes-cut": (binary(row, sex=("BYTES", struct.pack("<I", 16) + b"ab")), None),
        "bytes-bad-utf8": (binary(row, sex=("BYTES", text + b"\xff\xfe")), None),
        "int-for-a-string": (binary(row, sex=("INT32", struct.pack("<i", 3))), None),
    }
    for name, case in cases.items():
        status, data = send_binary(server.url, *case)
        check_error(status, data, "invalid_input", name)


def test_too_many_rows_is_413_on_every_route(setup):
    server, row = setup
    bodies = {
        PREDICT: {"rows": [row] * (MAX_ROWS + 1)},
        INVOCATIONS: {"dataframe_records": [row] * (MAX_ROWS + 1)},
        INFER: {
            "inputs": [
                tensor(k, v, shape=[MAX_ROWS + 1], data=[v] * (MAX_ROWS + 1))
                for k, v in row.items()
            ]
        },
    }
    for path, body in bodies.items():
        status, _, data = call(server.url, "POST", path, body)
        check_error(status, data, "too_many_rows", path)


# -- 50 MB bodies: refused while they stream in, with bounded memory --------------------


def rss() -> int:
    """This process's resident set (the server runs in it, in a thread), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class PeakRss:
    """The highest resident set seen while the block runs, sampled every millisecond."""

    def __enter__(self) -> PeakRss:
        gc.collect()
        self.base = self.peak = rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def growth(self) -> int:
        return self.peak - self.base


def stream(url: str, path: str, total: int, chunked: bool) -> tuple[int, bytes, int]:
    """POST ``total`` bytes of JSON-ish filler in 64 KB pieces, never holding more than one,
    and stop sending as soon as the server answers, as a careful client does. Returns the
    status, the response body and how many body bytes went out before the answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    piece = b"[" + b"1," * (32 * 1024 - 1) + b"1"
    length = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % total
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s\r\n\r\n"
    sock = socket.create_connection((host, int(port)), timeout=30)
    sent, answer = 0, b""
    try:
        sock.sendall(head % (path.encode(), length))
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            part = piece[: total - sent]
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(part)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        answer = _read_response(sock)
    finally:
        sock.close()
    head_part, _, body = answer.partition(b"\r\n\r\n")
    status = int(head_part.split(b" ", 2)[1])
    return status, body, sent


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(body) >= length:
                return head + sep + body[:length]
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_50mb_body_is_refused_while_streaming(setup, chunked):
    server, row = setup
    import tracemalloc

    tracemalloc.start()
    try:
        with PeakRss() as memory:
            base = tracemalloc.get_traced_memory()[0]
            results = {path: stream(server.url, path, HUGE, chunked) for path in ROUTES}
            allocated = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    for path, (status, body, sent) in results.items():
        check_error(status, body, "payload_too_large", f"{path} chunked={chunked}")
        # answered long before the whole body arrived (the rest stayed with the client)
        assert sent < HUGE // 2, (path, sent)
        if not chunked:  # refused on its Content-Length alone: the body was never read
            assert sent < 2 * LIMIT, (path, sent)
    # one body limit held at a time and freed at once: not the 50 MB, nor one per request
    # (RSS, and the peak of Python's allocations, which freed memory kept by the process
    # from earlier tests does not hide)
    print(
        f"\n50 MB x3, chunked={chunked}: RSS growth {memory.growth / 2**20:.1f} MiB, "
        f"peak allocated {allocated / 2**20:.1f} MiB"
    )
    assert memory.growth < 2 * LIMIT, memory.growth / 2**20
    assert allocated < 1.5 * LIMIT, allocated / 2**20


def test_the_server_answers_correctly_after_the_corpus(setup):
    server, row = setup
    before = call(server.url, "POST", PREDICT, {"rows": [row]})
    for path, _, body in malformed(row)[:14]:
        call(server.url, "POST", path, body)
    for path, _, body in invalid(row):
        call(server.url, "POST", path, body)
    stream(server.url, PREDICT, HUGE, True)
    after = call(server.url, "POST", PREDICT, {"rows": [row]})
    assert before[0] == after[0] == 200
    first, second = json.loads(before[2]), json.loads(after[2])
    assert first["predictions"] == second["predictions"]
    assert call(server.url, "GET", "/readyz")[0] == 200


def test_parsed_bodies_are_not_kept_while_the_model_runs(setup):
    """JSON parses to many times its size (here a 3 MB extra field of empty arrays: about
    60 MB of objects); a request waiting for the model must not hold that, or memory grows
    with the number of requests in flight. Measured as the peak of memory allocated by
    Python (tracemalloc, every thread), which earlier tests' freed memory does not blur."""
    import tracemalloc

    store, row = setup[0].store, setup[1]
    body = json.dumps({"rows": [dict(row, junk=[[]] * 1_000_000)]}).encode()
    with start(store, ["adult"], max_wait_ms=100, watch_seconds=0) as server:

        def post() -> None:
            assert call(server.url, "POST", PREDICT, body)[0] == 200

        def peak(clients: int) -> int:
            threads = [threading.Thread(target=post) for _ in range(clients)]
            gc.collect()
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return tracemalloc.get_traced_memory()[1] - base

        post()
        tracemalloc.start()
        try:
            one, six = peak(1), peak(6)
        finally:
            tracemalloc.stop()
    print(
        f"\nparsed 3 MB bodies: 1 at a time {one / 2**20:.0f} MiB, 6 at once {six / 2**20:.0f} MiB"
    )
    assert one > 20 * 2**20  # the parse itself is large: the measure can see it
    assert six < 1.6 * one


def test_the_float32_edge_is_where_the_document_puts_it(setup):
    """Numbers just under the float32 overflow round to float32's largest value and are
    taken; from there on they are refused. The OpenAPI document's bounds are the same."""
    import math

    server, row = setup
    status, _, data = call(server.url, "GET", "/openapi.json")
    bounds = json.loads(data)["components"]["schemas"]["Row"]["oneOf"][0]["allOf"][0]
    edge = bounds["properties"]["age"]["exclusiveMaximum"]
    assert bounds["properties"]["age"]["exclusiveMinimum"] == -edge
    for value, expected in [
        (math.nextafter(edge, 0), 200),
        (-math.nextafter(edge, 0), 200),
        (edge, 422),
        (-edge, 422),
    ]:
        for path in (PREDICT, INVOCATIONS):
            status, _, data = call(server.url, "POST", path, good(path, dict(row, age=value)))
            invalid = path == INVOCATIONS and expected == 422  # MLflow's status: 400
            assert status == (400 if invalid else expected), (path, value, data)
        body = v2(row, data=[value])
        assert call(server.url, "POST", INFER, body)[0] == expected, value
