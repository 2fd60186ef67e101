"""Releases: one route serving several versions of a model by weight (canary), with an
optional shadow that gets a copy of every request.

Each request goes to one weighted variant. With a sticky key (the ``sticky_header``
header, or ``key`` in a keel JSON body) the choice is a hash of (route, key), so a key
always lands on the same variant while the weights stay the same; without one it is a
draw from the release's RNG. The shadow answers nobody: its copy is sent after the
caller's answer is produced, its predictions reach the prediction sink like any other,
and its failures are only counted and logged.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keel.errors import InvalidInput
from keel.serve._batch import Arrivals
from keel.serve._errors import ServeError
from keel.serve._slot import Deployment, Route, Slot

__all__ = ["Release", "ReleaseSlot", "load_releases"]


def _variant_route(name: str, model: str, variant: str) -> Route:
    if variant.isdigit():
        return Route(name, model, None, int(variant))
    return Route(name, model, variant)


@dataclass(frozen=True)
class Release:
    """Route ``name`` serving registered ``model`` (default: ``name``) by weight.

    ``variants``: alias or version (``"production"``, ``"candidate"``, ``"3"`` or ``3``)
    to a positive weight, e.g. ``{"production": 90, "candidate": 10}``.
    ``shadow``: an alias or version that gets a copy of each request (None: none).
    ``sticky_header``: the request header whose value pins a caller to one variant.
    ``seed``: seeds the draw for requests without a key (None: unseeded).
    ``shadow_timeout_s``: how long a shadow copy may take before it is counted as failed.
    ``max_shadow_in_flight``: shadow copies past this many in flight are dropped (counted).
    """

    name: str
    variants: Mapping[str, float] = field(default_factory=lambda: {"production": 100})
    model: str | None = None
    shadow: str | int | None = None
    sticky_header: str = "x-keel-key"
    seed: int | None = None
    shadow_timeout_s: float = 30.0
    max_shadow_in_flight: int = 1000

    def check(self) -> None:
        """Refuse a malformed release with :class:`InvalidInput` naming the field."""
        from keel.registry import check_name

        def bad(field_: str, why: str) -> InvalidInput:
            return InvalidInput(f"release {str(self.name)[:100]!r}: {field_}: {why}")

        if not isinstance(self.name, str):
            raise bad("name", f"expected a route name, got {self.name!r}")
        check_name(self.name, "release name")
        if self.model is not None:
            if not isinstance(self.model, str):
                raise bad("model", f"expected a model name, got {self.model!r}")
            check_name(self.model, "release model")
        if not isinstance(self.variants, Mapping) or not self.variants:
            raise bad("variants", "expected {alias or version: weight}, at least one")
        for key, weight in self.variants.items():
            if not isinstance(key, str | int) or isinstance(key, bool) or not str(key).strip():
                raise bad("variants", f"expected an alias or version, got {key!r}")
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not math.isfinite(weight)
                or weight <= 0
            ):
                raise bad(f"variants[{str(key)!r}]", f"weight must be > 0, got {weight!r}")
        if self.shadow is not None and (
            not isinstance(self.shadow, str | int)
            or isinstance(self.shadow, bool)
            or not str(self.shadow).strip()
        ):
            raise bad("shadow", f"expected an alias or version, got {self.shadow!r}")
        if not isinstance(self.sticky_header, str) or not self.sticky_header.strip():
            raise bad("sticky_header", f"expected a header name, got {self.sticky_header!r}")
        if not isinstance(self.shadow_timeout_s, int | float) or not self.shadow_timeout_s > 0:
            raise bad("shadow_timeout_s", f"expected a number > 0, got {self.shadow_timeout_s!r}")
        if not isinstance(self.max_shadow_in_flight, int) or self.max_shadow_in_flight < 1:
            raise bad(
                "max_shadow_in_flight",
                f"expected an integer >= 1, got {self.max_shadow_in_flight!r}",
            )

    def resolve(self, store: Any) -> None:
        """Refuse variants and a shadow whose alias or version does not resolve."""
        from keel import registry

        model = self.model or self.name
        named = [(f"variants[{str(k)!r}]", str(k)) for k in self.variants]
        if self.shadow is not None:
            named.append(("shadow", str(self.shadow)))
        for field_, variant in named:
            ref = _variant_route(self.name, model, variant).ref
            try:
                registry.get_version(store, ref)
            except Exception as exc:
                raise InvalidInput(
                    f"release {self.name!r}: {field_}: {ref} does not resolve: {exc}"
                ) from None


class ReleaseSlot:
    """What answers a release's route: a slot per weighted variant, and one for the
    shadow. Offers the interface of :class:`Slot` that the endpoints use."""

    def __init__(self, release: Release, reuse: ReleaseSlot | None = None) -> None:
        """``reuse``: the release this one replaces; the slots of variants (and the shadow)
        that serve the same route carry over with their loaded versions and counts."""
        self.release = release
        model = release.model or release.name
        # shared: every variant's batcher sees the route's arrivals
        self.arrivals: Arrivals = reuse.arrivals if reuse is not None else Arrivals()
        self.variants: dict[str, Slot] = {}
        self.weights: list[tuple[str, float]] = []
        for key, weight in release.variants.items():
            variant = str(key)
            route = _variant_route(release.name, model, variant)
            kept = reuse.variants.get(variant) if reuse is not None else None
            if kept is not None and kept.route == route:
                self.variants[variant] = kept
            else:
                self.variants[variant] = Slot(route, variant, self.arrivals)
            self.weights.append((variant, float(weight)))
        self.shadow: Slot | None = None
        if release.shadow is not None:
            variant = str(release.shadow)
            route = _variant_route(release.name, model, variant)
            old = reuse.shadow if reuse is not None else None
            if old is not None and old.route == route:
                self.shadow = old
            else:
                self.shadow = Slot(route, f"shadow:{variant}", Arrivals())
        total = sum(w for _, w in self.weights)
        self._cumulative: list[tuple[float, str]] = []
        acc = 0.0
        for variant, weight in self.weights:
            acc += weight / total
            self._cumulative.append((acc, variant))
        self.sticky_header = release.sticky_header.strip().lower()
        self._rng = random.Random(release.seed)
        self._salt = release.name.encode() + b"\0"
        before = reuse.counts if reuse is not None else {}
        self.counts: dict[str, int] = {v: before.get(v, 0) for v in self.variants}
        self.shadow_counts: dict[str, int] = (
            dict(reuse.shadow_counts)
            if reuse is not None and self.shadow is not None and self.shadow is reuse.shadow
            else {"sent": 0, "ok": 0, "failed": 0, "dropped": 0}
        )
        self.shadow_in_flight = 0

    # -- the Slot interface ------------------------------------------------------------

    @property
    def route(self) -> Route:
        return self.variants[self.weights[0][0]].route

    @property
    def live(self) -> Deployment | None:
        """The first variant's deployment once every weighted variant is loaded."""
        if any(s.live is None for s in self.variants.values()):
            return None
        return self.variants[self.weights[0][0]].live

    @property
    def failure(self) -> str | None:
        failed = [f"{v}: {s.failure}" for v, s in self.variants.items() if s.failure]
        return "; ".join(failed) or None

    def leaves(self) -> list[Slot]:
        return [*self.variants.values(), *([self.shadow] if self.shadow else [])]

    def choose(self, key: str | None = None) -> str:
        """The variant for a request: a hash of (route, ``key``) or else a random draw."""
        if key is None:
            u = self._rng.random()
        else:
            digest = hashlib.blake2b(self._salt + key.encode(), digest_size=8).digest()
            u = int.from_bytes(digest, "big") / 2**64
        for bound, variant in self._cumulative:
            if u < bound:
                return variant
        return self._cumulative[-1][1]

    def pick(self, key: str | None = None) -> Deployment:
        variant = self.choose(key)
        return self.variants[variant].pick()

    def pick_version(self, version: str) -> Deployment:
        for slot in self.variants.values():
            live = slot.live
            if live is not None and str(live.version) == version:
                return live
        serving = sorted({str(s.live.version) for s in self.variants.values() if s.live})
        raise ServeError(
            "model_not_found",
            f"model {self.release.name!r} does not serve version {version[:20]!r}; "
            f"it serves version(s) {', '.join(serving) or 'none yet'}",
        )

    def variant_of(self, dep: Deployment) -> str | None:
        for variant, slot in self.variants.items():
            if slot.live is dep:
                return variant
        return None

    def describe(self) -> dict[str, Any]:
        """The release's config and per-variant request counts (for the admin endpoint)."""
        rel = self.release
        variants = []
        for variant, weight in self.weights:
            slot = self.variants[variant]
            variants.append(
                {
                    "variant": variant,
                    "weight": weight,
                    "serves": slot.route.ref,
                    "version": slot.live.version if slot.live else None,
                    "ready": slot.live is not None,
                    "requests": self.counts[variant],
                }
            )
        shadow = None
        if self.shadow is not None:
            live = self.shadow.live
            shadow = {
                "variant": str(rel.shadow),
                "serves": self.shadow.route.ref,
                "version": live.version if live else None,
                "ready": live is not None,
                **self.shadow_counts,
            }
        return {
            "name": rel.name,
            "model": rel.model or rel.name,
            "sticky_header": self.sticky_header,
            "variants": variants,
            "shadow": shadow,
            "requests": sum(self.counts.values()),
        }


_RELEASE_FIELDS = {f for f in Release.__dataclass_fields__}


def load_releases(path: Any) -> list[Release]:
    """Releases from a YAML file: one release mapping, or ``releases:`` with a list of them.

    ::

        releases:
          - name: adult-income
            variants: {production: 90, candidate: 10}
            shadow: challenger          # optional
            sticky_header: x-keel-key   # optional

    Refuses, naming the file, field and line, a file that is not YAML, a field keel does not
    know, or a release :meth:`Release.check` refuses."""
    from pathlib import Path

    import yaml

    from keel.features._messages import yaml_locator

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"release file {p}: cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"release file {p}: not valid YAML{where}") from None
    locate = yaml_locator(text)
    listed = isinstance(data, dict) and set(data) == {"releases"}
    items = data["releases"] if listed else [data]
    if not isinstance(items, list) or not items:
        raise InvalidInput(
            f"release file {p}: releases: expected a list of releases, got {type(items).__name__}"
        )
    out = []
    for i, item in enumerate(items):
        at: list[str | int] = ["releases", i] if listed else []
        line = locate(at) if at else 1
        if not isinstance(item, dict):
            raise InvalidInput(
                f"release file {p}, line {line}: expected a mapping with name and variants, "
                f"got {type(item).__name__}"
            )
        unknown = sorted(set(map(str, item)) - _RELEASE_FIELDS)
        if unknown:
            raise InvalidInput(
                f"release file {p}, line {locate([*at, unknown[0]])}: unknown field "
                f"{unknown[0]!r}; expected one of {sorted(_RELEASE_FIELDS)}"
            )
        if "name" not in item:
            raise InvalidInput(f"release file {p}, line {line}: name: required, missing")
        release = Release(**item)
        try:
            release.check()
        except InvalidInput as exc:
            raise InvalidInput(f"release file {p}, line {line}: {exc}") from None
        out.append(release)
    names = [r.name for r in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise InvalidInput(f"release file {p}: release {dup!r} is given twice")
    return out
