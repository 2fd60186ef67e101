"""What a pipeline is: named steps, each a built-in kind or an importable Python function,
its parameters, and the earlier steps whose outputs it takes. Written in YAML or Python;
checked before anything runs (:meth:`Pipeline.check`), so a bad file changes nothing."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from keel.errors import InvalidInput
from keel.pipeline._kinds import KINDS, check_params, import_function

__all__ = ["Pipeline", "Step"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_FUNCTION = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_STEP_KEYS = ("name", "kind", "function", "params", "inputs", "retries", "retry_delay", "cache")
_TOP_KEYS = ("name", "steps", "description")
MAX_RETRIES = 20


@dataclass(frozen=True)
class Step:
    """One step: ``kind`` (``ingest``, ``validate``, ``train``, ``audit``, ``gate``,
    ``export``, ``release`` or ``python``), its ``params``, the names of the steps whose
    outputs it takes (``inputs``), how often a failure is retried (``retries``, waiting
    ``retry_delay`` seconds, doubled after each try) and whether a stored output with the
    same key may be reused (``cache``).

    A ``python`` step names its function as ``"module:function"`` (``function=``; a module
    level function object is turned into that name): it is imported where the step runs,
    never pickled, and called as ``function(ctx, **params)`` with a :class:`StepContext`;
    it returns a small JSON-able value, the step's output.
    """

    name: str
    kind: str | None = None
    _: KW_ONLY
    function: str | Callable[..., Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: Sequence[str] = ()
    retries: int = 0
    retry_delay: float = 0.0
    cache: bool = True

    @property
    def resolved_kind(self) -> str:
        return self.kind or ("python" if self.function is not None else "")

    @property
    def function_name(self) -> str | None:
        return _function_name(self.function) if self.function is not None else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.resolved_kind}
        if self.function is not None:
            out["function"] = self.function_name
        out["params"] = dict(self.params)
        out["inputs"] = list(self.inputs)
        out.update(retries=self.retries, retry_delay=self.retry_delay, cache=self.cache)
        return out


def _function_name(fn: str | Callable[..., Any]) -> str:
    if isinstance(fn, str):
        return fn
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or "<" in qualname or module == "__main__":
        return f"{module}:{qualname}" if module else repr(fn)  # check() explains the refusal
    return f"{module}:{qualname}"


@dataclass(frozen=True)
class Pipeline:
    """Named, ordered steps. Build it in Python, or read it with :meth:`from_yaml` /
    :meth:`load`. ``base_dir``: the folder relative file paths in parameters are read from
    (the YAML file's folder; default the current folder)."""

    name: str
    steps: Sequence[Step]
    description: str = ""
    base_dir: str | None = None

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Pipeline:
        """Read a pipeline from a YAML file; relative paths in it are from its folder."""
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise InvalidInput(
                f"pipeline file {str(p)!r}: cannot read it ({exc.strerror})"
            ) from None
        return cls.from_yaml(text, base_dir=str(p.resolve().parent), where=p.name)

    @classmethod
    def from_yaml(
        cls, text: str, *, base_dir: str | None = None, where: str = "pipeline"
    ) -> Pipeline:
        """Read a pipeline from YAML text (see the module docs of :mod:`keel.pipeline`)."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            raise InvalidInput(f"{where}{line}: not valid YAML ({type(exc).__name__})") from None
        return cls.from_dict(data, base_dir=base_dir, where=where)

    @classmethod
    def from_dict(
        cls, data: Any, *, base_dir: str | None = None, where: str = "pipeline"
    ) -> Pipeline:
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{where}: expected a mapping with 'name' and 'steps'")
        _no_unknown(data, _TOP_KEYS, where)
        name = data.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidInput(
                f"{where}: name: expected letters, digits, '_', '-', '.' (up to 64), got {name!r}"
            )
        raw_steps = data.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise InvalidInput(f"{where}: steps: expected a list of steps, got {raw_steps!r}")
        steps = [_step_from_dict(s, i, where) for i, s in enumerate(raw_steps)]
        desc = data.get("description", "")
        if not isinstance(desc, str):
            raise InvalidInput(f"{where}: description: expected text, got {desc!r}")
        pipe = cls(name, steps, desc, base_dir)
        pipe.check()
        return pipe

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "steps": [s.to_dict() for s in self.steps],
        }

    def spec_json(self) -> bytes:
        """The canonical JSON of the pipeline (what a run records as its spec)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    # -- checking --------------------------------------------------------------------------

    def check(self) -> list[Step]:
        """Refuse a malformed pipeline with :class:`InvalidInput` naming the step and the
        field; returns the steps in an order where each comes after its inputs."""
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise InvalidInput(
                f"pipeline name: expected letters, digits, '_', '-', '.'; got {self.name!r}"
            )
        if not self.steps:
            raise InvalidInput(f"pipeline {self.name!r}: steps: expected at least one step")
        by_name: dict[str, Step] = {}
        for step in self.steps:
            _check_step(step)
            if step.name in by_name:
                raise InvalidInput(f"step {step.name!r}: name: two steps have this name")
            by_name[step.name] = step
        for step in self.steps:
            for i in step.inputs:
                if i not in by_name:
                    hint = _did_you_mean(i, by_name)
                    raise InvalidInput(f"step {step.name!r}: inputs: no step named {i!r}{hint}")
        order = _topological(self.steps, by_name)
        for step in order:
            kinds = {i: by_name[i].resolved_kind for i in step.inputs}
            KINDS[step.resolved_kind].check_inputs(step.name, step.params, kinds)
        return order


def _check_step(step: Step) -> None:
    if not isinstance(step.name, str) or not _NAME.match(step.name):
        raise InvalidInput(
            f"step {step.name!r}: name: expected letters, digits, '_', '-', '.' (up to 64, "
            "starting with a letter or digit)"
        )
    where = f"step {step.name!r}"
    kind = step.resolved_kind
    if kind not in KINDS:
        raise InvalidInput(
            f"{where}: kind: expected one of {', '.join(KINDS)}, got {step.kind!r}"
            + _did_you_mean(str(step.kind), KINDS)
        )
    if kind == "python":
        _check_function(step, where)
    elif step.function is not None:
        raise InvalidInput(f"{where}: function: only a 'python' step has one (kind is {kind!r})")
    if not isinstance(step.params, Mapping):
        raise InvalidInput(f"{where}: params: expected a mapping, got {step.params!r}")
    try:
        json.dumps(dict(step.params), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{where}: params: expected plain JSON values ({exc})") from None
    check_params(kind, step.name, step.params)
    if isinstance(step.inputs, str) or not all(isinstance(i, str) for i in step.inputs):
        raise InvalidInput(f"{where}: inputs: expected a list of step names, got {step.inputs!r}")
    if len(set(step.inputs)) != len(step.inputs):
        raise InvalidInput(f"{where}: inputs: a step is named twice in {list(step.inputs)}")
    r = step.retries
    if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= MAX_RETRIES:
        raise InvalidInput(f"{where}: retries: expected an integer 0..{MAX_RETRIES}, got {r!r}")
    d = step.retry_delay
    if isinstance(d, bool) or not isinstance(d, int | float) or not math.isfinite(d) or d < 0:
        raise InvalidInput(f"{where}: retry_delay: expected seconds ≥ 0, got {d!r}")
    if not isinstance(step.cache, bool):
        raise InvalidInput(f"{where}: cache: expected true or false, got {step.cache!r}")


def _check_function(step: Step, where: str) -> None:
    fn = step.function
    if fn is None:
        raise InvalidInput(f"{where}: function: a python step needs 'module:function'")
    name = _function_name(fn)
    if not isinstance(name, str) or not _FUNCTION.match(name):
        raise InvalidInput(
            f"{where}: function: expected an importable 'module:function' (a module-level "
            f"function, not a lambda, a nested function or one from __main__), got {name!r}"
        )
    try:
        found = import_function(name)
    except Exception as exc:  # ImportError, AttributeError, an error in the module
        raise InvalidInput(
            f"{where}: function: cannot import {name!r} ({type(exc).__name__}: {exc})"
        ) from None
    if callable(fn) and not isinstance(fn, str) and found is not fn:
        raise InvalidInput(f"{where}: function: {name!r} does not import as the given function")


def _topological(steps: Sequence[Step], by_name: dict[str, Step]) -> list[Step]:
    """Steps with each after its inputs, keeping the written order where it is free; a cycle
    is refused naming its steps."""
    order: list[Step] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(step: Step, path: list[str]) -> None:
        if state.get(step.name) == 2:
            return
        if state.get(step.name) == 1:
            cycle = path[path.index(step.name) :] + [step.name]
            raise InvalidInput(
                f"step {step.name!r}: inputs: the steps form a cycle ({' -> '.join(cycle)})"
            )
        state[step.name] = 1
        for i in step.inputs:
            visit(by_name[i], path + [step.name])
        state[step.name] = 2
        order.append(step)

    for step in steps:
        visit(step, [])
    return order


def _step_from_dict(raw: Any, index: int, where: str) -> Step:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}: steps[{index}]: expected a mapping with name and kind")
    name = raw.get("name")
    label = f"step {name!r}" if isinstance(name, str) else f"{where}: steps[{index}]"
    _no_unknown(raw, _STEP_KEYS, label)
    if not isinstance(name, str):
        raise InvalidInput(f"{label}: name: expected the step's name, got {name!r}")
    inputs = raw.get("inputs") or []
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list):
        raise InvalidInput(f"{label}: inputs: expected a list of step names, got {inputs!r}")
    params = raw.get("params")
    return Step(
        name=name,
        kind=raw.get("kind"),
        function=raw.get("function"),
        params={} if params is None else params,
        inputs=tuple(inputs),
        retries=raw.get("retries", 0),
        retry_delay=raw.get("retry_delay", 0.0),
        cache=raw.get("cache", True),
    )


def _no_unknown(data: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise InvalidInput(
                f"{where}: unknown field {key!r}{_did_you_mean(str(key), allowed)}; "
                f"expected some of {', '.join(allowed)}"
            )


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
