"""SimCLR's InfoNCE loss (BRB paper eq 8) between two augmented views of a batch."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Eq 8 averaged over all 2N anchors: row i of `a` and of `b` are the two views of sample i.

    Each view's positive is the other view of its sample; the remaining 2N − 2 views are its negatives.
    """
    n = len(a)
    z = F.normalize(torch.cat([a, b]), dim=1)
    logits = (z @ z.T) / temperature
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pairs, float("-inf"))  # k ≠ i in the denominator
    positives = torch.arange(2 * n, device=z.device).roll(n)
    return F.cross_entropy(logits, positives)
