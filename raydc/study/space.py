"""One dimension of a study's search space: a list of values or a numeric range, and how to sample it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from raydc.config import ConfigError

RANGE_KINDS = ("uniform", "loguniform", "int")
Kind = Literal["choice", "uniform", "loguniform", "int"]


@dataclass(frozen=True)
class Dimension:
    key: str                     # dotted trial-config field, e.g. brb.alpha
    kind: Kind
    values: tuple = ()           # the choices of a "choice" dimension
    low: float = 0.0             # inclusive bounds of a range dimension
    high: float = 0.0

    @property
    def field(self) -> str:
        """Where this dimension lives in the study file, for error messages."""
        return f"search.space.{self.key}"

    def bounds(self) -> list[Any]:
        """The extreme values a trial can receive: every choice, or both ends of a range."""
        if self.kind == "choice":
            return list(self.values)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]

    def sample(self, rng: np.random.Generator) -> Any:
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        if self.kind == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))


def parse_dimension(key: str, raw: Any) -> Dimension:
    """A space entry: a non-empty list of distinct values, or {uniform|loguniform|int: [low, high]}."""
    field = f"search.space.{key}"
    if isinstance(raw, list):
        if not raw:
            raise ConfigError(field, "needs at least one value")
        if any(raw.count(v) > 1 for v in raw):
            raise ConfigError(field, "values must be distinct")
        return Dimension(key, "choice", values=tuple(raw))
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in RANGE_KINDS:
        raise ConfigError(field, "expected a list of values or one of {uniform: [low, high]}, "
                                 "{loguniform: [low, high]}, {int: [low, high]}")
    (kind, bounds), = raw.items()
    if not (isinstance(bounds, list) and len(bounds) == 2
            and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)):
        raise ConfigError(field, f"{kind} needs [low, high] as two numbers")
    low, high = bounds
    if not all(math.isfinite(b) for b in bounds):  # NaN also slips past every comparison below
        raise ConfigError(field, f"{kind} needs finite bounds, got [{low}, {high}]")
    if kind == "int" and not all(isinstance(b, int) for b in bounds):
        raise ConfigError(field, "int bounds must be integers")
    if (high < low) if kind == "int" else (high <= low):
        raise ConfigError(field, f"{kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(field, f"loguniform needs positive bounds, got [{low}, {high}]")
    return Dimension(key, kind, low=low, high=high)
