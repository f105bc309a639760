"""DEC/IDEC/DCN loss terms (BRB paper eqs 3-7, with the augmentation-invariant forms 14-17)."""
from __future__ import annotations

import torch

from raydc.clustering.kmeans import sq_distances


def student_t_q(z: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Eq 3: soft assignments under a Student-t kernel with one degree of freedom."""
    kernel = 1.0 / (1.0 + sq_distances(z, centers))
    return kernel / kernel.sum(1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """Eq 4: sharpened targets p ∝ q² / f_j with soft cluster frequencies f_j = Σ_i q_ij."""
    weight = q.pow(2) / q.sum(0)
    return weight / weight.sum(1, keepdim=True)


def kl_to_targets(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Eq 5: KL(P‖Q), summed over clusters and averaged over the batch."""
    return (p * (p.clamp_min(1e-12).log() - q.clamp_min(1e-12).log())).sum(1).mean()


def dec_cluster_loss(z: torch.Tensor, centers: torch.Tensor, z_aug: torch.Tensor | None = None) -> torch.Tensor:
    """Eq 5, or eq 15 with an augmented view: both views fit the targets of the original sample."""
    q = student_t_q(z, centers)
    p = target_distribution(q).detach()
    if z_aug is None:
        return kl_to_targets(p, q)
    return 0.5 * (kl_to_targets(p, q) + kl_to_targets(p, student_t_q(z_aug, centers)))


def dcn_cluster_loss(z: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor,
                     z_aug: torch.Tensor | None = None) -> torch.Tensor:
    """Eq 6, or eq 17 with an augmented view; h(z_i) = `labels`, the samples' current assignments S_t."""
    assigned = centers[labels]
    loss = 0.5 * (z - assigned).pow(2).sum(1).mean()
    if z_aug is None:
        return loss
    return 0.5 * (loss + 0.5 * (z_aug - assigned).pow(2).sum(1).mean())


def dcn_update_centers(centers: torch.Tensor, counts: torch.Tensor, z: torch.Tensor, labels: torch.Tensor) -> None:
    """Eq 7 in place: μ_j ← μ_j − (μ_j − z_i)/c_j applied for each sample in turn.

    Applying the running-mean update sample by sample equals one batched step
    μ_j ← (c_j μ_j + Σ_{i∈j} z_i) / (c_j + m_j), so no Python loop is needed.
    """
    added = torch.zeros_like(counts).index_add_(0, labels, torch.ones_like(labels, dtype=counts.dtype))
    sums = torch.zeros_like(centers).index_add_(0, labels, z)
    new_counts = counts + added
    centers.mul_(counts.unsqueeze(1)).add_(sums).div_(new_counts.unsqueeze(1))
    counts.copy_(new_counts)


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    return (x_hat - x.flatten(1)).pow(2).mean()
