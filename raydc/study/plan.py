"""Turn a study's base config, search space and seeds into concrete trial configurations."""
from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from raydc.config import ConfigError, TrialConfig, make_config, set_dotted
from raydc.config.identity import trial_id
from raydc.config.effects import affects
from raydc.study.space import Dimension


@dataclass(frozen=True)
class PlannedTrial:
    trial_id: str
    values: dict[str, Any]   # nested trial-config values, seed included
    params: dict[str, Any]   # the trial's point in the search space, plus its seed


def get_dotted(values: dict[str, Any], key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        node = node[part]
    return node


def trial_values(base: dict[str, Any], params: dict[str, Any], seed: int) -> dict[str, Any]:
    values = copy.deepcopy(base)
    for key, value in params.items():
        set_dotted(values, key, value)
    values["seed"] = seed
    return values


def build_config(base: dict[str, Any], params: dict[str, Any], seed: int) -> TrialConfig:
    """Validate one trial; an error names the study-file field it comes from (search.space.* or base.*)."""
    try:
        return make_config(trial_values(base, params, seed))
    except ConfigError as exc:
        message = str(exc).removeprefix(f"{exc.field}: ")
        if exc.field in params:
            raise ConfigError(f"search.space.{exc.field}", f"{message} (value {params[exc.field]!r})") from None
        raise ConfigError(f"base.{exc.field}", message) from None


def grid_points(dims: list[Dimension]) -> list[dict[str, Any]]:
    """The Cartesian product of every dimension's values, in the order the study file lists them."""
    return [dict(zip((d.key for d in dims), combo)) for combo in itertools.product(*(d.values for d in dims))]


def random_points(dims: list[Dimension], n: int, seed: int) -> list[dict[str, Any]]:
    """n independent draws; a larger n keeps the first draws, so extending a random study is incremental."""
    rng = np.random.default_rng(seed)
    return [{d.key: d.sample(rng) for d in dims} for _ in range(n)]


def probe_points(dims: list[Dimension]) -> list[dict[str, Any]]:
    """Points that reach every choice and both ends of every range, for checking a sampled space."""
    choices = [d for d in dims if d.kind == "choice"]
    ranges = [d for d in dims if d.kind != "choice"]
    lows = {d.key: d.bounds()[0] for d in ranges}
    points = [{**point, **lows} for point in grid_points(choices)]
    first = points[0]
    points += [{**first, d.key: d.bounds()[1]} for d in ranges]
    return points


def expand(base: dict[str, Any], points: Iterable[dict[str, Any]], seeds: list[int]) -> list[PlannedTrial]:
    """One trial per (seed, point); settings a trial ignores take the base value, so such duplicates run once."""
    base_values = make_config(base).model_dump()
    trials: dict[str, PlannedTrial] = {}
    points = list(points)
    for seed in seeds:  # seed-major: the first seed covers the whole space before the next starts
        for point in points:
            config = build_config(base, point, seed)
            params = {key: value if affects(key, config) else get_dotted(base_values, key)
                      for key, value in point.items()}
            values = trial_values(base, params, seed)
            tid = trial_id(make_config(values))
            trials.setdefault(tid, PlannedTrial(tid, values, {**params, "seed": seed}))
    return list(trials.values())
