import math

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from sklearn.metrics import silhouette_score

from raydc.evaluation.metrics import label_scores, nmi, variation_of_information
from reference_metrics import ari, class_distances, cl_change, cluster_acc, distance_ratio_share, silhouette


def test_acc_identical_and_permuted_labelling_is_one():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    assert cluster_acc(y, y) == 1.0
    assert cluster_acc(y, (y + 1) % 3) == 1.0
    assert cluster_acc(torch.tensor(y), torch.tensor([5, 5, 9, 9, 7, 7, 7])) == 1.0


def test_acc_hand_computed_single_error():
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [1, 1, 0, 0, 0, 0]  # cluster 1 -> class 0, cluster 0 -> class 1: sample 2 is wrong
    assert cluster_acc(y_true, y_pred) == pytest.approx(5 / 6)


def test_acc_with_more_clusters_than_classes_counts_unmatched_as_errors():
    y_true = [0, 0, 0, 1, 1, 1]
    y_pred = [0, 0, 2, 1, 1, 3]
    assert cluster_acc(y_true, y_pred) == pytest.approx(4 / 6)


def test_nmi_and_ari_hand_computed():
    # Two classes of two, predicted as one cluster of three plus a singleton.
    y_true, y_pred = [0, 0, 1, 1], [0, 0, 0, 1]
    h_true = math.log(2)
    h_pred = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mutual = h_true - 0.75 * (-(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3))
    assert nmi(torch.tensor(y_true), y_pred) == pytest.approx(2 * mutual / (h_true + h_pred))
    # Pair counts: 1 agreeing pair within both, 3 pairs together in y_pred; expected index 2·3/6 = 1.
    assert ari(y_true, y_pred) == pytest.approx((1 - 1) / ((2 + 3) / 2 - 1))
    assert nmi(y_true, [5, 5, 2, 2]) == pytest.approx(1.0) and ari(y_true, [5, 5, 2, 2]) == pytest.approx(1.0)


def test_class_distances_hand_computed_on_a_line():
    # Class A at 0 and 1, class B at 3 and 5.
    x = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    intra, inter = class_distances(x, labels, normalize=False)
    # intra: every sample's single classmate is at distance 1, 1, 2, 2.
    assert intra == pytest.approx((1 + 1 + 2 + 2) / 4)
    # inter: mean distance to the other class: (3+5)/2, (2+4)/2, (3+2)/2, (5+4)/2.
    assert inter == pytest.approx((4 + 3 + 2.5 + 4.5) / 4)


def test_class_distances_singleton_class_has_zero_intra():
    x = np.array([[0.0], [1.0], [3.0]])
    intra, inter = class_distances(x, [0, 0, 1], normalize=False)
    assert intra == pytest.approx((1 + 1 + 0) / 3)
    assert inter == pytest.approx((3 + 2 + 2.5) / 3)


def test_class_distances_normalized_is_scale_invariant_and_block_size_free():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=gen)
    labels = torch.randint(0, 4, (300,), generator=gen)
    reference = class_distances(x, labels)
    assert class_distances(x * 37.0, labels) == pytest.approx(reference, rel=1e-5)
    assert class_distances(x, labels, block_size=7) == pytest.approx(reference, rel=1e-5)
    # Without normalisation distances scale linearly.
    raw = class_distances(x, labels, normalize=False)
    assert class_distances(x * 2.0, labels, normalize=False) == pytest.approx((2 * raw[0], 2 * raw[1]), rel=1e-5)


def test_class_distances_needs_two_classes():
    with pytest.raises(ValueError, match="two classes"):
        class_distances(torch.randn(5, 2), torch.zeros(5, dtype=torch.long))


def test_silhouette_matches_sklearn_on_random_blobs():
    x, y = make_blobs(n_samples=600, centers=4, n_features=6, cluster_std=3.0, random_state=0)
    expected = silhouette_score(x, y)
    assert silhouette(x, y, block_size=128) == pytest.approx(expected, abs=1e-5)
    assert silhouette(torch.tensor(x, dtype=torch.float32), torch.tensor(y)) == pytest.approx(expected, abs=1e-4)
    normalized = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert silhouette(x, y, normalize=True) == pytest.approx(silhouette_score(normalized, y), abs=1e-5)


def test_silhouette_singletons_score_zero_like_sklearn():
    x = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [9.0, 0.0], [9.0, 0.2]])
    y = np.array([0, 0, 1, 2, 2])
    assert silhouette(x, y) == pytest.approx(silhouette_score(x, y), abs=1e-9)


def test_cl_change_identical_relabelled_and_independent():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 10, 5000)
    assert cl_change(a, a) == pytest.approx(0.0, abs=1e-9)
    assert cl_change(a, (a + 3) % 10) == pytest.approx(0.0, abs=1e-9)
    assert cl_change(a, rng.integers(0, 10, 5000)) > 0.98


def test_distance_ratio_share_hand_made():
    centroids = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    points = torch.tensor(
        [
            [0.0, 0.0],  # rho = 0
            [2.0, 0.0],  # rho = 2/8
            [4.9, 0.0],  # rho = 4.9/5.1 ~ 0.961
            [5.0, 3.0],  # rho = 1
        ]
    )
    assert distance_ratio_share(points, centroids) == pytest.approx(0.5)
    assert distance_ratio_share(points.numpy(), centroids.numpy(), threshold=0.2) == pytest.approx(0.75)
    assert distance_ratio_share(points, centroids, threshold=0.97) == pytest.approx(0.25)


def test_distance_ratio_share_coinciding_centroids_count_as_ratio_one():
    centroids = torch.tensor([[1.0, 1.0], [1.0, 1.0], [9.0, 9.0]])
    assert distance_ratio_share(torch.tensor([[1.0, 1.0]]), centroids) == 1.0


def test_variation_of_information_identical_and_relabelled_are_zero():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 7, 1000)
    assert variation_of_information(a, a) == pytest.approx(0.0, abs=1e-12)
    assert variation_of_information(a, (a + 2) % 7) == pytest.approx(0.0, abs=1e-12)


def test_variation_of_information_hand_computed():
    # A = {0,1},{2,3}; B = {0},{1,2,3}: H(A|B) = 3/4 * H(1/3, 2/3), H(B|A) = 1/2 * ln 2.
    a, b = [0, 0, 1, 1], [0, 1, 1, 1]
    h_third = -(1 / 3) * math.log(1 / 3) - (2 / 3) * math.log(2 / 3)
    assert variation_of_information(a, b) == pytest.approx(0.75 * h_third + 0.5 * math.log(2))


def test_variation_of_information_independent_uniform_is_two_log_k():
    gen = torch.Generator().manual_seed(0)
    k, n = 10, 200_000
    a = torch.randint(0, k, (n,), generator=gen)
    b = torch.randint(0, k, (n,), generator=gen)
    assert variation_of_information(a, b) == pytest.approx(2 * math.log(k), rel=0.01)


def test_device_contingency_metrics_match_sklearn():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from raydc.evaluation.metrics import nmi
    from reference_metrics import ari, cluster_acc

    gen = np.random.default_rng(0)
    cases = [(gen.integers(0, 10, 500), gen.integers(0, 7, 500)), (np.zeros(50, int), np.zeros(50, int)),
             (np.zeros(50, int), np.arange(50) % 3), (np.arange(40), np.arange(40))]
    y = gen.integers(0, 10, 1000)
    cases.append((y, np.where(gen.random(1000) < 0.8, y, gen.integers(0, 10, 1000))))
    for a, b in cases:
        ta, tb = torch.as_tensor(a), torch.as_tensor(b)
        assert abs(nmi(ta, tb) - normalized_mutual_info_score(a, b, average_method="arithmetic")) < 1e-9
        assert abs(ari(ta, tb) - adjusted_rand_score(a, b)) < 1e-9
        assert cluster_acc(ta, tb) == cluster_acc(a, b)
        assert label_scores(ta, tb) == (cluster_acc(a, b), nmi(a, b), ari(a, b))  # one table, same three scores
