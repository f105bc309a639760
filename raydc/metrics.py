"""Evaluation metrics: label agreement (ACC, NMI, ARI, VI, CL Change) and embedding geometry
(intra/inter-class distance, silhouette, centroid distance ratio).

Inputs may be torch tensors on any device or numpy arrays; every metric returns a Python float.
Label metrics run on the host; geometry metrics run with torch on the embedding's device.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from sklearn.metrics.cluster import contingency_matrix
from torch import Tensor

ArrayLike = Tensor | np.ndarray

# Label-agreement metrics reported against ground truth (paper Appendix D.1–D.3).
EVAL_METRICS = ("acc", "nmi", "ari")


def _labels(labels: ArrayLike) -> np.ndarray:
    """Flat host copy of a label vector."""
    if isinstance(labels, Tensor):
        return labels.detach().cpu().numpy().ravel()
    return np.asarray(labels).ravel()


def _points(points: ArrayLike, device: torch.device | None = None) -> Tensor:
    """Float tensor view of points; float32/float64 kept, other dtypes promoted to float32."""
    tensor = torch.as_tensor(points, device=device).detach()
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


def contingency(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """(clusters of a × clusters of b) counts; tensors are tabulated on their device, so only k×k leaves it."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        _, ia = torch.unique(a.ravel(), return_inverse=True)
        _, ib = torch.unique(b.to(a.device).ravel(), return_inverse=True)
        ka, kb = int(ia.max()) + 1, int(ib.max()) + 1
        return torch.bincount(ia * kb + ib, minlength=ka * kb).reshape(ka, kb).cpu().numpy()
    return contingency_matrix(_labels(a), _labels(b))


def cluster_acc(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Clustering accuracy: share of samples matched under the best one-to-one cluster→class mapping.

    The Hungarian method runs on the (classes × clusters) contingency table, which may be rectangular;
    with more clusters than classes the unmatched clusters count as errors.
    """
    return _acc_from(contingency(y_true, y_pred))


def label_scores(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[float, float, float]:
    """(ACC, NMI, ARI) from one contingency table: a third of the device round trips of three separate calls."""
    counts = contingency(y_true, y_pred)
    return _acc_from(counts), _nmi_from(counts), _ari_from(counts)


def _acc_from(counts: np.ndarray) -> float:
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / counts.sum())


def _nmi_from(counts: np.ndarray) -> float:
    joint = counts / counts.sum()
    h_a, h_b = _entropy(joint.sum(1)), _entropy(joint.sum(0))
    if h_a == 0.0 and h_b == 0.0:  # two single-cluster partitions agree perfectly (sklearn's convention)
        return 1.0
    mutual = h_a + h_b - _entropy(joint)
    return float(max(0.0, min(1.0, 2.0 * mutual / (h_a + h_b))))


def nmi(a: ArrayLike, b: ArrayLike) -> float:
    """Normalised mutual information with the arithmetic-mean normaliser, 2I/(H(A)+H(B))."""
    return _nmi_from(contingency(a, b))


def _pairs(sizes: np.ndarray) -> float:
    """Number of unordered pairs inside groups of the given sizes."""
    return float((sizes * (sizes - 1) / 2).sum())


def ari(a: ArrayLike, b: ArrayLike) -> float:
    """Adjusted Rand index from the contingency table's pair counts."""
    return _ari_from(contingency(a, b))


def _ari_from(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    both, in_a, in_b = _pairs(counts), _pairs(counts.sum(1)), _pairs(counts.sum(0))
    total = _pairs(counts.sum())
    expected = in_a * in_b / total if total else 0.0
    best = (in_a + in_b) / 2
    if best == expected:  # both trivial partitions, or identical ones without any pair structure
        return 1.0
    return float((both - expected) / (best - expected))


def cl_change(prev_labels: ArrayLike, labels: ArrayLike) -> float:
    """Cluster label change between consecutive clusterings, (1 − NMI) · 100: 0 = identical partition."""
    return (1.0 - nmi(prev_labels, labels)) * 100.0


def _entropy(probabilities: np.ndarray) -> float:
    nonzero = probabilities[probabilities > 0]
    return float(-(nonzero * np.log(nonzero)).sum())


def variation_of_information(a: ArrayLike, b: ArrayLike) -> float:
    """Variation of information H(A|B) + H(B|A) in nats (0 iff the partitions are equal)."""
    joint = contingency(a, b).astype(np.float64)
    joint /= joint.sum()
    vi = 2 * _entropy(joint) - _entropy(joint.sum(1)) - _entropy(joint.sum(0))
    # Rounding can leave a tiny negative value for identical partitions.
    return max(vi, 0.0)


def _class_mean_distances(x: Tensor, labels: ArrayLike, block_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-sample (intra, inter, in_singleton) from per-class sums of Euclidean distances.

    intra: mean distance to the other members of the own class (0 in a singleton class);
    inter: smallest mean distance to the members of another class. Distances are formed
    ``block_size`` rows at a time, so no (n, n) matrix is ever held.
    """
    _, classes = torch.unique(torch.as_tensor(labels, device=x.device).ravel(), return_inverse=True)
    if x.ndim != 2 or classes.shape[0] != x.shape[0]:
        raise ValueError(f"need an (n, d) embedding and n labels, got {tuple(x.shape)} and {classes.shape[0]}")
    one_hot = F.one_hot(classes).to(x.dtype)
    if one_hot.shape[1] < 2:
        raise ValueError("class distances need at least two classes")
    sums = []
    for start in range(0, x.shape[0], block_size):
        block = torch.cdist(x[start : start + block_size], x)
        # The GEMM-based cdist leaves rounding noise on the self-distances; they are exactly 0.
        block.diagonal(offset=start).zero_()
        sums.append(block @ one_hot)
    sums = torch.cat(sums)
    sizes = one_hot.sum(0)
    own = classes.unsqueeze(1)
    own_size = sizes[classes]
    in_singleton = own_size == 1
    intra = sums.gather(1, own).squeeze(1) / (own_size - 1).clamp_min(1)
    inter = (sums / sizes).scatter(1, own, torch.inf).amin(1)
    return intra, inter, in_singleton


def class_distances(
    embedding: ArrayLike, labels: ArrayLike, *, normalize: bool = True, block_size: int = 1024
) -> tuple[float, float]:
    """Mean intra-class and inter-class distance (Appendix D.4, eqs. 12–13) of an embedding.

    Per sample, intra is the mean Euclidean distance to the other members of its class and inter the
    smallest mean distance to the members of any other class; both are averaged over samples. A sample
    alone in its class has intra = 0 (the silhouette convention). ``normalize`` l2-normalises the
    embedding first, following Lehner et al. (2024). Returns (intra, inter).
    """
    x = _points(embedding)
    if normalize:
        x = F.normalize(x, dim=1)
    intra, inter, _ = _class_mean_distances(x, labels, block_size)
    mean_intra, mean_inter = torch.stack([intra.mean(), inter.mean()]).tolist()
    return mean_intra, mean_inter


def silhouette(embedding: ArrayLike, labels: ArrayLike, *, normalize: bool = False, block_size: int = 1024) -> float:
    """Mean silhouette coefficient (b − a) / max(a, b) on Euclidean distances, 0 for singleton classes.

    Matches ``sklearn.metrics.silhouette_score`` when ``normalize`` is False; True scores the
    l2-normalised embedding as in Lehner et al. (2024).
    """
    x = _points(embedding)
    if normalize:
        x = F.normalize(x, dim=1)
    intra, inter, in_singleton = _class_mean_distances(x, labels, block_size)
    scores = (inter - intra) / torch.maximum(intra, inter)
    # Singletons and all-coincident points (0/0) score 0, as in scikit-learn.
    scores = torch.where(in_singleton | scores.isnan(), 0.0, scores)
    return scores.mean().item()


def distance_ratio_share(embedding: ArrayLike, centroids: ArrayLike, threshold: float = 0.9) -> float:
    """Share of samples whose distance ratio ρ = d1/d2 exceeds ``threshold`` (Fig. 7).

    d1 and d2 are the Euclidean distances to the nearest and second-nearest centroid; ρ near 1 means a
    sample sits between two centroids and is easily reassigned. A sample equidistant at 0 from two
    coinciding centroids has ρ = 1.
    """
    x = _points(embedding)
    centers = _points(centroids, device=x.device).to(x.dtype)
    if centers.shape[0] < 2:
        raise ValueError("distance ratios need at least two centroids")
    nearest_two = torch.cdist(x, centers).topk(2, dim=1, largest=False).values
    d1, d2 = nearest_two[:, 0], nearest_two[:, 1]
    ratio = torch.where(d2 > 0, d1 / d2, 1.0)
    return (ratio > threshold).to(x.dtype).mean().item()
