"""Arithmetic precision of the network in the clustering stage: its training steps and the embeddings evaluation
scores. Distances between embeddings and centroids stay float32, and so do embeddings once computed; the embeddings
k-means and reclustering read are computed in float32.

float32: PyTorch's default. tf32: CUDA float32 matrix products on tensor cores with a 10-bit mantissa. bf16: the
network runs under bfloat16 autocast (matrix products and convolutions in bf16, parameters and optimizer in float32;
on CPUs with bf16 matrix units, such as AMX, this is where it pays).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch

PRECISIONS = ("float32", "tf32", "bf16")


@contextmanager
def _allow_tf32(allowed: bool) -> Iterator[None]:
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


@contextmanager
def network_precision(precision: str, device_type: str) -> Iterator[None]:
    """The block's network arithmetic in `precision` (see PRECISIONS) on a device of `device_type`."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    with ExitStack() as stack:
        stack.enter_context(_allow_tf32(precision == "tf32"))
        if precision == "bf16":  # no weight-cast cache: a cached cast would go stale inside a replayed CUDA graph
            stack.enter_context(torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False))
        yield


@contextmanager
def full_precision(device_type: str) -> Iterator[None]:
    """Distances ‖x‖² − 2x·c + ‖c‖² cancel: their cross term keeps every float32 bit whatever the trial's precision."""
    with _allow_tf32(False), torch.autocast(device_type, enabled=False):
        yield
