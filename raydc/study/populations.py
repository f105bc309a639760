"""Group a study's pending trials into populations: trials that differ only in what population mode varies."""
from __future__ import annotations

import hashlib
from typing import Any

from raydc.config import make_config
from raydc.population import stacking_key

SEPARATOR = ","  # a population travels to its Tune trial as one string of trial ids


def group_trials(planned: dict[str, dict[str, Any]], pending: list[str], size: int) -> list[list[str]]:
    """Pending trial ids in groups of at most `size` that train as one stacked model, in planned order; a trial
    population mode cannot run (self-labeling, ResNet, LFSS, ...) forms a group of its own."""
    groups: list[list[str]] = []
    open_groups: dict[str, list[str]] = {}
    for tid in pending:
        key = stacking_key(make_config(planned[tid])) if size > 1 else None
        group = open_groups.get(key) if key is not None else None
        if group is None or len(group) == size:
            group = []
            groups.append(group)
            if key is not None:
                open_groups[key] = group
        group.append(tid)
    return groups


def population_id(group: list[str]) -> str:
    """Names the population's checkpoint directory: the same members always find the same checkpoint."""
    return "population-" + hashlib.sha256(encode(group).encode()).hexdigest()[:16]


def encode(group: list[str]) -> str:
    return SEPARATOR.join(group)


def decode(members: str) -> list[str]:
    return members.split(SEPARATOR)
