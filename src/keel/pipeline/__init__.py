"""keel.pipeline: the flow written down as steps whose outputs are keyed by the hash of
their inputs, so a re-run redoes only what changed.

A pipeline in YAML (``keel pipeline run pipeline.yaml``)::

    name: adult-income
    steps:
      - name: ingest
        kind: ingest
        params: {path: adult.csv, name: adult}          # relative to this file
      - name: train
        kind: train
        inputs: [ingest]
        params: {target: income, params: {n_estimators: 50}, register: adult}
        retries: 2                                        # tries again twice on failure
        retry_delay: 1.0                                  # seconds, doubled each time
      - name: audit
        kind: audit
        inputs: [train]
        params: {sections: [performance, fairness]}
      - name: gate                                        # the project's audit policy
        kind: gate
        inputs: [audit]
      - name: export
        kind: export
        inputs: [gate]
      - name: release
        kind: release
        inputs: [export]
        params: {alias: candidate}
      - name: notify
        kind: python
        function: mypackage.hooks:notify                  # called as notify(ctx, **params)
        inputs: [release]
        params: {channel: ml}

or the same in Python::

    from keel.pipeline import Pipeline, Step, run_pipeline
    pipe = Pipeline("adult-income", [
        Step("ingest", "ingest", params={"path": "adult.csv", "name": "adult"}),
        Step("train", "train", inputs=["ingest"], params={"target": "income"}),
    ])
    run = run_pipeline(store, pipe)              # executor="inline" | "process" | "ray"
    run["train"].status, run["train"].output     # "ran", {"model": "adult/1", ...}

Built-in kinds: ``ingest`` (a file or SQL into a dataset), ``validate`` (a dataset against
a schema), ``train`` (and register), ``audit``, ``gate`` (fails when the version fails the
project's policy), ``export`` (ONNX with parity), ``release`` (moves an alias; a gated one
such as ``production`` only when keel.yaml sets ``pipeline: {allow_production: true}``, and
then only if the gates pass) and ``python`` (an importable ``module:function``, never
pickled). Each takes what it works on from its inputs' outputs: the first input giving a
``dataset`` (train, validate) or a ``model`` (audit, gate, export, release).

A step's key is the sha256 of its kind, parameters, its inputs' keys, what else decides its
output (the bytes of the files it reads, the project's audit policy, a python function's
source) and keel's version. A step whose key has a stored successful output is skipped and
that output reused, so changing a training parameter re-runs train and what follows, not
ingest. A step that fails after its retries stops the run; earlier outputs stay, and
``run_pipeline(store, pipe, resume=run.id)`` (or a fresh run) continues from it. Bad input
(:class:`keel.errors.InvalidInput`, a failed gate or validation) is not retried.

Steps whose inputs are all done run together through the executor, one wave after another.
Every step execution is a ``pipeline_step`` event; in lineage each step is a ``step`` node
``RUN/STEP``, ``part_of`` its ``pipeline`` run (whose ``spec`` is a blob), made from its
inputs' steps, and what it made (dataset, run, model, evidence, ONNX blob) is ``made_by`` it.
"""

from keel.pipeline._kinds import KINDS, StepContext
from keel.pipeline._records import (
    PipelineRun,
    StepRun,
    get_pipeline_run,
    get_pipeline_spec,
    list_pipeline_runs,
)
from keel.pipeline._run import run_pipeline, step_key
from keel.pipeline._spec import Pipeline, Step

__all__ = [
    "KINDS",
    "Pipeline",
    "PipelineRun",
    "Step",
    "StepContext",
    "StepRun",
    "get_pipeline_run",
    "get_pipeline_spec",
    "list_pipeline_runs",
    "run_pipeline",
    "step_key",
]
