"""Schemathesis against a live server: every operation of its own ``/openapi.json``, with
every check (server errors, status codes, content types, response schemas and headers,
schema-valid data accepted, schema-violating data rejected, auth enforced). The answer must
be nothing found: no 5xx, no response the document does not describe."""

from __future__ import annotations

from collections import Counter
from importlib.util import find_spec

import pytest

from keel import registry
from keel.data import ingest
from keel.datasets import write_digits_npz
from keel.serve import ApiKey, KeyRing, start
from keel.train import train
from tests.serve._support import adult_store, call_json, train_lgb
from tests.serve._tensor_support import train_cnn

MAX_EXAMPLES = 25
MAX_ROWS = 50
# Client errors the server answers schema-violating data with: schemathesis's defaults, plus
# 413 (more rows than the document's maxItems, which the server refuses as too many rows).
REJECTED = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
# Schemathesis's defaults for schema-valid data.
ACCEPTED = ["2xx", "3xx", 401, 403, 404, 409, 429]
# Inference bodies have rules JSON Schema cannot state: every column as long as the others,
# a tensor's data as long as its shape, every model input given. A body the document allows
# that breaks one of them is refused with 422 naming the field, as the document says; a
# tensor inside dataframe_split's positional data cannot be given its shape there, and one of
# another shape is refused with 400 (invalid_tensor), as the document says too.
CROSS_FIELD = r"^(/invocations|/v2/models/\{name\}(/versions/\{version\})?/infer)$"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    store, _ = adult_store(root, rows=500)
    train_lgb(store, "adult")
    age = train(store, "adult", "age", params={"n_estimators": 10}, seed=2).register(store, "age")
    registry.set_alias(store, age.ref, "production")
    if find_spec("torch") is not None:  # a tensor model: the digits CNN
        ingest(store, write_digits_npz(root), name="digits")
        train_cnn(store, epochs=1)
    yield store
    store.close()


@pytest.fixture(
    scope="module",
    params=["adult", "age", "digits"],
    ids=["classifier-with-api-keys", "regressor-without-keys", "tensor-classifier"],
)
def server(request, store):
    """A classifier behind API keys (an admin key, so every route is reached), or a
    regressor with no keys: both shapes of the document and of every answer."""
    keys, auth = None, {}
    if request.param == "digits" and find_spec("torch") is None:
        pytest.skip("the tensor model needs keel[torch]")
    if request.param == "adult":
        token, key = ApiKey.create("fuzzer", ["admin"])
        keys, auth = KeyRing([key]), {"Authorization": f"Bearer {token}"}
    running = start(
        store,
        [request.param],
        keys=keys,
        max_request_rows=MAX_ROWS,
        max_body_bytes=256 * 1024,
        watch_seconds=0,
    )
    yield running.url, auth
    running.stop()


def _config(url: str, auth: dict[str, str]) -> object:
    import schemathesis

    return schemathesis.Config.from_dict(
        {
            "seed": 20261127,
            "base-url": url,
            "headers": auth,
            "workers": 1,
            "request-timeout": 30,
            "suppress-health-check": ["all"],
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # Text as UTF-8 can carry it: a lone surrogate escape ("\\ud80c") is not
                # Unicode, and the server's JSON parser answers it 400 invalid_json.
                "codec": "utf-8",
            },
            "phases": {"stateful": {"max-steps": 10}},
            "checks": {
                "enabled": True,
                "negative_data_rejection": {"expected-statuses": REJECTED},
            },
            "operations": [
                {
                    "include-path-regex": CROSS_FIELD,
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": [*ACCEPTED, 400, 422]}
                    },
                }
            ],
        }
    )


def _run(url: str, auth: dict[str, str]) -> tuple[Counter, int, list[str], set[str]]:
    """Run every phase; the operations tested, cases sent, failures and checks that ran."""
    import schemathesis
    from schemathesis import engine
    from schemathesis.engine import events

    schema = schemathesis.openapi.from_url(
        f"{url}/openapi.json", config=_config(url, auth), headers=dict(auth), timeout=30
    )
    operations: Counter = Counter()
    failures: list[str] = []
    checks: set[str] = set()
    cases = 0
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.FatalError | events.NonFatalError):
            failures.append(f"{type(event).__name__}: {event.info.format()}")
        if not isinstance(event, events.ScenarioFinished):
            continue
        recorder = event.recorder
        cases += len(recorder.cases)
        operations[recorder.label] += len(recorder.cases)
        for case_id, nodes in recorder.checks.items():
            for node in nodes:
                checks.add(node.name)
                if node.failure_info is not None:
                    failure = node.failure_info.failure
                    got = recorder.find_response(case_id=case_id)
                    said = (
                        f"answered {got.status_code}: {got.content[:300]!r}\n"
                        if got is not None
                        else ""
                    )
                    failures.append(
                        f"{recorder.label} [{node.name}] {failure.title}: {failure.message}\n"
                        f"{said}{node.failure_info.code_sample}"
                    )
    return operations, cases, failures, checks


@pytest.mark.slow
def test_schemathesis_finds_nothing(server):
    url, auth = server
    status, doc = call_json(url, "GET", "/openapi.json", headers=auth)
    assert status == 200
    documented = {f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m in ops}

    operations, cases, failures, checks = _run(url, dict(auth))

    stateful = operations.pop("Stateful tests", 0)
    print(
        f"\nschemathesis: {len(operations)} operations, {cases} cases "
        f"({stateful} in stateful scenarios), {len(failures)} failures"
    )
    assert failures == [], "\n\n".join(failures)
    # Schemathesis leaves out the operation that serves the document it was loaded from.
    assert set(operations) >= documented - {"GET /openapi.json"}, documented - set(operations)
    assert cases >= 20 * len(documented)
    assert {
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "positive_data_acceptance",
        "negative_data_rejection",
    } <= checks
    assert call_json(url, "GET", "/readyz")[0] == 200
