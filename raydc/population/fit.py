"""fit_population: many same-shaped MLP trials (differing in seed, brb.alpha, brb.interval, train.lr) trained as one
stacked model, so every kernel launch serves every member.

Each member keeps everything the plain path gives a trial: its own Trial (weights from its seed, pretraining
through the shared cache, initial k-means), its own generator (shuffle order, augmentation, soft-reset draws,
reclustering subsample and k-means), its own Adam moments and learning rate, resets and reclustering at its own
interval, DCN's centres (moved after each epoch, or assignments and running means after each step). Only the
arithmetic is batched; the random streams are the plain path's, so a member follows the same trajectory as fit() of
its config. The trajectories agree to float rounding rather than bit for bit: batched matmuls (vmap) and the stacked
Adam round differently from addmm and the fused Adam kernel, and training amplifies those last-bit differences slowly
over epochs.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raydc.batches import shuffled_epoch, trained_count
from raydc.captured import CapturedStep
from raydc.clock import TrialClock
from raydc.config import ConfigError, TrialConfig, flatten, make_config
from raydc.data import Dataset, load_dataset, resized
from raydc.errors import TrialDiverged
from raydc.fused import fuse
from raydc.loss_totals import LossTotals
from raydc.precision import network_precision
from raydc.population.checkpoint import checkpoint_path, load_population, restore_adam, restore_result, save_population
from raydc.population.stack import StackedAdam, StackedModels, clip_per_member
from raydc.model import model_state
from raydc.records import FINAL_METRICS, EpochRecord, TrialRecord
from raydc.scoring import epoch_scores
from raydc.store import configuration_id, trial_id
from raydc.train import kmeans_scores, pretrain_and_init, resolve_device, sync_device, versions
from raydc.trial import Trial

MemberReport = Callable[[int, EpochRecord], None]
MemberFailure = Callable[[int, TrialRecord], None]
VARYING_FIELDS = ("seed", "brb.alpha", "brb.interval", "train.lr")
POPULATION_MODES = ("baseline", "brb", "recluster", "reset")


def check_stackable(configs: list[TrialConfig]) -> None:
    """Raise ConfigError (a ValueError) naming the field that keeps these configs from training as one model."""
    if not configs:
        raise ConfigError("configs", "a population needs at least one member")
    for config in configs:
        problem = _unstackable(config)
        if problem is not None:
            raise problem
    first = _shared_fields(configs[0])
    for member, config in enumerate(configs[1:], 1):
        for field, value in _shared_fields(config).items():
            if value != first[field]:
                raise ConfigError(field, f"member {member} has {value!r} but member 0 has {first[field]!r}; members "
                                         f"may differ only in {', '.join(VARYING_FIELDS)}")


def stacking_key(config: TrialConfig) -> str | None:
    """Configs with equal keys can train as one population; None for a config population mode cannot run."""
    if _unstackable(config) is not None:
        return None
    return json.dumps(_shared_fields(config), sort_keys=True, default=str)


def _unstackable(config: TrialConfig) -> ConfigError | None:
    if config.net.arch != "mlp":
        return ConfigError("net.arch", f"population mode stacks MLP autoencoders, got {config.net.arch!r}")
    if config.net.batch_norm:  # running statistics per member have no stacked (vmap) form here
        return ConfigError("net.batch_norm", "population mode stacks MLPs without BatchNorm; set it false")
    if config.train.algorithm not in ("dec", "idec", "dcn"):
        return ConfigError("train.algorithm", f"population mode runs dec, idec or dcn, got {config.train.algorithm!r}")
    if config.selflabel.epochs > 0:
        return ConfigError("selflabel.epochs", "population mode has no self-labeling stage; set it to 0")
    if config.brb.mode not in POPULATION_MODES:
        return ConfigError("brb.mode", f"population mode runs {', '.join(POPULATION_MODES)}, got {config.brb.mode!r}")
    return None


def _shared_fields(config: TrialConfig) -> dict[str, Any]:
    return {k: v for k, v in flatten(config).items() if k not in VARYING_FIELDS}


class Member:
    """One trial of the population: its Trial (for setup, resets and scoring), its record and its report."""

    def __init__(self, index: int, trial: Trial, result: TrialRecord, report: MemberReport,
                 on_failure: MemberFailure):
        self.trial = trial
        self.result = result
        self.configuration = configuration_id(trial.config)  # members sharing it are seeds of one configuration
        self.report = lambda record: report(index, record)
        self.failed = lambda: on_failure(index, result)
        self.embedding: torch.Tensor | None = None
        self.final: EpochRecord | None = None


def fit_population(configs: list[TrialConfig | dict[str, Any]], report: MemberReport | None = None, *,
                   dataset: Dataset | None = None, pretrain_cache: Path | str | None = None,
                   checkpoint_dir: Path | str | None = None,
                   on_failure: MemberFailure | None = None) -> list[TrialRecord]:
    """Run every config as one stacked model; returns one TrialRecord per config, in order.

    report(member_index, record) is called for every member epoch (pretraining, then clustering). Members with the
    same seed pretrain once: without pretrain_cache a temporary cache serves this call. A member whose loss or
    centroids go non-finite is recorded as failed and the others go on. With checkpoint_dir, the population is saved
    every checkpoint_every clustering epochs and a checkpoint there that holds these members, in this order, is
    resumed (members it holds beyond them are left out): only the epochs after it run and are reported. Timings of
    the clustering stage (cluster_time_s, wall_time_s, EpochRecord.time_s) are the population's, shared by its
    members up to each one's end. on_failure(member_index, record) is called once, as a member fails, so a caller
    can keep its outcome should the population crash later.
    """
    configs = [c if isinstance(c, TrialConfig) else make_config(c) for c in configs]
    check_stackable(configs)
    report = report or (lambda index, record: None)
    on_failure = on_failure or (lambda index, record: None)
    clock = TrialClock()  # the population's wall and clustering time, shared by its members
    device = resolve_device(configs[0].device)
    data = resized(dataset or load_dataset(configs[0].data.name, data_dir=configs[0].data.dir),
                   configs[0].resize_side).to(device)
    ids, path = [trial_id(c) for c in configs], checkpoint_path(checkpoint_dir)
    saved = load_population(path, ids, device)
    if saved is not None:
        if "clock" in saved:  # checkpoints written before the clock was kept start their totals from zero
            clock.load_state_dict(saved["clock"])
        members = [_restore(i, c, s, data, device, report, on_failure)
                   for i, (c, s) in enumerate(zip(configs, saved["members"]))]
    else:
        with tempfile.TemporaryDirectory() as scratch:
            cache = Path(pretrain_cache) if pretrain_cache is not None else Path(scratch)
            members = [_prepare(i, c, data, device, cache, report, on_failure, clock) for i, c in enumerate(configs)]
    alive = [m for m in members if m.result.status == "running"]
    if alive:
        def save(epoch: int, adam: StackedAdam) -> None:
            if path is not None:
                save_population(path, ids, epoch, members, adam, clock.state_dict())

        with clock.stage("cluster_time_s"):
            _cluster_stage(alive, data, clock, save, saved)
        for member in alive:
            if member.result.status == "running":
                _finish(member, data)
                _stamp_times(member.result, clock)
    return [m.result for m in members]


def _stamp_times(result: TrialRecord, clock: TrialClock) -> None:
    """The population's times so far: a member's own end, whether it finishes or fails."""
    totals = clock.state_dict()
    result.cluster_time_s, result.wall_time_s = totals["cluster_time_s"], totals["wall_time_s"]
    result.ended_at = time.time()


def _fail(member: Member, clock: TrialClock) -> None:
    _stamp_times(member.result, clock)
    member.failed()


def _restore(index: int, config: TrialConfig, saved: dict[str, Any], data: Dataset, device: torch.device,
             report: MemberReport, on_failure: MemberFailure) -> Member:
    """The member as a checkpoint left it: its trial state (pretraining and k-means done) and its outcome so far."""
    result = TrialRecord(config=flatten(config), status="running", device=str(device), versions=versions())
    restore_result(result, saved)
    trial = Trial(config, data, device)
    if saved["trial"] is not None:
        trial.load_state_dict(saved["trial"])
    return Member(index, trial, result, report, on_failure)


def _prepare(index: int, config: TrialConfig, data: Dataset, device: torch.device, cache: Path,
             report: MemberReport, on_failure: MemberFailure, clock: TrialClock) -> Member:
    """The member's Trial, pretrained (or from the cache) and with its initial k-means, as fit() builds it."""
    result = TrialRecord(config=flatten(config), status="running", device=str(device), versions=versions())
    trial = Trial(config, data, device)
    member = Member(index, trial, result, report, on_failure)
    t0 = time.perf_counter()
    try:
        result.pretrain_cached = pretrain_and_init(trial, cache, member.report, clock.elapsed)
    except TrialDiverged as exc:
        result.status, result.error = "failed", str(exc)
    result.pretrain_time_s = time.perf_counter() - t0
    if result.status == "failed":
        _fail(member, clock)
    return member


def _cluster_stage(members: list[Member], data: Dataset, clock: TrialClock,
                   save: Callable[[int, StackedAdam], None], saved: dict[str, Any] | None) -> None:
    """Clustering epochs of every member in lock step, after the saved epoch if resuming; diverged members leave the
    stack at the end of an epoch."""
    config = members[0].trial.config
    stack = StackedModels([m.trial.model for m in members])
    adam = StackedAdam(stack.params, [m.trial.config.train.lr for m in members])
    if saved is not None:
        restore_adam(adam, saved)
    step, move = _captured_step(stack, adam, members[0].trial), _captured_move(stack, members[0].trial)
    for epoch in range(saved["epoch"] + 1 if saved else 0, config.train.epochs):
        t_epoch = time.perf_counter()
        records = [EpochRecord(phase="cluster", epoch=epoch) for _ in members]
        for row, (member, record) in enumerate(zip(members, records)):
            if member.trial.is_periodic_epoch(epoch):
                _periodic_step(member, record, stack, adam, row)
        losses = _train_epoch(members, step, data)
        z = _sweep_centers(members, stack, move, data) if move is not None else None
        kept = _record_losses(members, records, losses, stack, epoch)
        if len(kept) < len(members):
            for row in set(range(len(members))) - set(kept):
                _fail(members[row], clock)
            members, records = [members[r] for r in kept], [records[r] for r in kept]
            stack.keep(kept, [m.trial.model for m in members])
            adam.keep(kept)
            if members:
                step, move = _captured_step(stack, adam, members[0].trial), _captured_move(stack, members[0].trial)
            z = z[kept] if z is not None else None
        last = epoch == config.train.epochs - 1
        if members and (last or epoch % config.eval.every == 0):
            _evaluate(members, records, stack, data, last, z)
        for member, record in zip(members, records):
            record.time_s = time.perf_counter() - t_epoch
            record.elapsed_s = clock.elapsed()
            member.report(record)
            if last:
                member.final = record
        if not members:
            return
        if not last and config.checkpoint_every and (epoch + 1) % config.checkpoint_every == 0:
            save(epoch, adam)  # not after the last epoch: the caller records the results right away


class _Step:
    """One minibatch step of every member (forward, backward, clipping, Adam, DCN's update); capture-safe, so on a
    GPU it replays as a CUDA graph. Loss terms are summed into `totals` on the device."""

    def __init__(self, stack: StackedModels, adam: StackedAdam, config: TrialConfig, device_type: str):
        self.stack, self.adam, self.config = stack, adam, config.train
        self.terms = fuse(stack.terms, device_type) if config.train.compile else stack.terms
        # DCN's "step" rule moves the centres after every step (the model's own after_step, for every member)
        self.dcn_after_step = config.train.algorithm == "dcn" and not stack.template.sweeps_centers
        self.totals = LossTotals()

    def __call__(self, x: torch.Tensor, x_aug: torch.Tensor | None, index: torch.Tensor) -> None:
        terms = self.terms(x, x_aug, index)
        grads = self.stack.gradients(terms["loss"].sum())  # members share no parameters: the sum's gradient is each one's
        if self.config.grad_clip is not None:
            clip_per_member(grads, self.config.grad_clip)
        self.adam.step(self.stack.params, grads)
        if self.dcn_after_step:
            self.stack.dcn_after_step(x, index)
        self.totals.add(terms, index.shape[1])


def _captured_step(stack: StackedModels, adam: StackedAdam, trial: Trial) -> CapturedStep:
    """A new step (and graphs) whenever the stack is rebuilt: graphs hold the addresses of the tensors they read."""
    return CapturedStep(_Step(stack, adam, trial.config, trial.device.type), enabled=trial.uses_cuda_graphs())


def _captured_move(stack: StackedModels, trial: Trial) -> CapturedStep | None:
    """DCN "epoch": one batch of the centre pass after each epoch, for every member (None for other algorithms)."""
    if trial.move_centers is None:
        return None
    return CapturedStep(stack.move_dcn_centers, enabled=trial.uses_cuda_graphs())


@torch.no_grad()
def _sweep_centers(members: list[Member], stack: StackedModels, move: CapturedStep, data: Dataset) -> torch.Tensor:
    """Trial._sweep_centers for every member at once: each draws its own order from its own generator, as fit()
    does; returns the (M, n, d) embedding the pass used, which evaluation reuses."""
    z = stack.embed(data.x)
    orders = torch.stack([torch.randperm(data.n, generator=m.trial.generator, device=m.trial.generator.device)
                          for m in members]).to(z.device)
    shuffled = torch.gather(z, 1, orders.unsqueeze(2).expand_as(z))
    for batch in shuffled.split(members[0].trial.config.train.batch_size, dim=1):
        move(batch)
    return z


def _record_losses(members: list[Member], records: list[EpochRecord], losses: list[dict[str, float]],
                   stack: StackedModels, epoch: int) -> list[int]:
    """Fill each finite member's record with its losses; returns the rows of the members that did not diverge."""
    finite_centers = torch.isfinite(stack.centers()).flatten(1).all(1).tolist()  # one host sync per epoch
    kept = []
    for row, (member, record) in enumerate(zip(members, records)):
        if _diverged(member, losses[row], finite_centers[row], epoch):
            continue
        for name, value in losses[row].items():
            setattr(record, name, value)
        member.trial.epoch = epoch
        member.result.epochs_done = epoch + 1
        kept.append(row)
    return kept


def _periodic_step(member: Member, record: EpochRecord, stack: StackedModels, adam: StackedAdam, row: int) -> None:
    """The plain path's BRB step on the member's own modules (views of the stack), then its centroid moments."""
    trial = member.trial
    t0 = time.perf_counter()
    trial.periodic_step()  # its torch optimizer never stepped, so only the stacked moments need zeroing
    if trial.config.resets_center_momentum:
        adam.zero_moments(row, "centers")
    sync_device(trial.device)
    record.reset_applied = True
    record.reset_time_s = time.perf_counter() - t0
    member.result.reset_time_s += record.reset_time_s


def _train_epoch(members: list[Member], step: CapturedStep, data: Dataset) -> list[dict[str, float]]:
    """One epoch of minibatch steps for every member at once; returns each member's mean loss terms."""
    cfg = members[0].trial.config.train
    order, x, x_aug = _epoch_data(members, data)
    trained = trained_count(data.n, cfg.batch_size, members[0].trial.config.drops_last_batch)
    step.step.totals.zero()
    with network_precision(cfg.precision, members[0].trial.device.type):
        for start in range(0, trained, cfg.batch_size):
            batch = slice(start, start + cfg.batch_size)
            step(x[:, batch], x_aug[:, batch] if x_aug is not None else None, order[:, batch])
    means = step.step.totals.means(trained)  # one host sync
    return [{name: values[row] for name, values in means.items()} for row in range(len(members))]


def _epoch_data(members: list[Member], data: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(M, n) sample order, (M, n, ...) shuffled data and its augmentation, each member drawing from its own generator
    exactly as epoch_batches draws in the plain path; each member's rows are written in place (no per-member copies
    to stack, which doubled the peak memory of a large population)."""
    augment = members[0].trial.config.train.augment
    order = torch.empty((len(members), data.n), dtype=torch.long, device=data.x.device)
    x = data.x.new_empty((len(members), *data.x.shape))
    x_aug = torch.empty_like(x) if augment else None
    for row, member in enumerate(members):
        trial = member.trial
        into = (x[row], x_aug[row] if augment else None)
        order[row] = shuffled_epoch(data.x, trial.generator, trial.augmenter if augment else None, into)[0]
    return order, x, x_aug


def _diverged(member: Member, terms: dict[str, float], finite_centers: bool, epoch: int) -> bool:
    """Mark the member failed, with fit()'s reason, when a loss or a centroid is non-finite."""
    if finite_centers and all(math.isfinite(v) for v in terms.values()):
        return False
    member.result.status = "failed"
    member.result.error = f"non-finite loss at clustering epoch {epoch}: {terms}"
    return True


@torch.no_grad()
def _evaluate(members: list[Member], records: list[EpochRecord], stack: StackedModels, data: Dataset,
              last: bool, z: torch.Tensor | None) -> None:
    """Every member's metrics at once from one stacked embedding of the whole dataset (z, when this epoch made
    one)."""
    z = stack.embed(data.x, members[0].trial.config.train.precision) if z is None else z
    labels, centers = stack.predict(z), stack.centers()
    prev = [m.trial.prev_labels for m in members]  # members start and resume together: all have one or none
    first = members[0].trial
    scores = epoch_scores(first.classes, first.n_classes, z, labels, data.n_clusters,
                          torch.stack([m.trial.eval_index for m in members]),
                          prev_labels=None if any(p is None for p in prev) else torch.stack(prev), centers=centers,
                          ratio_threshold=first.config.eval.ratio_threshold,
                          siblings=[m.configuration for m in members])
    for row, (member, record) in enumerate(zip(members, records)):
        member.trial.take_scores(record, scores[row], labels[row])
        if last:  # nothing changes after the last epoch: this is the final embedding fit() reports
            member.embedding = z[row]


def _finish(member: Member, data: Dataset) -> None:
    """Final metrics, k-means scores on the final embedding, labels and embedding, as fit() fills them."""
    result, trial = member.result, member.trial
    result.final = {m: getattr(member.final, m) for m in FINAL_METRICS}
    result.final.update(kmeans_scores(member.embedding, data, trial.generator))
    result.labels = trial.prev_labels.cpu().numpy().astype(np.int32)
    result.embedding = member.embedding.cpu().numpy().astype(np.float32)
    result.model = model_state(trial.config, result.config, trial.model.eval_net, trial.model.centers, data.mean,
                               data.std)
    result.status = "finished"
