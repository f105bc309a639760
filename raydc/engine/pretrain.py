"""Pretraining (autoencoder reconstruction, or SimCLR for contrastive networks), cached by content so every
trial with the same inputs reuses one result."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch

from raydc.compute.batches import epoch_batches
from raydc.compute.captured import CapturedStep
from raydc.files.atomic import exclusive
from raydc.files.checkpoint import atomic_save, load
from raydc.clustering.objectives import reconstruction_loss
from raydc.clustering.simclr import info_nce
from raydc.config import TrialConfig
from raydc.data import Augmenter, Dataset
from raydc.errors import TrialDiverged
from raydc.compute.optim import make_adam
from raydc.config.identity import cluster_stage_key, pretrain_key

PRETRAIN_SEED_OFFSET = 1_000_003  # pretraining draws from its own stream so cached and fresh runs match


def cluster_cache_path(config: TrialConfig, cache: Path | None) -> Path | None:
    """Where the end of the clustering stage is shared, when a self-labeling stage follows it."""
    if cache is None or config.selflabel.epochs == 0:
        return None
    return Path(cache) / f"cluster-{cluster_stage_key(config)}.pt"


def is_contrastive(net: torch.nn.Module) -> bool:
    """Networks with a projector learn by SimCLR; autoencoders by reconstruction."""
    return hasattr(net, "project")


def pretext_loss(net: torch.nn.Module, config: TrialConfig
                 ) -> Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]:
    """The self-supervised loss of a batch and its augmented view (None when pretraining without augmentation)."""
    if is_contrastive(net):
        temperature = config.contrastive.temperature

        def contrastive(x: torch.Tensor, x_aug: torch.Tensor | None) -> torch.Tensor:
            a, b = net.project(torch.cat([x, x_aug])).chunk(2)  # one pass: BatchNorm sees both views
            return info_nce(a, b, temperature)
        return contrastive

    def reconstruction(x: torch.Tensor, x_aug: torch.Tensor | None) -> torch.Tensor:
        x = x if x_aug is None else x_aug
        return reconstruction_loss(x, net.decode(net.encode(x)))
    return reconstruction


def train_pretext(net: torch.nn.Module, data: Dataset, config: TrialConfig, augmenter: Augmenter | None,
                  on_epoch: Callable[[int, float], None]) -> list[float]:
    """Self-supervised pretraining; returns the mean loss of every epoch. On a GPU (train.cuda_graphs) each step
    replays as a CUDA graph, like the clustering steps."""
    cfg = config.pretrain
    device = data.x.device
    generator = torch.Generator(device=device).manual_seed(config.seed + PRETRAIN_SEED_OFFSET)
    graphs = config.train.cuda_graphs and device.type == "cuda"
    optimizer = make_adam(net.parameters(), cfg.lr, cfg.weight_decay, capturable=graphs)
    loss_of = pretext_loss(net, config)
    total = torch.zeros((), device=device)  # the epoch's loss sum, on the device: no host sync per step

    def step(x: torch.Tensor, x_aug: torch.Tensor | None) -> None:
        loss = loss_of(x, x_aug)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total.add_(loss.detach() * len(x))

    train_step = CapturedStep(step, enabled=graphs)
    net.train()
    losses = []
    for epoch in range(cfg.epochs):
        total.zero_()
        for _, x, x_aug in epoch_batches(data.x, cfg.batch_size, generator, augmenter if cfg.augment else None,
                                         augment_both=is_contrastive(net)):
            train_step(x, x_aug)
        losses.append(float(total) / data.n)  # one host sync per epoch
        if not math.isfinite(losses[-1]):
            raise TrialDiverged(f"non-finite pretraining loss at epoch {epoch}")
        on_epoch(epoch, losses[-1])
    return losses


def pretrained_state(net: torch.nn.Module, data: Dataset, config: TrialConfig, augmenter: Augmenter | None,
                     cache_dir: Path | None, on_epoch: Callable[[int, float], None]) -> tuple[list[float], bool]:
    """Load the network's pretrained weights from the cache or train and store them; returns (losses, was_cached)."""
    if cache_dir is None:
        return train_pretext(net, data, config, augmenter, on_epoch), False
    key = pretrain_key(config)
    path = Path(cache_dir) / f"pretrain-{key}.pt"
    with exclusive(Path(cache_dir) / f"pretrain-{key}.lock"):
        if path.exists():
            saved = load(path, data.x.device)
            net.load_state_dict(saved["net"])
            losses = saved["losses"].tolist()
            for epoch, loss in enumerate(losses):
                on_epoch(epoch, loss)
            return losses, True
        losses = train_pretext(net, data, config, augmenter, on_epoch)
        atomic_save({"net": net.state_dict(), "losses": torch.tensor(losses, dtype=torch.float64)}, path)
        return losses, False
