"""LFSS — Learning From Sample Stability (Section 4, eqs 4–10, Algorithm 1).

An online network f_o and predictor h learn by self-distillation with noise (eq 9) from a momentum target
f_t, plus λ times an instance-level (eq 4) and, after η warm-up epochs, a cluster-level (eq 8) contrastive
loss. A predecessor f_p — the target as it was at the end of the previous epoch — measures how stable each
sample's representation is (eq 6); the least stable share δ is kept out of the cluster centres (eq 7).

How the paper's text is read where it is inconsistent:

* Eq 7 writes C_i ∪ S; it means C_i ∩ S, the stable members of cluster i (a union would put every stable
  sample into every centre, making all centres nearly equal).
* The denominators of eqs 4 and 8 include the positive pair (k = i), so each term is a cross-entropy over
  the batch (eq 4) or the clusters (eq 8) with the positive on the diagonal. The paper calls eq 4 an
  extension of NT-Xent, whose indicator 1[k ≠ i] only removes an anchor's similarity with itself; when
  anchors and candidates come from different networks that pair does not exist, and dropping the positive
  instead would leave a loss that is not a proper cross-entropy (it can go negative). ProPos, which eq 8
  follows, keeps the positive too.
* Algorithm 1's ``if i > η`` means epoch > η (Section 4: "train for η epochs using only L_S and L_I").
  Epochs count from 0 as the trainer counts them, so the cluster loss is 0 while epoch ≤ η.
* Algorithm 1 copies f_t into f_p after every step, which would make f_p lag one step; Section 4 says f_p
  is f_t "in the last epoch". Here f_p ← f_t once, at the end of each epoch, so the stability measured at
  the end of epoch e is cos(f_t(x_i) at the end of e, f_t(x_i) at the end of e − 1) on un-augmented
  samples (eq 6 has no view superscript), and it selects the stable set S used during epoch e + 1.
  Before the first measurement every sample counts as stable.
* Eqs 4 and 9 average over N but are computed on a minibatch: they are batch means. Eq 7's centres are
  batch-wise (Section 4): c^o from f_o(x^o), c^t from f_t(x^t), over the batch's stable members; a cluster
  with no such member in the batch has no centre and is left out of eq 8.
* Eq 7 sums raw representations; each is l2-normalised first, so every member weighs the same (ProPos).

Choices the paper leaves open: f_t and f_p always run in evaluation mode, so using them never changes
their BatchNorm statistics (the target receives the online statistics through the momentum update);
k-means (one k-means++ start) runs on the target's raw embedding of every un-augmented sample.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from raydc.clustering.kmeans import kmeans, nearest

EMBED_CHUNK = 8192
DECILES = tuple(range(1, 10))
N_BINS = len(DECILES) + 1
# Buffers whose length is the dataset size, unknown until the first epoch; loading resizes them.
DATASET_BUFFERS = ("assignments", "stable", "previous_bins")


# --- the equations as pure functions ----------------------------------------------------------------
def sample_stability(current: Tensor, previous: Tensor) -> Tensor:
    """(n,) cosine similarity of each row of ``current`` with the same row of ``previous`` (eq 6's sim)."""
    return F.cosine_similarity(current, previous, dim=1)


def stable_count(n: int, unstable_ratio: float) -> int:
    """N_s = ⌊N(1 − δ)⌋; rounding first keeps e.g. 10·(1 − 0.9) = 0.999… from flooring to 0."""
    return math.floor(round(n * (1.0 - unstable_ratio), 9))


def stable_mask(stability: Tensor, unstable_ratio: float) -> Tensor:
    """(n,) bool marking the N_s most stable samples, the set S of eq 6."""
    n = stability.shape[0]
    most_stable = stability.topk(stable_count(n, unstable_ratio)).indices
    return torch.zeros(n, dtype=torch.bool, device=stability.device).index_fill_(0, most_stable, True)


def instance_loss(online: Tensor, predecessor: Tensor, temperature: float) -> Tensor:
    """Eq 4: row i of ``online`` (f_o(x_i^o)) against every row of ``predecessor`` (f_p(x_k^o)).

    Cosine similarities / τ, cross-entropy with the positive f_p(x_i^o) on the diagonal (the denominator
    includes it, see the module docstring); the predecessor gets no gradient.
    """
    logits = F.normalize(online, dim=1) @ F.normalize(predecessor.detach(), dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(online), device=online.device))


def cluster_centres(features: Tensor, labels: Tensor, mask: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Eq 7: l2-normalised sum of the features of each cluster's members with ``mask`` set (C_i ∩ S).

    Returns (centres (k, d), present (k,) bool); a cluster without such members has a zero centre.
    """
    members = F.one_hot(labels, k).to(features.dtype) * mask.unsqueeze(1).to(features.dtype)
    return F.normalize(members.T @ features, dim=1), members.sum(0) > 0


def cluster_loss(centres_online: Tensor, centres_target: Tensor, present: Tensor, temperature: float) -> Tensor:
    """Eq 8 over the present clusters: c_i^o against every present c_k^t, positive on the diagonal.

    Absent clusters are neither anchors nor candidates. Fewer than two present clusters give 0 (no
    negatives), still attached to the graph. The target centres get no gradient.
    """
    k = len(centres_online)
    logits = F.normalize(centres_online, dim=1) @ F.normalize(centres_target.detach(), dim=1).T / temperature
    # The dtype's lowest finite value, not -inf: an absent row then stays finite and is simply weighted 0.
    logits = logits.masked_fill(~present.unsqueeze(0), torch.finfo(logits.dtype).min)
    per_cluster = F.cross_entropy(logits, torch.arange(k, device=logits.device), reduction="none")
    n_present = present.sum()
    mean = (per_cluster * present).sum() / n_present.clamp_min(1)
    return mean * (n_present >= 2)


def self_distillation_loss(target: Tensor, predicted: Tensor) -> Tensor:
    """Eq 9: mean of 2 − 2·cos(target, predicted); the target gets no gradient."""
    return (2 - 2 * F.cosine_similarity(predicted, target.detach(), dim=1)).mean()


def stability_summary(stability: Tensor, previous_bins: Tensor | None) -> tuple[dict[str, Tensor], Tensor]:
    """Mean, deciles and the share of samples that changed decile bin since ``previous_bins``.

    Bins 0..9 are cut at this epoch's deciles (linear interpolation, as numpy's percentile). Values are
    0-d tensors, so nothing waits for the device; the bin change is NaN without previous bins.
    """
    quantiles = torch.tensor(DECILES, dtype=stability.dtype, device=stability.device) / N_BINS
    edges = torch.quantile(stability, quantiles)
    bins = torch.bucketize(stability, edges)
    if previous_bins is None:
        change = torch.full((), math.nan, dtype=stability.dtype, device=stability.device)
    else:
        change = (bins != previous_bins).to(stability.dtype).mean()
    summary = {"stability_mean": stability.mean()}
    summary.update({f"stability_d{d}": edge for d, edge in zip(DECILES, edges)})
    summary["stability_bin_change"] = change
    return summary, bins


# --- the model ---------------------------------------------------------------------------------------
def _frozen_copy(net: nn.Module) -> nn.Module:
    twin = copy.deepcopy(net)
    twin.requires_grad_(False)
    return twin.eval()


def _embedding_dim(net: nn.Module) -> int:
    layer = getattr(net, "embedding_layer", None)
    if not isinstance(layer, nn.Linear):
        raise TypeError("LFSS: pass embedding_dim, or give the net an `embedding_layer` (nn.Linear) property")
    return layer.out_features


@torch.no_grad()
def _embed(net: nn.Module, x: Tensor) -> Tensor:
    """Embeddings of x in evaluation mode, in chunks that bound memory."""
    was_training = net.training
    net.eval()
    z = torch.cat([net.encode(chunk) for chunk in x.split(EMBED_CHUNK)])
    net.train(was_training)
    return z


def _check_hyperparameters(n_clusters: int, temperature: float, noise: float, weight: float,
                           unstable_ratio: float, target_momentum: float) -> None:
    checks = {
        "n_clusters must be at least 1": n_clusters >= 1,
        "temperature must be positive": temperature > 0,
        "noise must be non-negative": noise >= 0,
        "weight must be non-negative": weight >= 0,
        "unstable_ratio must be in [0, 1]": 0 <= unstable_ratio <= 1,
        "target_momentum must be in [0, 1]": 0 <= target_momentum <= 1,
    }
    failed = [message for message, ok in checks.items() if not ok]
    if failed:
        raise ValueError("LFSS: " + "; ".join(failed))


class LFSS(nn.Module):
    """LFSS behind the trainer's model protocol: forward → loss terms, after_step, start/end of epoch, predict.

    ``net`` is the online network f_o (``encode(x) -> (B, d)``); the target f_t and predecessor f_p are
    frozen copies of it, h is a BYOL predictor Linear–BatchNorm–ReLU–Linear. ``embedding_dim`` defaults to
    ``net.embedding_layer.out_features``. Noise and k-means draw from ``generator``.
    """

    def __init__(self, net: nn.Module, n_clusters: int, *, temperature: float = 0.5, noise: float = 0.001,
                 weight: float = 0.1, unstable_ratio: float = 0.1, warmup_epochs: int = 200,
                 target_momentum: float = 0.99, predictor_hidden: int = 512, generator: torch.Generator,
                 embedding_dim: int | None = None):
        super().__init__()
        _check_hyperparameters(n_clusters, temperature, noise, weight, unstable_ratio, target_momentum)
        device = next(net.parameters()).device
        dim = embedding_dim if embedding_dim is not None else _embedding_dim(net)
        self.net = net
        self.target = _frozen_copy(net)
        self.predecessor = _frozen_copy(net)
        self.predictor = nn.Sequential(nn.Linear(dim, predictor_hidden), nn.BatchNorm1d(predictor_hidden),
                                       nn.ReLU(), nn.Linear(predictor_hidden, dim)).to(device)
        self.n_clusters = n_clusters
        self.temperature = temperature
        self.noise = noise
        self.weight = weight
        self.unstable_ratio = unstable_ratio
        self.warmup_epochs = warmup_epochs
        self.target_momentum = target_momentum
        self.generator = generator
        self.epoch = -1
        self.register_buffer("centers", torch.zeros(n_clusters, dim, device=device))
        self.register_buffer("assignments", torch.zeros(0, dtype=torch.long, device=device))
        self.register_buffer("stable", torch.zeros(0, dtype=torch.bool, device=device))
        self.register_buffer("previous_bins", torch.zeros(0, dtype=torch.long, device=device))

    @property
    def eval_net(self) -> nn.Module:
        """The target network: it embeds for evaluation and for the final clustering."""
        return self.target

    @property
    def clustering_active(self) -> bool:
        return self.epoch > self.warmup_epochs

    def train(self, mode: bool = True) -> LFSS:
        super().train(mode)
        self.target.eval()
        self.predecessor.eval()
        return self

    # --- one step ----------------------------------------------------------------------------------
    def forward(self, x_online_view: Tensor, x_target_view: Tensor | None, index: Tensor) -> dict[str, Tensor]:
        """Loss terms of the batch (samples ``index``); 'loss' = L_S + λ(L_I + L_C) is optimised (eq 10)."""
        if x_target_view is None:
            x_target_view = x_online_view
        online = self.net.encode(x_online_view)
        with torch.no_grad():
            target = self.target.encode(x_target_view)
            predecessor = self.predecessor.encode(x_online_view)
        predicted = self.predictor(online + self.noise * self._standard_normal(online))
        selfdistill = self_distillation_loss(target, predicted)
        instance = instance_loss(online, predecessor, self.temperature)
        cluster = self._cluster_term(online, target, index) if self.clustering_active else online.new_zeros(())
        return {"loss": selfdistill + self.weight * (instance + cluster), "loss_selfdistill": selfdistill,
                "loss_instance": instance, "loss_cluster": cluster}

    def _standard_normal(self, like: Tensor) -> Tensor:
        # Drawn on the generator's device and moved, so the noise is reproducible from its seed.
        return torch.randn(like.shape, generator=self.generator, device=self.generator.device,
                           dtype=like.dtype).to(like.device)

    def _cluster_term(self, online: Tensor, target: Tensor, index: Tensor) -> Tensor:
        labels = self.assignments[index]
        members = self.stable[index] if self.stable.numel() else torch.ones_like(labels, dtype=torch.bool)
        centres_online, present = cluster_centres(F.normalize(online, dim=1), labels, members, self.n_clusters)
        centres_target, _ = cluster_centres(F.normalize(target, dim=1), labels, members, self.n_clusters)
        return cluster_loss(centres_online, centres_target, present, self.temperature)

    @torch.no_grad()
    def after_step(self, x: Tensor, index: Tensor) -> None:
        """Momentum update θ_t ← mθ_t + (1 − m)θ_o of the target's parameters and floating buffers."""
        step = 1.0 - self.target_momentum
        # One fused update over all tensors instead of one kernel launch per tensor.
        torch._foreach_lerp_(list(self.target.parameters()), list(self.net.parameters()), step)
        for target_buffer, online_buffer in zip(self.target.buffers(), self.net.buffers()):
            if target_buffer.is_floating_point():
                target_buffer.lerp_(online_buffer, step)
            else:  # counters such as BatchNorm's num_batches_tracked
                target_buffer.copy_(online_buffer)

    # --- epoch boundaries ---------------------------------------------------------------------------
    @torch.no_grad()
    def start_epoch(self, epoch: int, x_all: Tensor) -> None:
        """Record the epoch; after warm-up, k-means on the target's embedding of all samples gives C_i."""
        self.epoch = epoch
        if self.clustering_active:
            self.assignments = kmeans(_embed(self.target, x_all), self.n_clusters, self.generator)[1]

    @torch.no_grad()
    def end_epoch(self, x_all: Tensor) -> dict[str, float]:
        """Measure stability (eq 6), keep the stable set for the next epoch, then f_p ← f_t.

        Returns the stability summary as floats (one host synchronisation).
        """
        stability = sample_stability(_embed(self.target, x_all), _embed(self.predecessor, x_all))
        self.stable = stable_mask(stability, self.unstable_ratio)
        previous = self.previous_bins if self.previous_bins.shape == stability.shape else None
        summary, self.previous_bins = stability_summary(stability, previous)
        self.predecessor.load_state_dict(self.target.state_dict())
        return dict(zip(summary, torch.stack(list(summary.values())).tolist()))

    @torch.no_grad()
    def predict(self, z: Tensor) -> Tensor:
        """Clusters of the embedding z by k-means on it (Algorithm 1 ends by applying k-means to the trained
        representation), so every evaluation scores the current network; its centres are kept for the distance
        ratios."""
        self.centers.copy_(kmeans(z, self.n_clusters, self.generator)[0])
        return nearest(z, self.centers.to(z.dtype))

    # --- checkpoints --------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        for name in DATASET_BUFFERS:
            stored = state_dict.get(prefix + name)
            if stored is not None:  # resize first: these buffers are empty until the first epoch
                setattr(self, name, torch.empty_like(stored, device=self.centers.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
