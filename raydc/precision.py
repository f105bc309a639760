"""Matrix-product precision on CUDA: TF32 for the network where a trial asks for it, full float32 for distances."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import torch


@contextmanager
def matmul_precision(tf32: bool) -> Iterator[None]:
    """float32 matrix products in TF32 (10-bit mantissa, several times faster on tensor cores) inside the block."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def full_precision() -> AbstractContextManager[None]:
    """Distances ‖x‖² − 2x·c + ‖c‖² cancel: their cross term keeps all float32 bits whatever the trial's setting."""
    return matmul_precision(False)
