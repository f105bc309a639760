"""A trial's mutable state and the steps that change it: initial clustering, BRB's periodic step, one clustering
epoch (replayed as CUDA graphs on a GPU), evaluation, the self-labeling stage's setup, and checkpoints."""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from raydc.compute.batches import epoch_batches, trained_count
from raydc.compute.captured import CapturedStep
from raydc.clustering import CentroidModel
from raydc.clustering.kmeans import kmeans, nearest, recluster
from raydc.config import RECLUSTERING_MODES, TrialConfig
from raydc.clustering.lfss import LFSS
from raydc.data import Dataset, make_augmenter, make_strong_augmenter
from raydc.compute.fused import fuse, require_compiler
from raydc.compute.loss_totals import LossTotals
from raydc.nets import build_network
from raydc.compute.precision import network_precision
from raydc.compute.optim import make_adam
from raydc.engine.records import EpochRecord
from raydc.nets.resets import apply_plan, reset_momentum, reset_plan
from raydc.evaluation.scoring import class_indices, epoch_scores
from raydc.selflabel import Classifier, SelfLabeling, make_strategy, nmi_match

CLUSTER_SEED_OFFSET = 2_000_003  # clustering draws from a stream independent of pretraining
EMBED_CHUNK = 8192
INIT_KMEANS_RESTARTS = 4
HEAD_SEED_OFFSET = 3_000_017  # the self-labeling head's initialisation has its own stream


@torch.no_grad()
def embed(net: torch.nn.Module, x: torch.Tensor, precision: str = "float32") -> torch.Tensor:
    """float32 embeddings of x in evaluation mode, the network run at `precision` (network_precision), in chunks that
    bound memory."""
    was_training = net.training
    net.eval()
    with network_precision(precision, x.device.type):
        z = torch.cat([net.encode(chunk).float() for chunk in x.split(EMBED_CHUNK)])
    net.train(was_training)
    return z


class Trial:
    """The mutable state of one trial and the steps that change it."""

    def __init__(self, config: TrialConfig, data: Dataset, device: torch.device):
        config.check_dataset(data.n_clusters)  # before any compute: a misfit would surface epochs later
        self.config = config
        self.data = data
        self.device = device
        if config.train.compile:
            require_compiler(device.type)
        torch.manual_seed(config.seed)  # identical initial weights on every device
        self.embedding_dim = config.net.embedding_dim or data.n_clusters
        self.net = build_network(config.net.arch, data.image_shape, config.net.hidden, self.embedding_dim,
                                 projector_width=config.net.projector_width,
                                 projector_dim=config.net.projector_dim, batch_norm=config.net.batch_norm).to(device)
        self.augmenter = make_augmenter(data, affine=config.data.affine)
        self.generator = torch.Generator(device=device).manual_seed(config.seed + CLUSTER_SEED_OFFSET)
        eval_gen = torch.Generator().manual_seed(config.seed)
        self.eval_index = torch.randperm(data.n, generator=eval_gen)[: config.eval.subsample].to(device)
        self.classes, self.n_classes = class_indices(data.y)
        self.reset_plan = reset_plan(self.net, config)
        self.model: CentroidModel | LFSS | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.step_model: torch.nn.Module | None = None
        self.train_step: CapturedStep | None = None
        self.totals = LossTotals()
        self.move_centers: CapturedStep | None = None  # DCN "epoch": one batch of the centre pass after each epoch
        self.epoch_embedding: torch.Tensor | None = None  # the embedding after the last epoch, where one was needed
        self.prev_labels: torch.Tensor | None = None
        self.epoch = -1  # last finished clustering epoch

    # --- setup -------------------------------------------------------------------------------
    def init_clustering(self) -> None:
        """k-means on the embedding of the whole dataset gives the initial centroids (LFSS clusters every epoch)."""
        if self.config.train.algorithm == "lfss":
            self._build_model()
            return
        z = embed(self.net, self.data.x)
        centers, labels = kmeans(z, self.data.n_clusters, self.generator, n_init=INIT_KMEANS_RESTARTS)
        self._build_model(centers, labels)
        self.prev_labels = labels

    def _build_model(self, centers: torch.Tensor | None = None, assignments: torch.Tensor | None = None) -> None:
        cfg = self.config.train
        if cfg.algorithm == "lfss":
            lfss = self.config.lfss
            self.model = LFSS(self.net, self.data.n_clusters, temperature=lfss.temperature, noise=lfss.noise,
                              weight=lfss.weight, unstable_ratio=lfss.unstable_ratio,
                              warmup_epochs=lfss.warmup_epochs, target_momentum=lfss.target_momentum,
                              predictor_hidden=lfss.predictor_hidden, generator=self.generator).to(self.device)
        else:
            self.model = CentroidModel(self.net, centers, assignments, cfg.algorithm, cfg.effective_cluster_weight,
                                       self.config.contrastive.temperature, cfg.dcn_update).to(self.device)
        graphs = self.uses_cuda_graphs()
        self.optimizer = make_adam(self._parameter_groups(), cfg.lr, capturable=graphs)
        # Under torch.distributed (e.g. a Ray Train worker) gradients are averaged across the data shards.
        # DEC never runs the decoder or projector, so DDP must not wait for their gradients.
        # Every worker updates DCN's centres and assignments from the whole batch, so buffers stay in step.
        unused = not getattr(self.model, "uses_auxiliary", True)
        if _distributed():
            self.step_model = DistributedDataParallel(self.model, find_unused_parameters=unused,
                                                      broadcast_buffers=False)
        else:
            self.step_model = fuse(self.model, self.device.type) if cfg.compile else self.model
        self.train_step = CapturedStep(self._step, enabled=graphs)
        sweeps = getattr(self.model, "sweeps_centers", False)
        self.move_centers = CapturedStep(self.model.move_centers, enabled=graphs) if sweeps else None
        self.totals = LossTotals()

    def uses_cuda_graphs(self) -> bool:
        """Steps are replayed as CUDA graphs on a single GPU; LFSS's step and DDP's hooks are not capture-safe."""
        return (self.config.train.cuda_graphs and self.device.type == "cuda" and not _distributed()
                and self.config.train.algorithm != "lfss")

    def _parameter_groups(self) -> list[dict[str, Any]]:
        """LFSS's predictor learns 10x faster than the network (its App. D); everything else at train.lr."""
        predictor = getattr(self.model, "predictor", None)
        if predictor is None:
            return [{"params": list(self.model.parameters())}]
        fast = {id(p) for p in predictor.parameters()}
        rest = [p for p in self.model.parameters() if id(p) not in fast]
        return [{"params": rest}, {"params": list(predictor.parameters()), "lr": 10 * self.config.train.lr}]

    # --- BRB and its ablations ---------------------------------------------------------------
    def periodic_step(self) -> None:
        """Every T epochs: perturb the network and/or recompute the centroids, as the mode says."""
        brb = self.config.brb
        mode = brb.mode
        if mode in ("reset", "brb"):
            apply_plan(self.reset_plan, self.generator, "soft_reset", brb.reset_init)
        elif mode in ("perturb_only", "scaled_gaussian"):
            apply_plan(self.reset_plan, self.generator, mode, brb.reset_init)
        if mode not in RECLUSTERING_MODES:
            return
        k = self.data.n_clusters
        pick = torch.randperm(self.data.n, generator=self.generator, device=self.generator.device)[: brb.subsample]
        pick = pick.to(self.device)
        # Every sample is reassigned below, so the whole dataset is embedded once and the subsample read from it.
        z_all = embed(self.net, self.data.x)
        z = z_all[pick]
        if mode == "disentangled":  # Algorithm 2: labels from a reset copy, centroids from the unchanged net
            twin = copy.deepcopy(self.net)
            apply_plan(reset_plan(twin, self.config), self.generator, "soft_reset", brb.reset_init)
            labels = self.model.predict(embed(twin, self.data.x[pick]))
            centers = _label_means(z, labels, self.model.centers.detach())
        else:
            if mode == "embedding_noise":  # eq 18: noise with the norm of each embedding, scaled by β
                noise = torch.randn(z.shape, generator=self.generator, device=self.generator.device).to(z.device)
                noise = noise / noise.norm(dim=1, keepdim=True).clamp_min(1e-12) * z.norm(dim=1, keepdim=True)
                z = z + brb.noise_beta * noise
            centers, _ = recluster(z, k, brb.recluster, self.generator)
        # Every sample is reassigned to the new centroids (DCN's loss uses these assignments).
        self.model.set_centers(centers, nearest(z_all, centers))
        if self.config.resets_center_momentum:
            reset_momentum(self.optimizer, [self.model.centers])

    def is_periodic_epoch(self, epoch: int) -> bool:
        mode = self.config.brb.mode
        return mode != "baseline" and epoch > 0 and epoch % self.config.brb.interval == 0

    # --- one epoch -----------------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        """One epoch of minibatch steps (and DCN's centre pass); the mean loss terms, finite or not."""
        cfg = self.config.train
        self.model.train()
        rank, world = _rank_and_world()
        augmenter = self.augmenter if cfg.augment else None
        self.model.start_epoch(self.epoch + 1, self.data.x)
        self.epoch_embedding = None
        self.totals.zero()
        with network_precision(cfg.precision, self.device.type):
            for index, batch, batch_aug in epoch_batches(self.data.x, cfg.batch_size, self.generator, augmenter,
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
        return self.totals.means(trained_count(self.data.n, cfg.batch_size, self.config.drops_last_batch))

    def finish_epoch(self, epoch: int) -> None:
        """Mark clustering epoch `epoch` done: a checkpoint resumes after it."""
        self.epoch = epoch

    def end_epoch(self) -> dict[str, float]:
        """What the model measures once an epoch's steps are done (LFSS's sample stability; else nothing)."""
        return self.model.end_epoch(self.data.x)

    def _step(self, x: torch.Tensor, x_aug: torch.Tensor | None, index: torch.Tensor,
              batch: torch.Tensor | None = None, batch_index: torch.Tensor | None = None) -> None:
        """One optimisation step on x (samples `index`, this worker's shard of batch/batch_index); capture-safe."""
        terms = self.step_model(x, x_aug, index)
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if self.config.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        self.optimizer.step()
        self.model.after_step(x if batch is None else batch, index if batch_index is None else batch_index)
        self.totals.add(terms, len(x))

    @torch.no_grad()
    def _sweep_centers(self) -> None:
        """DCN "epoch": with the network fixed, move the centres batch by batch over a new order of the un-augmented
        data (every worker draws the same order, so centres stay equal across workers)."""
        z = embed(self.net, self.data.x)
        order = torch.randperm(self.data.n, generator=self.generator, device=self.generator.device).to(z.device)
        for batch in z[order].split(self.config.train.batch_size):
            self.move_centers(batch)
        self.epoch_embedding = z  # the network has not changed since: evaluation reuses it

    def measured_embedding(self) -> torch.Tensor:
        """The whole dataset's embedding that evaluation scores: the epoch's DCN centre pass's when there is one (the
        network has not changed since), else the evaluation network's at train.precision. What feeds training back
        (k-means, reclustering, DCN's centre pass) embeds in float32: k-means++ sampling would turn bf16's coarse
        rounding of a last-bit weight difference into other seeds."""
        if self.epoch_embedding is not None:
            return self.epoch_embedding
        return embed(self.model.eval_net, self.data.x, self.config.train.precision)

    @torch.no_grad()
    def evaluate(self, record: EpochRecord) -> torch.Tensor:
        """Fill the record's metrics from one embedding of the whole dataset; returns the labels."""
        z = self.measured_embedding()
        labels = self.model.predict(z)
        self.score(record, z, labels, self.model.centers.detach())
        return labels

    @torch.no_grad()
    def score(self, record: EpochRecord, z: torch.Tensor, labels: torch.Tensor,
              centers: torch.Tensor | None = None) -> None:
        """Label metrics, label change since the last evaluation and embedding geometry of (z, labels); the
        centroid distance ratios too when given the centres."""
        prev = self.prev_labels.unsqueeze(0) if self.prev_labels is not None else None
        scores = epoch_scores(self.classes, self.n_classes, z.unsqueeze(0), labels.unsqueeze(0),
                              self.data.n_clusters, self.eval_index.unsqueeze(0), prev_labels=prev,
                              centers=centers.unsqueeze(0) if centers is not None else None,
                              ratio_threshold=self.config.eval.ratio_threshold)
        self.take_scores(record, scores[0], labels)

    def take_scores(self, record: EpochRecord, scores: dict[str, float], labels: torch.Tensor) -> None:
        """Write an evaluation's scores into the record; its labels are what the next one's label change compares to."""
        for name, value in scores.items():
            setattr(record, name, value)
        self.remember_labels(labels)

    def remember_labels(self, labels: torch.Tensor) -> None:
        """The labels the next evaluation's label change compares with (a resumed stage restores its own)."""
        self.prev_labels = labels

    # --- self-labeling -------------------------------------------------------------------------
    def self_labeling(self) -> SelfLabeling:
        """The self-labeling stage on this trial's network, with a fresh head and the configured ReSL strategy."""
        cfg, resl = self.config.selflabel, self.config.resl
        with torch.random.fork_rng(devices=[]):  # the head's initial weights depend on the seed alone
            torch.manual_seed(self.config.seed + HEAD_SEED_OFFSET)
            classifier = Classifier(self.net, self.embedding_dim, self.data.n_clusters).to(self.device)
        strategy = make_strategy(resl.strategy, alpha=resl.alpha, interval=resl.interval, momentum=resl.momentum,
                                 ema_update=resl.ema_update, total_epochs=cfg.epochs, generator=self.generator)
        # SCAN predicts pseudo-labels on the un-augmented image and trains on a strong augmentation of it.
        return SelfLabeling(classifier, self.data.x, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            batch_size=cfg.batch_size, threshold=cfg.threshold, balance=cfg.balance,
                            warmup_epochs=cfg.warmup_epochs, strategy=strategy, weak_augmenter=None,
                            strong_augmenter=make_strong_augmenter(self.data, self.config.data.affine),
                            generator=self.generator)

    @torch.no_grad()
    def score_self_labeling(self, record: EpochRecord, stage: SelfLabeling) -> None:
        """Metrics of the clustering network's head predictions, and NMI of the confident pseudo-labels."""
        probs = stage.probabilities()
        net = stage.strategy.eval_model(stage.classifier).net
        self.score(record, embed(net, self.data.x), probs.argmax(1))
        record.nmi_match = nmi_match(probs, self.data.y, self.config.selflabel.threshold)

    # --- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "prev_labels": self.prev_labels}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._build_model(state["model"]["centers"], state["model"].get("assignments"))
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
