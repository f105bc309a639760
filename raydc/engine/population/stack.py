"""Many same-shaped centroid models as one: parameters and buffers stacked on a leading member axis.

Every parameter is one (M, ...) tensor holding all members, so a forward, a backward and an Adam step are the same
few kernels however many members there are. Each member's own modules are rebound to views of its row, so the
plain path's code (soft resets, reclustering, centroid replacement, embedding) acts on the stack in place.
The forward pass is the member model's own forward, run for every member at once by torch.func.vmap; BatchNorm's
running statistics are stacked buffers too, so each member's are updated in place by its own batches.
"""
from __future__ import annotations

import copy
from functools import partial

import torch
from torch import nn
from torch.func import functional_call, vmap

from raydc.clustering import CentroidModel
from raydc.clustering.algorithms import DCN_SWEEP_RATE
from raydc.clustering.kmeans import nearest
from raydc.clustering.objectives import dcn_move_centers, dcn_update_centers
from raydc.compute.precision import network_precision
from raydc.engine.state import EMBED_CHUNK

BETAS = (0.9, 0.999)
EPS = 1e-8
CLIP_EPS = 1e-6  # as torch.nn.utils.clip_grad_norm_


class StackedModels:
    """Parameters and buffers of M CentroidModels of one shape; `template` runs the forward for any member."""

    def __init__(self, models: list[CentroidModel]):
        self.template = _vmap_template(models[0])
        # DEC never runs the decoder: its weights get no gradient, so Adam leaves them alone, as in the plain path.
        trainable = [name for name, _ in models[0].named_parameters()
                     if models[0].uses_auxiliary or not name.startswith("net.decoder.")]
        with torch.no_grad():
            held = [dict(m.named_parameters()) | dict(m.named_buffers()) for m in models]
            stacked = {name: torch.stack([h[name].detach() for h in held]) for name in held[0]}
        # vmap returns the gradient of an (M, a, b) matrix laid out as (M, b, a): storing those matrices that way
        # makes every gradient contiguous, so the fused Adam reads it without a copy; the forward sees (M, a, b) views.
        self.transposed = {name for name in trainable if stacked[name].dim() == 3}
        self.params = {name: _store(stacked.pop(name), name in self.transposed).requires_grad_() for name in trainable}
        self.fixed = stacked
        self.bind(models)

    @property
    def size(self) -> int:
        return len(self.fixed["counts"])

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer as an (M, ...) tensor of the member's shape."""
        return {name: t.transpose(1, 2) if name in self.transposed else t for name, t in self.params.items()} | self.fixed

    def gradients(self, loss: torch.Tensor) -> list[torch.Tensor]:
        """Gradient of `loss` with respect to every trainable (M, ...) parameter, in `params` order."""
        return list(torch.autograd.grad(loss, list(self.params.values())))

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
        index = torch.tensor(rows, dtype=torch.long, device=self.fixed["counts"].device)  # long even when empty
        self.params = {name: t[index].requires_grad_() for name, t in self.params.items()}
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
    def embed(self, x: torch.Tensor, precision: str = "float32") -> torch.Tensor:
        """(M, n, d) float32 embedding of the whole dataset by every member in evaluation mode (BatchNorm's running
        statistics, as state.embed), run at `precision` (network_precision), in chunks that bound memory."""
        chunk = max(1, EMBED_CHUNK // self.size)
        self.template.eval()
        try:
            with network_precision(precision, x.device.type):
                return torch.cat([self.encode(part, shared=True).float() for part in x.split(chunk)], 1)
        finally:
            self.template.train()

    def centers(self) -> torch.Tensor:
        return self.tensors()["centers"].detach()

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """(M, n) nearest centroid of every member's embedding."""
        return vmap(nearest)(z, self.centers())

    @torch.no_grad()
    def dcn_after_step(self, x: torch.Tensor, index: torch.Tensor) -> None:
        """CentroidModel.after_step for every DCN member: reassign the re-embedded batch, move the centres (eq 7)."""
        z = self.encode(x).float()  # centres and counts stay float32 under bf16 autocast
        labels = self.predict(z)
        self.fixed["assignments"].scatter_(1, index, labels)
        vmap(dcn_update_centers, out_dims=None)(self.fixed["centers"], self.fixed["counts"], z, labels)  # in place

    @torch.no_grad()
    def move_dcn_centers(self, z: torch.Tensor) -> None:
        """CentroidModel.move_centers for every member: z is (M, B, d), a batch of each member's own order."""
        vmap(partial(dcn_move_centers, rate=DCN_SWEEP_RATE), out_dims=None)(self.fixed["centers"], z)  # in place


class _BiasAfterProduct(nn.Linear):
    """nn.Linear as x·Wᵀ + b: under vmap that is a batched product and an add, where F.linear adds a kernel scaling the
    bias in each direction; the arithmetic is the same."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.weight.T
        return out + self.bias.to(out.dtype)  # a float32 bias would promote bf16 autocast output; F.linear keeps bf16


def _vmap_template(model: CentroidModel) -> CentroidModel:
    """A copy of a member's model (functional_call swaps in the stacked tensors) with vmap-friendly linear layers."""
    template = copy.deepcopy(model).train()  # steps run in training mode, as Trial.train_epoch's
    for module in template.modules():
        if type(module) is nn.Linear and module.bias is not None:
            module.__class__ = _BiasAfterProduct
    return template


class StackedAdam:
    """torch.optim.Adam (β 0.9/0.999, eps 1e-8, no weight decay) on (M, ...) parameters, one learning rate per member.

    Members that share a learning rate are updated by one call of the fused Adam kernel that make_adam uses, over
    their rows of every tensor: one pass over parameters, gradients and moments, with fit()'s arithmetic.
    """

    def __init__(self, params: dict[str, torch.Tensor], lr: list[float]):
        first = next(iter(params.values()))
        self.lr = list(lr)
        self.names = list(params)
        self.exp_avg = [torch.zeros_like(p) for p in params.values()]
        self.exp_avg_sq = [torch.zeros_like(p) for p in params.values()]
        # One count serves all (every trainable entry gets a gradient at every step); a device tensor, so a step
        # recorded in a CUDA graph reads the current count at every replay.
        self.steps = torch.zeros((), dtype=torch.float32, device=first.device)

    @torch.no_grad()
    def step(self, params: dict[str, torch.Tensor], grads: list[torch.Tensor]) -> None:
        self.steps += 1
        grads = [g.contiguous() for g in grads]  # the fused kernel reads rows as dense memory (a no-op by design)
        rows = [_rows(t) for t in (*params.values(), *grads, *self.exp_avg, *self.exp_avg_sq)]
        n = len(grads)
        for lr, members in _members_by_value(self.lr).items():
            p, g, m, v = ([rows[k * n + i][row] for i in range(n) for row in members] for k in range(4))
            torch._fused_adam_(p, g, m, v, [], [self.steps] * len(p), lr=lr, beta1=BETAS[0], beta2=BETAS[1],
                               weight_decay=0.0, eps=EPS, amsgrad=False, maximize=False)

    @torch.no_grad()
    def zero_moments(self, row: int, name: str) -> None:
        """Forget member `row`'s moments of parameter `name` (BRB's centroid momentum reset)."""
        i = self.names.index(name)
        self.exp_avg[i][row].zero_()
        self.exp_avg_sq[i][row].zero_()

    def keep(self, rows: list[int]) -> None:
        index = torch.tensor(rows, dtype=torch.long, device=self.steps.device)
        self.lr = [self.lr[r] for r in rows]
        self.exp_avg = [m[index] for m in self.exp_avg]
        self.exp_avg_sq = [v[index] for v in self.exp_avg_sq]


def _rows(stacked: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Row views of an (M, ...) tensor, outside autograd (the optimizer writes them in place)."""
    return stacked.detach().unbind(0)


def _members_by_value(values: list[float]) -> dict[float, list[int]]:
    groups: dict[float, list[int]] = {}
    for row, value in enumerate(values):
        groups.setdefault(value, []).append(row)
    return groups


def _store(stacked: torch.Tensor, transposed: bool) -> torch.Tensor:
    return stacked.transpose(1, 2).contiguous() if transposed else stacked


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(M,) values shaped to broadcast over an (M, ...) tensor."""
    return values.view(-1, *[1] * (like.dim() - 1))


def clip_per_member(grads: list[torch.Tensor], max_norm: float) -> None:
    """clip_grad_norm_ of each member's gradients on their own, in place."""
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    scale = (max_norm / (norms + CLIP_EPS)).clamp_max(1.0)
    for g in grads:
        g.mul_(_per_member(scale, g))
