import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import silhouette_score

import reference_metrics
from raydc.evaluation import metrics, scoring
from raydc.evaluation.scoring import class_indices, epoch_scores


def _members(n=300, k=4, members=4, subsample=120, seed=0):
    """Blob embeddings of several members with their own labels, including a collapsed member (one cluster) and one
    that never uses cluster 3; classes are deliberately not 0..c-1."""
    gen = torch.Generator().manual_seed(seed)
    x, y = make_blobs(n_samples=n, centers=k, n_features=5, cluster_std=2.0, random_state=seed)
    y = torch.tensor(y * 3 + 2)
    z = torch.stack([torch.tensor(x, dtype=torch.float32) + torch.randn(n, 5, generator=gen) * m
                     for m in range(members)])
    centers = torch.randn(members, k, 5, generator=gen) * 4
    labels = torch.cdist(z, centers).argmin(2)
    labels[1] = 2  # collapsed
    labels[2] = labels[2] % 3  # cluster 3 absent
    prev = torch.randint(0, k, (members, n), generator=gen)
    index = torch.stack([torch.randperm(n, generator=gen)[:subsample] for _ in range(members)])
    return y, z, labels, prev, index, centers, k


@pytest.mark.parametrize("group", [1, 3])  # 3: as on a GPU, members' geometry batched (and a smaller last group)
def test_every_member_scores_as_if_alone(group, monkeypatch):
    monkeypatch.setattr(scoring, "_group_size", lambda device, subsample: group)
    y, z, labels, prev, index, centers, k = _members()
    together = epoch_scores(*class_indices(y), z, labels, k, index, prev_labels=prev, centers=centers,
                            ratio_threshold=0.8)
    for m, scores in enumerate(together):
        assert (scores["acc"], scores["nmi"], scores["ari"]) == metrics.label_scores(y, labels[m])
        assert scores["cl_change"] == reference_metrics.cl_change(prev[m], labels[m])
        sub = index[m]
        expected = reference_metrics.class_distances(z[m, sub], y[sub])
        assert (scores["intra_cd"], scores["inter_cd"]) == pytest.approx(expected, rel=1e-5)
        if m == 1:
            assert math.isnan(scores["silhouette"])  # one cluster: undefined
        else:
            expected = silhouette_score(z[m, sub].numpy(), labels[m, sub].numpy())
            assert scores["silhouette"] == pytest.approx(expected, abs=1e-5)
        assert scores["ratio_share"] == pytest.approx(reference_metrics.distance_ratio_share(z[m], centers[m], 0.8))


def test_a_first_evaluation_has_no_label_change_and_no_centres_no_ratio():
    y, z, labels, _, index, _, k = _members(members=3)
    scores = epoch_scores(*class_indices(y), z, labels, k, index)
    assert all("cl_change" not in s and "ratio_share" not in s for s in scores)
    assert scores[0]["acc"] == metrics.label_scores(y, labels[0])[0]


def test_geometry_blocks_do_not_change_the_scores(monkeypatch):
    y, z, labels, _, index, _, k = _members(members=3)
    whole = epoch_scores(*class_indices(y), z, labels, k, index)
    monkeypatch.setattr(scoring, "_group_size", lambda device, subsample: 3)
    monkeypatch.setattr(scoring, "DISTANCE_BLOCK", 3 * 120 * 11)  # eleven rows per block, not the whole subsample
    blocked = epoch_scores(*class_indices(y), z, labels, k, index)
    for a, b in zip(whole, blocked):
        assert a == pytest.approx(b, rel=1e-5, nan_ok=True)


def test_stacked_tables_count_each_member_apart():
    a = torch.tensor([[0, 1, 1, 2], [2, 2, 2, 2]])
    b = torch.tensor([[1, 1, 0, 0], [0, 1, 0, 1]])
    tables = metrics.stacked_tables(a, b, 3, 2).numpy()
    assert tables[0].tolist() == [[0, 1], [1, 1], [1, 0]]
    assert tables[1].tolist() == [[0, 0], [0, 0], [2, 2]]
    # Empty rows and columns do not change the scores: the table is that of the labels present.
    assert metrics.table_scores(tables[1]) == metrics.label_scores(a[1], b[1])
    assert metrics.table_scores(np.pad(tables[0], 1)) == metrics.label_scores(a[0], b[0])
