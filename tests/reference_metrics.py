"""Single-embedding forms of raydc's stacked metrics (raydc.evaluation.metrics), the references the tests check the library
against: scikit-learn's definitions on one embedding or one pair of labelings."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from raydc.evaluation.metrics import (ArrayLike, _acc_from, _ari_from, _points, contingency, stacked_class_distances,
                           stacked_ratio_shares, stacked_silhouettes, table_change)


def cluster_acc(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Clustering accuracy: share of samples matched under the best one-to-one cluster→class mapping.

    The Hungarian method runs on the (classes × clusters) contingency table, which may be rectangular;
    with more clusters than classes the unmatched clusters count as errors.
    """
    return _acc_from(contingency(y_true, y_pred))


def ari(a: ArrayLike, b: ArrayLike) -> float:
    """Adjusted Rand index from the contingency table's pair counts."""
    return _ari_from(contingency(a, b))


def cl_change(prev_labels: ArrayLike, labels: ArrayLike) -> float:
    """Cluster label change between consecutive clusterings, 1 − NMI in [0, 1]: 0 = identical partition."""
    return table_change(contingency(prev_labels, labels))


def _single(embedding: ArrayLike, labels: ArrayLike, normalize: bool) -> tuple[Tensor, Tensor, int]:
    """(1, n, d) points and (1, n) class indices of one embedding, and its number of classes."""
    x = _points(embedding)
    if normalize:
        x = F.normalize(x, dim=1)
    present, classes = torch.unique(torch.as_tensor(labels, device=x.device).ravel(), return_inverse=True)
    if x.ndim != 2 or classes.shape[0] != x.shape[0]:
        raise ValueError(f"need an (n, d) embedding and n labels, got {tuple(x.shape)} and {classes.shape[0]}")
    if len(present) < 2:
        raise ValueError("class distances need at least two classes")
    return x.unsqueeze(0), classes.unsqueeze(0), len(present)


def class_distances(
    embedding: ArrayLike, labels: ArrayLike, *, normalize: bool = True, block_size: int = 1024
) -> tuple[float, float]:
    """Mean intra-class and inter-class distance (Appendix D.4, eqs. 12–13) of an embedding.

    Per sample, intra is the mean Euclidean distance to the other members of its class and inter the
    smallest mean distance to the members of any other class; both are averaged over samples. A sample
    alone in its class has intra = 0 (the silhouette convention). ``normalize`` l2-normalises the
    embedding first, following Lehner et al. (2024). Returns (intra, inter).
    """
    x, classes, n_classes = _single(embedding, labels, normalize)
    mean_intra, mean_inter = stacked_class_distances(x, classes, n_classes, block_size=block_size)
    return mean_intra.item(), mean_inter.item()


def silhouette(embedding: ArrayLike, labels: ArrayLike, *, normalize: bool = False, block_size: int = 1024) -> float:
    """Mean silhouette coefficient (b − a) / max(a, b) on Euclidean distances, 0 for singleton classes.

    Matches ``sklearn.metrics.silhouette_score`` when ``normalize`` is False; True scores the
    l2-normalised embedding as in Lehner et al. (2024).
    """
    x, classes, n_classes = _single(embedding, labels, normalize)
    return stacked_silhouettes(x, classes, n_classes, block_size=block_size).item()


def distance_ratio_share(embedding: ArrayLike, centroids: ArrayLike, threshold: float = 0.9) -> float:
    """Share of samples whose distance ratio ρ = d1/d2 exceeds ``threshold`` (Fig. 7).

    d1 and d2 are the Euclidean distances to the nearest and second-nearest centroid; ρ near 1 means a
    sample sits between two centroids and is easily reassigned. A sample equidistant at 0 from two
    coinciding centroids has ρ = 1.
    """
    x = _points(embedding)
    centers = _points(centroids, device=x.device).to(x.dtype)
    return stacked_ratio_shares(x.unsqueeze(0), centers.unsqueeze(0), threshold).item()
