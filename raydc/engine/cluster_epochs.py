"""The clustering stage's epochs, one loop for a single trial and a population of stacked trials: BRB's periodic step
at each member's own T, the training epoch, divergence, evaluation, records and checkpoints. What differs between the
two (one model or a stack of them) sits behind `Engine`."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from raydc.engine.clock import TrialClock
from raydc.engine.records import EpochRecord, TrialRecord
from raydc.engine.state import TrialState


@dataclass
class Member:
    """One trial the loop trains: its state (the engine holds its steps), its record, where its epochs and reset
    time go, and what happens when it diverges (a lone trial raises; a population's member leaves the stack)."""
    state: TrialState
    result: TrialRecord
    report: Callable[[EpochRecord], None]
    add_reset_time: Callable[[float], None]
    fail: Callable[[], None]
    final: EpochRecord | None = field(default=None)  # the last epoch's record, once it ran


class Engine(Protocol):
    """The arithmetic of an epoch for the members still training, in their order (rows)."""

    def periodic_step(self, row: int) -> None:
        """BRB's step (or its ablation) for the member in this row."""

    def train_epoch(self) -> list[dict[str, float]]:
        """One epoch of minibatch steps; each member's mean loss terms, finite or not."""

    def finite_centers(self) -> list[bool]:
        """Whether each member's centroids are all finite after the epoch."""

    def keep(self, rows: list[int]) -> None:
        """Go on with these rows only (the others diverged)."""

    def end_epoch(self) -> list[dict[str, float]]:
        """What each remaining member's model measures at the end of an epoch (LFSS's stability; else nothing)."""

    def evaluate(self, records: list[EpochRecord], last: bool) -> None:
        """Fill each remaining member's record with its scores."""


def run_cluster_epochs(members: list[Member], engine: Engine, clock: TrialClock, first_epoch: int,
                       checkpoint: Callable[[int, bool], None]) -> None:
    """Clustering epochs first_epoch.. of every member in lock step. A member whose loss or centroids go non-finite
    is marked failed (member.fail()) and the others go on; checkpoint(epoch, last) runs at the checkpoint cadence."""
    config = members[0].state.config
    for epoch in range(first_epoch, config.train.epochs):
        t_epoch = time.perf_counter()
        records = [EpochRecord(phase="cluster", epoch=epoch) for _ in members]
        for row, (member, record) in enumerate(zip(members, records)):
            if member.state.is_periodic_epoch(epoch):
                t_reset = time.perf_counter()
                engine.periodic_step(row)
                sync_device(member.state.device)
                record.reset_applied, record.reset_time_s = True, time.perf_counter() - t_reset
                member.add_reset_time(record.reset_time_s)
        losses = engine.train_epoch()
        kept = [row for row, finite in enumerate(engine.finite_centers())
                if finite and all(math.isfinite(v) for v in losses[row].values())]
        for row in sorted(set(range(len(members))) - set(kept)):
            result = members[row].result
            result.status, result.error = "failed", f"non-finite loss at clustering epoch {epoch}: {losses[row]}"
            members[row].fail()
        if len(kept) < len(members):
            members, records, losses = ([items[r] for r in kept] for items in (members, records, losses))
            engine.keep(kept)
            if not members:
                return
        for member, record, terms, extra in zip(members, records, losses, engine.end_epoch()):
            for name, value in {**terms, **extra}.items():
                setattr(record, name, value)
            member.state.finish_epoch(epoch)
            member.result.epochs_done = epoch + 1
        last = epoch == config.train.epochs - 1
        if last or epoch % config.eval.every == 0:
            engine.evaluate(records, last)
        for member, record in zip(members, records):
            record.time_s = time.perf_counter() - t_epoch
            record.elapsed_s = clock.elapsed()
            member.report(record)
            if last:
                member.final = record
        if is_checkpoint_epoch(config, epoch, last):
            checkpoint(epoch, last)


def is_checkpoint_epoch(config, epoch: int, last: bool) -> bool:
    """Whether a checkpoint is saved after this clustering or self-labeling epoch."""
    return last or bool(config.checkpoint_every and (epoch + 1) % config.checkpoint_every == 0)


def sync_device(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
