"""fit_population: many same-shaped MLP trials (differing in seed, brb.alpha, brb.interval, train.lr) trained as one
stacked model, so every kernel launch serves every member.

Each member keeps everything the plain path gives a trial: its own TrialState (weights from its seed, pretraining
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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raydc.compute.batches import shuffled_epoch, trained_count
from raydc.compute.captured import CapturedStep
from raydc.engine.cluster_epochs import Member, run_cluster_epochs
from raydc.engine.clock import TrialClock
from raydc.config import ConfigError, TrialConfig, flatten, make_config
from raydc.data import Dataset, load_dataset, resized
from raydc.errors import TrialDiverged
from raydc.compute.fused import fuse
from raydc.compute.loss_totals import LossTotals
from raydc.compute.precision import network_precision
from raydc.engine.population.checkpoint import checkpoint_path, load_population, restore_adam, restore_result, save_population
from raydc.engine.population.stack import StackedAdam, StackedModels, clip_per_member
from raydc.engine.model import model_state
from raydc.engine.records import FINAL_METRICS, EpochRecord, TrialRecord
from raydc.evaluation.scoring import epoch_scores
from raydc.config.identity import configuration_id, trial_id
from raydc.engine.state import TrialState
from raydc.engine.train import kmeans_scores, pretrain, resolve_device, versions
from raydc.engine.trial import uses_cuda_graphs

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
    if config.net.batch_norm and config.train.precision == "bf16":  # vmap's batch norm takes no bf16 input
        return ConfigError("train.precision", "population mode runs BatchNorm MLPs in float32 or tf32, got 'bf16'")
    if config.train.algorithm not in ("dec", "idec", "dcn"):
        return ConfigError("train.algorithm", f"population mode runs dec, idec or dcn, got {config.train.algorithm!r}")
    if config.selflabel.epochs > 0:
        return ConfigError("selflabel.epochs", "population mode has no self-labeling stage; set it to 0")
    if config.brb.mode not in POPULATION_MODES:
        return ConfigError("brb.mode", f"population mode runs {', '.join(POPULATION_MODES)}, got {config.brb.mode!r}")
    return None


def _shared_fields(config: TrialConfig) -> dict[str, Any]:
    return {k: v for k, v in flatten(config).items() if k not in VARYING_FIELDS}


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
        members = [_restore(i, c, s, data, device, report, on_failure, clock)
                   for i, (c, s) in enumerate(zip(configs, saved["members"]))]
    else:
        with tempfile.TemporaryDirectory() as scratch:
            cache = Path(pretrain_cache) if pretrain_cache is not None else Path(scratch)
            members = [_prepare(i, c, data, device, cache, report, on_failure, clock) for i, c in enumerate(configs)]
    alive = [m for m in members if m.result.status == "running"]
    if alive:
        engine = StackedEngine(alive, data, saved)

        def checkpoint(epoch: int, last: bool) -> None:
            if path is not None and not last:  # not after the last epoch: the caller records the results right away
                save_population(path, ids, epoch, members, engine.adam, clock.state_dict())

        with clock.stage("cluster_time_s"):
            run_cluster_epochs(alive, engine, clock, saved["epoch"] + 1 if saved else 0, checkpoint)
        for member in alive:
            if member.result.status == "running":
                _finish(member, data, engine.embeddings[id(member)])
                _stamp_times(member.result, clock)
    return [m.result for m in members]


def _stamp_times(result: TrialRecord, clock: TrialClock) -> None:
    """The population's times so far: a member's own end, whether it finishes or fails."""
    totals = clock.state_dict()
    result.cluster_time_s, result.wall_time_s = totals["cluster_time_s"], totals["wall_time_s"]
    result.ended_at = time.time()


def _member(index: int, state: TrialState, result: TrialRecord, report: MemberReport, on_failure: MemberFailure,
            clock: TrialClock) -> Member:
    """A member of the cluster loop: its epochs reported under its index, its reset time its own, and a failure
    stamped with the population's times so far before on_failure hears of it."""

    def add_reset_time(seconds: float) -> None:
        result.reset_time_s += seconds

    def fail() -> None:
        _stamp_times(result, clock)
        on_failure(index, result)

    return Member(state, result, lambda record: report(index, record), add_reset_time, fail)


def _restore(index: int, config: TrialConfig, saved: dict[str, Any], data: Dataset, device: torch.device,
             report: MemberReport, on_failure: MemberFailure, clock: TrialClock) -> Member:
    """The member as a checkpoint left it: its trial state (pretraining and k-means done) and its outcome so far."""
    result = TrialRecord(config=flatten(config), status="running", device=str(device), versions=versions())
    restore_result(result, saved)
    state = TrialState(config, data, device)
    if saved["trial"] is not None:
        state.load_state_dict(saved["trial"])
    return _member(index, state, result, report, on_failure, clock)


def _prepare(index: int, config: TrialConfig, data: Dataset, device: torch.device, cache: Path,
             report: MemberReport, on_failure: MemberFailure, clock: TrialClock) -> Member:
    """The member's state, pretrained (or from the cache) and with its initial k-means, as fit() builds it."""
    result = TrialRecord(config=flatten(config), status="running", device=str(device), versions=versions())
    state = TrialState(config, data, device)
    member = _member(index, state, result, report, on_failure, clock)
    t0 = time.perf_counter()
    try:
        result.pretrain_cached = pretrain(state, cache, member.report, clock.elapsed)
        state.init_clustering()
    except TrialDiverged as exc:
        result.status, result.error = "failed", str(exc)
    result.pretrain_time_s = time.perf_counter() - t0
    if result.status == "failed":
        member.fail()
    return member


class StackedEngine:
    """The cluster loop's engine for a population: every member's model as one stack (raydc.engine.population.stack), one
    stacked Adam, and one captured step serving them all; diverged members leave the stack."""

    def __init__(self, members: list[Member], data: Dataset, saved: dict[str, Any] | None):
        self.members, self.data = members, data
        self.stack = StackedModels([m.state.model for m in members])
        self.adam = StackedAdam(self.stack.params, [m.state.config.train.lr for m in members])
        if saved is not None:
            restore_adam(self.adam, saved)
        self._capture()
        self.z: torch.Tensor | None = None  # the (M, n, d) embedding DCN's centre pass made this epoch
        self.embeddings: dict[int, torch.Tensor] = {}  # id(member) → its final embedding, after the last epoch

    def _capture(self) -> None:
        """A new step (and graphs) whenever the stack is rebuilt: graphs hold the addresses of the tensors they read."""
        first = self.members[0].state
        graphs = uses_cuda_graphs(first.config, first.device)
        self.step = CapturedStep(_Step(self.stack, self.adam, first.config, first.device.type), enabled=graphs)
        # DCN "epoch": one batch of the centre pass after each epoch, for every member (None for other algorithms)
        self.move = CapturedStep(self.stack.move_dcn_centers, enabled=graphs) if first.model.sweeps_centers else None

    def periodic_step(self, row: int) -> None:
        """The plain path's BRB step on the member's own modules (views of the stack), then its centroid moments."""
        state = self.members[row].state
        state.periodic_step()
        if state.config.resets_center_momentum:
            self.adam.zero_moments(row, "centers")

    def train_epoch(self) -> list[dict[str, float]]:
        losses = _train_epoch(self.members, self.step, self.data)
        self.z = _sweep_centers(self.members, self.stack, self.move, self.data) if self.move is not None else None
        return losses

    def finite_centers(self) -> list[bool]:
        return torch.isfinite(self.stack.centers()).flatten(1).all(1).tolist()  # one host sync per epoch

    def keep(self, rows: list[int]) -> None:
        self.members = [self.members[r] for r in rows]
        self.stack.keep(rows, [m.state.model for m in self.members])
        self.adam.keep(rows)
        self.z = self.z[rows] if self.z is not None else None
        if self.members:
            self._capture()

    def end_epoch(self) -> list[dict[str, float]]:
        return [{} for _ in self.members]  # dec, idec and dcn measure nothing at an epoch's end

    @torch.no_grad()
    def evaluate(self, records: list[EpochRecord], last: bool) -> None:
        """Every member's metrics at once from one stacked embedding of the whole dataset (this epoch's, when DCN's
        centre pass made one)."""
        members, first = self.members, self.members[0].state
        z = self.stack.embed(self.data.x, first.config.train.precision) if self.z is None else self.z
        labels, centers = self.stack.predict(z), self.stack.centers()
        prev = [m.state.prev_labels for m in members]  # members start and resume together: all have one or none
        scores = epoch_scores(first.classes, first.n_classes, z, labels, self.data.n_clusters,
                              torch.stack([m.state.eval_index for m in members]),
                              prev_labels=None if any(p is None for p in prev) else torch.stack(prev),
                              centers=centers, ratio_threshold=first.config.eval.ratio_threshold,
                              siblings=[configuration_id(m.state.config) for m in members])
        for row, (member, record) in enumerate(zip(members, records)):
            member.state.take_scores(record, scores[row], labels[row])
            if last:  # nothing changes after the last epoch: this is the final embedding fit() reports
                self.embeddings[id(member)] = z[row]


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


@torch.no_grad()
def _sweep_centers(members: list[Member], stack: StackedModels, move: CapturedStep, data: Dataset) -> torch.Tensor:
    """Trial._sweep_centers for every member at once: each draws its own order from its own generator, as fit()
    does; returns the (M, n, d) embedding the pass used, which evaluation reuses."""
    config = members[0].state.config
    z = stack.embed(data.x)
    orders = torch.stack([torch.randperm(data.n, generator=m.state.generator, device=m.state.generator.device)
                          for m in members]).to(z.device)
    orders = orders[:, :trained_count(data.n, config.train.batch_size, config.drops_last_batch)]
    shuffled = torch.gather(z, 1, orders.unsqueeze(2).expand(-1, -1, z.shape[2]))
    for batch in shuffled.split(config.train.batch_size, dim=1):
        move(batch)
    return z


def _train_epoch(members: list[Member], step: CapturedStep, data: Dataset) -> list[dict[str, float]]:
    """One epoch of minibatch steps for every member at once; returns each member's mean loss terms."""
    cfg = members[0].state.config.train
    order, x, x_aug = _epoch_data(members, data)
    trained = trained_count(data.n, cfg.batch_size, members[0].state.config.drops_last_batch)
    step.step.totals.zero()
    with network_precision(cfg.precision, members[0].state.device.type):
        for start in range(0, trained, cfg.batch_size):
            batch = slice(start, start + cfg.batch_size)
            step(x[:, batch], x_aug[:, batch] if x_aug is not None else None, order[:, batch])
    means = step.step.totals.means(trained)  # one host sync
    return [{name: values[row] for name, values in means.items()} for row in range(len(members))]


def _epoch_data(members: list[Member], data: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(M, n) sample order, (M, n, ...) shuffled data and its augmentation, each member drawing from its own generator
    exactly as epoch_batches draws in the plain path; each member's rows are written in place (no per-member copies
    to stack, which doubled the peak memory of a large population)."""
    augment = members[0].state.config.train.augment
    order = torch.empty((len(members), data.n), dtype=torch.long, device=data.x.device)
    x = data.x.new_empty((len(members), *data.x.shape))
    x_aug = torch.empty_like(x) if augment else None
    for row, member in enumerate(members):
        state = member.state
        into = (x[row], x_aug[row] if augment else None)
        order[row] = shuffled_epoch(data.x, state.generator, state.augmenter if augment else None, into)[0]
    return order, x, x_aug


def _finish(member: Member, data: Dataset, embedding: torch.Tensor) -> None:
    """Final metrics, k-means scores on the final embedding, labels and embedding, as fit() fills them."""
    result, state = member.result, member.state
    result.final = {m: getattr(member.final, m) for m in FINAL_METRICS}
    result.final.update(kmeans_scores(embedding, data, state.generator))
    result.labels = state.prev_labels.cpu().numpy().astype(np.int32)
    result.embedding = embedding.cpu().numpy().astype(np.float32)
    result.model = model_state(state.config, result.config, state.model.eval_net, state.model.centers, data.mean,
                               data.std)
    result.status = "finished"
