"""keel.serve: the model server.

Routes name registered models by alias (``production`` by default) or pinned version;
each is served from its exported ONNX graph by ONNX Runtime, with concurrent requests
merged into one session run. Protocols: the Open Inference Protocol v2 (KServe, Triton),
keel's JSON (``POST /models/NAME/predict``) and MLflow's scoring (``POST /invocations``);
plus health, readiness, Prometheus metrics, OpenAPI, API keys with scopes, and atomic
reloads that keep the old version serving when the new one fails to load. A route may be a
:class:`Release`: several versions by weight (canary), sticky per key, with a shadow.
:func:`score` scores a Parquet or CSV file in batch (in process or on Ray Data) and stores
the predictions as a data set with lineage to the model version.

::

    from keel.serve import serve
    serve(".", ["adult"], port=8080)          # adult@production on 127.0.0.1:8080
    serve(".", [Release("adult", {"production": 90, "candidate": 10}, shadow="challenger")])
"""

from keel.serve._app import KeelApp, ServeConfig, create_app
from keel.serve._auth import SCOPES, ApiKey, KeyRing, add_key, revoke_key
from keel.serve._compare import comparison
from keel.serve._errors import STATUS, ServeError
from keel.serve._labels import ingest_labels, joined, read_labels
from keel.serve._predlog import PredictionLog, read_predictions
from keel.serve._release import Release, load_releases
from keel.serve._routes import route_table
from keel.serve._score import ScoreResult, score
from keel.serve._scrape import check_server_url, server_metrics
from keel.serve._server import RunningServer, is_loopback, serve, start
from keel.serve._slot import Route
from keel.serve._swap import release
from keel.serve._traffic import find_predictions, logged_models, traffic
from keel.serve._types import MemorySink, PredictionSink

__all__ = [
    "SCOPES",
    "STATUS",
    "ApiKey",
    "KeelApp",
    "KeyRing",
    "MemorySink",
    "PredictionLog",
    "PredictionSink",
    "Release",
    "Route",
    "RunningServer",
    "ScoreResult",
    "ServeConfig",
    "ServeError",
    "add_key",
    "check_server_url",
    "comparison",
    "create_app",
    "find_predictions",
    "ingest_labels",
    "is_loopback",
    "joined",
    "load_releases",
    "logged_models",
    "read_labels",
    "read_predictions",
    "release",
    "revoke_key",
    "route_table",
    "score",
    "serve",
    "server_metrics",
    "start",
    "traffic",
]
