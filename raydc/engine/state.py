"""A trial's state and the changes BRB makes to it: its network, centroid model, random streams, evaluation
subsample, the labels its next evaluation compares with and its last finished epoch. Nothing here trains: a lone
trial's optimizer and steps are `Trial` (raydc.engine.trial), a population's the stack (raydc.engine.population)."""
from __future__ import annotations

import copy
from typing import Any

import torch

from raydc.clustering import CentroidModel
from raydc.clustering.kmeans import kmeans, nearest, recluster
from raydc.clustering.lfss import LFSS
from raydc.compute.precision import network_precision
from raydc.config import RECLUSTERING_MODES, TrialConfig
from raydc.data import Dataset, make_augmenter, make_strong_augmenter
from raydc.engine.records import EpochRecord
from raydc.evaluation.scoring import class_indices, epoch_scores
from raydc.nets import build_network, has_batch_norm
from raydc.nets.resets import apply_plan, reset_plan
from raydc.selflabel import Classifier, SelfLabeling, make_strategy, nmi_match

CLUSTER_SEED_OFFSET = 2_000_003  # clustering draws from a stream independent of pretraining
EMBED_CHUNK = 8192
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


@torch.no_grad()
def embed_untrained(net: torch.nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """A network's first embedding when no pretraining set its BatchNorm statistics: in training mode, batch by batch
    as the first clustering steps will see it, which also sets the running statistics from the data (as the authors'
    code does: its untrained autoencoder is still in training mode at the initial k-means). Without BatchNorm both
    modes agree, and this is `embed`."""
    if not has_batch_norm(net):
        return embed(net, x)
    was_training = net.training
    net.train()
    z = torch.cat([net.encode(batch).float() for batch in x.split(batch_size)])
    net.train(was_training)
    return z


class TrialState:
    """What one trial holds between its steps, and the changes that need no optimizer."""

    def __init__(self, config: TrialConfig, data: Dataset, device: torch.device):
        config.check_dataset(data.n_clusters)  # before any compute: a misfit would surface epochs later
        self.config = config
        self.data = data
        self.device = device
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
        self.prev_labels: torch.Tensor | None = None
        self.epoch = -1  # last finished clustering epoch

    # --- the clustering model ----------------------------------------------------------------------
    def init_clustering(self) -> None:
        """k-means on the embedding of the whole dataset gives the initial centroids (LFSS clusters every epoch)."""
        if self.config.train.algorithm == "lfss":
            self._build_model()
            return
        pretrained = self.config.pretrain.epochs > 0
        z = embed(self.net, self.data.x) if pretrained else embed_untrained(self.net, self.data.x,
                                                                            self.config.train.batch_size)
        centers, labels = kmeans(z, self.data.n_clusters, self.generator, n_init=self.config.train.init_kmeans_inits)
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

    # --- BRB and its ablations ---------------------------------------------------------------
    def periodic_step(self) -> None:
        """Every T epochs: perturb the network and/or recompute the centroids, as the mode says (the centroids'
        optimizer moments are the trainer's to forget: config.resets_center_momentum)."""
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
            centers, _ = recluster(z, k, brb.recluster, self.generator, **brb.recluster_options)
        # Every sample is reassigned to the new centroids (DCN's loss uses these assignments).
        self.model.set_centers(centers, nearest(z_all, centers))

    def is_periodic_epoch(self, epoch: int) -> bool:
        mode = self.config.brb.mode
        return mode != "baseline" and epoch > 0 and epoch % self.config.brb.interval == 0

    # --- an epoch's end ---------------------------------------------------------------------------
    def finish_epoch(self, epoch: int) -> None:
        """Mark clustering epoch `epoch` done: a checkpoint resumes after it."""
        self.epoch = epoch

    def end_epoch(self) -> dict[str, float]:
        """What the model measures once an epoch's steps are done (LFSS's sample stability; else nothing)."""
        return self.model.end_epoch(self.data.x)

    # --- evaluation ------------------------------------------------------------------------------
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
        return {"epoch": self.epoch, "model": self.model.state_dict(), "generator": self.generator.get_state(),
                "prev_labels": self.prev_labels}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The state a checkpoint holds (a lone trial's also holds its optimizer, which Trial restores)."""
        self._build_model(state["model"]["centers"], state["model"].get("assignments"))
        self.model.load_state_dict(state["model"])
        self.generator.set_state(state["generator"].cpu())
        self.prev_labels = state["prev_labels"]
        self.epoch = int(state["epoch"])


def _label_means(z: torch.Tensor, labels: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Per-label mean of z; a label with no members keeps its previous centroid."""
    k = len(fallback)
    sums = torch.zeros_like(fallback).index_add_(0, labels, z)
    counts = torch.bincount(labels, minlength=k).to(z.dtype).unsqueeze(1)
    return torch.where(counts > 0, sums / counts.clamp_min(1), fallback)
