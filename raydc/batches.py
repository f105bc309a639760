"""Minibatches of a device-resident dataset: one shuffle and one augmentation pass per epoch."""
from __future__ import annotations

from typing import Iterator

import torch

from raydc.data import Augmenter

AUGMENT_CHUNK = 16_384  # samples augmented per launch group: few large kernels instead of many per step


def epoch_batches(x: torch.Tensor, batch_size: int, generator: torch.Generator,
                  augmenter: Augmenter | None = None, *, augment_both: bool = False
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Yield (sample indices, batch, augmented batch or None) over a random permutation of x.

    With augment_both the first batch is an independent augmentation too (two views, as contrastive
    objectives need). The permuted data and its augmentation are built once per epoch, so every step only
    slices contiguous views; per-sample augmentation parameters are independent, as with per-batch calls.
    """
    order = torch.randperm(len(x), generator=generator, device=generator.device).to(x.device)
    shuffled = x[order]
    augmented = None
    if augmenter is not None:
        augmented = _augment(shuffled, augmenter, generator)
        if augment_both:
            shuffled = _augment(shuffled, augmenter, generator)
    for start in range(0, len(x), batch_size):
        stop = start + batch_size
        yield order[start:stop], shuffled[start:stop], (augmented[start:stop] if augmented is not None else None)


def _augment(x: torch.Tensor, augmenter: Augmenter, generator: torch.Generator) -> torch.Tensor:
    return torch.cat([augmenter(chunk, generator) for chunk in x.split(AUGMENT_CHUNK)])
