"""One class per algorithm: an objective over a minibatch plus its centroid update rule."""
from __future__ import annotations

import torch
from torch import nn

from raydc.clustering.kmeans import nearest
from raydc.clustering.objectives import (
    dcn_cluster_loss,
    dcn_move_centers,
    dcn_update_centers,
    dec_cluster_loss,
    reconstruction_loss,
)
from raydc.clustering.simclr import info_nce
from raydc.nets import has_batch_norm

# Prior count of every DCN centre, from the original DCN code (also ClustPy's): early updates move centres by ~1%.
# With dcn_update "epoch" the count stays at its prior, as in the authors' code: each move is 1/(1 + 100) of the way.
DCN_PRIOR_COUNT = 100.0
DCN_SWEEP_RATE = 1.0 / (1.0 + DCN_PRIOR_COUNT)


class CentroidModel(nn.Module):
    """A network, k centroids (learnable for DEC/IDEC, moved by DCN's update rule) and the hard assignment S_t of
    every sample.

    DCN updates its centres in one of two ways (`dcn_update`). "epoch", as the authors' released code: the loss
    assigns each sample to the nearest centre of its un-augmented embedding, the centres stay fixed through the
    epoch's network steps, and afterwards the trial moves them batch by batch (`move_centers`). "step", eq 7 read
    literally (and ClustPy): after every step the re-embedded batch is reassigned (S_t) and the centres become running
    means whose counts only grow; the loss uses the stored S_t.

    IDEC and DCN add the network's self-supervised loss: reconstruction for an autoencoder, SimCLR's InfoNCE
    between the two augmented views for a network with a projector (DEC trains on the cluster loss alone).

    The two views go through the network in one pass, except for DEC with BatchNorm: the authors' code embeds
    DEC's views in separate passes (IDEC's and DCN's in one, inside their network's loss), so each view is
    normalised by its own batch statistics there, and here too (`views_apart`).
    """

    def __init__(self, net: nn.Module, centers: torch.Tensor, assignments: torch.Tensor, algorithm: str,
                 cluster_weight: float, temperature: float = 0.5, dcn_update: str = "epoch"):
        super().__init__()
        self.net = net
        self.algorithm = algorithm
        self.dcn_update = dcn_update
        self.cluster_weight = cluster_weight
        self.temperature = temperature
        self.contrastive = hasattr(net, "project")
        self.views_apart = algorithm == "dec" and has_batch_norm(net)
        if algorithm == "dcn":
            self.register_buffer("centers", centers.clone())
        else:
            self.centers = nn.Parameter(centers.clone())
        self.register_buffer("counts", torch.full((len(centers),), DCN_PRIOR_COUNT, device=centers.device))
        self.register_buffer("assignments", assignments.clone())

    @property
    def uses_auxiliary(self) -> bool:
        return self.algorithm in ("idec", "dcn")

    @property
    def eval_net(self) -> nn.Module:
        """The network whose embedding is clustered and evaluated."""
        return self.net

    def start_epoch(self, epoch: int, x: torch.Tensor) -> None:
        """Nothing to prepare: centroids change only through steps and reclustering."""

    def end_epoch(self, x: torch.Tensor) -> dict[str, float]:
        return {}

    @property
    def sweeps_centers(self) -> bool:
        """DCN as the authors' code runs it: the centres move in a pass after each epoch, not after each step."""
        return self.algorithm == "dcn" and self.dcn_update == "epoch"

    @property
    def learnable_centers(self) -> bool:
        return isinstance(self.centers, nn.Parameter)

    def set_centers(self, centers: torch.Tensor, assignments: torch.Tensor) -> None:
        """Replace the centroids and assignments after (re)clustering; DCN's running counts start again."""
        with torch.no_grad():
            self.centers.copy_(centers)
            self.assignments.copy_(assignments)
            self.counts.fill_(DCN_PRIOR_COUNT)

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest centroid; for DEC/IDEC this is also argmax of the Student-t q."""
        return nearest(z, self.centers.detach())

    def forward(self, x: torch.Tensor, x_aug: torch.Tensor | None, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms of the minibatch x (samples `index`); 'loss' is the weighted total that is optimised."""
        views = 1 if x_aug is None else 2
        if self.views_apart and x_aug is not None:
            z_aug = self.net.encode(x_aug)  # first, as the authors' code: the clean view's statistics are the last kept
            z = torch.cat([self.net.encode(x), z_aug])
        else:
            inputs = x if x_aug is None else torch.cat([x, x_aug])  # both views in one pass: same row-wise arithmetic
            if self.contrastive:
                z, auxiliary = self._contrastive_pass(inputs)
            else:
                z = self.net.encode(inputs)
        if self.algorithm == "dcn":
            labels = nearest(z[: len(x)].detach(), self.centers) if self.sweeps_centers else self.assignments[index]
            cluster = dcn_cluster_loss(z, self.centers, labels, views)
        else:
            cluster = dec_cluster_loss(z, self.centers, views)
        terms = {"loss_cluster": cluster}
        if not self.uses_auxiliary:
            terms["loss"] = cluster
            return terms
        if self.contrastive:
            terms["loss_contrastive"] = auxiliary
        else:  # eq 14: the mean over both views' pixels is the mean of their two reconstruction losses
            auxiliary = reconstruction_loss(inputs, self.net.decode(z))
            terms["loss_reconstruction"] = auxiliary
        terms["loss"] = auxiliary + self.cluster_weight * cluster
        return terms

    def _contrastive_pass(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Both views through one backbone pass (BatchNorm sees the 2N batch, as in pretraining)."""
        z, p = self.net.encode_and_project(inputs)
        auxiliary = info_nce(*p.chunk(2), self.temperature) if self.uses_auxiliary else None
        return z, auxiliary

    @torch.no_grad()
    def after_step(self, x: torch.Tensor, index: torch.Tensor) -> None:
        """DCN "step" reassigns the re-embedded batch and moves its centres (eq 7); DEC/IDEC rely on the optimizer."""
        if self.algorithm == "dcn" and not self.sweeps_centers:
            z = self.net.encode(x).float()  # centres and counts stay float32 under bf16 autocast
            labels = self.predict(z)
            self.assignments[index] = labels
            dcn_update_centers(self.centers, self.counts, z, labels)

    @torch.no_grad()
    def move_centers(self, z: torch.Tensor) -> None:
        """DCN "epoch", one batch of the pass after an epoch (network fixed): nearest centres move towards z."""
        dcn_move_centers(self.centers, z, DCN_SWEEP_RATE)
