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
import torch
from sklearn.metrics import normalized_mutual_info_score

from raydc.evaluation.metrics import stacked_calinski_harabasz, stacked_davies_bouldin

SAMPLE_SIZE = 3000  # samples every cross score reads: NMI and CH are stable well below this on 10 clusters
SAMPLE_SEED = 0


def own_indices(embedding: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Calinski–Harabasz (higher = tighter, better separated) and Davies–Bouldin (lower = better) of a partition
    in its own embedding; NaN for fewer than two clusters."""
    x, partition = torch.from_numpy(embedding).unsqueeze(0), torch.from_numpy(labels.astype(np.int64)).unsqueeze(0)
    k = int(labels.max()) + 1
    return {"calinski_harabasz": stacked_calinski_harabasz(x, partition, k).item(),
            "davies_bouldin": stacked_davies_bouldin(x, partition, k).item()}


def sample_index(n: int) -> np.ndarray:
    """The fixed subsample (sorted indices) every cross score of a dataset of n samples reads."""
    return np.sort(np.random.default_rng(SAMPLE_SEED).permutation(n)[:SAMPLE_SIZE])


def agreement(labels: list[np.ndarray], judges: np.ndarray) -> np.ndarray:
    """(T,) mean NMI of each partition with every other judging partition (judges: (T,) bool); partitions of
    the sample_index samples."""
    scores = np.full(len(labels), np.nan)
    nmi = np.eye(len(labels))
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            nmi[i, j] = nmi[j, i] = normalized_mutual_info_score(labels[i], labels[j])
    for i in range(len(labels)):
        others = judges.copy()
        others[i] = False
        if others.any():
            scores[i] = nmi[i, others].mean()
    return scores


def cross_rank(embeddings: list[np.ndarray], labels: list[np.ndarray], judges: np.ndarray) -> np.ndarray:
    """(T,) mean normalised rank (0 = best) of each partition's CH in the judging embeddings other than its own;
    embeddings and partitions of the sample_index samples."""
    t = len(labels)
    partitions = torch.from_numpy(np.stack(labels).astype(np.int64))
    k = int(partitions.max()) + 1
    ranks = np.full((t, t), np.nan)  # ranks[j, i]: partition i's rank in embedding j
    for j in np.flatnonzero(judges):
        x = embeddings[j].astype(np.float64)
        x = torch.from_numpy((x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0))
        values = stacked_calinski_harabasz(x.expand(t, -1, -1), partitions, k).numpy()
        values = np.where(np.isnan(values), -np.inf, values)  # a single cluster is the worst partition anywhere
        order = (-values).argsort(kind="stable").argsort(kind="stable")
        ranks[j] = order / max(t - 1, 1)
    np.fill_diagonal(ranks, np.nan)  # never judged in its own embedding
    with np.errstate(all="ignore"):
        counted = (~np.isnan(ranks)).sum(0)
        return np.where(counted > 0, np.nansum(ranks, 0) / np.maximum(counted, 1), np.nan)
