"""Hand-computed checks of the DEC/IDEC/DCN formulas (BRB paper eqs 3-7, 15, 17)."""
import functools

import pytest
import torch
from torch.func import vmap

from raydc.clustering.objectives import (
    dcn_cluster_loss,
    dcn_move_centers,
    dcn_update_centers,
    dec_cluster_loss,
    target_distribution,
)
from raydc.compute.loss_totals import LossTotals


def student_t_q(z, mu):
    """Eq 3 written out: soft assignments under a Student-t kernel with one degree of freedom."""
    kernel = 1.0 / (1.0 + ((z[:, None] - mu[None]) ** 2).sum(-1))
    return kernel / kernel.sum(1, keepdim=True)


def autograd_dec_loss(z, mu, views):
    """Eq 15 as plain autograd sees it: every view's KL to the un-augmented view's (constant) targets."""
    z_views = z.chunk(views)
    p = target_distribution(student_t_q(z_views[0], mu)).detach()
    return sum((p * (p / student_t_q(v, mu)).log()).sum(1).mean() for v in z_views) / views


def test_student_t_and_target_distribution_by_hand():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    mu = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    q = student_t_q(z, mu)
    # sample 0: kernels 1 and 1/2 -> q = (2/3, 1/3); sample 1: kernels 1/5 and 1/2 -> (2/7, 5/7)
    assert torch.allclose(q, torch.tensor([[2 / 3, 1 / 3], [2 / 7, 5 / 7]]))
    f = q.sum(0)
    w = q**2 / f
    p = target_distribution(q)
    assert torch.allclose(p, w / w.sum(1, keepdim=True))
    # p sharpens: the dominant cluster of each sample gains mass
    assert p[0, 0] > q[0, 0] and p[1, 1] > q[1, 1]


def test_dec_loss_is_kl_and_augmented_form_averages_views():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    mu = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    q = student_t_q(z, mu)
    p = target_distribution(q)
    kl = (p * (p / q).log()).sum(1).mean()
    assert torch.allclose(dec_cluster_loss(z, mu), kl)
    z_aug = z + torch.tensor([[0.5, 0.0], [0.0, 0.5]])
    qa = student_t_q(z_aug, mu)
    expected = 0.5 * (kl + (p * (p / qa).log()).sum(1).mean())
    assert torch.allclose(dec_cluster_loss(torch.cat([z, z_aug]), mu, views=2), expected)


@pytest.mark.parametrize("views", [1, 2])
def test_dec_closed_form_gradient_equals_autograd(views):
    gen = torch.Generator().manual_seed(0)
    z = (2 * torch.randn(12 * views, 4, generator=gen, dtype=torch.float64)).requires_grad_()
    mu = torch.randn(5, 4, generator=gen, dtype=torch.float64).requires_grad_()
    loss = dec_cluster_loss(z, mu, views)
    expected = autograd_dec_loss(z, mu, views)
    assert torch.allclose(loss, expected.float())
    grads = torch.autograd.grad(3.0 * loss, (z, mu))  # an upstream gradient other than 1 scales both
    expected_grads = torch.autograd.grad(3.0 * expected, (z, mu))
    for got, want in zip(grads, expected_grads):
        assert got.dtype == want.dtype
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)


def test_dec_loss_under_vmap_matches_each_member():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3, 16, 4, generator=gen, requires_grad=True)
    mu = torch.randn(3, 5, 4, generator=gen, requires_grad=True)
    losses = vmap(dec_cluster_loss, in_dims=(0, 0, None))(z, mu, 2)
    grads = torch.autograd.grad(losses.sum(), (z, mu))
    for m in range(3):
        zm, mum = z[m].detach().requires_grad_(), mu[m].detach().requires_grad_()
        single = dec_cluster_loss(zm, mum, 2)
        assert torch.allclose(losses[m], single)
        for got, want in zip(grads, torch.autograd.grad(single, (zm, mum))):
            assert torch.allclose(got[m], want, atol=1e-6)


def test_dcn_loss_uses_the_stored_assignment_for_both_views():
    z = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    mu = torch.tensor([[1.0, 0.0], [4.0, 0.0]])
    labels = torch.tensor([0, 1])
    assert torch.allclose(dcn_cluster_loss(z, mu, labels), torch.tensor(0.5 * (1 + 1) / 2))
    z_aug = torch.tensor([[5.0, 0.0], [3.0, 0.0]])  # augmented view of sample 0 lies near centre 1
    # eq 17: 1/4 (|z-mu_h|^2 + |z_aug-mu_h|^2) with h the sample's assignment -> (1+16) and (1+1)
    assert torch.allclose(dcn_cluster_loss(torch.cat([z, z_aug]), mu, labels, views=2), torch.tensor((1 + 16 + 1 + 1) / 4 / 2))
    # a stale assignment is used as given, not recomputed from the current embedding
    assert torch.allclose(dcn_cluster_loss(z, mu, torch.tensor([1, 1])), torch.tensor(0.5 * (16 + 1) / 2))


def test_dcn_center_update_equals_sequential_eq7():
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(3, 2, generator=gen)
    counts = torch.tensor([1.0, 5.0, 2.0])
    z = torch.randn(20, 2, generator=gen)
    seq_c, seq_n = centers.clone(), counts.clone()
    labels = ((z[:, None] - centers[None]) ** 2).sum(-1).argmin(1)
    for zi, j in zip(z, labels):  # eq 7, one sample at a time
        seq_n[j] += 1
        seq_c[j] -= (seq_c[j] - zi) / seq_n[j]
    dcn_update_centers(centers, counts, z, labels)
    assert torch.allclose(centers, seq_c, atol=1e-6)
    assert torch.equal(counts, seq_n)


def test_dcn_move_centers_moves_only_centres_with_members_towards_their_mean():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    z = torch.tensor([[1.0, 1.0], [3.0, -1.0], [9.0, 0.0]])  # two rows nearest centre 0, one nearest centre 1
    dcn_move_centers(centers, z, rate=0.25)
    expected = torch.tensor([[0.25 * 2.0, 0.0], [10.0 - 0.25 * 1.0, 0.0], [0.0, 10.0]])  # centre 2 has no member
    assert torch.allclose(centers, expected)


def test_dcn_move_centers_under_vmap_moves_each_member_alone():
    gen = torch.Generator().manual_seed(0)
    centers, z = torch.randn(3, 4, 2, generator=gen), torch.randn(3, 16, 2, generator=gen)
    alone = centers.clone()
    for member in range(3):
        dcn_move_centers(alone[member], z[member], rate=0.1)
    vmap(functools.partial(dcn_move_centers, rate=0.1), out_dims=None)(centers, z)
    assert torch.allclose(centers, alone)


def test_loss_totals_weight_each_term_by_its_samples_and_keep_the_names():
    totals = LossTotals()
    totals.add({"loss": torch.tensor(1.0), "loss_cluster": torch.tensor(0.5)}, 4)
    totals.add({"loss": torch.tensor(3.0), "loss_cluster": torch.tensor(1.5)}, 2)
    assert totals.means(6) == pytest.approx({"loss": 10 / 6, "loss_cluster": 5 / 6})
    totals.zero()
    assert totals.means(1) == {"loss": 0.0, "loss_cluster": 0.0}
    with pytest.raises(ValueError, match="loss_cluster"):
        totals.add({"loss": torch.tensor(1.0)}, 1)
