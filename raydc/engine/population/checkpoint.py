"""Population checkpoints: each member's own trial state and outcome, the stacked Adam state, the epoch.

A member's parameters are views of the stack's rows; they are copied out, so a member's state is its own row
rather than the whole stack, and a resumed population restacks the members exactly as they were.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from raydc.files.checkpoint import atomic_save, load
from raydc.engine.population.stack import StackedAdam
from raydc.engine.records import TrialRecord

CHECKPOINT_FILE = "population.pt"
# a failed member's times were stamped when it failed; a running member's are stamped again at its end
RESULT_FIELDS = ("status", "error", "pretrain_cached", "pretrain_time_s", "reset_time_s", "epochs_done",
                 "cluster_time_s", "wall_time_s")


def checkpoint_path(directory: Path | str | None) -> Path | None:
    return Path(directory) / CHECKPOINT_FILE if directory is not None else None


def save_population(path: Path, ids: list[str], epoch: int, members: list[Any], adam: StackedAdam,
                    clock: dict[str, float]) -> None:
    """Every member's state (None once it has failed) and outcome after `epoch`, adam rows following the alive
    members, and the population's clock."""
    states = []
    for member in members:
        running = member.result.status == "running"
        states.append({"trial": _own_copy(member.state.state_dict()) if running else None,
                       "result": {name: getattr(member.result, name) for name in RESULT_FIELDS}})
    atomic_save({"ids": ids, "epoch": epoch, "members": states, "clock": clock,
                 "adam": {"exp_avg": adam.exp_avg, "exp_avg_sq": adam.exp_avg_sq, "steps": adam.steps}}, path)


def load_population(path: Path | None, ids: list[str], device: torch.device) -> dict[str, Any] | None:
    """The saved state of these members, or None (no checkpoint, or one that lacks one of them or holds them in
    another order). Members it holds beyond them (recorded since) are left out: members share only the stack."""
    if path is None or not path.exists():
        return None
    saved = load(path, device)
    rows = [saved["ids"].index(tid) for tid in ids if tid in saved["ids"]]
    if len(rows) != len(ids) or rows != sorted(rows):
        return None
    alive = [row for row, member in enumerate(saved["members"]) if member["trial"] is not None]
    kept = torch.tensor([alive.index(row) for row in rows if row in alive], dtype=torch.long, device=device)
    adam = saved["adam"]
    return {**saved, "ids": list(ids), "members": [saved["members"][row] for row in rows],
            "adam": {**adam, "exp_avg": [m[kept] for m in adam["exp_avg"]],
                     "exp_avg_sq": [v[kept] for v in adam["exp_avg_sq"]]}}


def saved_members(directory: Path) -> list[str] | None:
    """The member ids of the population checkpoint in `directory`, read without loading its tensors."""
    path = checkpoint_path(directory)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)["ids"]


def restore_result(result: TrialRecord, saved: dict[str, Any]) -> None:
    for name, value in saved["result"].items():
        setattr(result, name, value)


def restore_adam(adam: StackedAdam, saved: dict[str, Any]) -> None:
    state = saved["adam"]
    with torch.no_grad():
        for mine, theirs in zip(adam.exp_avg + adam.exp_avg_sq, state["exp_avg"] + state["exp_avg_sq"]):
            mine.copy_(theirs)
        adam.steps.copy_(state["steps"])


def _own_copy(state: dict[str, Any]) -> dict[str, Any]:
    """The trial's state with its model tensors copied out of the stack (a view would save the whole stack)."""
    return {**state, "model": {name: value.clone() for name, value in state["model"].items()}}
