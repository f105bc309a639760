"""Weight perturbations of BRB and its ablations, applied to named layer selections.

soft reset (eq 1):       θ ← αθ + (1−α)φ,  φ ~ Kaiming-uniform (the authors' gain or nn.Linear's), default bias
perturb_only (H.13):     θ ← θ + (1−α)φ    (no contraction)
scaled_gaussian (H.13):  θ ← αθ + (1−α)ε,  ε ~ N(mean θ, std θ) per tensor
"""
from __future__ import annotations

import math

import torch
from torch import nn

from raydc.config import TrialConfig

PERTURBATIONS = ("soft_reset", "perturb_only", "scaled_gaussian")


# Leaky-ReLU slope of kaiming_uniform_ per init: 0 (bound √(6/fan_in)) as the BRB authors draw φ; √5 (bound
# 1/√fan_in) as nn.Linear and nn.Conv2d initialise themselves.
KAIMING_SLOPE = {"kaiming": 0.0, "linear": math.sqrt(5)}


def sample_initial(module: nn.Module, generator: torch.Generator, init: str = "linear") -> dict[str, torch.Tensor]:
    """Fresh parameters φ drawn from `generator`: weights Kaiming-uniform with `init`'s slope, biases and batchnorm
    as PyTorch initialises them."""
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        # A fresh contiguous tensor: a strided weight (a population member's view) must draw the same values.
        weight = torch.empty(module.weight.shape, dtype=module.weight.dtype, device=module.weight.device)
        nn.init.kaiming_uniform_(weight, a=KAIMING_SLOPE[init], generator=generator)
        fresh = {"weight": weight}
        if module.bias is not None:
            bound = 1.0 / math.sqrt(nn.init._calculate_fan_in_and_fan_out(module.weight)[0])
            fresh["bias"] = torch.empty_like(module.bias).uniform_(-bound, bound, generator=generator)
        return fresh
    if isinstance(module, nn.BatchNorm2d):
        return {"weight": torch.ones_like(module.weight), "bias": torch.zeros_like(module.bias)}
    raise TypeError(f"no default initialisation known for {type(module).__name__}")


@torch.no_grad()
def perturb(modules: list[nn.Module], alpha: float, generator: torch.Generator, kind: str = "soft_reset",
            init: str = "linear") -> None:
    """Apply one of PERTURBATIONS to every parameter of `modules` in place, φ drawn as `init` says."""
    if kind not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {kind!r}; valid: {', '.join(PERTURBATIONS)}")
    for module in modules:
        if kind == "scaled_gaussian":
            for p in module.parameters(recurse=False):
                noise = torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype)
                std = p.std() if p.numel() > 1 else p.new_zeros(())
                scaled = noise * std + p.mean()  # drawn from the weights as they are before contraction
                p.mul_(alpha).add_((1 - alpha) * scaled)
            continue
        for name, phi in sample_initial(module, generator, init).items():
            p = getattr(module, name)
            if kind == "soft_reset":
                p.mul_(alpha)
            p.add_((1 - alpha) * phi)


def reset_plan(net: nn.Module, config: TrialConfig) -> list[tuple[list[nn.Module], float]]:
    """(modules, α) pairs for the configured layer groups.

    ResNet block i gets block_alpha + (4−i)·block_alpha_step, capped at 1 (block_alpha defaults to alpha);
    a contrastive network's projector is reset with the MLP's α whenever weights are reset (App. E).
    Groups may overlap (block4 and batchnorm share layers): each module appears once, with the α of the first
    group that names it.
    """
    brb = config.brb
    groups = net.layer_groups(include_embedding=brb.reset_embedding)
    block_alpha = brb.alpha if brb.block_alpha is None else brb.block_alpha
    plan = []
    seen: set[int] = set()

    def add(modules: list[nn.Module], alpha: float) -> None:
        fresh = [m for m in modules if id(m) not in seen]  # a second reset of one module would retain α²
        seen.update(id(m) for m in fresh)
        if fresh:
            plan.append((fresh, alpha))

    for name in brb.layers:
        alpha = brb.alpha
        if name.startswith("block"):
            alpha = min(1.0, block_alpha + (4 - int(name[-1])) * brb.block_alpha_step)
        add(groups[name], alpha)
    if brb.reset_embedding and "encoder" not in brb.layers:
        add([net.embedding_layer], brb.alpha)
    if "projector" in groups and config.contrastive.reset_projector and "projector" not in brb.layers:
        add(groups["projector"], brb.alpha)
    return plan


def apply_plan(plan: list[tuple[list[nn.Module], float]], generator: torch.Generator, kind: str,
               init: str = "linear") -> None:
    for modules, alpha in plan:
        perturb(modules, alpha, generator, kind, init)


def reset_momentum(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
    """Zero Adam's first and second moments of `params` so they align with recomputed centroids."""
    for p in params:
        for buf in ("exp_avg", "exp_avg_sq"):
            if buf in optimizer.state.get(p, {}):
                optimizer.state[p][buf].zero_()
