"""A lone trial's training: its TrialState (raydc.engine.state) with the optimizer and steps that advance it: one
clustering epoch (replayed as CUDA graphs on a GPU, averaged across workers under torch.distributed), BRB's step
with the centroids' moments, evaluation, and checkpoints that hold both."""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from raydc.compute.batches import epoch_batches, trained_count
from raydc.compute.captured import CapturedStep
from raydc.compute.fused import fuse, require_compiler
from raydc.compute.loss_totals import LossTotals
from raydc.compute.optim import make_adam
from raydc.compute.precision import network_precision
from raydc.config import TrialConfig
from raydc.data import Dataset
from raydc.engine.records import EpochRecord
from raydc.engine.state import TrialState, embed
from raydc.nets.resets import reset_momentum


def uses_cuda_graphs(config: TrialConfig, device: torch.device) -> bool:
    """Steps are replayed as CUDA graphs on a single GPU; LFSS's step and DDP's hooks are not capture-safe."""
    return (config.train.cuda_graphs and device.type == "cuda" and not _distributed()
            and config.train.algorithm != "lfss")


class Trial:
    """One trial's state and the optimizer and steps that train it alone."""

    def __init__(self, config: TrialConfig, data: Dataset, device: torch.device):
        self.state = TrialState(config, data, device)
        if config.train.compile:
            require_compiler(device.type)
        self.optimizer: torch.optim.Optimizer | None = None
        self.step_model: torch.nn.Module | None = None
        self.train_step: CapturedStep | None = None
        self.totals = LossTotals()
        self.move_centers: CapturedStep | None = None  # DCN "epoch": one batch of the centre pass after each epoch
        self.epoch_embedding: torch.Tensor | None = None  # the embedding after the last epoch, where one was needed

    @property
    def config(self) -> TrialConfig:
        return self.state.config

    # --- setup -------------------------------------------------------------------------------
    def init_clustering(self) -> None:
        """The state's initial clustering, then an optimizer and steps for its model."""
        self.state.init_clustering()
        self._build_steps()

    def _build_steps(self) -> None:
        cfg, model, device = self.config.train, self.state.model, self.state.device
        graphs = uses_cuda_graphs(self.config, device)
        self.optimizer = make_adam(self._parameter_groups(), cfg.lr, capturable=graphs)
        # Under torch.distributed (e.g. a Ray Train worker) gradients are averaged across the data shards.
        # DEC never runs the decoder or projector, so DDP must not wait for their gradients.
        # Every worker updates DCN's centres and assignments from the whole batch, so buffers stay in step.
        unused = not getattr(model, "uses_auxiliary", True)
        if _distributed():
            self.step_model = DistributedDataParallel(model, find_unused_parameters=unused, broadcast_buffers=False)
        else:
            self.step_model = fuse(model, device.type) if cfg.compile else model
        self.train_step = CapturedStep(self._step, enabled=graphs)
        sweeps = getattr(model, "sweeps_centers", False)
        self.move_centers = CapturedStep(model.move_centers, enabled=graphs) if sweeps else None
        self.totals = LossTotals()

    def _parameter_groups(self) -> list[dict[str, Any]]:
        """LFSS's predictor learns 10x faster than the network (its App. D); everything else at train.lr."""
        model = self.state.model
        predictor = getattr(model, "predictor", None)
        if predictor is None:
            return [{"params": list(model.parameters())}]
        fast = {id(p) for p in predictor.parameters()}
        rest = [p for p in model.parameters() if id(p) not in fast]
        return [{"params": rest}, {"params": list(predictor.parameters()), "lr": 10 * self.config.train.lr}]

    # --- BRB -------------------------------------------------------------------------------------
    def periodic_step(self) -> None:
        """The state's BRB step, then the reclustered centroids' Adam moments forgotten where the config says."""
        self.state.periodic_step()
        if self.config.resets_center_momentum:
            reset_momentum(self.optimizer, [self.state.model.centers])

    # --- one epoch -----------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        """One epoch of minibatch steps (and DCN's centre pass); the mean loss terms, finite or not."""
        state, cfg = self.state, self.config.train
        state.model.train()
        rank, world = _rank_and_world()
        augmenter = state.augmenter if cfg.augment else None
        state.model.start_epoch(state.epoch + 1, state.data.x)
        self.epoch_embedding = None
        self.totals.zero()
        with network_precision(cfg.precision, state.device.type):
            for index, batch, batch_aug in epoch_batches(state.data.x, cfg.batch_size, state.generator, augmenter,
                                                         augment_both=self.config.two_views,
                                                         drop_last=self.config.drops_last_batch):
                if world > 1:  # every worker draws the same batch and augmentation, then keeps its shard
                    x_aug = batch_aug[rank::world] if batch_aug is not None else None
                    self.train_step(batch[rank::world], x_aug, index[rank::world], batch, index)
                else:
                    self.train_step(batch, batch_aug, index)
        if world > 1:
            dist.all_reduce(self.totals.sums)
        if self.move_centers is not None:
            self._sweep_centers()
        return self.totals.means(trained_count(state.data.n, cfg.batch_size, self.config.drops_last_batch))

    def _step(self, x: torch.Tensor, x_aug: torch.Tensor | None, index: torch.Tensor,
              batch: torch.Tensor | None = None, batch_index: torch.Tensor | None = None) -> None:
        """One optimisation step on x (samples `index`, this worker's shard of batch/batch_index); capture-safe."""
        model = self.state.model
        terms = self.step_model(x, x_aug, index)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if self.config.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.train.grad_clip)
        self.optimizer.step()
        model.after_step(x if batch is None else batch, index if batch_index is None else batch_index)
        self.totals.add(terms, len(x))

    @torch.no_grad()
    def _sweep_centers(self) -> None:
        """DCN "epoch": with the network fixed, move the centres batch by batch over a new order of the un-augmented
        data, in the training epoch's batches (every worker draws the same order, so centres stay equal across
        workers). The authors' code passes over its training loader: with drop_last, the full batches only."""
        state = self.state
        z = embed(state.net, state.data.x)
        order = torch.randperm(state.data.n, generator=state.generator, device=state.generator.device).to(z.device)
        swept = trained_count(state.data.n, self.config.train.batch_size, self.config.drops_last_batch)
        for batch in z[order[:swept]].split(self.config.train.batch_size):
            self.move_centers(batch)
        self.epoch_embedding = z  # the network has not changed since: evaluation reuses it

    # --- evaluation ------------------------------------------------------------------------------
    def measured_embedding(self) -> torch.Tensor:
        """The whole dataset's embedding that evaluation scores: the epoch's DCN centre pass's when there is one (the
        network has not changed since), else the evaluation network's at train.precision. What feeds training back
        (k-means, reclustering, DCN's centre pass) embeds in float32: k-means++ sampling would turn bf16's coarse
        rounding of a last-bit weight difference into other seeds."""
        if self.epoch_embedding is not None:
            return self.epoch_embedding
        return embed(self.state.model.eval_net, self.state.data.x, self.config.train.precision)

    @torch.no_grad()
    def evaluate(self, record: EpochRecord) -> torch.Tensor:
        """Fill the record's metrics from one embedding of the whole dataset; returns the labels."""
        z = self.measured_embedding()
        model = self.state.model
        labels = model.predict(z)
        self.state.score(record, z, labels, model.centers.detach())
        return labels

    # --- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**self.state.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state.load_state_dict(state)
        self._build_steps()
        self.optimizer.load_state_dict(state["optimizer"])


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if _distributed() else (0, 1)
