"""The optimizer every training stage uses."""
from __future__ import annotations

import torch


def make_adam(params, lr: float, weight_decay: float = 0.0, capturable: bool = False) -> torch.optim.Adam:
    """Adam (β 0.9/0.999); the fused kernel updates every tensor in one pass (CPU and CUDA).

    capturable (CUDA only) keeps the step count on the device, so the step can be recorded in a CUDA graph.
    """
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True, capturable=capturable)
