"""Whole training steps replayed as CUDA graphs: one launch per step instead of hundreds.

A clustering step of the paper's autoencoder is a few hundred small kernels (forward, backward, Adam, loss
bookkeeping); on a GPU their launch overhead, not their arithmetic, sets the epoch time. CapturedStep records the
step once per input shape and replays it, so the step's arithmetic is exactly the eager step's.

The step must be capture-safe: no host synchronisation, no Python state that changes between calls (the optimizer
keeps its step count on the device), and outputs written in place into tensors that outlive the call. Everything the
step reads (parameters, optimizer moments, centroids) must be changed in place between calls, never replaced; an
owner that replaces them calls `reset()`.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

WARMUP_CALLS = 2  # eager calls per input shape before capture: lazy state (moments, cuBLAS handles) exists by then

Inputs = tuple[torch.Tensor | None, ...]


class CapturedStep:
    """Calls step(*inputs); when enabled (CUDA only) each input shape is captured as a graph after warm-up."""

    def __init__(self, step: Callable[..., None], enabled: bool):
        self.step = step
        self.enabled = enabled
        self.reset()

    def reset(self) -> None:
        """Forget every captured graph (call after replacing any tensor the step reads or writes)."""
        self.calls: dict[tuple, int] = {}
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, Inputs]] = {}
        self.pool = None

    def __call__(self, *inputs: torch.Tensor | None) -> None:
        if not self.enabled:
            self.step(*inputs)
            return
        key = tuple(None if t is None else (tuple(t.shape), t.dtype) for t in inputs)
        if key in self.graphs:
            graph, static = self.graphs[key]
            for buffer, value in zip(static, inputs):
                if buffer is not None:
                    buffer.copy_(value)
            graph.replay()
            return
        self.calls[key] = self.calls.get(key, 0) + 1
        # warm-up sees the static copies' (contiguous) layout: a step compiled for another layout in warm-up would
        # be recompiled inside the capture, where compiling cannot run
        inputs = tuple(None if t is None else t.contiguous() for t in inputs)
        if self.calls[key] <= WARMUP_CALLS:
            self._side_stream(inputs)
        else:
            self._capture(key, inputs)

    def _side_stream(self, inputs: Inputs) -> None:
        """An eager call on a side stream, as warm-up before capture must be (PyTorch's CUDA graph notes)."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self.step(*inputs)
        torch.cuda.current_stream().wait_stream(stream)

    def _capture(self, key: tuple, inputs: Inputs) -> None:
        """Record the step on static copies of the inputs, then replay it once: capture itself computes nothing."""
        static = tuple(None if t is None else t.clone() for t in inputs)  # contiguous, as warm-up's inputs were
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph, pool=self.pool):
            self.step(*static)
        self.pool = graph.pool()  # every shape's graph shares one memory pool
        self.graphs[key] = (graph, static)
        graph.replay()
