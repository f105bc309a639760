"""One class per algorithm: an objective over a minibatch plus its centroid update rule."""
from __future__ import annotations

import torch
from torch import nn

from raydc.clustering.objectives import (
    dcn_cluster_loss,
    dcn_update_centers,
    dec_cluster_loss,
    reconstruction_loss,
    squared_distances,
)


# Prior count of every DCN centre, from the original DCN code (also ClustPy's): early updates move centres by ~1%.
DCN_PRIOR_COUNT = 100.0


class CentroidModel(nn.Module):
    """A network plus k centroids: learnable for DEC/IDEC, running means with counts for DCN."""

    def __init__(self, net: nn.Module, centers: torch.Tensor, algorithm: str, cluster_weight: float):
        super().__init__()
        self.net = net
        self.algorithm = algorithm
        self.cluster_weight = cluster_weight
        if algorithm == "dcn":
            self.register_buffer("centers", centers.clone())
        else:
            self.centers = nn.Parameter(centers.clone())
        self.register_buffer("counts", torch.full((len(centers),), DCN_PRIOR_COUNT, device=centers.device))

    @property
    def uses_reconstruction(self) -> bool:
        return self.algorithm in ("idec", "dcn")

    @property
    def learnable_centers(self) -> bool:
        return isinstance(self.centers, nn.Parameter)

    def set_centers(self, centers: torch.Tensor) -> None:
        """Replace the centroids after (re)clustering; DCN's running counts start again."""
        with torch.no_grad():
            self.centers.copy_(centers)
            self.counts.fill_(DCN_PRIOR_COUNT)

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest centroid; for DEC/IDEC this is also argmax of the Student-t q."""
        return squared_distances(z, self.centers.detach()).argmin(1)

    def forward(self, x: torch.Tensor, x_aug: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Loss terms of one minibatch; 'loss' is the weighted total that is optimised."""
        z = self.net.encode(x)
        z_aug = self.net.encode(x_aug) if x_aug is not None else None
        cluster_fn = dcn_cluster_loss if self.algorithm == "dcn" else dec_cluster_loss
        cluster = cluster_fn(z, self.centers, z_aug)
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
    def after_step(self, x: torch.Tensor) -> None:
        """DCN moves its centres towards the re-embedded batch (eq 7); DEC/IDEC rely on the optimizer."""
        if self.algorithm == "dcn":
            dcn_update_centers(self.centers, self.counts, self.net.encode(x))
