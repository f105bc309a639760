"""Evaluation metrics: label agreement (ACC, NMI, ARI, VI, CL Change) and embedding geometry
(intra/inter-class distance, silhouette, centroid distance ratio).

Label metrics take torch tensors on any device or numpy arrays and return Python floats, on the host; geometry
metrics are stacked: (M, n, d) embeddings in, (M,) tensors out, on the embedding's device (the single-embedding
forms the tests compare them with live in tests/reference_metrics.py).
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


def label_scores(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[float, float, float]:
    """(ACC, NMI, ARI) from one contingency table: a third of the device round trips of three separate calls."""
    return table_scores(contingency(y_true, y_pred))


def stacked_tables(a: Tensor, b: Tensor, ka: int, kb: int) -> Tensor:
    """(M, ka, kb) contingency counts of M pairs of partitions, (M, n) labels a in [0, ka) against b in [0, kb),
    tabulated on the device in one pass."""
    rows = torch.arange(a.shape[0], device=a.device).unsqueeze(1)
    cells = (rows * ka + a) * kb + b
    return torch.bincount(cells.ravel(), minlength=a.shape[0] * ka * kb).reshape(-1, ka, kb)


def _present(counts: np.ndarray) -> np.ndarray:
    """The table without the rows and columns of labels absent from the sample: the table `contingency` makes."""
    return counts[counts.sum(1) > 0][:, counts.sum(0) > 0]


def table_scores(counts: np.ndarray) -> tuple[float, float, float]:
    """(ACC, NMI, ARI) of a (classes × clusters) contingency table."""
    counts = _present(counts)
    return _acc_from(counts), _nmi_from(counts), _ari_from(counts)


def table_change(counts: np.ndarray) -> float:
    """Cluster label change, 1 − NMI, of a (previous × current labels) contingency table: a fraction, like every
    share raydc records (the BRB paper prints it × 100)."""
    return 1.0 - _nmi_from(_present(counts))


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


def _ari_from(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    both, in_a, in_b = _pairs(counts), _pairs(counts.sum(1)), _pairs(counts.sum(0))
    total = _pairs(counts.sum())
    expected = in_a * in_b / total if total else 0.0
    best = (in_a + in_b) / 2
    if best == expected:  # both trivial partitions, or identical ones without any pair structure
        return 1.0
    return float((both - expected) / (best - expected))


def _entropy(probabilities: np.ndarray) -> float:
    nonzero = probabilities[probabilities > 0]
    return float(-(nonzero * np.log(nonzero)).sum())


def variation_of_information(a: ArrayLike, b: ArrayLike) -> float:
    """Variation of information H(A|B) + H(B|A) in nats (0 iff the partitions are equal)."""
    return table_vi(contingency(a, b))


def table_vi(counts: np.ndarray) -> float:
    """Variation of information (nats) of a contingency table of two partitions."""
    joint = counts.astype(np.float64)
    joint /= joint.sum()
    vi = 2 * _entropy(joint) - _entropy(joint.sum(1)) - _entropy(joint.sum(0))
    # Rounding can leave a tiny negative value for identical partitions.
    return max(vi, 0.0)


def _class_mean_distances(x: Tensor, classes: Tensor, n_classes: int, block_size: int) -> tuple[Tensor, ...]:
    """Per-sample (intra, inter, in_singleton) and per-row number of classes present, for (M, n, d) points and
    (M, n) class indices in [0, n_classes): M embeddings scored at once, each against its own classes.

    intra: mean distance to the other members of the own class (0 in a singleton class);
    inter: smallest mean distance to the members of another class present in the row. Distances are formed
    ``block_size`` rows at a time, so no (n, n) matrix is ever held.
    """
    if x.ndim != 3 or classes.shape != x.shape[:2]:
        raise ValueError(f"need (M, n, d) embeddings and (M, n) labels, got {tuple(x.shape)} and "
                         f"{tuple(classes.shape)}")
    one_hot = F.one_hot(classes, n_classes).to(x.dtype)
    sums = []
    for start in range(0, x.shape[1], block_size):
        block = torch.cdist(x[:, start : start + block_size], x)
        # The GEMM-based cdist leaves rounding noise on the self-distances; they are exactly 0.
        block.diagonal(offset=start, dim1=1, dim2=2).zero_()
        sums.append(block @ one_hot)
    sums = torch.cat(sums, 1)
    sizes = one_hot.sum(1, keepdim=True)
    own = classes.unsqueeze(2)
    own_size = sizes.squeeze(1).gather(1, classes)
    intra = sums.gather(2, own).squeeze(2) / (own_size - 1).clamp_min(1)
    # A class absent from a row (possible only for predicted labels) is nobody's nearest other class.
    means = torch.where(sizes > 0, sums / sizes.clamp_min(1), torch.inf)
    inter = means.scatter(2, own, torch.inf).amin(2)
    return intra, inter, own_size == 1, (sizes > 0).sum((1, 2))


def stacked_class_distances(x: Tensor, classes: Tensor, n_classes: int, *,
                            block_size: int = 1024) -> tuple[Tensor, Tensor]:
    """(M,) mean intra- and inter-class distances of (M, n, d) embeddings with (M, n) classes in [0, n_classes),
    on the device (normalise x first for the paper's metric)."""
    intra, inter, _, _ = _class_mean_distances(x, classes, n_classes, block_size)
    return intra.mean(1), inter.mean(1)


def stacked_silhouettes(x: Tensor, labels: Tensor, n_clusters: int, *, block_size: int = 1024) -> Tensor:
    """(M,) mean silhouettes of (M, n, d) embeddings with (M, n) labels in [0, n_clusters), on the device;
    NaN for a row with fewer than two clusters (undefined for a collapsed clustering)."""
    intra, inter, in_singleton, present = _class_mean_distances(x, labels, n_clusters, block_size)
    scores = (inter - intra) / torch.maximum(intra, inter)
    # Singletons and all-coincident points (0/0) score 0, as in scikit-learn.
    scores = torch.where(in_singleton | scores.isnan(), 0.0, scores)
    return torch.where(present > 1, scores.mean(1), torch.nan)


def stacked_ratio_shares(x: Tensor, centers: Tensor, threshold: float = 0.9) -> Tensor:
    """(M,) distance ratio shares of (M, n, d) embeddings against their (M, k, d) centroids, on the device."""
    if centers.shape[1] < 2:
        raise ValueError("distance ratios need at least two centroids")
    nearest_two = torch.cdist(x, centers.to(x.dtype)).topk(2, dim=2, largest=False).values
    d1, d2 = nearest_two[..., 0], nearest_two[..., 1]
    ratio = torch.where(d2 > 0, d1 / d2, 1.0)
    return (ratio > threshold).to(x.dtype).mean(1)


def _cluster_moments(x: Tensor, labels: Tensor, n_clusters: int) -> tuple[Tensor, Tensor, Tensor]:
    """(M, k) sizes, (M, k, d) means (zero where empty) and (M, n) each point's distance to its cluster's mean."""
    one_hot = F.one_hot(labels, n_clusters).to(x.dtype)  # (M, n, k)
    sizes = one_hot.sum(1)
    means = one_hot.transpose(1, 2) @ x / sizes.clamp(min=1).unsqueeze(2)
    own = means.gather(1, labels.unsqueeze(2).expand(-1, -1, x.shape[2]))
    return sizes, means, (x - own).norm(dim=2)


def stacked_calinski_harabasz(x: Tensor, labels: Tensor, n_clusters: int) -> Tensor:
    """(M,) Calinski–Harabasz indices of (M, n, d) embeddings with (M, n) labels, as scikit-learn computes them;
    NaN for a row with fewer than two clusters."""
    x = x.double()
    sizes, means, to_own = _cluster_moments(x, labels, n_clusters)
    k = (sizes > 0).sum(1)
    between = (sizes * (means - x.mean(1, keepdim=True)).pow(2).sum(2)).sum(1)
    within = to_own.pow(2).sum(1)
    n = x.shape[1]
    score = between * (n - k) / (within * (k - 1)).clamp(min=torch.finfo(x.dtype).tiny)
    return torch.where(k > 1, score, torch.nan).float()


def stacked_davies_bouldin(x: Tensor, labels: Tensor, n_clusters: int) -> Tensor:
    """(M,) Davies–Bouldin indices (lower = better separated), as scikit-learn computes them; NaN for a row with
    fewer than two clusters."""
    x = x.double()
    sizes, means, to_own = _cluster_moments(x, labels, n_clusters)
    present = sizes > 0
    spread = torch.zeros_like(sizes).scatter_add_(1, labels, to_own) / sizes.clamp(min=1)  # (M, k)
    separation = torch.cdist(means, means)  # (M, k, k)
    ratio = (spread.unsqueeze(2) + spread.unsqueeze(1)) / separation
    ratio = torch.where(separation > 0, ratio, torch.inf)  # coincident centres: as bad as it gets (sklearn: inf)
    pair = present.unsqueeze(2) & present.unsqueeze(1) & ~torch.eye(n_clusters, dtype=torch.bool, device=x.device)
    worst = torch.where(pair, ratio, -torch.inf).amax(2)
    k = present.sum(1)
    score = torch.where(present, worst, 0.0).sum(1) / k.clamp(min=1)
    return torch.where(k > 1, score, torch.nan).float()
