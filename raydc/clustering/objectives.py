"""DEC/IDEC/DCN loss terms (BRB paper eqs 3-7, with the augmentation-invariant forms 14-17)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from raydc.clustering.kmeans import nearest, sq_distances
from raydc.compute.precision import full_precision


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """Eq 4: sharpened targets p ∝ q² / f_j of the Student-t soft assignments q (eq 3), with soft cluster frequencies
    f_j = Σ_i q_ij."""
    weight = q.pow(2) / q.sum(0)
    return weight / weight.sum(1, keepdim=True)


class _StudentTKL(torch.autograd.Function):
    """Eq 5 (eq 15 over several views) with DEC's closed-form gradient (Xie et al., 2016, eqs 4-5): a third of the
    kernels autograd records for the same loss, and those kernels bound a step's time on a GPU.

    With w_ij = k_ij (p_ij − q_ij) / n and the Student-t kernel k_ij = 1 / (1 + ‖z_i − μ_j‖²):
    ∂L/∂z_i = 2 Σ_j w_ij (z_i − μ_j) and ∂L/∂μ_j = −2 Σ_i w_ij (z_i − μ_j); the targets P are constants, as in DEC.
    """
    generate_vmap_rule = True  # population mode runs it under torch.func.vmap

    @staticmethod
    def forward(z: torch.Tensor, centers: torch.Tensor, views: int):
        with full_precision(z.device.type):
            z, centers = z.float(), centers.float()
            kernel = torch.reciprocal(sq_distances(z, centers).add_(1))
            q = kernel / kernel.sum(1, keepdim=True)
            batch = len(z) // views
            # The un-augmented view's targets serve every view. Detached, so that autograd of this forward is the
            # closed form too: torch.compile under vmap differentiates it, not backward (pytorch/pytorch#129845).
            p = target_distribution(q[:batch]).detach()
            log_q = q.clamp_min(1e-12).log().view(views, batch, -1)
            loss = (torch.xlogy(p, p).sum() * views - (p * log_q).sum()) / len(z)
        return loss, kernel, q, p

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        z, centers, views = inputs
        _, kernel, q, p = output
        ctx.mark_non_differentiable(kernel, q, p)
        ctx.set_materialize_grads(False)  # the intermediates get no gradient: no zero tensors for them
        ctx.save_for_backward(z, centers, kernel, q, p)
        ctx.views = views

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, *unused: torch.Tensor):
        z, centers, kernel, q, p = ctx.saved_tensors
        with full_precision(z.device.type):
            z32, centers32 = z.float(), centers.float()
            w = kernel * (p - q.view(ctx.views, len(p), -1)).view_as(q) * (grad_loss * (2 / len(z)))  # p per view
            grad_z = torch.addmm(w.sum(1, keepdim=True) * z32, w, centers32, alpha=-1)
            grad_centers = torch.addmm(w.sum(0).unsqueeze(1) * centers32, w.T, z32, alpha=-1)
        return grad_z.to(z.dtype), grad_centers.to(centers.dtype), None


def dec_cluster_loss(z: torch.Tensor, centers: torch.Tensor, views: int = 1) -> torch.Tensor:
    """Eq 5, or eq 15 for views > 1: z stacks the views' embeddings ((views·B, d), the un-augmented view first) and
    every view fits the targets of the un-augmented sample."""
    return _StudentTKL.apply(z, centers, views)[0]


def dcn_cluster_loss(z: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor, views: int = 1) -> torch.Tensor:
    """Eq 6, or eq 17 for views > 1 (z stacks the views' embeddings, (views·B, d)); h(z_i) = `labels`, the samples'
    current assignments S_t, shared by every view. The BRB authors' code averages over the k one-hot columns too,
    (1/k)·mean‖z − μ‖²: train.cluster_weight at 2/k of Table 5's runs at their scale (benchmarks/RESULTS.md)."""
    z = z.view(views, len(labels), -1)
    # ½ · mean over samples of the squared distance = ½ · d · (mean over elements): one fused kernel each way
    return 0.5 * z.shape[-1] * F.mse_loss(z, centers[labels].expand_as(z))


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


def dcn_move_centers(centers: torch.Tensor, z: torch.Tensor, rate: float) -> None:
    """The authors' minibatch update, in place: every centre nearest to some rows of z moves `rate` of the way to
    their mean; the others stay. Capture-safe and vmappable (no host synchronisation, no data-dependent shapes)."""
    labels = nearest(z, centers)
    sums = torch.zeros_like(centers).index_add(0, labels, z)
    sizes = torch.zeros_like(centers[:, :1]).index_add(0, labels, torch.ones_like(z[:, :1]))
    # (Σz − n·μ)/n is the move to the members' mean, and 0 for a centre without members (n clamped to 1)
    centers.add_((sums - sizes * centers) / sizes.clamp_min(1), alpha=rate)


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """Mean squared error over pixels (mse_loss: one fused kernel each way, where (x̂ − x)².mean() takes 3 and 4)."""
    return F.mse_loss(x_hat, x.flatten(1))
