"""Label-free scores of a trial's final clustering that look beyond its own embedding.

An internal index computed in a trial's own embedding is biased toward that trial's partition: the network was
trained to make exactly that partition look compact (ACE, Wang & Ye 2024). Two remedies, both over the trials
of one dataset:

    agreement   mean NMI between the trial's partition and every other trial's (other configurations and
                seeds alike): partitions that many independently trained networks reach describe the data,
                while failures tend to fail each in its own way. Misleads when most trials share one failure
                mode (e.g. a grid where most settings collapse to the same few clusters).
    cross_ch    each partition scored by Calinski–Harabasz in every *other* trial's embedding, ranked among all
                partitions there (0 = best, 1 = worst) and averaged over embeddings (ACE's rank aggregation).
                Misleads when the other embeddings are mostly poor: they then reward what they themselves show.

Both use one fixed subsample of the samples (SAMPLE_SIZE) and skip degenerate partitions as judges.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, normalized_mutual_info_score

SAMPLE_SIZE = 3000  # samples every cross score reads: NMI and CH are stable well below this on 10 clusters
SAMPLE_SEED = 0


def own_indices(embedding: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Calinski–Harabasz (higher = tighter, better separated) and Davies–Bouldin (lower = better) of a partition
    in its own embedding; NaN for fewer than two clusters."""
    if len(np.unique(labels)) < 2:
        return {"calinski_harabasz": np.nan, "davies_bouldin": np.nan}
    return {"calinski_harabasz": float(calinski_harabasz_score(embedding, labels)),
            "davies_bouldin": float(davies_bouldin_score(embedding, labels))}


def sample_index(n: int) -> np.ndarray:
    """The fixed subsample (sorted indices) every cross score of a dataset of n samples reads."""
    return np.sort(np.random.default_rng(SAMPLE_SEED).permutation(n)[:SAMPLE_SIZE])


def agreement(labels: list[np.ndarray], judges: np.ndarray) -> np.ndarray:
    """(T,) mean NMI of each partition with every other judging partition (judges: (T,) bool); partitions of
    the sample_index samples."""
    sampled = labels
    scores = np.full(len(labels), np.nan)
    nmi = np.eye(len(labels))
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            nmi[i, j] = nmi[j, i] = normalized_mutual_info_score(sampled[i], sampled[j])
    for i in range(len(labels)):
        others = judges.copy()
        others[i] = False
        if others.any():
            scores[i] = nmi[i, others].mean()
    return scores


def _calinski_harabasz(x: np.ndarray, labels: np.ndarray) -> float:
    """CH of `labels` in x (n, d), as scikit-learn computes it; NaN for one cluster."""
    present, codes = np.unique(labels, return_inverse=True)
    k = len(present)
    if k < 2:
        return np.nan
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    sums = np.zeros((k, x.shape[1]))
    np.add.at(sums, codes, x)
    means = sums / counts[:, None]
    overall = x.mean(0)
    between = float((counts * ((means - overall) ** 2).sum(1)).sum())
    within = float(((x - means[codes]) ** 2).sum())
    return np.inf if within == 0 else between * (len(x) - k) / (within * (k - 1))


def cross_rank(embeddings: list[np.ndarray], labels: list[np.ndarray], judges: np.ndarray) -> np.ndarray:
    """(T,) mean normalised rank (0 = best) of each partition's CH in the judging embeddings other than its own;
    embeddings and partitions of the sample_index samples."""
    sampled = labels
    t = len(labels)
    ranks = np.full((t, t), np.nan)  # ranks[j, i]: partition i's rank in embedding j
    for j in np.flatnonzero(judges):
        x = embeddings[j].astype(np.float64)
        x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
        values = np.array([_calinski_harabasz(x, lab) for lab in sampled])
        values = np.where(np.isnan(values), -np.inf, values)  # a single cluster is the worst partition anywhere
        order = (-values).argsort(kind="stable").argsort(kind="stable")
        ranks[j] = order / max(t - 1, 1)
    np.fill_diagonal(ranks, np.nan)  # never judged in its own embedding
    with np.errstate(all="ignore"):
        counted = (~np.isnan(ranks)).sum(0)
        return np.where(counted > 0, np.nansum(ranks, 0) / np.maximum(counted, 1), np.nan)
