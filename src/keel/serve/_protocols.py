"""The endpoints: keel's JSON, the Open Inference Protocol v2, health, metrics and admin,
and the shared steps MLflow's scoring protocol (keel.serve._mlflow) uses too. Each answer
names the version that gave it, in the ``keel-model-version`` header and in the body."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from keel.errors import InvalidInput
from keel.serve import _codec, _oip
from keel.serve._errors import ServeError
from keel.serve._http import Request, Response, dumps, json_response, parse_json

VERSION_HEADER = "keel-model-version"


# -- shared steps -----------------------------------------------------------------------


def _slot(req: Request, name: str | None) -> Any:
    slot = req.app.slots.get(name) if name is not None else req.app.default_slot()
    if slot is None:
        raise ServeError("model_not_found", f"no model is served as {str(name)[:100]!r}")
    req.state["model"] = slot.route.name
    return slot


def _pick(req: Request, slot: Any, version: str | None = None, key: Any = None) -> Any:
    release = getattr(slot, "release", None)
    if release is None:
        dep = slot.pick() if version is None else slot.pick_version(version)
    else:
        sticky = req.headers.get(slot.sticky_header)
        if sticky is None and isinstance(key, str | int) and not isinstance(key, bool):
            sticky = str(key)
        dep = slot.pick(sticky) if version is None else slot.pick_version(version)
        req.state["release"] = slot
    req.state["version"] = dep.version
    req.state["ref"] = dep.ref
    return dep


def _check_rows(req: Request, n: int) -> None:
    limit = req.app.config.max_request_rows
    if n > limit:
        raise ServeError("too_many_rows", f"{n} rows in one request; the limit is {limit}")


def _check_strings(req: Request, dep: Any, feed: dict[str, np.ndarray]) -> None:
    """Refuse a string value over ``max_string_bytes`` (422, naming its row and field). A
    decoded string is never longer in UTF-8 than in the body that carried it, so a body
    within the limit needs no look."""
    limit = req.app.config.max_string_bytes
    if req.state.get("body_bytes", limit + 1) > limit:
        _codec.check_string_sizes(feed, dep.spec, limit)


async def _run(req: Request, dep: Any, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = _codec.n_rows(feed)
    _check_rows(req, n)
    _check_strings(req, dep, feed)
    state = req.state
    meta = (state["request_id"], time.time(), state["t0"])
    out = await dep.submit(feed, n, meta)
    release = state.get("release")
    if release is not None:
        variant = release.variant_of(dep) or ""
        release.counts[variant] = release.counts.get(variant, 0) + 1
        req.app.metrics.variant_requests.labels(
            release.release.name, variant, str(dep.version)
        ).inc()
        if release.shadow is not None:
            req.app.shadow_copy(release, feed, n, meta)
    return out


def _answer(dep: Any, body: dict[str, Any]) -> Response:
    return json_response(body, headers={VERSION_HEADER: dep.ref})


# -- keel JSON --------------------------------------------------------------------------


async def predict(req: Request) -> Response:
    slot = _slot(req, req.params["name"])
    with slot.arrivals:
        body = await req.json()
    if not isinstance(body, dict):
        got = _codec.describe(body)
        raise ServeError(
            "invalid_input",
            f'body: expected an object {{"rows": [{{...}}, ...]}}, got {got}',
            [{"field": "body", "expected": 'an object with "rows"', "got": got}],
        )
    rows = body.get("rows", _codec.MISSING)
    if isinstance(rows, list):
        _check_rows(req, len(rows))
    key = body.get("key")
    if type(key) is float and key.is_integer():  # JSON Schema's "integer": 1e3 is 1000
        key = int(key)
    if key is not None and (type(key) is not str and type(key) is not int):
        got = _codec.describe(key)
        raise ServeError(
            "invalid_input",
            f"key: expected a string or an integer (the sticky key), got {got}",
            [{"field": "key", "expected": "a string or an integer", "got": got}],
        )
    explain = _explain_flag(body)
    dep = _pick(req, slot, key=key)
    if explain and dep.spec.tensors:
        names = ", ".join(repr(t.name) for t in dep.spec.tensors)
        raise ServeError(
            "invalid_input",
            f"explain: the server explains models of columns; {dep.ref} reads the tensor "
            f"{names} (its attributions are evidence: keel audit)",
            [{"field": "explain", "expected": "false for a tensor model", "got": "true"}],
        )
    feed = _codec.feed_from_records(rows, dep.spec, "rows")
    del body, rows  # keep no parsed JSON (many times the body's size) while the model runs
    # explain what the model sees, the decoded rows (float32 numbers, None for missing):
    # in a thread while the model predicts, or one row of a loaded tree model now (_explain)
    explaining = _explain(dep, dep.spec.rows(feed)) if explain else None
    try:
        out = await _run(req, dep, feed)
    except BaseException:
        if explaining is not None:
            explaining.add_done_callback(_drop)
        raise
    answer = {
        "model": slot.route.name,
        "version": dep.version,
        "request_id": req.state["request_id"],
        "predictions": dep.outputs_of(out, 0, _codec.n_rows(feed)),
    }
    if explaining is not None:
        answer["explanations"] = await _explanations(dep, explaining)
    return _answer(dep, answer)


def _explain_flag(body: Any) -> bool:
    """``"explain": true`` in the body asks for each row's local explanation."""
    flag = body.get("explain", False) if isinstance(body, dict) else False
    if type(flag) is not bool:
        got = _codec.describe(flag)
        raise ServeError(
            "invalid_input",
            f"explain: expected true or false, got {got}",
            [{"field": "explain", "expected": "true or false", "got": got}],
        )
    return flag


def _explain(dep: Any, rows: list[Any]) -> asyncio.Future[list[dict[str, Any]]]:
    """Start each row's local explanation (SHAP values per raw feature, in the model's
    margin). One row of a tree model whose compiled TreeSHAP is loaded (about 0.5 ms of
    CPU) is explained here on the event loop: handing it to a thread costs more on a busy
    machine (bench/bench_explain_served.py at load 5 on 2 cores: median 1.8 against 2.3
    ms, p99 8.4 against 14.5). Anything else goes to a thread (the explainer is loaded on
    first use; the compiled walk runs there without the GIL)."""
    loop = asyncio.get_running_loop()
    loaded = dep.loaded_explainer()
    if len(rows) == 1 and loaded is not None and loaded.warm():
        done = loop.create_future()
        try:
            done.set_result([loaded.explain_one(rows[0])])
        except Exception as exc:  # reported where the answer is awaited
            done.set_exception(exc)
        return done

    def run() -> list[dict[str, Any]]:
        explainer = dep.explainer()
        return [explainer.explain_one(row) for row in rows]

    return loop.run_in_executor(None, run)


async def _explanations(
    dep: Any, explaining: asyncio.Future[list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    try:
        return await explaining
    except ServeError:
        raise
    except InvalidInput as exc:
        raise ServeError("invalid_input", f"explain: {exc}") from None
    except Exception:  # the explainer's failure is the server's, not the caller's input
        logging.getLogger("keel.serve").exception("serve: explaining %s failed", dep.ref)
        raise ServeError("internal", "the explanation could not be computed") from None


def _drop(done: asyncio.Future[Any]) -> None:
    """An explanation nobody will read (the prediction failed): retrieve its outcome."""
    if not done.cancelled():
        done.exception()


async def list_models(req: Request) -> Response:
    models = []
    for name, slot in req.app.slots.items():
        live = slot.live
        models.append(
            {
                "name": name,
                "serves": slot.route.ref,
                "version": live.version if live else None,
                "ready": live is not None,
            }
        )
    return json_response({"models": models})


# -- Open Inference Protocol v2 ---------------------------------------------------------


async def v2_infer(req: Request) -> Response:
    slot = _slot(req, req.params["name"])
    with slot.arrivals:
        body = await req.body()
    head, binary = _oip.split_binary(body, req.headers.get("inference-header-content-length"))
    request = parse_json(head)
    if not isinstance(request, dict):
        raise ServeError("invalid_input", "expected a JSON object with inputs")
    dep = _pick(req, slot, req.params.get("version"))
    feed = _oip.decode_inputs(request, dep.spec, binary)
    wanted = _oip.requested_outputs(request, dep.output_names)
    rid = request.get("id")
    del body, head, binary, request  # keep no parsed JSON while the model runs
    out = await _run(req, dep, feed)
    tensors, chunks = _oip.encode_outputs(out, wanted, dep.classes)
    answer: dict[str, Any] = {
        "model_name": slot.route.name,
        "model_version": str(dep.version),
        "outputs": tensors,
    }
    answer["id"] = rid if isinstance(rid, str) else req.state["request_id"]
    if not chunks:
        return _answer(dep, answer)
    head = dumps(answer)
    return Response(
        head + b"".join(chunks),
        headers=[
            (b"inference-header-content-length", str(len(head)).encode()),
            (VERSION_HEADER.encode(), dep.ref.encode()),
        ],
        media_type=b"application/octet-stream",
    )


async def v2_metadata(req: Request) -> Response:
    slot = _slot(req, req.params["name"])
    dep = _pick(req, slot, req.params.get("version"))
    tensors = {t.name: t for t in dep.spec.tensors}
    inputs = [
        {"name": n, "datatype": tensors[n].datatype, "shape": [-1, *tensors[n].shape]}
        if k == "tensor"
        else {"name": n, "datatype": "BYTES" if k == "string" else "FP32", "shape": [-1, 1]}
        for n, k in zip(dep.spec.names, dep.spec.kinds, strict=True)
    ]
    if dep.task == "regression":
        outputs = [{"name": "variable", "datatype": "FP32", "shape": [-1, 1]}]
    else:
        outputs = [
            {
                "name": "label",
                "datatype": _oip.output_datatype("label", dep.classes),
                "shape": [-1],
            },
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, len(dep.classes)]},
        ]
        outputs[0]["shape"] = [-1]
    meta = {
        "name": slot.route.name,
        "versions": [str(dep.version)],
        "platform": "onnxruntime_onnx",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {"task": dep.task, "classes": dep.classes, "model": dep.ref},
    }
    return _answer(dep, meta)


async def v2_model_ready(req: Request) -> Response:
    slot = _slot(req, req.params["name"])
    dep = _pick(req, slot, req.params.get("version"))
    return _answer(dep, {"name": slot.route.name, "ready": True})


async def v2_server(req: Request) -> Response:
    from importlib.metadata import version

    return json_response(
        {"name": "keel", "version": version("keel"), "extensions": ["binary_tensor_data"]}
    )


async def v2_live(req: Request) -> Response:
    return json_response({"live": True})


async def v2_ready(req: Request) -> Response:
    _require_ready(req)
    return json_response({"ready": True})


# -- health, metrics, docs, admin -------------------------------------------------------


async def healthz(req: Request) -> Response:
    return json_response({"status": "ok"})


def _require_ready(req: Request) -> dict[str, str]:
    models = {n: s.live.ref if s.live else None for n, s in req.app.slots.items()}
    waiting = [n for n, ref in models.items() if ref is None]
    if waiting:
        raise ServeError(
            "not_ready",
            f"not ready: {len(waiting)} model(s) not loaded",
            [
                {
                    "field": n,
                    "expected": "loaded",
                    "got": "failed" if req.app.slots[n].failure else "loading",
                }
                for n in waiting
            ],
        )
    return models  # type: ignore[return-value]


async def readyz(req: Request) -> Response:
    return json_response({"status": "ready", "models": _require_ready(req)})


async def metrics(req: Request) -> Response:
    text, media = req.app.metrics.render()
    return Response(text, media_type=media.encode())


async def openapi(req: Request) -> Response:
    from keel.serve._openapi import openapi_document

    return json_response(openapi_document(req.app))


async def admin_release(req: Request) -> Response:
    slot = _slot(req, req.params["name"])
    if getattr(slot, "release", None) is None:
        raise ServeError(
            "model_not_found", f"{slot.route.name!r} is served as a plain route, not a release"
        )
    return json_response(slot.describe())


async def admin_reload(req: Request) -> Response:
    name = req.query.get("model")
    if name is not None:
        _slot(req, name)
    results = await req.app.reload(name)
    return json_response({"reloaded": results})
