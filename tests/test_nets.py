"""Networks: shapes and the named layer selections resets act on."""
import torch

from raydc.config import make_config
from raydc.nets import FeedForwardAE, ResNetEncoder
from raydc.nets.resets import apply_plan, reset_plan


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


def test_batch_norm_sits_before_each_hidden_relu_and_trains_in_a_trial(digits):
    """net.batch_norm: the authors' released MLP (Linear → BatchNorm1d → ReLU); BRB's soft reset still touches the
    Linear layers only, as their default `reset_batchnorm=False`; the trial trains it and embeds in eval mode."""
    import pytest

    from raydc.engine.train import fit

    net = FeedForwardAE(64, [32, 16], 10, batch_norm=True)
    kinds = [type(m).__name__ for m in net.encoder]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert all(isinstance(m, torch.nn.Linear) for group in net.layer_groups(True).values() for m in group)
    config = {"seed": 0, "net": {"hidden": [32, 16], "batch_norm": True}, "pretrain": {"epochs": 1},
              "train": {"epochs": 3}, "brb": {"interval": 1, "subsample": 500}, "eval": {"subsample": 200}}
    record = fit(config, dataset=digits)
    plain = fit({**config, "net": {"hidden": [32, 16]}}, dataset=digits)
    assert record.status == "finished" and 0 < record.final["acc"] <= 1 and record.final != plain.final
    assert "running_mean" in "".join(record.model["net"])  # the saved model keeps its running statistics
    with pytest.raises(ValueError, match="net.batch_norm"):
        make_config({"net": {"arch": "resnet18", "batch_norm": True}})


def test_an_untrained_network_is_clustered_as_its_first_steps_see_it(digits):
    """Without pretraining, BatchNorm has no statistics to embed with: the initial k-means takes the training-mode
    embedding, batch by batch, which also sets the running statistics from the data. Without BatchNorm both modes
    agree, so the embedding is the evaluation one."""
    from raydc.engine.state import TrialState, embed, embed_untrained

    x = digits.x[:600]
    net = FeedForwardAE(64, [32, 16], 10, batch_norm=True)
    batch = net.encode(x[:256])  # training mode: the statistics of the first batch
    z = embed_untrained(net, x, batch_size=256)
    assert torch.allclose(z[:256], batch, atol=1e-5) and net.training
    assert not torch.allclose(net.encoder[1].running_mean, torch.zeros(32))  # set from the data
    plain = FeedForwardAE(64, [32, 16], 10)
    assert torch.equal(embed_untrained(plain, x, batch_size=256), embed(plain, x))

    config = make_config({"seed": 0, "net": {"hidden": [32, 16], "batch_norm": True}, "pretrain": {"epochs": 0}})
    state = TrialState(config, digits, torch.device("cpu"))
    untouched = state.net.encoder[1].running_var.clone()
    state.init_clustering()
    assert not torch.equal(state.net.encoder[1].running_var, untouched)


def test_dec_with_batch_norm_normalises_each_view_by_its_own_batch():
    """The authors' code embeds DEC's two views in separate passes (IDEC's and DCN's in one, inside their network's
    loss): with BatchNorm each view then has its own batch statistics, and the clean view's are the last that the
    running statistics take in. Without BatchNorm the views share one pass, row-wise the same."""
    from raydc.clustering import CentroidModel
    from raydc.clustering.objectives import dec_cluster_loss

    torch.manual_seed(0)
    x, x_aug = torch.rand(32, 1, 8, 8), torch.rand(32, 1, 8, 8) * 0.5
    centers, assignments = torch.randn(4, 10), torch.zeros(32, dtype=torch.long)
    for algorithm, apart in (("dec", True), ("idec", False)):
        net = FeedForwardAE(64, [32, 16], 10, batch_norm=True)
        reference = FeedForwardAE(64, [32, 16], 10, batch_norm=True)
        reference.load_state_dict(net.state_dict())
        model = CentroidModel(net, centers, assignments, algorithm, cluster_weight=0.1)
        assert model.views_apart is apart
        terms = model(x, x_aug, torch.arange(32))
        if apart:
            z_aug = reference.encode(x_aug)
            z = torch.cat([reference.encode(x), z_aug])
        else:
            z = reference.encode(torch.cat([x, x_aug]))
        assert torch.allclose(terms["loss_cluster"], dec_cluster_loss(z, centers, 2), atol=1e-6)
        assert torch.equal(net.encoder[1].running_mean, reference.encoder[1].running_mean)
    plain = FeedForwardAE(64, [32, 16], 10)
    assert not CentroidModel(plain, centers, assignments, "dec", cluster_weight=0.1).views_apart
