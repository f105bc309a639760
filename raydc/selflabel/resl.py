"""Reset strategies of ReSL (Algorithm 1, section 4) for the self-labeling stage.

A strategy acts on a classifier with `.net` (encoder) and `.head` (nn.Linear to the clusters). One α convention
throughout: α is the retention, θ ← αθ + (1−α)φ with φ a fresh default initialisation (BRB eq 1).

Reset schedule: after the finished epoch e (0-based) when (e + 1) % R == 0 and e + 1 < E. Algorithm 1's
`epoch % reset_freq == 0` would reset right after the first epoch and could reset after the last one, where
nothing trains on the reset weights; counting finished epochs resets after epochs R, 2R, ... and never at the end.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from raydc.nets.resets import perturb

STRATEGIES = ("none", "sp", "sp_star", "ht")
EMA_UPDATES = ("step", "epoch")


def resets_after(epoch: int, interval: int, total_epochs: int) -> bool:
    """Whether a reset follows the finished 0-based `epoch` (see the module docstring)."""
    finished = epoch + 1
    return finished % interval == 0 and finished < total_epochs


class ReSLStrategy:
    """No-op hooks; subclasses override those they need."""

    name = "none"

    def start(self, model: nn.Module) -> None:
        """Called before the first self-labeling step, after the head's warm-up."""

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer step."""

    def end_epoch(self, model: nn.Module, epoch: int) -> bool:
        """Called after the 0-based `epoch` finished; returns whether a reset happened."""
        return False

    def eval_model(self, model: nn.Module) -> nn.Module:
        """The network whose predictions are the clustering."""
        return model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class NoReset(ReSLStrategy):
    """Plain self-labeling (SCAN+SL)."""


class ShrinkPerturb(ReSLStrategy):
    """ReSL_SP: soft reset of the head every R epochs; `scheduled` gives ReSL_SP*.

    SP* softens the resets linearly: α_e = α + (1 − α)·(e + 1)/E, which reaches 1 (no change) at the last epoch.
    φ is drawn from `generator`, which must live on the head's device.
    """

    def __init__(self, alpha: float, interval: int, total_epochs: int, generator: torch.Generator,
                 scheduled: bool = False):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha is a retention in [0, 1], got {alpha}")
        if interval < 1 or total_epochs < 1:
            raise ValueError(f"interval and total_epochs must be positive, got {interval} and {total_epochs}")
        self.alpha, self.interval, self.total_epochs = alpha, interval, total_epochs
        self.generator, self.scheduled = generator, scheduled
        self.name = "sp_star" if scheduled else "sp"

    def retention(self, epoch: int) -> float:
        """α used by a reset after the 0-based `epoch`."""
        if not self.scheduled:
            return self.alpha
        return self.alpha + (1.0 - self.alpha) * (epoch + 1) / self.total_epochs

    def end_epoch(self, model: nn.Module, epoch: int) -> bool:
        if not resets_after(epoch, self.interval, self.total_epochs):
            return False
        perturb([model.head], self.retention(epoch), self.generator, "soft_reset")
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())  # checkpoints load onto the device; RNG states live on the host


class HareTortoise(ReSLStrategy):
    """ReSL_HT: the trained model is the hare; a tortoise follows it by EMA and clusters.

    θ_T ← μθ_T + (1 − μ)θ_H over parameters and floating buffers (integer buffers are copied), after every
    optimizer step ("step", Lee et al.'s rule) or every epoch ("epoch", ReSL's Algorithm 1). Every R epochs the
    hare takes the tortoise's weights in place, so the optimizer keeps updating the same tensors (its moments are
    kept). The tortoise is a copy of the model made by `start` or on first use.
    """

    name = "ht"

    def __init__(self, momentum: float, interval: int, total_epochs: int, update: str = "step"):
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if update not in EMA_UPDATES:
            raise ValueError(f"unknown EMA update {update!r}; valid: {', '.join(EMA_UPDATES)}")
        if interval < 1 or total_epochs < 1:
            raise ValueError(f"interval and total_epochs must be positive, got {interval} and {total_epochs}")
        self.momentum, self.interval, self.total_epochs, self.update = momentum, interval, total_epochs, update
        self.tortoise: nn.Module | None = None
        self._pending_state: dict[str, torch.Tensor] | None = None
        self._paired: tuple[nn.Module, tuple] | None = None  # (hare, its pairs): built once, not every step

    def start(self, model: nn.Module) -> None:
        if self.tortoise is not None:
            return
        self.tortoise = copy.deepcopy(model).requires_grad_(False)
        if self._pending_state is not None:
            self.tortoise.load_state_dict(self._pending_state)
            self._pending_state = None

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple]]:
        """(tortoise floats, hare floats, integer (tortoise, hare) pairs), matched by name."""
        if self._paired is None or self._paired[0] is not model:
            self._paired = (model, self._match(model))
        return self._paired[1]

    def _match(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple]]:
        hare_state = model.state_dict(keep_vars=True)
        tortoise_floats, hare_floats, integers = [], [], []
        for name, tortoise_tensor in self.tortoise.state_dict(keep_vars=True).items():
            hare_tensor = hare_state[name]
            if tortoise_tensor.is_floating_point():
                tortoise_floats.append(tortoise_tensor.data)
                hare_floats.append(hare_tensor.data)
            else:
                integers.append((tortoise_tensor.data, hare_tensor.data))
        return tortoise_floats, hare_floats, integers

    @torch.no_grad()
    def _follow(self, model: nn.Module) -> None:
        self.start(model)
        tortoise_floats, hare_floats, integers = self._pairs(model)
        # lerp(t, h, 1 − μ) = μt + (1 − μ)h, one fused pass over every tensor
        torch._foreach_lerp_(tortoise_floats, hare_floats, 1.0 - self.momentum)
        for tortoise_tensor, hare_tensor in integers:
            tortoise_tensor.copy_(hare_tensor)

    @torch.no_grad()
    def _reset_hare(self, model: nn.Module) -> None:
        tortoise_floats, hare_floats, integers = self._pairs(model)
        torch._foreach_copy_(hare_floats, tortoise_floats)
        for tortoise_tensor, hare_tensor in integers:
            hare_tensor.copy_(tortoise_tensor)

    def after_step(self, model: nn.Module) -> None:
        if self.update == "step":
            self._follow(model)

    def end_epoch(self, model: nn.Module, epoch: int) -> bool:
        self.start(model)
        if self.update == "epoch":
            self._follow(model)
        if not resets_after(epoch, self.interval, self.total_epochs):
            return False
        self._reset_hare(model)
        return True

    def eval_model(self, model: nn.Module) -> nn.Module:
        self.start(model)
        return self.tortoise

    def state_dict(self) -> dict[str, Any]:
        return {"tortoise": None if self.tortoise is None else self.tortoise.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["tortoise"] is None:
            self.tortoise, self._pending_state, self._paired = None, None, None
        elif self.tortoise is None:
            self._pending_state = state["tortoise"]
        else:
            self.tortoise.load_state_dict(state["tortoise"])


def make_strategy(name: str, *, alpha: float, interval: int, momentum: float, ema_update: str, total_epochs: int,
                  generator: torch.Generator) -> ReSLStrategy:
    """A strategy by name: "none", "sp" (Shrink & Perturb), "sp_star" (scheduled SP), "ht" (Hare & Tortoise)."""
    if name == "none":
        return NoReset()
    if name in ("sp", "sp_star"):
        return ShrinkPerturb(alpha, interval, total_epochs, generator, scheduled=name == "sp_star")
    if name == "ht":
        return HareTortoise(momentum, interval, total_epochs, update=ema_update)
    raise ValueError(f"unknown ReSL strategy {name!r}; valid: {', '.join(STRATEGIES)}")
