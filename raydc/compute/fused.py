"""A step's forward and backward fused by torch.compile (`train.compile`): inductor turns the element-wise work and
reductions between the matrix products into a few generated kernels (Triton on a GPU, C++ on the CPU).

Replayed as a CUDA graph, a clustering step is bound by how many kernels it runs, not by their launches; fusing
removes most of the ones that are not matrix products. Shapes are static, so each batch shape (the epoch's last,
shorter batch is one more) gets kernels specialised to it; compiled code is shared by every model of a class, so
later trials in the same process reuse it.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import TypeVar

import torch

from raydc.config import ConfigError

Step = TypeVar("Step", bound=Callable)
CPU_COMPILERS = ("g++", "c++", "clang++")
# Graphs kept per compiled function: each algorithm, augmentation setting and precision compiles two batch shapes, so
# a process running many kinds of trial outgrows dynamo's default of 8 and would fall back to eager steps.
RECOMPILE_LIMIT = 64


def require_compiler(device_type: str) -> None:
    """Raise ConfigError naming train.compile when this device has no backend to compile for (checked before any
    compute: inductor would otherwise fail at the first step)."""
    if device_type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            raise ConfigError("train.compile", "compiling for a GPU needs Triton (pip install triton); set it false")
    elif device_type == "cpu":
        candidates = [os.environ["CXX"]] if os.environ.get("CXX") else CPU_COMPILERS
        if not any(shutil.which(c) for c in candidates):
            raise ConfigError("train.compile", f"compiling for the CPU needs a C++ compiler ({', '.join(candidates)} "
                                               "not found); set it false")
    else:
        raise ConfigError("train.compile", f"no compiler backend for device type {device_type!r}; set it false")


def fuse(step: Step, device_type: str) -> Step:
    """`step` (a module or function of tensors) compiled whole: one graph, static shapes."""
    require_compiler(device_type)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(step, fullgraph=True, dynamic=False)
