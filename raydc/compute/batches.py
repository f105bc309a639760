"""Minibatches of a device-resident dataset: one shuffle and one augmentation pass per epoch."""
from __future__ import annotations

from typing import Iterator

import torch

from raydc.data import Augmenter

AUGMENT_CHUNK = 16_384  # samples augmented per launch group: few large kernels instead of many per step


def trained_count(n: int, batch_size: int, drop_last: bool) -> int:
    """Samples an epoch trains on: all of them, or with drop_last those of the full batches (all if none is full)."""
    return n - n % batch_size if drop_last and n >= batch_size else n


def epoch_batches(x: torch.Tensor, batch_size: int, generator: torch.Generator,
                  augmenter: Augmenter | None = None, *, augment_both: bool = False, drop_last: bool = False
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """Yield (sample indices, batch, augmented batch or None) over a random permutation of x, without the last
    short batch when drop_last.

    With augment_both the first batch is an independent augmentation too (two views, as contrastive
    objectives need). The permuted data and its augmentation are built once per epoch, so every step only
    slices contiguous views; per-sample augmentation parameters are independent, as with per-batch calls.
    """
    order, shuffled, augmented = shuffled_epoch(x, generator, augmenter)
    if augment_both and augmenter is not None:
        shuffled = _augment(shuffled, augmenter, generator, torch.empty_like(shuffled))
    for start in range(0, trained_count(len(x), batch_size, drop_last), batch_size):
        stop = start + batch_size
        yield order[start:stop], shuffled[start:stop], (augmented[start:stop] if augmented is not None else None)


def shuffled_epoch(x: torch.Tensor, generator: torch.Generator, augmenter: Augmenter | None = None,
                   into: tuple[torch.Tensor, torch.Tensor | None] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(order, x in that order, its augmentation or None) of one epoch, drawn as epoch_batches draws them; `into`
    = (data, augmentation) buffers shaped like x receive them (a population's rows), so no copy is made."""
    shuffled_out, augmented_out = into if into is not None else (None, None)
    order = torch.randperm(len(x), generator=generator, device=generator.device).to(x.device)
    shuffled = torch.index_select(x, 0, order, out=shuffled_out) if shuffled_out is not None else x[order]
    augmented = None
    if augmenter is not None:
        augmented = _augment(shuffled, augmenter, generator,
                             augmented_out if augmented_out is not None else torch.empty_like(shuffled))
    return order, shuffled, augmented


def _augment(x: torch.Tensor, augmenter: Augmenter, generator: torch.Generator, out: torch.Tensor) -> torch.Tensor:
    """Augmentation of x written into `out`, a chunk at a time."""
    for chunk, target in zip(x.split(AUGMENT_CHUNK), out.split(AUGMENT_CHUNK)):
        target.copy_(augmenter(chunk, generator))
    return out
