"""Fairness-mitigated models behind keel's one Model contract, saved without pickle.

* :class:`ThresholdedModel` (flavor ``postprocessed``): a base keel model's score for the
  positive class, turned into a decision by per-group thresholds (fairlearn's
  ``ThresholdOptimizer``). Stored as the base model's manifest sha plus the fitted rule as
  JSON: per group, ``p0``/``operation0`` and ``p1``/``operation1`` (use ``operation0`` with
  probability ``p0``, else ``operation1``), and for equalized odds ``p_ignore`` and
  ``prediction_constant``, exactly fairlearn's ``InterpolatedThresholder``.
* :class:`EnsembleModel` (flavor ``randomized_ensemble``): keel's feature transform plus the
  weighted classifiers of fairlearn's ``ExponentiatedGradient``. Stored as the transform
  (skops), each member in LightGBM's text format (or skops for scikit-learn members), and the
  weights as JSON. fairlearn's own object cannot be saved with skops (it holds pandas
  objects and, with LightGBM members, Cython ones), so keel keeps only what predicts.

Both are *randomized classifiers*: each row has a probability of a positive decision
(:meth:`decision_probability`, fairlearn's ``_pmf_predict``) and the decision is a draw from
it. keel makes the draw a pure function of the row: a uniform number from a keyed hash of the
row's values (the key is the model's seed), and the decision is positive when that number is
below the probability. The same applicant always gets the same answer, in any batch, order
or process, while over many rows the decisions follow the policy, so its fairness guarantee
holds as fairlearn states it. Only rows whose probability lies strictly between 0 and 1 are
drawn at all. The uniform numbers are multiples of 2**-24, so float32 carries them exactly.

*Served*, the draw is keyed by the request instead (:func:`request_uniforms`: the request
id, the row's place in the request and the model's seed), since the server and a bundle's
runner see a request rather than a training row's canonical values: the same request gets
the same decisions, and the exported graph takes the draw as an input (see
``keel.export._mitigated_export``). In-process and served decisions are both draws from the
same probabilities, not the same draws.

A ThresholdedModel reads its sensitive columns at decision time; its input schema marks
them ``"sensitive": true``, and the model card warns that deciding with them may be
unlawful in some jurisdictions.

These models decide; they have no calibrated probabilities. ``predict_proba`` returns the
decision as probability 0 or 1 (so it agrees with ``predict``, and an audit of the model sees
the decisions it makes), and the tags say so: ``hard_decisions``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from keel.errors import InvalidInput, UnsafeArtifact
from keel.models._adapters import _Base, check_input_frame
from keel.types import BlobStore

__all__ = [
    "FLAVORS",
    "EnsembleModel",
    "ThresholdedModel",
    "draw_decisions",
    "draw_with",
    "group_keys",
    "hashes_to_uniforms",
    "request_uniforms",
    "row_hashes",
    "row_uniforms",
    "value_hashes",
]

FLAVORS = ("postprocessed", "randomized_ensemble")
RULE_FORMAT = "keel-group-thresholds"
ENSEMBLE_FORMAT = "keel-ensemble"
MISSING = "(missing)"
_OPERATORS = (">", "<")


# ---------------------------------------------------------------- groups and draws


def _text(v: Any) -> str:
    """One sensitive value as the text its group is keyed by (39 and 39.0 alike)."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _texts(col: pd.Series, missing: str) -> np.ndarray:
    """Each cell of ``col`` as the text it is keyed or hashed by (``missing`` where missing);
    each distinct value is converted once."""
    codes, uniques = pd.factorize(col.astype(object), use_na_sentinel=True)
    table = np.asarray([_text(v) for v in uniques] + [missing], dtype=object)
    return table[codes]  # code -1 (missing) takes the last entry


def group_keys(X: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Each row's group as text: the value of the one sensitive column, or the values of
    several joined with ``" & "``; a missing value is ``"(missing)"``."""
    parts = [_texts(X[c], MISSING) for c in columns]
    if len(parts) == 1:
        return parts[0]
    return np.asarray([" & ".join(t) for t in zip(*parts, strict=True)], dtype=object)


def _hash_key(seed: int) -> str:
    return f"keel{int(seed) % 10**12:012d}"  # SipHash's key: 16 characters


def value_hashes(values: Any, numeric: bool, seed: int) -> np.ndarray:
    """The hash of each value of one column as :func:`row_uniforms` combines them: a number
    as float64 (NaN when missing), anything else as its text (NUL when missing)."""
    col = pd.Series(values) if not isinstance(values, pd.Series) else values
    if numeric:
        canon = pd.to_numeric(col, errors="coerce").astype(np.float64).to_numpy()
    else:
        canon = _texts(col, "\x00")
    return pd.util.hash_array(canon, hash_key=_hash_key(seed), categorize=True)


def row_hashes(values: dict[str, Any], input_schema: list[dict[str, Any]], seed: int) -> np.ndarray:
    """One row's per-column hashes (:func:`value_hashes`, in input-schema order) from its
    values by column name: the same numbers as hashing each column, without a frame."""
    numeric = [c.get("type") in ("int", "float") for c in input_schema]
    vals = [values[c["name"]] for c in input_schema]
    nums = pd.Series([v for v, n in zip(vals, numeric, strict=True) if n], dtype=object)
    f = pd.to_numeric(nums, errors="coerce").astype(np.float64).to_numpy()
    texts = np.asarray(
        ["\x00" if _isna(v) else _text(v) for v, n in zip(vals, numeric, strict=True) if not n],
        dtype=object,
    )
    key = _hash_key(seed)
    hf = pd.util.hash_array(f, hash_key=key) if len(f) else f.astype(np.uint64)
    ht = pd.util.hash_array(texts, hash_key=key) if len(texts) else f[:0].astype(np.uint64)
    out = np.empty(len(vals), dtype=np.uint64)
    out[np.flatnonzero(numeric)] = hf
    out[np.flatnonzero(~np.asarray(numeric, dtype=bool))] = ht
    return out


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def hashes_to_uniforms(H: np.ndarray) -> np.ndarray:
    """Rows of per-column hashes (``[rows, columns]``, uint64, in input-schema order) → a
    number in [0, 1) per row: CPython's tuple-hash combination, as pandas'
    ``hash_pandas_object`` combines a DataFrame's columns (so the draws equal those keel made
    with it), then the top 24 bits."""
    H = np.asarray(H, dtype=np.uint64)
    n_items = H.shape[1]
    out = np.full(H.shape[0], 0x345678, dtype=np.uint64)
    mult = np.uint64(1000003)
    with np.errstate(over="ignore"):
        for i in range(n_items):
            out ^= H[:, i]
            out *= mult
            mult += np.uint64(82520 + 2 * (n_items - i))
        out += np.uint64(97531)
    return (out >> np.uint64(40)).astype(np.float64) / float(2**24)


def row_uniforms(X: pd.DataFrame, input_schema: list[dict[str, Any]], seed: int) -> np.ndarray:
    """A number in [0, 1) per row from a keyed hash of its values: numbers as float64,
    everything else as text, so a row sent as JSON hashes like the same row read from a
    file."""
    H = np.empty((len(X), len(input_schema)), dtype=np.uint64)
    for j, c in enumerate(input_schema):
        H[:, j] = value_hashes(X[c["name"]], c.get("type") in ("int", "float"), seed)
    return hashes_to_uniforms(H)


def request_uniforms(seed: int, request_id: str, n: int) -> np.ndarray:
    """The served draw: a number in [0, 1) for each of the ``n`` rows of request
    ``request_id``, from BLAKE2b keyed by the model's seed over the id and the row's place
    in the request. The same request (same id, same rows) gets the same decisions, from the
    server or from a bundle's runner (which holds a copy of this function). Multiples of
    2**-24, so float32 carries them exactly, as the graph's draw input does."""
    import hashlib

    key = f"keel-draw:{int(seed)}".encode()
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        digest = hashlib.blake2b(f"{request_id}\x00{i}".encode(), digest_size=8, key=key)
        out[i] = (int.from_bytes(digest.digest(), "big") >> 40) / 16777216.0
    return out


def draw_decisions(
    pmf: np.ndarray, X: pd.DataFrame, input_schema: list[dict[str, Any]], seed: int
) -> np.ndarray:
    """Positive where the row's own uniform number is below its probability of a positive
    decision (rows at 0 or 1, up to rounding in a sum of weights, are not drawn)."""
    return draw_with(pmf, lambda idx: row_uniforms(X.iloc[idx], input_schema, seed))


def draw_with(pmf: np.ndarray, uniforms: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """:func:`draw_decisions` with the rows' uniform numbers from ``uniforms(indices)``, asked
    only for the rows whose probability lies strictly between 0 and 1."""
    eps = 1e-9
    out = pmf >= 1.0 - eps
    band = (pmf > eps) & ~out
    if band.any():
        idx = np.flatnonzero(band)
        out[idx] = uniforms(idx) < pmf[idx]
    return out


class _Randomized(_Base):
    """A binary classifier that draws its decisions from ``decision_probability``."""

    seed: int
    classes_: list[Any]  # binary: checked by each constructor (_binary)

    @property
    def tags(self) -> dict[str, Any]:
        return {**super().tags, "hard_decisions": True, "randomized": True}

    def decision_probability(self, X: Any) -> np.ndarray:
        """Each row's probability of a positive decision under the mitigated policy."""
        return self._pmf(check_input_frame(X, self.input_schema))

    def _pmf(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def _decide(self, X: pd.DataFrame) -> np.ndarray:
        return draw_decisions(self._pmf(X), X, self.input_schema, self.seed)

    def predict(self, X: Any) -> np.ndarray:
        X = check_input_frame(X, self.input_schema)
        return np.asarray(self.classes_)[self._decide(X).astype(np.int64)]

    def _proba(self, X: pd.DataFrame) -> np.ndarray:
        d = self._decide(X).astype(np.float64)
        return np.column_stack([1.0 - d, d])


def _binary(classes: list[Any] | None, what: str) -> list[Any]:
    if classes is None or len(classes) != 2:
        raise InvalidInput(f"{what}: expected a binary classifier, got classes {classes}")
    return list(classes)


# ---------------------------------------------------------------- post-processed thresholds


def _threshold(value: Any) -> float | str:
    """A threshold as JSON: a number, or "inf" / "-inf"."""
    x = float(value)
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def _operation(op: Any) -> list[Any]:
    return [str(op.operator), _threshold(op.threshold)]


def rule_from_fairlearn(interpolation: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    """fairlearn's ``interpolation_dict`` (group → Bunch) as plain JSON-able data."""
    groups: dict[str, dict[str, Any]] = {}
    for key, b in interpolation.items():
        g = {
            "p0": float(b["p0"]),
            "operation0": _operation(b["operation0"]),
            "p1": float(b["p1"]),
            "operation1": _operation(b["operation1"]),
        }
        if "p_ignore" in b:
            g["p_ignore"] = float(b["p_ignore"])
            g["prediction_constant"] = float(b["prediction_constant"])
        groups[str(key)] = g
    return groups


def _apply(operation: list[Any], s: np.ndarray) -> np.ndarray:
    op, t = operation[0], float(operation[1])
    return (s > t) if op == ">" else (s < t)


class ThresholdedModel(_Randomized):
    """A base model's scores post-processed by per-group thresholds.

    ``rule``: ``{"sensitive": [...], "positive_class": ..., "groups": {key: {...}},
    "method": ..., "constraint": ...}``. Rows of a group the rule has no entry for (one not
    seen when it was fit) get the base model's own decision.
    """

    flavor = "postprocessed"

    def __init__(
        self,
        base: Any,
        rule: Any,
        input_schema: list[dict[str, Any]],
        *,
        seed: int = 0,
        base_sha: str | None = None,
    ) -> None:
        classes = _binary(getattr(base, "classes_", None), "postprocessed model")
        rule = _check_rule(rule, classes)
        super().__init__("classification", _declare_sensitive(input_schema, rule), classes)
        self.base = base
        self.rule = rule
        self.seed = int(seed)
        self.base_sha = base_sha

    @property
    def tags(self) -> dict[str, Any]:
        return {**super().tags, "sensitive": list(self.rule["sensitive"])}

    @property
    def positive_index(self) -> int:
        """The column of the base model's probabilities that the thresholds read."""
        return self.classes_.index(self.rule["positive_class"])

    def _pmf(self, X: pd.DataFrame) -> np.ndarray:
        base_cols = [c["name"] for c in self.base.input_schema]
        proba = np.asarray(self.base.predict_proba(X[base_cols]), dtype=np.float64)
        keys = group_keys(X, list(self.rule["sensitive"]))
        return self.pmf_from_scores(proba[:, self.positive_index], keys)

    def pmf_from_scores(self, scores: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """The probability of a positive decision from the base model's scores and the rows'
        group keys (:func:`group_keys`)."""
        scores = np.asarray(scores, dtype=np.float64)
        pmf = (scores > 0.5).astype(np.float64)  # the base decision, for unseen groups
        for key, g in self.rule["groups"].items():
            rows = np.flatnonzero(keys == key)
            if not len(rows):
                continue
            s = scores[rows]
            p = g["p0"] * _apply(g["operation0"], s) + g["p1"] * _apply(g["operation1"], s)
            if "p_ignore" in g:
                p = g["p_ignore"] * g["prediction_constant"] + (1.0 - g["p_ignore"]) * p
            pmf[rows] = p
        return np.clip(pmf, 0.0, 1.0)

    def __repr__(self) -> str:
        return (
            f"ThresholdedModel(base={type(self.base).__name__}, "
            f"sensitive={self.rule['sensitive']}, groups={len(self.rule['groups'])})"
        )


def _declare_sensitive(
    input_schema: list[dict[str, Any]], rule: dict[str, Any]
) -> list[dict[str, Any]]:
    """The schema with each column the thresholds decide by marked ``"sensitive": true``:
    the model reads it at decision time, so a request must carry it (and the card says
    so, with its warning)."""
    marked = set(rule["sensitive"])
    return [{**c, "sensitive": True} if c.get("name") in marked else c for c in input_schema]


def _check_rule(rule: Any, classes: list[Any]) -> dict[str, Any]:
    """A rule is data from a file: check every field before anything uses it."""
    if not isinstance(rule, dict):
        raise UnsafeArtifact("postprocessed rule: expected a JSON object")
    sensitive = rule.get("sensitive")
    if not isinstance(sensitive, list) or not sensitive:
        raise UnsafeArtifact("postprocessed rule: 'sensitive' must list the group columns")
    if rule.get("positive_class") not in classes:
        raise UnsafeArtifact(
            f"postprocessed rule: positive_class {rule.get('positive_class')!r} is not one of "
            f"the base model's classes {classes}"
        )
    groups = rule.get("groups")
    if not isinstance(groups, dict) or not groups:
        raise UnsafeArtifact("postprocessed rule: 'groups' must map group keys to thresholds")
    for key, g in groups.items():
        where = f"postprocessed rule, group {key!r}"
        if not isinstance(g, dict):
            raise UnsafeArtifact(f"{where}: expected a JSON object")
        probs = [g.get("p0"), g.get("p1"), g.get("p_ignore", 0.0), g.get("prediction_constant", 0)]
        if not all(isinstance(p, int | float) and 0.0 <= p <= 1.0 for p in probs):
            raise UnsafeArtifact(f"{where}: probabilities must be numbers in [0, 1]")
        if abs(g["p0"] + g["p1"] - 1.0) > 1e-6:
            raise UnsafeArtifact(f"{where}: p0 + p1 must be 1, got {g['p0'] + g['p1']}")
        for name in ("operation0", "operation1"):
            op = g.get(name)
            valid = (
                isinstance(op, list)
                and len(op) == 2
                and op[0] in _OPERATORS
                and _is_threshold(op[1])
            )
            if not valid:
                raise UnsafeArtifact(f"{where}: {name} must be ['>' or '<', threshold]")
    return rule


def _is_threshold(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int | float):
        return math.isfinite(x)
    return x in ("inf", "-inf")


# ---------------------------------------------------------------- randomized ensemble


def _member_decision(member: Any, Xt: Any, num_threads: int = 0) -> np.ndarray:
    """A member's hard 0/1 decision, as fairlearn's members make it (``predict``);
    ``num_threads`` for a LightGBM member (0: LightGBM's default)."""
    import lightgbm as lgb

    if isinstance(member, lgb.Booster):  # LGBMClassifier.predict: argmax
        return np.asarray(member.predict(Xt, num_threads=num_threads)) > 0.5
    return np.asarray(member.predict(Xt)).astype(np.float64) == 1.0


class EnsembleModel(_Randomized):
    """keel's feature transform, then a weighted set of classifiers each deciding 0/1; the
    probability of a positive decision is the weight of the members that say yes."""

    flavor = "randomized_ensemble"

    def __init__(
        self,
        transformer: Any,
        members: list[Any],
        weights: list[float],
        input_schema: list[dict[str, Any]],
        classes: list[Any],
        *,
        seed: int = 0,
        info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__("classification", input_schema, _binary(classes, "ensemble model"))
        w = np.asarray(weights, dtype=np.float64)
        if len(members) != len(w) or not len(w):
            raise InvalidInput("ensemble model: expected one weight per member, and a member")
        if not np.all(np.isfinite(w)) or (w < 0).any() or abs(w.sum() - 1.0) > 1e-6:
            raise InvalidInput("ensemble model: weights must be ≥ 0 and sum to 1")
        self.transformer = transformer
        self.members = list(members)
        self.weights = [float(x) for x in w]
        self.seed = int(seed)
        self.info = dict(info or {})

    @property
    def tags(self) -> dict[str, Any]:
        return {**super().tags, "members": len(self.members)}

    def _pmf(self, X: pd.DataFrame) -> np.ndarray:
        return self.pmf_encoded(self.transformer.transform(X))

    def pmf_encoded(self, Xt: Any, num_threads: int = 0) -> np.ndarray:
        """The probability of a positive decision from the transformed features (LightGBM
        members on ``num_threads`` threads; 1 is fastest for a few rows at a time)."""
        pmf = np.zeros(Xt.shape[0], dtype=np.float64)
        for member, w in zip(self.members, self.weights, strict=True):
            pmf += w * _member_decision(member, Xt, num_threads)
        return np.clip(pmf, 0.0, 1.0)

    def __repr__(self) -> str:
        return f"EnsembleModel(members={len(self.members)}, inputs={len(self.input_schema)})"


# ---------------------------------------------------------------- saving and loading


def save_components(model: Any, blobs: BlobStore) -> dict[str, dict[str, str]]:
    """Store a mitigated model's parts; the components of its manifest."""
    from keel.models._artifact import _skops_dumps, save_model

    def put(data: dict[str, Any], fmt: str) -> dict[str, str]:
        text = json.dumps(data, sort_keys=True, allow_nan=False)
        return {"sha": blobs.put_bytes(text.encode()), "format": fmt}

    if isinstance(model, ThresholdedModel):
        base_sha = model.base_sha
        if base_sha is None or not blobs.exists(base_sha):
            base_sha = save_model(model.base, blobs)
        return {
            "base": {"sha": base_sha, "format": "keel-model"},
            "rule": put({"rule": model.rule, "seed": model.seed}, RULE_FORMAT),
        }
    import lightgbm as lgb

    parts = {
        "transformer": {"sha": blobs.put_bytes(_skops_dumps(model.transformer)), "format": "skops"}
    }
    names = []
    for i, member in enumerate(model.members):
        name = f"member{i}"
        if isinstance(member, lgb.Booster):
            sha, fmt = blobs.put_bytes(member.model_to_string().encode()), "lightgbm-text"
        else:
            sha, fmt = blobs.put_bytes(_skops_dumps(member)), "skops"
        parts[name] = {"sha": sha, "format": fmt}
        names.append(name)
    doc = {"members": names, "weights": model.weights, "seed": model.seed, "info": model.info}
    parts["ensemble"] = put(doc, ENSEMBLE_FORMAT)
    return parts


def _json_part(blobs: BlobStore, part: Any, fmt: str, what: str) -> dict[str, Any]:
    if not isinstance(part, dict) or part.get("format") != fmt:
        raise UnsafeArtifact(f"{what}: expected a {fmt!r} component")
    try:
        doc = json.loads(blobs.get_bytes(part["sha"]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UnsafeArtifact(f"{what}: not JSON; keel never unpickles") from None
    if not isinstance(doc, dict):
        raise UnsafeArtifact(f"{what}: expected a JSON object")
    return doc


def load_mitigated(blobs: BlobStore, m: dict[str, Any]) -> ThresholdedModel | EnsembleModel:
    """Build a mitigated model from its parsed manifest, checking every part first."""
    from keel.models._artifact import _skops_loads, load_model, read_manifest

    parts = m.get("components", {})
    if m["flavor"] == "postprocessed":
        base = parts.get("base")
        if not isinstance(base, dict) or base.get("format") != "keel-model":
            raise UnsafeArtifact("postprocessed model: expected a 'keel-model' base component")
        if read_manifest(blobs, base["sha"]).get("flavor") in FLAVORS:
            raise UnsafeArtifact("postprocessed model: its base is itself mitigated; refusing")
        doc = _json_part(blobs, parts.get("rule"), RULE_FORMAT, "postprocessed rule")
        return ThresholdedModel(
            load_model(blobs, base["sha"]),
            doc.get("rule"),
            m["input_schema"],
            seed=_seed(doc),
            base_sha=base["sha"],
        )
    import lightgbm as lgb

    doc = _json_part(blobs, parts.get("ensemble"), ENSEMBLE_FORMAT, "ensemble")
    names, members = doc.get("members"), []
    if not isinstance(names, list) or not all(isinstance(n, str) and n in parts for n in names):
        raise UnsafeArtifact("ensemble: 'members' must name components of the manifest")
    for name in names:
        part = parts[name]
        data = blobs.get_bytes(part["sha"])
        if part.get("format") == "lightgbm-text":
            text = data.decode("utf-8")
            if not text.startswith("tree\n"):
                raise UnsafeArtifact(f"ensemble {name}: not a LightGBM text model")
            members.append(lgb.Booster(model_str=text))
        elif part.get("format") == "skops":
            members.append(_skops_loads(data, f"ensemble {name}"))
        else:
            raise UnsafeArtifact(f"ensemble {name}: unknown format {part.get('format')!r}")
    transformer = _skops_loads(blobs.get_bytes(parts["transformer"]["sha"]), "transformer")
    try:
        return EnsembleModel(
            transformer,
            members,
            doc.get("weights") or [],
            m["input_schema"],
            m["classes"],
            seed=_seed(doc),
            info=doc.get("info") if isinstance(doc.get("info"), dict) else {},
        )
    except (InvalidInput, TypeError, ValueError) as exc:
        raise UnsafeArtifact(f"ensemble: {exc}") from None


def _seed(doc: dict[str, Any]) -> int:
    seed = doc.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise UnsafeArtifact(f"mitigated model: seed must be a whole number ≥ 0, got {seed!r}")
    return seed
