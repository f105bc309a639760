"""Soft reset (eq 1) and its ablations on a known layer; momentum reset."""
import math

import torch
from torch import nn

from raydc.config import make_config
from raydc.nets import FeedForwardAE, ResNetEncoder
from raydc.nets.resets import perturb, reset_momentum, reset_plan, sample_initial


def _layer():
    torch.manual_seed(0)
    return nn.Linear(4, 3)


def test_sample_initial_is_pytorch_default_distribution():
    layer = nn.Linear(400, 300)
    phi = sample_initial(layer, torch.Generator().manual_seed(1))
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt 5) and the default bias both give U(-1/sqrt(fan_in), ...)
    assert phi["weight"].abs().max() <= bound and phi["weight"].abs().max() > 0.95 * bound
    assert phi["bias"].abs().max() <= bound
    assert abs(phi["weight"].std().item() - bound / math.sqrt(3)) < 0.01 * bound


def test_the_authors_phi_is_kaiming_uniform_with_its_default_gain():
    layer = nn.Linear(400, 300)
    phi = sample_initial(layer, torch.Generator().manual_seed(1), "kaiming")
    bound = math.sqrt(6 / 400)  # kaiming_uniform_(a=0): gain √2 · √(3/fan_in), as the BRB authors draw φ
    assert phi["weight"].abs().max() <= bound and phi["weight"].abs().max() > 0.95 * bound
    assert phi["bias"].abs().max() <= 1 / math.sqrt(400)  # biases as PyTorch initialises them either way


def test_a_trial_resets_with_the_configured_phi():
    from raydc.data import load_dataset
    from raydc.engine.trial import Trial

    def reset_spread(init: str) -> float:
        config = make_config({"brb": {"mode": "reset", "alpha": 0.0, "reset_init": init}, "data": {"resize": None}})
        trial = Trial(config, load_dataset("digits"), torch.device("cpu"))
        trial.periodic_step()  # α = 0: the encoder's weights become φ
        return trial.state.net.encoder[0].weight.abs().max().item()

    fan_in = 64
    assert math.sqrt(6 / fan_in) * 0.95 < reset_spread("kaiming") <= math.sqrt(6 / fan_in)
    assert reset_spread("linear") <= 1 / math.sqrt(fan_in)


def test_soft_reset_is_convex_combination_with_fresh_init():
    layer = _layer()
    before = {k: v.clone() for k, v in layer.named_parameters()}
    phi = sample_initial(layer, torch.Generator().manual_seed(7))
    perturb([layer], 0.8, torch.Generator().manual_seed(7), "soft_reset")
    for name, p in layer.named_parameters():
        assert torch.allclose(p, 0.8 * before[name] + 0.2 * phi[name])  # contraction 0.8θ + perturbation 0.2φ


def test_alpha_one_is_identity_and_alpha_zero_is_fresh_init():
    layer = _layer()
    before = layer.weight.clone()
    perturb([layer], 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(layer.weight, before)
    perturb([layer], 0.0, torch.Generator().manual_seed(3))
    assert torch.allclose(layer.weight, sample_initial(layer, torch.Generator().manual_seed(3))["weight"])


def test_perturb_only_has_no_contraction():
    layer = _layer()
    before = layer.weight.clone()
    phi = sample_initial(layer, torch.Generator().manual_seed(5))
    perturb([layer], 0.8, torch.Generator().manual_seed(5), "perturb_only")
    assert torch.allclose(layer.weight, before + 0.2 * phi["weight"])


def test_scaled_gaussian_keeps_mean_and_contracts_towards_noise():
    torch.manual_seed(0)
    layer = nn.Linear(500, 400)
    with torch.no_grad():
        layer.weight.normal_(0.3, 2.0)
    perturb([layer], 0.5, torch.Generator().manual_seed(0), "scaled_gaussian")
    w = layer.weight
    assert abs(w.mean().item() - 0.3) < 0.02
    # 0.5·θ + 0.5·ε with θ, ε independent N(0.3, 2): std = 2·sqrt(0.5)
    assert abs(w.std().item() - 2.0 * math.sqrt(0.5)) < 0.02


def test_default_plan_excludes_embedding_and_decoder():
    net = FeedForwardAE(64, [32, 16], 10)
    plan = reset_plan(net, make_config({"brb": {"alpha": 0.7}}))
    (modules, alpha), = plan
    assert alpha == 0.7
    assert modules == [net.encoder[0], net.encoder[2]]
    with_emb = reset_plan(net, make_config({"brb": {"reset_embedding": True}}))
    assert with_emb[0][0][-1] is net.embedding_layer


def test_reset_momentum_zeroes_only_selected_params():
    a, b = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([a, b], lr=0.1)
    (a.sum() + b.sum()).backward()
    opt.step()
    reset_momentum(opt, [a])
    assert opt.state[a]["exp_avg"].abs().sum() == 0 and opt.state[a]["exp_avg_sq"].abs().sum() == 0
    assert opt.state[b]["exp_avg"].abs().sum() > 0


def test_overlapping_groups_reset_each_module_once():
    net = ResNetEncoder(3, 16)
    config = make_config({"net": {"arch": "resnet18", "embedding_dim": 16},
                          "brb": {"alpha": 0.7, "block_alpha": 0.9, "layers": ["block4", "batchnorm"]}})
    plan = reset_plan(net, config)
    ids = [id(m) for modules, _ in plan for m in modules]
    assert len(ids) == len(set(ids))
    groups = net.layer_groups(include_embedding=False)
    (block4, a4), (other_bn, a_bn), (projector, _) = plan
    assert block4 == groups["block4"] and a4 == 0.9  # block 4's BatchNorms keep the block's α
    assert other_bn == [m for m in groups["batchnorm"] if all(m is not b for b in block4)] and a_bn == 0.7
    assert projector == groups["projector"]
