r"""Minimum description length (MDL) of a clustered embedding, in bits.

A two-part code: first the model (number of clusters, their parameters), then the data given the
model (each point's cluster, then its coordinates). Fewer bits = the clustering explains more of
the embedding's structure. The embedding X (n × d) is first standardised per dimension,
z_ij = (x_ij − mean_j) / std_j, so that trials whose embeddings differ in scale are comparable
(a constant dimension is only centred). With k the number of non-empty clusters, n_c their sizes,
μ_cj and σ²_cj the per-cluster, per-dimension mean and variance of z, and δ the coding precision
(in standard deviations):

    L(k)           = log2 n                                  k is an integer in 1..n
    L(parameters)  = ½ log2 n · (2kd + k − 1)                centres, variances, mixing weights,
                                                             each at the optimal precision 1/√n
    L(assignments) = −Σ_c n_c log2(n_c / n)                  cluster ids under their frequencies
    L(data)        = Σ_c Σ_j [ n_c · ½ log2(2π σ²_cj) + S_cj / (2 σ²_cj ln 2) − n_c log2 δ ]

where S_cj = Σ_{i∈c} (z_ij − μ_cj)²: the negative log2-likelihood of every coordinate under the
cluster's axis-aligned Gaussian, discretised to a grid of width δ. At the maximum-likelihood
variance the quadratic term is n_c/2 · log2 e per dimension. Variances are floored at δ², since a
spread below the coding precision cannot be encoded more cheaply.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# One hundredth of a standard deviation: finer than any cluster structure worth describing.
DEFAULT_PRECISION = 0.01


@dataclass(frozen=True)
class DescriptionLength:
    """The parts of an MDL cost, in bits."""

    clusters: float
    parameters: float
    assignments: float
    data: float

    @property
    def total(self) -> float:
        return self.clusters + self.parameters + self.assignments + self.data


def stacked_description_lengths(embeddings: Tensor, labels: Tensor, n_clusters: int,
                                precision: float = DEFAULT_PRECISION) -> dict[str, Tensor]:
    """(M,) float64 parts of the MDL cost (bits) of M clusterings at once: (M, n, d) embeddings and (M, n) labels in
    [0, n_clusters); what a trial's evaluation and raydc select both compute, on the embeddings' device."""
    z = embeddings.double()
    std = z.std(dim=1, unbiased=False, keepdim=True)
    z = (z - z.mean(dim=1, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))
    members, n, d = z.shape
    index = labels.long().unsqueeze(2).expand(-1, -1, d)
    sizes = torch.zeros(members, n_clusters, dtype=torch.float64, device=z.device)
    sizes.scatter_add_(1, labels.long(), torch.ones_like(labels, dtype=torch.float64))
    sums = torch.zeros(members, n_clusters, d, dtype=torch.float64, device=z.device).scatter_add_(1, index, z)
    present = sizes > 0
    counted = torch.where(present, sizes, torch.ones_like(sizes)).unsqueeze(2)
    means = sums / counted
    deviations = (z - means.gather(1, index)) ** 2
    scatter = torch.zeros_like(sums).scatter_add_(1, index, deviations)
    variances = torch.clamp(scatter / counted, min=precision**2)
    data_bits = (sizes.unsqueeze(2) * 0.5 * torch.log2(2 * math.pi * variances)
                 + scatter / (2 * variances * math.log(2))
                 - sizes.unsqueeze(2) * math.log2(precision))
    k = present.sum(1).double()
    shares = torch.where(present, sizes / n, torch.ones_like(sizes))
    return {"clusters": torch.full((members,), math.log2(n), dtype=torch.float64, device=z.device),
            "parameters": 0.5 * math.log2(n) * (2 * k * d + k - 1),
            "assignments": -(sizes * torch.log2(shares)).sum(1),
            "data": (data_bits * present.unsqueeze(2)).sum((1, 2))}


def stacked_mdl_costs(embeddings: Tensor, labels: Tensor, n_clusters: int,
                      precision: float = DEFAULT_PRECISION) -> Tensor:
    """(M,) total MDL costs in bits (stacked_description_lengths summed)."""
    return sum(stacked_description_lengths(embeddings, labels, n_clusters, precision).values())


def description_length(embedding: np.ndarray, labels: np.ndarray,
                       precision: float = DEFAULT_PRECISION) -> DescriptionLength:
    """MDL cost of ``labels`` as a clustering of ``embedding`` (n × d), split into its parts (bits)."""
    x = np.asarray(embedding, dtype=np.float64)
    if x.ndim != 2 or len(x) != len(labels) or len(x) == 0:
        raise ValueError(f"need a non-empty (n, d) embedding and n labels, got {x.shape} and {len(labels)}")
    _, cluster = np.unique(np.asarray(labels).ravel(), return_inverse=True)
    parts = stacked_description_lengths(torch.from_numpy(x).unsqueeze(0), torch.from_numpy(cluster).unsqueeze(0),
                                        int(cluster.max()) + 1, precision)
    return DescriptionLength(**{name: float(value[0]) for name, value in parts.items()})


def mdl_cost(embedding: np.ndarray, labels: np.ndarray, precision: float = DEFAULT_PRECISION) -> float:
    """Total MDL cost in bits (see the module docstring for the encoding)."""
    return description_length(embedding, labels, precision).total
