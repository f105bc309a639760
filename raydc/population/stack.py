"""Many same-shaped centroid models as one: parameters and buffers stacked on a leading member axis.

The trainable parameters of all members live in one (M, P) tensor, so Adam is a handful of elementwise
kernels however many members there are. Each member's own modules are rebound to views of its row, so the
plain path's code (soft resets, reclustering, centroid replacement, embedding) acts on the stack in place.
The forward pass is the member model's own forward, run for every member at once by torch.func.vmap.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call, vmap

from raydc.clustering import CentroidModel
from raydc.clustering.kmeans import nearest
from raydc.clustering.objectives import dcn_update_centers
from raydc.train import EMBED_CHUNK

BETAS = (0.9, 0.999)
EPS = 1e-8
CLIP_EPS = 1e-6  # as torch.nn.utils.clip_grad_norm_


class StackedModels:
    """Parameters and buffers of M CentroidModels of one shape; `template` runs the forward for any member."""

    def __init__(self, models: list[CentroidModel]):
        self.template = models[0]
        # DEC never runs the decoder: its weights get no gradient, so Adam leaves them alone, as in the plain path.
        self.trainable = [name for name, _ in models[0].named_parameters()
                          if models[0].uses_auxiliary or not name.startswith("net.decoder.")]
        self.shapes = {name: p.shape for name, p in models[0].named_parameters()}
        self.slots: dict[str, slice] = {}
        start = 0
        for name in self.trainable:
            self.slots[name] = slice(start, start + self.shapes[name].numel())
            start = self.slots[name].stop
        with torch.no_grad():
            rows = [torch.cat([dict(m.named_parameters())[name].flatten() for name in self.trainable]) for m in models]
            self.flat = torch.stack(rows).requires_grad_()
            held = [dict(m.named_parameters()) | dict(m.named_buffers()) for m in models]
            self.fixed = {name: torch.stack([h[name].detach() for h in held])
                          for name in held[0] if name not in self.slots}
        self.bind(models)

    @property
    def size(self) -> int:
        return self.flat.shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer as an (M, ...) tensor; trainable ones are views of `flat` (gradients flow)."""
        views = {name: self.flat[:, s].view(self.size, *self.shapes[name]) for name, s in self.slots.items()}
        return views | self.fixed

    @torch.no_grad()
    def bind(self, models: list[CentroidModel]) -> None:
        """Point member m's parameters and buffers at row m of the stack."""
        stacked = self.tensors()
        for row, model in enumerate(models):
            for name, tensor in stacked.items():
                owner_name, _, leaf = name.rpartition(".")
                owner = model.get_submodule(owner_name)
                value = tensor[row].detach()
                setattr(owner, leaf, nn.Parameter(value, requires_grad=False) if leaf in owner._parameters else value)

    @torch.no_grad()
    def keep(self, rows: list[int], models: list[CentroidModel]) -> None:
        """Drop every member not in `rows` (e.g. diverged ones); `models` are the kept members, in order."""
        index = torch.tensor(rows, device=self.flat.device)
        self.flat = self.flat[index].requires_grad_()
        self.fixed = {name: t[index] for name, t in self.fixed.items()}
        self.bind(models)

    def terms(self, x: torch.Tensor, x_aug: torch.Tensor | None, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each member's loss terms ((M,) tensors) on its own minibatch x[m] (samples index[m])."""
        def member_terms(tensors, x, x_aug, index):
            return functional_call(self.template, tensors, (x, x_aug, index))
        return vmap(member_terms, in_dims=(0, 0, None if x_aug is None else 0, 0))(self.tensors(), x, x_aug, index)

    def encode(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """(M, B, d) embeddings of x (M, B, ...) per member, or of one x (B, ...) by every member when shared."""
        prefix = "net.encoder."
        encoder = {name.removeprefix(prefix): t for name, t in self.tensors().items() if name.startswith(prefix)}

        def member_encode(tensors, x):
            return functional_call(self.template.net.encoder, tensors, (x.flatten(1),))
        return vmap(member_encode, in_dims=(0, None if shared else 0))(encoder, x)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(M, n, d) embedding of the whole dataset by every member, in chunks that bound memory."""
        chunk = max(1, EMBED_CHUNK // self.size)
        return torch.cat([self.encode(part, shared=True) for part in x.split(chunk)], 1)

    def centers(self) -> torch.Tensor:
        return self.tensors()["centers"].detach()

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """(M, n) nearest centroid of every member's embedding."""
        return vmap(nearest)(z, self.centers())

    @torch.no_grad()
    def dcn_after_step(self, x: torch.Tensor, index: torch.Tensor) -> None:
        """CentroidModel.after_step for every DCN member: reassign the re-embedded batch, move the centres (eq 7)."""
        z = self.encode(x)
        labels = self.predict(z)
        self.fixed["assignments"].scatter_(1, index, labels)
        vmap(dcn_update_centers)(self.fixed["centers"], self.fixed["counts"], z, labels)


class StackedAdam:
    """torch.optim.Adam (β 0.9/0.999, eps 1e-8, no weight decay) on an (M, P) tensor, one learning rate per member."""

    def __init__(self, flat: torch.Tensor, lr: list[float]):
        self.lr = torch.tensor(lr, dtype=torch.float64, device=flat.device)  # step sizes in double, as torch's
        self.exp_avg = torch.zeros_like(flat, requires_grad=False)
        self.exp_avg_sq = torch.zeros_like(flat, requires_grad=False)
        self.steps = 0  # every trainable entry gets a gradient at every step, so one count serves all

    @torch.no_grad()
    def step(self, flat: torch.Tensor, grad: torch.Tensor) -> None:
        # The operations, their order and their float32 constants of the fused CPU/CUDA Adam kernel that
        # make_adam uses, so a member steps bit for bit like a plain trial.
        beta1, beta2 = (float(torch.tensor(b, dtype=torch.float32)) for b in BETAS)
        one = torch.tensor(1.0, dtype=torch.float32)
        self.steps += 1
        self.exp_avg.lerp_(grad, float(one - beta1))
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=float(one - beta2))
        step_size = (self.lr / (1 - BETAS[0] ** self.steps)).to(flat.dtype)
        denom = (self.exp_avg_sq.sqrt() / math.sqrt(1 - BETAS[1] ** self.steps)).add_(EPS)
        flat.addcdiv_(self.exp_avg * step_size.unsqueeze(1), denom, value=-1)

    @torch.no_grad()
    def zero_moments(self, row: int, slot: slice) -> None:
        """Forget member `row`'s moments of the entries in `slot` (BRB's centroid momentum reset)."""
        self.exp_avg[row, slot] = 0
        self.exp_avg_sq[row, slot] = 0

    def keep(self, rows: list[int]) -> None:
        index = torch.tensor(rows, device=self.lr.device)
        self.lr, self.exp_avg, self.exp_avg_sq = self.lr[index], self.exp_avg[index], self.exp_avg_sq[index]


def clip_per_member(grad: torch.Tensor, max_norm: float) -> None:
    """clip_grad_norm_ of each member's gradient row on its own, in place."""
    scale = (max_norm / (grad.norm(dim=1) + CLIP_EPS)).clamp_max(1.0)
    grad.mul_(scale.unsqueeze(1))
