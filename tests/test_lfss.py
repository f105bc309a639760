"""LFSS (sample-stability paper, eqs 4–10): hand-computed equations and the model's training protocol."""
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from raydc.clustering.kmeans import nearest
from raydc.clustering.lfss import (
    LFSS,
    cluster_centres,
    cluster_loss,
    instance_loss,
    sample_stability,
    self_distillation_loss,
    stability_summary,
    stable_mask,
)


class TinyEncoder(nn.Module):
    """64-32-8 MLP with BatchNorm, so buffers take part in the momentum update."""

    def __init__(self, input_dim: int = 64, embedding_dim: int = 8):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(input_dim, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                    nn.Linear(32, embedding_dim))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @property
    def embedding_layer(self) -> nn.Linear:
        return self.layers[-1]


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return torch.from_numpy(load_digits().data[:512] / 16.0).float()


def make_model(seed: int = 0, **overrides) -> LFSS:
    torch.manual_seed(seed)
    options = {"predictor_hidden": 32, "warmup_epochs": 0, "generator": torch.Generator().manual_seed(seed)}
    options.update(overrides)
    return LFSS(TinyEncoder(), 10, **options)


def views(x: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return x + 0.05 * torch.randn(x.shape, generator=g), x + 0.05 * torch.randn(x.shape, generator=g)


# --- equations -------------------------------------------------------------------------------------
def test_stability_is_rowwise_cosine():
    current = torch.tensor([[1.0, 0.0], [3.0, 4.0], [1.0, 1.0]])
    previous = torch.tensor([[2.0, 0.0], [4.0, 3.0], [-1.0, -1.0]])
    assert torch.allclose(sample_stability(current, previous), torch.tensor([1.0, 24 / 25, -1.0]))


@pytest.mark.parametrize("n, ratio, expected", [(10, 0.25, 7), (10, 0.1, 9), (10, 0.9, 1), (100, 0.7, 30),
                                                (10, 0.0, 10)])
def test_stable_set_has_floor_count_of_the_most_stable(n, ratio, expected):
    stability = torch.randperm(n, generator=torch.Generator().manual_seed(n)).float()
    mask = stable_mask(stability, ratio)
    assert int(mask.sum()) == expected == math.floor(round(n * (1 - ratio), 9))
    assert stability[mask].min() > stability[~mask].max() if expected < n else mask.all()


def test_instance_loss_is_nt_xent_by_hand():
    online = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    predecessor = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    tau = 0.5
    a = [row / row.norm() for row in online]
    b = [row / row.norm() for row in predecessor]
    expected = 0.0
    for i in range(3):
        sims = [float(a[i] @ b[k]) / tau for k in range(3)]
        expected -= math.log(math.exp(sims[i]) / sum(math.exp(s) for s in sims))
    assert instance_loss(online, predecessor, tau).item() == pytest.approx(expected / 3, rel=1e-6)


def test_cluster_centres_use_only_stable_members_and_are_unit_norm():
    features = torch.tensor([[3.0, 0.0], [0.0, 5.0], [1.0, 1.0], [1.0, 3.0]])
    labels = torch.tensor([0, 0, 1, 1])
    stable = torch.tensor([True, False, True, True])
    centres, present = cluster_centres(features, labels, stable, 3)
    assert present.tolist() == [True, True, False]
    assert torch.allclose(centres[0], torch.tensor([1.0, 0.0]))  # sample 1 is unstable: left out
    assert torch.allclose(centres[1], torch.tensor([2.0, 4.0]) / math.sqrt(20))
    assert torch.allclose(centres[:2].norm(dim=1), torch.ones(2)) and centres[2].abs().sum() == 0


def test_cluster_loss_ignores_absent_clusters_and_needs_two():
    online = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], requires_grad=True)
    target = torch.tensor([[0.6, 0.8], [0.0, 1.0], [5.0, 5.0]])
    tau = 0.5
    loss = cluster_loss(online, target, torch.tensor([True, True, False]), tau)
    sims = [[0.6, 0.0], [0.8, 1.0]]  # cos(c_i^o, c_k^t) over the two present clusters
    expected = -sum(math.log(math.exp(sims[i][i] / tau) / sum(math.exp(s / tau) for s in sims[i]))
                    for i in range(2)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.isfinite(online.grad).all() and online.grad[2].abs().sum() == 0  # absent: no gradient
    single = cluster_loss(online, target, torch.tensor([True, False, False]), tau)
    assert single.item() == 0 and single.requires_grad


def test_self_distillation_is_zero_for_identical_and_four_for_opposite():
    v = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]])
    assert self_distillation_loss(v, 2 * v).item() == pytest.approx(0.0, abs=1e-6)
    assert self_distillation_loss(v, -v).item() == pytest.approx(4.0)


def test_stability_summary_deciles_and_bin_change():
    stability = torch.rand(1000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    summary, bins = stability_summary(stability, None)
    expected = np.percentile(stability.numpy(), [10, 20, 30, 40, 50, 60, 70, 80, 90])
    assert np.allclose([summary[f"stability_d{d}"].item() for d in range(1, 10)], expected)
    assert summary["stability_mean"].item() == pytest.approx(stability.mean().item())
    assert math.isnan(summary["stability_bin_change"].item())
    assert bins.min() == 0 and bins.max() == 9 and torch.bincount(bins).tolist() == [100] * 10
    assert stability_summary(stability, bins)[0]["stability_bin_change"].item() == 0
    reversed_order, _ = stability_summary(stability, bins.flip(0))
    assert reversed_order["stability_bin_change"].item() > 0.5


# --- the model -------------------------------------------------------------------------------------
def test_target_is_exact_momentum_average_after_one_step(digits):
    model = make_model(target_momentum=0.9)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    before = {k: v.clone() for k, v in model.target.state_dict().items()}
    x_online, x_target = views(digits[:64], 0)
    model(x_online, x_target, torch.arange(64))["loss"].backward()
    optimizer.step()
    model.after_step(digits[:64], torch.arange(64))
    online = model.net.state_dict()
    for name, value in model.target.state_dict().items():
        if value.is_floating_point():
            assert not torch.equal(online[name], before[name]), name  # the step moved it
            assert torch.allclose(value, 0.9 * before[name] + 0.1 * online[name], rtol=0, atol=1e-6), name
        else:
            assert torch.equal(value, online[name]), name
    assert all(not p.requires_grad for p in [*model.target.parameters(), *model.predecessor.parameters()])


def test_training_steps_on_digits_decrease_the_loss(digits):
    model = make_model(warmup_epochs=0)
    model.start_epoch(1, digits)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    index = torch.arange(256)
    x_online, x_target = views(digits[index], 1)
    losses = []
    for _ in range(40):
        terms = model(x_online, x_target, index)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        model.after_step(digits[index], index)
        losses.append(terms["loss"].item())
    assert all(math.isfinite(value) for value in losses)
    assert np.mean(losses[-5:]) < 0.8 * losses[0]


def test_cluster_loss_is_zero_during_warmup_and_positive_after(digits):
    model = make_model(warmup_epochs=1)
    x_online, x_target = views(digits[:128], 2)
    index = torch.arange(128)
    for epoch in (0, 1):
        model.start_epoch(epoch, digits)
        assert model(x_online, x_target, index)["loss_cluster"].item() == 0
        assert model.assignments.numel() == 0  # no clustering of the data during warm-up
    model.start_epoch(2, digits)
    terms = model(x_online, x_target, index)
    assert terms["loss_cluster"].item() > 0
    assert model.assignments.shape == (len(digits),)
    expected = terms["loss_selfdistill"] + 0.1 * (terms["loss_instance"] + terms["loss_cluster"])
    assert torch.allclose(terms["loss"], expected)


def test_end_epoch_measures_stability_and_copies_target(digits):
    model = make_model(unstable_ratio=0.25)
    model.start_epoch(0, digits)
    with torch.no_grad():
        for p in model.target.parameters():
            p.add_(0.1 * torch.randn_like(p))
    first = model.end_epoch(digits)
    assert math.isnan(first["stability_bin_change"]) and first["stability_mean"] < 1
    assert int(model.stable.sum()) == math.floor(len(digits) * 0.75)
    for name, value in model.predecessor.state_dict().items():
        assert torch.equal(value, model.target.state_dict()[name]), name
    second = model.end_epoch(digits)  # target unchanged since the copy: every sample perfectly stable
    assert second["stability_mean"] == pytest.approx(1.0, abs=1e-5)
    assert set(second) == {"stability_mean", "stability_bin_change", *(f"stability_d{d}" for d in range(1, 10))}
    assert all(isinstance(value, float) for value in second.values())


def test_state_dict_round_trip(digits):
    model = make_model(seed=0)
    model.start_epoch(1, digits)
    model.end_epoch(digits)
    model.start_epoch(2, digits)
    restored = make_model(seed=1)
    restored.load_state_dict(model.state_dict())
    original_state, restored_state = model.state_dict(), restored.state_dict()
    assert original_state.keys() == restored_state.keys()
    for name, value in original_state.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, restored_state[name]), name
    assert restored.epoch == 2
    assert restored.stable.shape == restored.assignments.shape == restored.previous_bins.shape == (len(digits),)
    x_online, x_target = views(digits[:64], 4)
    model.generator.manual_seed(7)
    restored.generator.manual_seed(7)
    expected = model(x_online, x_target, torch.arange(64))
    actual = restored(x_online, x_target, torch.arange(64))
    assert all(torch.allclose(expected[k], actual[k]) for k in expected)
    z = model.eval_net.encode(digits)
    assert torch.equal(model.predict(z), restored.predict(z))


def test_predict_clusters_the_embedding_it_is_given(digits):
    model = make_model()
    z = digits[:, :8]
    model.predict(z)
    first = model.centers.clone()
    # A later evaluation of a changed network is clustered anew, not against the first evaluation's centres.
    moved = torch.cat([z, z + 50])
    labels = model.predict(moved)
    assert not torch.equal(model.centers, first)
    assert labels.shape == (len(moved),) and torch.equal(labels, nearest(moved, model.centers))
    assert set(labels[: len(z)].tolist()).isdisjoint(labels[len(z):].tolist())  # the two far groups split apart


def test_invalid_hyperparameters_are_named():
    with pytest.raises(ValueError, match="temperature"):
        make_model(temperature=0)
    with pytest.raises(ValueError, match="unstable_ratio"):
        make_model(unstable_ratio=1.5)
