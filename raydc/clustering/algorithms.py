"""One class per algorithm: an objective over a minibatch plus its centroid update rule."""
from __future__ import annotations

import torch
from torch import nn

from raydc.clustering.kmeans import nearest
from raydc.clustering.objectives import (
    dcn_cluster_loss,
    dcn_update_centers,
    dec_cluster_loss,
    reconstruction_loss,
)

# Prior count of every DCN centre, from the original DCN code (also ClustPy's): early updates move centres by ~1%.
DCN_PRIOR_COUNT = 100.0


class CentroidModel(nn.Module):
    """A network, k centroids (learnable for DEC/IDEC, running means with counts for DCN) and the hard
    assignment S_t of every sample, which DCN's loss uses and refreshes for each sample it visits."""

    def __init__(self, net: nn.Module, centers: torch.Tensor, assignments: torch.Tensor, algorithm: str,
                 cluster_weight: float):
        super().__init__()
        self.net = net
        self.algorithm = algorithm
        self.cluster_weight = cluster_weight
        if algorithm == "dcn":
            self.register_buffer("centers", centers.clone())
        else:
            self.centers = nn.Parameter(centers.clone())
        self.register_buffer("counts", torch.full((len(centers),), DCN_PRIOR_COUNT, device=centers.device))
        self.register_buffer("assignments", assignments.clone())

    @property
    def uses_reconstruction(self) -> bool:
        return self.algorithm in ("idec", "dcn")

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
        z = self.net.encode(x)
        z_aug = self.net.encode(x_aug) if x_aug is not None else None
        if self.algorithm == "dcn":
            cluster = dcn_cluster_loss(z, self.centers, self.assignments[index], z_aug)
        else:
            cluster = dec_cluster_loss(z, self.centers, z_aug)
        terms = {"loss_cluster": cluster}
        if self.uses_reconstruction:
            rec = reconstruction_loss(x, self.net.decode(z))
            if z_aug is not None:  # eq 14
                rec = 0.5 * (rec + reconstruction_loss(x_aug, self.net.decode(z_aug)))
            terms["loss_reconstruction"] = rec
            terms["loss"] = rec + self.cluster_weight * cluster
        else:
            terms["loss"] = cluster
        return terms

    @torch.no_grad()
    def after_step(self, x: torch.Tensor, index: torch.Tensor) -> None:
        """DCN reassigns the re-embedded batch and moves its centres (eq 7); DEC/IDEC rely on the optimizer."""
        if self.algorithm == "dcn":
            z = self.net.encode(x)
            labels = self.predict(z)
            self.assignments[index] = labels
            dcn_update_centers(self.centers, self.counts, z, labels)
