"""Group a study's pending trials into populations: trials that differ only in what population mode varies.

A population travels to its Tune trial as one string, "<checkpoint name>:<trial id>,<trial id>,...".
"""
from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from typing import Any

from raydc.config import TrialConfig, make_config
from raydc.engine.population import stacking_key
from raydc.engine.population.checkpoint import saved_members
from raydc.study.paths import StudyPaths

PREFIX = "population-"  # of a population's checkpoint directory
GroupKey = Callable[[TrialConfig], str | None]


def group_trials(planned: dict[str, dict[str, Any]], pending: list[str], size: int,
                 key: GroupKey = stacking_key) -> list[list[str]]:
    """Pending trial ids in groups of at most `size` that train as one stacked model, in planned order: trials of one
    key (stacking_key: what population mode may stack; configuration_id: a configuration's seeds); a trial whose key
    is None (population mode cannot run it: self-labeling, ResNet, LFSS, ...) forms a group of its own."""
    groups: list[list[str]] = []
    open_groups: dict[str, list[str]] = {}
    for tid in pending:
        key_of = key(make_config(planned[tid])) if size > 1 else None
        group = open_groups.get(key_of) if key_of is not None else None
        if group is None or len(group) == size:
            group = []
            groups.append(group)
            if key_of is not None:
                open_groups[key_of] = group
        group.append(tid)
    return groups


def plan_populations(planned: dict[str, dict[str, Any]], pending: list[str], size: int,
                     saved: dict[str, list[str]], key: GroupKey = stacking_key) -> list[tuple[str, list[str]]]:
    """(checkpoint name, members) of every population to run: first the pending members of each saved checkpoint,
    which resume it (a new seed or α, or another resources.population, loses no work), then the rest grouped."""
    populations, taken = [], set()
    for name, members in sorted(saved.items()):
        resumed = [tid for tid in members if tid in pending and tid not in taken]
        if resumed and len(resumed) <= size:  # one larger than the study now allows starts over
            populations.append((name, resumed))
            taken.update(resumed)
    rest = group_trials(planned, [tid for tid in pending if tid not in taken], size, key)
    return populations + [(population_id(group), group) for group in rest]


def saved_populations(paths: StudyPaths) -> dict[str, list[str]]:
    """Checkpoint name -> member ids of every population checkpoint in the study directory."""
    saved = {}
    for directory in sorted(paths.checkpoint_dir(PREFIX).parent.glob(PREFIX + "*")):
        members = saved_members(directory)
        if members is not None:
            saved[directory.name] = members
    return saved


def discard_recorded(paths: StudyPaths, done: set[str]) -> None:
    """Delete the population checkpoints whose members are all recorded (a kill while recording them leaves one)."""
    for name, members in saved_populations(paths).items():
        if set(members) <= done:
            shutil.rmtree(paths.checkpoint_dir(name), ignore_errors=True)


def population_id(group: list[str]) -> str:
    """Names a new population's checkpoint directory."""
    return PREFIX + hashlib.sha256(",".join(group).encode()).hexdigest()[:16]


def encode(name: str, members: list[str]) -> str:
    return f"{name}:{','.join(members)}"


def decode(population: str) -> tuple[str, list[str]]:
    name, members = population.split(":", 1)
    return name, members.split(",")
