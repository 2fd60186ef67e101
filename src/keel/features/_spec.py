"""The declarative feature spec: an ordered list of steps, each naming columns and an op.

Steps apply in order; several steps may name the same column and then chain on it
(``impute`` then ``scale``). ``interact`` reads its columns as the steps before it left
them and adds their pairwise products; ``drop`` keeps a column out of the output.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from keel.errors import InvalidInput
from keel.features._checks import check_chains
from keel.features._messages import ErrorFormatter, Locate, yaml_error_message, yaml_locator
from keel.features._transformers import DATE_PARTS

__all__ = [
    "KNOWN_OPS",
    "LOGICAL_TYPES",
    "ClipStep",
    "DatePartsStep",
    "DropStep",
    "FeatureSpec",
    "ImputeStep",
    "InteractStep",
    "LogStep",
    "OneHotStep",
    "OrdinalStep",
    "PassthroughStep",
    "ScaleStep",
    "Step",
]

SPEC_FORMAT = "keel.features/1"
LOGICAL_TYPES = ("int", "float", "bool", "string", "category", "datetime")
DatePart = Literal["year", "month", "day", "dayofweek", "hour"]


class _StepBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: list[str] = Field(min_length=1, description="raw input columns the step applies to")

    @field_validator("columns", mode="before")
    @classmethod
    def _one_column(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("columns")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({c for c in value if value.count(c) > 1})
        if repeated:
            raise ValueError(f"columns are named more than once: {repeated}")
        return value


class ImputeStep(_StepBase):
    """Fill missing values (SimpleImputer)."""

    op: Literal["impute"] = "impute"
    strategy: Literal["median", "mean", "most_frequent", "constant"] = "median"
    fill_value: float | str | None = None

    @model_validator(mode="after")
    def _fill_needs_constant(self) -> ImputeStep:
        if self.fill_value is not None and self.strategy != "constant":
            raise ValueError(
                f"fill_value is used only with strategy: constant (strategy is {self.strategy!r})"
            )
        return self


class OneHotStep(_StepBase):
    """One 0/1 column per category. Unseen categories at transform time give all zeros,
    or the infrequent column when ``min_frequency``/``max_categories`` made one."""

    op: Literal["onehot"] = "onehot"
    min_frequency: int | float | None = Field(
        None,
        gt=0,
        description="count (>= 1) or fraction (< 1) below which a category is infrequent",
    )
    max_categories: int | None = Field(None, ge=2)
    handle_unknown: Literal["ignore", "infrequent_if_exist"] = "infrequent_if_exist"

    @field_validator("min_frequency")
    @classmethod
    def _count_or_fraction(cls, value: int | float | None) -> int | float | None:
        if isinstance(value, float) and value >= 1:
            if not value.is_integer():
                raise ValueError("must be a whole count (>= 1) or a fraction (< 1)")
            return int(value)
        return value


class OrdinalStep(_StepBase):
    """One integer code per category; unseen and missing values give -1."""

    op: Literal["ordinal"] = "ordinal"


class ScaleStep(_StepBase):
    op: Literal["scale"] = "scale"
    method: Literal["standard", "minmax", "robust"] = "standard"


class LogStep(_StepBase):
    """log1p; fitting on a negative value is an error that names the column."""

    op: Literal["log"] = "log"


class ClipStep(_StepBase):
    op: Literal["clip"] = "clip"
    lower: float | None = None
    upper: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ClipStep:
        if self.lower is None and self.upper is None:
            raise ValueError("clip needs lower, upper or both")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower ({self.lower:g}) is above upper ({self.upper:g})")
        return self


class InteractStep(_StepBase):
    """Pairwise products of numeric columns, named ``a*b``, added to the output."""

    op: Literal["interact"] = "interact"
    columns: list[str] = Field(min_length=2)


class DatePartsStep(_StepBase):
    op: Literal["date_parts"] = "date_parts"
    parts: list[DatePart] = Field(default_factory=lambda: list(DATE_PARTS), min_length=1)


class PassthroughStep(_StepBase):
    """Keep the column's values as numbers (float; bool becomes 0/1, None NaN)."""

    op: Literal["passthrough"] = "passthrough"


class DropStep(_StepBase):
    """Leave the column out, also when ``remainder`` is passthrough."""

    op: Literal["drop"] = "drop"


_STEP_TYPES: tuple[type[_StepBase], ...] = (
    ImputeStep,
    OneHotStep,
    OrdinalStep,
    ScaleStep,
    LogStep,
    ClipStep,
    InteractStep,
    DatePartsStep,
    PassthroughStep,
    DropStep,
)
Step = Annotated[
    ImputeStep
    | OneHotStep
    | OrdinalStep
    | ScaleStep
    | LogStep
    | ClipStep
    | InteractStep
    | DatePartsStep
    | PassthroughStep
    | DropStep,
    Field(discriminator="op"),
]
KNOWN_OPS: tuple[str, ...] = tuple(
    get_args(t.model_fields["op"].annotation)[0] for t in _STEP_TYPES
)
_OPTIONS = {
    op: ["op", *(f for f in t.model_fields if f != "op")]
    for op, t in zip(KNOWN_OPS, _STEP_TYPES, strict=True)
}

_locate: contextvars.ContextVar[Locate | None] = contextvars.ContextVar("locate", default=None)


class FeatureSpec(BaseModel):
    """A feature pipeline written down: ``steps`` in order, the ``target`` to leave out,
    and what happens to columns no step names (``remainder``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str | None = None
    steps: list[Step] = Field(default_factory=list)
    remainder: Literal["drop", "passthrough"] = "drop"

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidInput(_formatter(_locate.get()).message(exc)) from None

    @model_validator(mode="after")
    def _check_steps(self) -> FeatureSpec:
        check_chains(self.steps, self.target)
        return self

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        if not isinstance(data, Mapping):
            raise InvalidInput(
                f"feature spec: expected a mapping with steps, got {type(data).__name__}"
            )
        bad_keys = [k for k in data if not isinstance(k, str)]
        if bad_keys:
            raise InvalidInput(f"feature spec: field names must be text, got {bad_keys[0]!r}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, text_or_path: str | Path) -> FeatureSpec:
        """Read a spec from YAML text, or from a ``.yaml``/``.yml`` file path."""
        text = _read_yaml_source(text_or_path)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInput(yaml_error_message(exc)) from None
        if data is None:
            data = {}
        token = _locate.set(yaml_locator(text))
        try:
            return cls.from_dict(data)
        finally:
            _locate.reset(token)

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["steps"] = [{"op": step.pop("op"), **step} for step in data["steps"]]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def hash(self) -> str:
        """sha256 of the canonical JSON of the spec, defaults filled in: equal specs hash
        equal whatever their key order or which defaults were written out."""
        payload = {"format": SPEC_FORMAT, "spec": self.to_dict()}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @classmethod
    def infer(cls, columns: Mapping[str, str], target: str | None = None) -> FeatureSpec:
        """A default spec from column name -> logical type (int, float, bool, string,
        category, datetime): numbers get median imputation; text gets a "missing" fill and
        one-hot encoding (unseen values give zeros); bools pass through as 0/1 with the
        most frequent value for missing; datetimes become date parts, median-imputed.
        The target is left out. The result holds no NaN."""
        groups: dict[str, list[str]] = {"number": [], "bool": [], "text": [], "datetime": []}
        kinds = {"int": "number", "float": "number", "string": "text", "category": "text"}
        for name, logical in columns.items():
            if logical not in LOGICAL_TYPES:
                raise InvalidInput(
                    f"column {name!r} has logical type {logical!r}; "
                    f"expected one of {', '.join(LOGICAL_TYPES)}"
                )
            if name != target:
                groups[kinds.get(logical, logical)].append(name)
        steps: list[dict[str, Any]] = []
        if groups["number"]:
            steps.append({"op": "impute", "columns": groups["number"], "strategy": "median"})
        if groups["bool"]:
            steps.append({"op": "passthrough", "columns": groups["bool"]})
            steps.append({"op": "impute", "columns": groups["bool"], "strategy": "most_frequent"})
        if groups["text"]:
            text = groups["text"]
            steps.append(
                {"op": "impute", "columns": text, "strategy": "constant", "fill_value": "missing"}
            )
            steps.append({"op": "onehot", "columns": text})
        if groups["datetime"]:
            steps.append({"op": "date_parts", "columns": groups["datetime"]})
            steps.append({"op": "impute", "columns": groups["datetime"], "strategy": "median"})
        return cls(target=target, steps=steps)


def _formatter(locate: Locate | None) -> ErrorFormatter:
    fields = set(FeatureSpec.model_fields)
    for step_type in _STEP_TYPES:
        fields |= set(step_type.model_fields)
    return ErrorFormatter(fields, _OPTIONS, list(FeatureSpec.model_fields), locate)


def _read_yaml_source(text_or_path: str | Path) -> str:
    if isinstance(text_or_path, str) and (
        "\n" in text_or_path or not text_or_path.endswith((".yaml", ".yml"))
    ):
        return text_or_path
    path = Path(text_or_path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"feature spec file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"feature spec file {str(path)!r} cannot be read: {exc}") from None
