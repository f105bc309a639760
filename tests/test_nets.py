"""Networks: shapes and the named layer selections resets act on."""
import torch

from raydc.config import make_config
from raydc.nets import FeedForwardAE, ResNetEncoder
from raydc.resets import apply_plan, reset_plan


def test_autoencoder_shapes_and_no_batchnorm():
    net = FeedForwardAE(64, [1024, 512, 256], 10)
    x = torch.randn(5, 1, 8, 8)
    z = net.encode(x)
    assert z.shape == (5, 10) and net.decode(z).shape == (5, 64)
    widths = [m.out_features for m in net.encoder if isinstance(m, torch.nn.Linear)]
    assert widths == [1024, 512, 256, 10]
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in net.modules())


def test_resnet_groups_and_block_reset_leaves_other_blocks():
    net = ResNetEncoder(3, 128)
    assert net.encode(torch.randn(2, 3, 32, 32)).shape == (2, 128)
    groups = net.layer_groups(include_embedding=False)
    assert {"encoder", "block1", "block2", "block3", "block4", "projector", "batchnorm"} <= set(groups)
    config = make_config({"net": {"arch": "resnet18"},
                          "brb": {"alpha": 0.7, "block_alpha": 0.9, "block_alpha_step": 0.05,
                                  "layers": ["block4", "block3", "block1"]}})
    plan = reset_plan(net, config)
    # block α + (4 − i)·step, capped at 1; the projector follows with the MLP's α
    assert [round(a, 6) for _, a in plan] == [0.9, 0.95, 1.0, 0.7]
    assert plan[-1][0] == groups["projector"]
    before1 = net.backbone.layer1[0].conv1.weight.clone()
    before4 = net.backbone.layer4[0].conv1.weight.clone()
    apply_plan(plan, torch.Generator().manual_seed(0), "soft_reset")
    assert torch.equal(net.backbone.layer1[0].conv1.weight, before1)
    assert not torch.equal(net.backbone.layer4[0].conv1.weight, before4)
