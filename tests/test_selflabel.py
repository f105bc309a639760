"""Self-labeling stage: confidence cross-entropy, NMI Match, ReSL reset strategies, cutout, a short run."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from raydc.data import StrongAugmenter, cutout, make_augmenter, make_strong_augmenter
from raydc.data.dataset import standardize
from raydc.evaluation.metrics import nmi
from raydc.nets.resets import perturb
from raydc.selflabel import (
    Classifier,
    HareTortoise,
    NoReset,
    SelfLabeling,
    ShrinkPerturb,
    confidence_cross_entropy,
    make_strategy,
    nmi_match,
)


class TinyEncoder(nn.Module):
    """A one-layer encoder with BatchNorm, so buffers (float and integer) take part in the EMA."""

    def __init__(self, input_dim: int = 3, embedding_dim: int = 4):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(input_dim, embedding_dim), nn.BatchNorm1d(embedding_dim), nn.ReLU())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))


def _toy_classifier(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier(TinyEncoder(), 4, 2)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def _sgd_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> None:
    loss = model(x).square().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


# --- confidence cross-entropy and NMI Match ---------------------------------------------------------------------

def _confidence_case():
    ln2, ln4 = math.log(2), math.log(4)
    logits = torch.tensor([[0.0, 0.0, 0.0], [ln2, 0.0, 0.0], [0.0, 0.0, ln4], [5.0, 0.0, 0.0]], requires_grad=True)
    probs_weak = torch.tensor([[0.95, 0.03, 0.02], [0.97, 0.02, 0.01], [0.005, 0.005, 0.99], [0.2, 0.5, 0.3]])
    return logits, probs_weak


def test_confidence_cross_entropy_balances_classes_by_hand():
    logits, probs_weak = _confidence_case()
    loss, n_confident = confidence_cross_entropy(logits, probs_weak, 0.9, balance=True)
    # Confident rows 0, 1 (class 0, CE ln3 and ln2) and 2 (class 2, CE ln1.5); weights 3/2, 3/2, 3/1.
    expected = ((math.log(3) + math.log(2)) / 2 + math.log(1.5)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert n_confident.item() == 3 and n_confident.dtype == torch.int64
    weight = torch.tensor([1.5, 1.0, 3.0])
    reference = F.cross_entropy(logits[:3], torch.tensor([0, 0, 2]), weight=weight, reduction="mean")
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)


def test_confidence_cross_entropy_without_balance_is_plain_mean():
    logits, probs_weak = _confidence_case()
    loss, _ = confidence_cross_entropy(logits, probs_weak, 0.9, balance=False)
    assert loss.item() == pytest.approx((math.log(3) + math.log(2) + math.log(1.5)) / 3, rel=1e-6)


def test_confidence_cross_entropy_is_zero_without_confident_samples():
    logits, probs_weak = _confidence_case()
    loss, n_confident = confidence_cross_entropy(logits, probs_weak, 0.999)
    assert loss.item() == 0.0 and n_confident.item() == 0
    loss.backward()  # the graph is kept, and no gradient flows
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_confidence_threshold_is_strict():
    logits = torch.zeros(2, 2)
    probs_weak = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
    assert confidence_cross_entropy(logits, probs_weak, 0.75)[1].item() == 0
    assert confidence_cross_entropy(logits, probs_weak, 0.7)[1].item() == 2


def test_nmi_match_uses_only_confident_samples():
    probs = torch.tensor([[0.95, 0.05], [0.92, 0.08], [0.1, 0.9], [0.02, 0.98], [0.6, 0.4], [0.45, 0.55]])
    y = torch.tensor([1, 1, 0, 0, 0, 1])
    assert nmi_match(probs, y, 0.9) == pytest.approx(1.0)  # relabelled perfectly on the confident set
    assert nmi_match(probs, y, 0.5) == pytest.approx(nmi(probs.argmax(1), y))
    assert nmi_match(probs, y, 0.5) < 1.0
    assert math.isnan(nmi_match(probs, y, 0.97))  # a single confident sample


# --- reset strategies -------------------------------------------------------------------------------------------

def test_shrink_perturb_resets_head_after_every_interval_but_not_at_the_end():
    model = _toy_classifier()
    generator = torch.Generator().manual_seed(3)
    strategy = ShrinkPerturb(0.8, interval=3, total_epochs=9, generator=generator)
    resets = []
    for epoch in range(9):
        before, net_before = copy.deepcopy(model.head), _snapshot(model.net)
        replay = torch.Generator().set_state(generator.get_state())
        if strategy.end_epoch(model, epoch):
            resets.append(epoch)
            perturb([before], 0.8, replay, "soft_reset")  # θ ← 0.8θ + 0.2φ with the same draws
        assert torch.equal(model.head.weight, before.weight) and torch.equal(model.head.bias, before.bias)
        assert all(torch.equal(value, net_before[name]) for name, value in model.net.state_dict().items())
    assert resets == [2, 5]  # after epochs 3 and 6; the reset after the last epoch (9) is skipped


def test_soft_reset_of_head_is_convex_combination():
    model = _toy_classifier()
    before = model.head.weight.detach().clone()
    generator = torch.Generator().manual_seed(11)
    phi = torch.empty_like(before)
    nn.init.kaiming_uniform_(phi, a=math.sqrt(5), generator=torch.Generator().manual_seed(11))
    ShrinkPerturb(0.7, interval=1, total_epochs=5, generator=generator).end_epoch(model, 0)
    assert torch.allclose(model.head.weight, 0.7 * before + 0.3 * phi)


def test_scheduled_shrink_perturb_softens_linearly_to_one():
    strategy = ShrinkPerturb(0.5, interval=2, total_epochs=10, generator=torch.Generator(), scheduled=True)
    assert [strategy.retention(e) for e in (1, 3, 9)] == pytest.approx([0.6, 0.7, 1.0])
    assert strategy.name == "sp_star"
    model = _toy_classifier()
    before = copy.deepcopy(model.head)
    replay = torch.Generator().set_state(strategy.generator.get_state())
    assert strategy.end_epoch(model, 3)
    perturb([before], 0.7, replay, "soft_reset")
    assert torch.equal(model.head.weight, before.weight)


def test_hare_tortoise_step_ema_matches_closed_form():
    momentum, steps = 0.9, 4
    model = _toy_classifier()
    strategy = HareTortoise(momentum, interval=2, total_epochs=10, update="step")
    strategy.start(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    hare_states = [_snapshot(model)]
    for _ in range(steps):
        _sgd_step(model, optimizer, x)
        strategy.after_step(model)
        hare_states.append(_snapshot(model))
    tortoise = strategy.tortoise.state_dict()
    for name, value in tortoise.items():
        if not value.is_floating_point():
            assert torch.equal(value, hare_states[-1][name])  # step counters are copied
            continue
        # θ_T = μ^k θ_0 + (1 − μ) Σ_j μ^(k−j) θ_j
        expected = momentum ** steps * hare_states[0][name]
        for j in range(1, steps + 1):
            expected = expected + (1 - momentum) * momentum ** (steps - j) * hare_states[j][name]
        assert torch.allclose(value, expected, atol=1e-6), name
    assert not torch.allclose(tortoise["head.weight"], model.head.weight)


def test_hare_takes_tortoise_weights_in_place_and_keeps_training():
    model = _toy_classifier()
    strategy = HareTortoise(0.5, interval=2, total_epochs=10, update="step")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    for epoch in range(2):
        _sgd_step(model, optimizer, x)
        strategy.after_step(model)
        assert strategy.end_epoch(model, epoch) == (epoch == 1)
    tortoise = strategy.eval_model(model)
    assert tortoise is strategy.tortoise and tortoise is not model
    for name, value in model.state_dict().items():
        assert torch.equal(value, tortoise.state_dict()[name]), name
    assert optimizer.param_groups[0]["params"][-1] is model.head.bias  # the optimizer still holds the hare
    tortoise_before = _snapshot(tortoise)
    _sgd_step(model, optimizer, x)
    assert not torch.equal(model.head.weight, tortoise.head.weight)
    assert all(torch.equal(value, tortoise_before[name]) for name, value in tortoise.state_dict().items())


def test_hare_tortoise_epoch_update_follows_once_per_epoch():
    model = _toy_classifier()
    strategy = HareTortoise(0.8, interval=5, total_epochs=10, update="epoch")
    strategy.start(model)
    start = model.head.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(2))
    for _ in range(3):
        _sgd_step(model, optimizer, x)
        strategy.after_step(model)
    assert torch.equal(strategy.tortoise.head.weight, start)
    assert not strategy.end_epoch(model, 0)
    assert torch.allclose(strategy.tortoise.head.weight, 0.8 * start + 0.2 * model.head.weight)


def test_make_strategy_by_name():
    generator = torch.Generator()
    options = {"alpha": 0.8, "interval": 10, "momentum": 0.99, "ema_update": "epoch", "total_epochs": 100,
               "generator": generator}
    assert isinstance(make_strategy("none", **options), NoReset)
    assert make_strategy("sp", **options).name == "sp"
    assert make_strategy("sp_star", **options).scheduled
    assert make_strategy("ht", **options).update == "epoch"
    with pytest.raises(ValueError, match="sp_star"):
        make_strategy("shrink", **options)
    with pytest.raises(ValueError, match="EMA update"):
        make_strategy("ht", **{**options, "ema_update": "batch"})


# --- cutout and the strong view ---------------------------------------------------------------------------------

def _scan_cutout_mask(height: int, width: int, row: int, col: int, length: int) -> np.ndarray:
    """SCAN's Cutout mask for one hole at (row, col), with numpy as in their repository."""
    mask = np.ones((height, width), np.float32)
    y1, y2 = np.clip(row - length // 2, 0, height), np.clip(row + length // 2, 0, height)
    x1, x2 = np.clip(col - length // 2, 0, width), np.clip(col + length // 2, 0, width)
    mask[y1:y2, x1:x2] = 0.0
    return mask


def test_cutout_matches_scan_hole_geometry():
    images = torch.randn(64, 3, 12, 10, generator=torch.Generator().manual_seed(0)) + 5
    out = cutout(images, 6, torch.Generator().manual_seed(4))
    replay = torch.Generator().manual_seed(4)
    rows = torch.randint(12, (64, 1, 1, 1), generator=replay).view(-1).tolist()
    cols = torch.randint(10, (64, 1, 1, 1), generator=replay).view(-1).tolist()
    for image, result, row, col in zip(images, out, rows, cols):
        expected = image * torch.from_numpy(_scan_cutout_mask(12, 10, row, col, 6))
        assert torch.equal(result, expected)
    assert out.shape == images.shape


def test_cutout_holes_are_clipped_squares_that_cover_every_pixel():
    out = cutout(torch.ones(2000, 1, 8, 8), 4, torch.Generator().manual_seed(1))
    holes = out == 0
    areas = holes.sum(dim=(1, 2, 3))
    assert areas.max().item() == 16 and areas.min().item() == 4  # full holes and corner-clipped ones
    rows_hit, cols_hit = holes.any(dim=3).sum(dim=(1, 2)), holes.any(dim=2).sum(dim=(1, 2))
    assert torch.equal(rows_hit * cols_hit, areas)  # each hole is one rectangle
    assert holes.any(dim=0).all()  # the centre is uniform over the whole image
    assert torch.equal(out[~holes], torch.ones(int((~holes).sum())))


def test_cutout_is_seeded():
    images = torch.randn(16, 3, 32, 32)
    first = cutout(images, 16, torch.Generator().manual_seed(7))
    assert torch.equal(first, cutout(images, 16, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, cutout(images, 16, torch.Generator().manual_seed(8)))


def test_strong_augmenter_adds_half_side_cutout_to_base():
    images = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    data = standardize("toy", images, torch.zeros(40, dtype=torch.long), 2)
    strong = make_strong_augmenter(data)
    assert isinstance(strong, StrongAugmenter) and strong.kind == "strong" and strong.cutout_length == 4
    out = strong(data.x, torch.Generator().manual_seed(3))
    replay = torch.Generator().manual_seed(3)
    expected = cutout(make_augmenter(data)(data.x, replay), 4, replay)
    assert torch.equal(out, expected)
    assert ((out == 0).sum(dim=(1, 2, 3)) >= 4).all()


# --- the stage --------------------------------------------------------------------------------------------------

class DigitsEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 64), nn.ReLU())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))


@pytest.fixture(scope="module")
def digits():
    bunch = load_digits()
    images = torch.tensor(bunch.images[:1024], dtype=torch.float32).unsqueeze(1) / 16
    return standardize("digits", images, torch.tensor(bunch.target[:1024]), 10)


def _stage(data, strategy, seed: int = 0) -> SelfLabeling:
    torch.manual_seed(seed)
    classifier = Classifier(DigitsEncoder(), 64, 10)
    return SelfLabeling(classifier, data.x, lr=1e-2, weight_decay=1e-4, batch_size=128, threshold=0.6,
                        balance=True, warmup_epochs=8, strategy=strategy, weak_augmenter=make_augmenter(data),
                        strong_augmenter=make_strong_augmenter(data), generator=torch.Generator().manual_seed(seed))


def test_self_labeling_learns_confident_clusters(digits):
    stage = _stage(digits, NoReset())
    encoder_before = _snapshot(stage.classifier.net)
    warmup_losses = stage.warmup(digits.y)  # the true classes stand in for a good clustering
    assert len(warmup_losses) == 8 and warmup_losses[-1] < 0.7 * warmup_losses[0]
    assert all(torch.equal(v, encoder_before[k]) for k, v in stage.classifier.net.state_dict().items())
    records = [stage.train_epoch() for _ in range(4)]
    assert records[0]["confident_fraction"] > 0.2
    assert records[-1]["confident_fraction"] > records[0]["confident_fraction"]  # confidence grows (ReSL Fig. 1)
    assert records[-1]["loss"] < 0.8 * records[0]["loss"]
    assert nmi_match(stage.probabilities(), digits.y, 0.6) > 0.4  # far from chance despite quarter-image cutout


def test_hare_tortoise_stage_clusters_with_tortoise_and_resumes_exactly(digits):
    strategy = HareTortoise(0.9, interval=1, total_epochs=4, update="step")
    stage = _stage(digits, strategy, seed=1)
    stage.warmup(digits.y)
    stage.train_epoch()
    assert strategy.end_epoch(stage.classifier, 0)
    stage.train_epoch()
    tortoise = strategy.tortoise.eval()
    with torch.no_grad():
        assert torch.allclose(stage.probabilities(), F.softmax(tortoise(digits.x), dim=1))
    saved = copy.deepcopy(stage.state_dict())
    first = stage.train_epoch()
    resumed = _stage(digits, HareTortoise(0.9, interval=1, total_epochs=4, update="step"), seed=2)
    resumed.load_state_dict(saved)
    assert resumed.train_epoch() == first
    assert torch.equal(resumed.probabilities(), stage.probabilities())


def test_no_step_while_nothing_is_confident():
    """With no confident sample the epoch leaves every weight alone (Adam's L2 decay would otherwise act)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    net.encode = net.forward
    classifier = Classifier(net, 3, 2)
    x = torch.randn(40, 1, 2, 2)
    stage = SelfLabeling(classifier, x, lr=1e-2, weight_decay=1e-2, batch_size=10, threshold=0.999, balance=True,
                         warmup_epochs=0, strategy=make_strategy("none", alpha=0.8, interval=1, momentum=0.9,
                                                                 ema_update="step", total_epochs=1,
                                                                 generator=torch.Generator()),
                         weak_augmenter=None, strong_augmenter=lambda b, g: b, generator=torch.Generator())
    before = [p.detach().clone() for p in classifier.parameters()]
    scores = stage.train_epoch()
    assert scores["confident_fraction"] == 0 and scores["loss"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, classifier.parameters()))
