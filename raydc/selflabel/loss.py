"""SCAN's confidence-based cross-entropy and ReSL's pseudo-label quality (NMI Match, Appendix D eq 5)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from raydc.evaluation.metrics import ArrayLike, nmi


def confidence_cross_entropy(logits_strong: Tensor, probs_weak: Tensor, threshold: float,
                             balance: bool = True) -> tuple[Tensor, Tensor]:
    """Cross-entropy of the strong view against the weak view's argmax, over samples with max prob > threshold.

    As SCAN's ConfidenceBasedCE: with `balance`, class c weighs n_confident / count_c (1 for absent classes) and
    the loss is the weighted mean, F.cross_entropy(weight=..., reduction="mean") on the confident rows. Masking is
    done with weights rather than indexing, so the shapes stay static and nothing waits for the host; without a
    confident sample the loss is a zero that keeps the graph. Returns (loss, number of confident samples).
    """
    confidence, target = probs_weak.detach().max(dim=1)
    confident = (confidence > threshold).to(logits_strong.dtype)
    n_classes = logits_strong.shape[1]
    counts = torch.zeros(n_classes, device=logits_strong.device, dtype=logits_strong.dtype)
    counts.index_add_(0, target, confident)
    n_confident = confident.sum()
    if balance:
        class_weight = torch.where(counts > 0, n_confident / counts.clamp_min(1), torch.ones_like(counts))
    else:
        class_weight = torch.ones_like(counts)
    sample_weight = confident * class_weight[target]
    per_sample = F.cross_entropy(logits_strong, target, reduction="none")
    # Clamping only matters when no sample is confident: the numerator is then an exact, differentiable zero.
    loss = (sample_weight * per_sample).sum() / sample_weight.sum().clamp_min(torch.finfo(sample_weight.dtype).tiny)
    return loss, n_confident.to(torch.int64)


def nmi_match(probs: Tensor, y: ArrayLike, threshold: float) -> float:
    """NMI between argmax pseudo-labels and true labels on the confident set (max prob >= threshold).

    NaN when fewer than two samples are confident, where the partition comparison says nothing.
    """
    confidence, pseudo_labels = probs.max(dim=1)
    confident = confidence >= threshold
    if int(confident.sum()) < 2:
        return math.nan
    labels = torch.as_tensor(y, device=probs.device)
    return nmi(pseudo_labels[confident], labels[confident])
