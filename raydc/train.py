"""One deep-clustering trial: pretrain (or load cached) → k-means init → cluster epochs with BRB → records."""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from raydc import metrics
from raydc.checkpoint import atomic_save, load
from raydc.clustering import CentroidModel
from raydc.clustering.kmeans import kmeans, nearest, recluster
from raydc.config import RECLUSTERING_MODES, TrialConfig, flatten, make_config
from raydc.errors import TrialDiverged
from raydc.data import Dataset, load_dataset, make_augmenter
from raydc.nets import build_network
from raydc.batches import epoch_batches
from raydc.pretrain import make_adam, pretrained_state
from raydc.records import FINAL_METRICS, KMEANS_METRICS, EpochRecord, TrialRecord
from raydc.resets import apply_plan, reset_momentum, reset_plan

Report = Callable[[EpochRecord], None]
CLUSTER_SEED_OFFSET = 2_000_003  # clustering draws from a stream independent of pretraining
EMBED_CHUNK = 8192
INIT_KMEANS_RESTARTS = 4


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def versions() -> dict[str, str]:
    import raydc

    return {"raydc": raydc.__version__, "torch": torch.__version__, "numpy": np.__version__}


@torch.no_grad()
def embed(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Embeddings of x in evaluation mode, in chunks that bound memory."""
    was_training = net.training
    net.eval()
    z = torch.cat([net.encode(chunk) for chunk in x.split(EMBED_CHUNK)])
    net.train(was_training)
    return z


class Trial:
    """The mutable state of one trial and the steps that change it."""

    def __init__(self, config: TrialConfig, data: Dataset, device: torch.device):
        self.config = config
        self.data = data
        self.device = device
        torch.manual_seed(config.seed)  # identical initial weights on every device
        embedding_dim = config.net.embedding_dim or data.n_clusters
        self.net = build_network(config.net.arch, data.image_shape, config.net.hidden, embedding_dim).to(device)
        self.augmenter = make_augmenter(data)
        self.generator = torch.Generator(device=device).manual_seed(config.seed + CLUSTER_SEED_OFFSET)
        eval_gen = torch.Generator().manual_seed(config.seed)
        self.eval_index = torch.randperm(data.n, generator=eval_gen)[: config.eval.subsample].to(device)
        self.reset_plan = reset_plan(self.net, config)
        self.model: CentroidModel | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.step_model: torch.nn.Module | None = None
        self.prev_labels: torch.Tensor | None = None
        self.epoch = -1  # last finished clustering epoch

    # --- setup -------------------------------------------------------------------------------
    def init_clustering(self) -> None:
        """k-means on the embedding of the whole dataset gives the initial centroids."""
        z = embed(self.net, self.data.x)
        centers, labels = kmeans(z, self.data.n_clusters, self.generator, n_init=INIT_KMEANS_RESTARTS)
        self._build_model(centers, labels)
        self.prev_labels = labels

    def _build_model(self, centers: torch.Tensor, assignments: torch.Tensor) -> None:
        cfg = self.config.train
        self.model = CentroidModel(self.net, centers, assignments, cfg.algorithm,
                                   cfg.effective_cluster_weight).to(self.device)
        self.optimizer = make_adam(self.model.parameters(), cfg.lr)
        # Under torch.distributed (e.g. a Ray Train worker) gradients are averaged across the data shards.
        # DEC never runs the decoder, so DDP must not wait for its gradients.
        # Every worker updates DCN's centres and assignments from the whole batch, so buffers stay in step.
        unused = not self.model.uses_reconstruction
        self.step_model = (DistributedDataParallel(self.model, find_unused_parameters=unused, broadcast_buffers=False)
                           if _distributed() else self.model)

    # --- BRB and its ablations ---------------------------------------------------------------
    def periodic_step(self) -> None:
        """Every T epochs: perturb the network and/or recompute the centroids, as the mode says."""
        brb = self.config.brb
        mode = brb.mode
        if mode in ("reset", "brb"):
            apply_plan(self.reset_plan, self.generator, "soft_reset")
        elif mode in ("perturb_only", "scaled_gaussian"):
            apply_plan(self.reset_plan, self.generator, mode)
        if mode not in RECLUSTERING_MODES:
            return
        k = self.data.n_clusters
        sub = self.data.x[torch.randperm(self.data.n, generator=self.generator, device=self.generator.device)
                          [: brb.subsample].to(self.device)]
        z = embed(self.net, sub)
        if mode == "disentangled":  # Algorithm 2: labels from a reset copy, centroids from the unchanged net
            twin = copy.deepcopy(self.net)
            apply_plan(reset_plan(twin, self.config), self.generator, "soft_reset")
            labels = self.model.predict(embed(twin, sub))
            centers = _label_means(z, labels, self.model.centers.detach())
        else:
            if mode == "embedding_noise":  # eq 18: noise with the norm of each embedding, scaled by β
                noise = torch.randn(z.shape, generator=self.generator, device=self.generator.device).to(z.device)
                noise = noise / noise.norm(dim=1, keepdim=True).clamp_min(1e-12) * z.norm(dim=1, keepdim=True)
                z = z + brb.noise_beta * noise
            centers, _ = recluster(z, k, brb.recluster, self.generator)
        # Every sample is reassigned to the new centroids (DCN's loss uses these assignments).
        self.model.set_centers(centers, nearest(embed(self.net, self.data.x), centers))
        if brb.reset_momentum and self.model.learnable_centers:
            reset_momentum(self.optimizer, [self.model.centers])

    def is_periodic_epoch(self, epoch: int) -> bool:
        mode = self.config.brb.mode
        return mode != "baseline" and epoch > 0 and epoch % self.config.brb.interval == 0

    # --- one epoch -----------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        cfg = self.config.train
        totals: dict[str, torch.Tensor] = {}
        self.model.train()
        rank, world = _rank_and_world()
        augmenter = self.augmenter if cfg.augment else None
        for index, batch, batch_aug in epoch_batches(self.data.x, cfg.batch_size, self.generator, augmenter):
            x, x_aug, shard = batch, batch_aug, index
            if world > 1:  # every worker draws the same batch and augmentation, then keeps its shard
                x, shard = batch[rank::world], index[rank::world]
                x_aug = batch_aug[rank::world] if batch_aug is not None else None
            terms = self.step_model(x, x_aug, shard)
            self.optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.model.after_step(batch, index)
            for name, value in terms.items():  # accumulate on the device: no host sync per step
                totals[name] = totals.get(name, 0.0) + value.detach() * len(x)
        if world > 1:
            for value in totals.values():
                dist.all_reduce(value)
        means = {name: float(v) / self.data.n for name, v in totals.items()}
        if not all(np.isfinite(list(means.values()))) or not torch.isfinite(self.model.centers).all():
            raise TrialDiverged(f"non-finite loss at clustering epoch {self.epoch + 1}: {means}")
        return means

    @torch.no_grad()
    def evaluate(self, record: EpochRecord) -> torch.Tensor:
        """Fill the record's metrics from one embedding of the whole dataset; returns the labels."""
        z = embed(self.net, self.data.x)
        labels = self.model.predict(z)
        y = self.data.y
        record.acc = metrics.cluster_acc(y, labels)
        record.nmi = metrics.nmi(y, labels)
        record.ari = metrics.ari(y, labels)
        if self.prev_labels is not None:
            record.cl_change = metrics.cl_change(self.prev_labels, labels)
        sub = self.eval_index
        record.intra_cd, record.inter_cd = metrics.class_distances(z[sub], y[sub])
        if len(torch.unique(labels[sub])) > 1:  # undefined for a collapsed clustering: stays NaN
            record.silhouette = metrics.silhouette(z[sub], labels[sub])
        record.ratio_share = metrics.distance_ratio_share(z, self.model.centers.detach(),
                                                          self.config.eval.ratio_threshold)
        self.prev_labels = labels
        return labels

    # --- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "prev_labels": self.prev_labels}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._build_model(state["model"]["centers"], state["model"]["assignments"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        self.prev_labels = state["prev_labels"]
        self.epoch = int(state["epoch"])


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if _distributed() else (0, 1)


def _label_means(z: torch.Tensor, labels: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Per-label mean of z; a label with no members keeps its previous centroid."""
    k = len(fallback)
    sums = torch.zeros_like(fallback).index_add_(0, labels, z)
    counts = torch.bincount(labels, minlength=k).to(z.dtype).unsqueeze(1)
    return torch.where(counts > 0, sums / counts.clamp_min(1), fallback)


def fit(config: TrialConfig | dict[str, Any], report: Report | None = None, *,
        checkpoint_dir: Path | str | None = None, pretrain_cache: Path | str | None = None,
        dataset: Dataset | None = None) -> TrialRecord:
    """Run one trial, calling report(record) once per epoch, and return its TrialRecord.

    With checkpoint_dir, the full state is saved every config.checkpoint_every epochs (and at the end)
    and an existing checkpoint there is resumed: only epochs after it are run and reported.
    Pretraining is read from / written to pretrain_cache (default: checkpoint_dir) when given.
    """
    config = config if isinstance(config, TrialConfig) else make_config(config)
    report = report or (lambda record: None)
    started = time.perf_counter()
    device = resolve_device(config.device)
    data = (dataset or load_dataset(config.data.name, data_dir=config.data.dir)).to(device)
    trial = Trial(config, data, device)
    ckpt_path = Path(checkpoint_dir) / "trial.pt" if checkpoint_dir is not None else None
    cache = Path(pretrain_cache) if pretrain_cache is not None else (Path(checkpoint_dir) if checkpoint_dir else None)
    result = TrialRecord(config=flatten(config), status="running", device=str(device), versions=versions())

    def elapsed() -> float:
        return time.perf_counter() - started

    try:
        if ckpt_path is not None and ckpt_path.exists():
            trial.load_state_dict(load(ckpt_path, device))
            result.pretrain_cached = True
        else:
            t0 = time.perf_counter()

            def on_pretrain_epoch(epoch: int, loss: float) -> None:
                report(EpochRecord(phase="pretrain", epoch=epoch, loss=loss, loss_reconstruction=loss,
                                   elapsed_s=elapsed()))

            _, result.pretrain_cached = pretrained_state(trial.net, data, config, trial.augmenter, cache,
                                                         on_pretrain_epoch)
            trial.init_clustering()
            result.pretrain_time_s = time.perf_counter() - t0
        cluster_started = time.perf_counter()
        cfg = config.train
        labels = None
        for epoch in range(trial.epoch + 1, cfg.epochs):
            t_epoch = time.perf_counter()
            record = EpochRecord(phase="cluster", epoch=epoch)
            if trial.is_periodic_epoch(epoch):
                t_reset = time.perf_counter()
                trial.periodic_step()
                _sync(device)
                record.reset_applied = True
                record.reset_time_s = time.perf_counter() - t_reset
                result.reset_time_s += record.reset_time_s
            for name, value in trial.train_epoch().items():
                setattr(record, name, value)
            trial.epoch = epoch
            last = epoch == cfg.epochs - 1
            if last or epoch % config.eval.every == 0:
                labels = trial.evaluate(record)
            record.time_s = time.perf_counter() - t_epoch
            record.elapsed_s = elapsed()
            result.epochs_done = epoch + 1
            report(record)
            if ckpt_path is not None and (last or (config.checkpoint_every and (epoch + 1) % config.checkpoint_every == 0)):
                atomic_save(trial.state_dict(), ckpt_path)
            if last:
                result.final = {m: getattr(record, m) for m in FINAL_METRICS}
        result.cluster_time_s = time.perf_counter() - cluster_started
        if not result.final:  # resumed from a finished checkpoint: nothing ran, evaluate once more
            record = EpochRecord(phase="cluster", epoch=trial.epoch)
            labels = trial.evaluate(record)
            result.final = {m: getattr(record, m) for m in FINAL_METRICS}
            result.epochs_done = trial.epoch + 1
        z = embed(trial.net, data.x)
        result.final.update(_kmeans_scores(z, data, trial.generator))
        result.labels = labels.cpu().numpy().astype(np.int32)
        result.embedding = z.cpu().numpy().astype(np.float32)
        result.status = "finished"
    except TrialDiverged as exc:
        result.status, result.error = "failed", str(exc)
    result.wall_time_s = elapsed()
    return result


def _kmeans_scores(z: torch.Tensor, data: Dataset, generator: torch.Generator) -> dict[str, float]:
    _, labels = kmeans(z, data.n_clusters, generator, n_init=INIT_KMEANS_RESTARTS)
    y = data.y
    return dict(zip(KMEANS_METRICS, (metrics.cluster_acc(y, labels), metrics.nmi(y, labels), metrics.ari(y, labels))))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
