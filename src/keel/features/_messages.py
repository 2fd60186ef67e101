"""Turn pydantic validation errors and YAML syntax errors into keel messages that name
the field path (``steps[2].op``), what was expected and what was given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import yaml
from pydantic import ValidationError

Locate = Callable[[Sequence[str | int]], int | None]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_path(loc: Sequence[str | int], fields: set[str]) -> list[str | int]:
    """Keep list indices and field names; drop the union tags and member-type labels
    (``'impute'``, ``'int'``, ``'function-after[...]'``) that pydantic puts in a loc."""
    return [item for item in loc if isinstance(item, int) or item in fields]


def path_text(path: Sequence[str | int]) -> str:
    out = ""
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else item)
    return out


class ErrorFormatter:
    """Formats one ``ValidationError`` of a spec model.

    ``fields`` are every field name of the models; ``options`` maps an op to its
    option names (for unknown-option messages); ``known_ops`` lists the ops.
    """

    def __init__(
        self,
        fields: set[str],
        options: dict[str, list[str]],
        top_fields: list[str],
        locate: Locate | None = None,
    ) -> None:
        self.fields = fields
        self.options = options
        self.top_fields = top_fields
        self.locate = locate

    def message(self, exc: ValidationError) -> str:
        lines: dict[str, list[str]] = {}
        given: dict[str, str] = {}
        for err in exc.errors():
            key, text, shown = self._one(err)
            if text not in lines.setdefault(key, []):
                lines[key].append(text)
            if shown is not None:
                given.setdefault(key, shown)
        out = []
        for key, texts in lines.items():
            line = f"{key}: " if key else ""
            line += " or ".join(texts)
            if key in given:
                line += f"; got {given[key]}"
            out.append(line)
        if len(out) == 1:
            return f"invalid feature spec: {out[0]}"
        return "invalid feature spec:\n- " + "\n- ".join(out)

    def _one(self, err: Any) -> tuple[str, str, str | None]:
        loc = list(err["loc"])
        path = format_path(loc, self.fields)
        kind = err["type"]
        op = self._op_of(loc)
        shown: str | None = _shown(err.get("input"))
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            path = [*path, "op"]
            tag = err.get("ctx", {}).get("tag")
            known = ", ".join(self.options)
            text = f"unknown op {tag!r}" if tag is not None else "missing"
            text += f"; known ops: {known}"
            shown = None
        elif kind == "extra_forbidden":
            path = [*path, str(loc[-1])]
            allowed = self.options.get(op, []) if op else self.top_fields
            where = f"op {op!r}" if op else "a feature spec"
            text = f"unknown option; the options of {where} are: {', '.join(allowed)}"
            shown = None
        elif kind == "missing":
            text, shown = "is required", None
        elif kind == "value_error":
            text, shown = str(err.get("ctx", {}).get("error", err["msg"])), None
        else:
            text = err["msg"]
        return self._key(path), text, shown

    def _op_of(self, loc: list[str | int]) -> str | None:
        if len(loc) > 2 and loc[0] == "steps" and loc[2] in self.options:
            return str(loc[2])
        return None

    def _key(self, path: list[str | int]) -> str:
        key = path_text(path)
        line = self.locate(path) if self.locate and path else None
        return f"{key} (line {line})" if line else key


def yaml_error_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"feature spec is not valid YAML{where}: {problem}"


def yaml_locator(text: str) -> Locate:
    """A function from a field path to the 1-based line of that node in ``text``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        root = None

    def locate(path: Sequence[str | int]) -> int | None:
        node, line = root, None
        for item in path:
            node = _child(node, item)
            if node is None:
                break
            line = node.start_mark.line + 1
        return line

    return locate


def _child(node: Any, item: str | int) -> Any:
    if isinstance(node, yaml.MappingNode) and isinstance(item, str):
        return next((v for k, v in node.value if getattr(k, "value", None) == item), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(item, int):
        return node.value[item] if item < len(node.value) else None
    return None
