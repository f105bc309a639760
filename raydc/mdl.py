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


def standardise(embedding: np.ndarray) -> np.ndarray:
    """Per-dimension z-scores in float64; a constant dimension is centred and left unscaled."""
    x = np.asarray(embedding, dtype=np.float64)
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)


def description_length(embedding: np.ndarray, labels: np.ndarray,
                       precision: float = DEFAULT_PRECISION) -> DescriptionLength:
    """MDL cost of ``labels`` as a clustering of ``embedding`` (n × d), split into its parts (bits)."""
    z = standardise(embedding)
    if z.ndim != 2 or len(z) != len(labels) or len(z) == 0:
        raise ValueError(f"need a non-empty (n, d) embedding and n labels, got {z.shape} and {len(labels)}")
    n, d = z.shape
    _, cluster, sizes = np.unique(np.asarray(labels).ravel(), return_inverse=True, return_counts=True)
    k = len(sizes)
    sums = np.zeros((k, d))
    np.add.at(sums, cluster, z)
    means = sums / sizes[:, None]
    scatter = np.zeros((k, d))
    np.add.at(scatter, cluster, (z - means[cluster]) ** 2)
    variances = np.maximum(scatter / sizes[:, None], precision**2)
    data_bits = (sizes[:, None] * 0.5 * np.log2(2 * math.pi * variances)
                 + scatter / (2 * variances * math.log(2))
                 - sizes[:, None] * math.log2(precision)).sum()
    return DescriptionLength(
        clusters=math.log2(n),
        parameters=0.5 * math.log2(n) * (2 * k * d + k - 1),
        assignments=float(-(sizes * np.log2(sizes / n)).sum()),
        data=float(data_bits),
    )


def mdl_cost(embedding: np.ndarray, labels: np.ndarray, precision: float = DEFAULT_PRECISION) -> float:
    """Total MDL cost in bits (see the module docstring for the encoding)."""
    return description_length(embedding, labels, precision).total
