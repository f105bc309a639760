"""The contrastive family end to end on tiny colour data: SimCLR pretraining, ResNet-18 clustering with BRB
(blocks and projector reset), self-labeling with ReSL, LFSS, and the Table 7 defaults."""
import math

import pytest
import torch
import torch.nn.functional as F

from raydc.config import ConfigError, make_config
from raydc.clustering.simclr import info_nce
from raydc.data import load_dataset
from raydc.data.dataset import standardize
from raydc.engine.pretrain import pretext_loss, pretrained_state
from raydc.engine.train import fit
from raydc.engine.trial import Trial

TINY = {"net": {"arch": "resnet18", "hidden": [64, 32], "embedding_dim": 16, "projector_width": 64,
                "projector_dim": 16},
        "pretrain": {"epochs": 1, "batch_size": 64},
        "train": {"algorithm": "idec", "epochs": 2, "batch_size": 64},
        "brb": {"interval": 1, "subsample": 150},
        "selflabel": {"epochs": 2, "warmup_epochs": 1, "batch_size": 64, "threshold": 0.3},
        "eval": {"subsample": 100}, "device": "cpu"}


def _config(**groups):
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY.items()}
    for group, fields in groups.items():
        values[group] = {**values.get(group, {}), **fields} if isinstance(fields, dict) else fields
    return make_config(values)


@pytest.fixture(scope="module")
def colour_digits():
    """150 digits (3 classes) upsampled to 16×16 and tinted with a random colour per image."""
    digits = load_dataset("digits")
    keep = torch.nonzero(digits.y < 3).squeeze(1)[:150]
    gray = digits.x[keep]
    gray = (gray - gray.amin()) / (gray.amax() - gray.amin())
    images = F.interpolate(gray, size=(16, 16), mode="bilinear", align_corners=False)
    tint = torch.rand(len(keep), 3, 1, 1, generator=torch.Generator().manual_seed(0)) * 0.7 + 0.3
    return standardize("colour-digits", images * tint, digits.y[keep], n_clusters=3)


def test_info_nce_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    z = F.normalize(torch.cat([a, b]), dim=1)
    sim = (z @ z.T / 0.5).tolist()
    expected = 0.0
    for i, positive in enumerate([2, 3, 0, 1]):
        others = [math.exp(sim[i][k]) for k in range(4) if k != i]
        expected -= math.log(math.exp(sim[i][positive]) / sum(others))
    assert info_nce(a, b, 0.5).item() == pytest.approx(expected / 4, rel=1e-6)


def test_table7_defaults_and_explicit_values_win():
    for algorithm, lr in (("dec", 1e-3), ("idec", 3e-3), ("dcn", 1e-2)):
        config = make_config({"net": {"arch": "resnet18"}, "train": {"algorithm": algorithm}})
        assert config.train.lr == lr and config.train.batch_size == 512 and config.train.grad_clip == 500
    idec = make_config({"net": {"arch": "resnet18"}, "train": {"algorithm": "idec"}})
    assert idec.train.effective_cluster_weight == 1.0
    assert make_config({"net": {"arch": "resnet18"}, "train": {"algorithm": "dcn"}}).train.cluster_weight == 1e-4
    assert (idec.brb.alpha, idec.brb.block_alpha, idec.brb.interval) == (0.7, 0.9, 10)
    assert idec.brb.layers == ["encoder", "block4"] and idec.net.embedding_dim == 128
    assert (idec.pretrain.lr, idec.pretrain.weight_decay, idec.pretrain.epochs) == (3e-3, 1e-4, 1000)
    assert idec.selflabel.epochs == 200 and idec.selflabel.warmup_epochs == 20
    mine = make_config({"net": {"arch": "resnet18"}, "train": {"lr": 0.05}, "brb": {"alpha": 0.5}})
    assert mine.train.lr == 0.05 and mine.brb.alpha == 0.5
    assert make_config().train.lr == 1e-3 and make_config().selflabel.epochs == 0  # grayscale setting unchanged
    lfss = make_config({"train": {"algorithm": "lfss"}})
    assert lfss.brb.mode == "baseline" and lfss.pretrain.epochs == 0


@pytest.mark.parametrize("values, field", [
    ({"net": {"arch": "resnet18"}, "train": {"augment": False}}, "train.augment"),
    ({"net": {"arch": "resnet18"}, "pretrain": {"augment": False}}, "pretrain.augment"),
    ({"resl": {"strategy": "ht"}}, "resl.strategy"),
    ({"train": {"algorithm": "lfss"}, "brb": {"mode": "brb"}}, "brb.mode"),
    ({"resl": {"strategy": "sometimes"}, "selflabel": {"epochs": 3}}, "resl.strategy"),
    ({"lfss": {"unstable_ratio": 1.0}}, "lfss.unstable_ratio"),
    ({"selflabel": {"threshold": 1.0}}, "selflabel.threshold"),
])
def test_bad_contrastive_settings_name_their_field(values, field):
    with pytest.raises(ConfigError) as info:
        make_config(values)
    assert info.value.field == field


def test_simclr_pretraining_loss_decreases_on_a_fixed_batch(colour_digits):
    trial = Trial(_config(), colour_digits, torch.device("cpu"))
    loss_of = pretext_loss(trial.state.net, trial.config)
    g = torch.Generator().manual_seed(1)
    x = colour_digits.x[:64]
    a, b = trial.state.augmenter(x, g), trial.state.augmenter(x, g)
    optimizer = torch.optim.Adam(trial.state.net.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = loss_of(a, b)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_brb_resets_selected_blocks_head_and_projector_only(colour_digits, tmp_path):
    trial = Trial(_config(), colour_digits, torch.device("cpu"))
    state = trial.state
    pretrained_state(state.net, colour_digits, trial.config, state.augmenter, tmp_path, lambda e, loss: None)
    trial.init_clustering()
    net = trial.state.net
    watched = {name: getattr(net.backbone, f"layer{i}")[0].conv1.weight for i, name in
               enumerate(["block1", "block2", "block3", "block4"], 1)}
    watched.update(head=net.head[0].weight, embedding=net.embedding_layer.weight, projector=net.projector[0].weight)
    before = {name: w.detach().clone() for name, w in watched.items()}
    trial.periodic_step()
    changed = {name for name, w in watched.items() if not torch.equal(w, before[name])}
    assert changed == {"block4", "head", "projector"}
    # the head moves by (1 − 0.7) of the way to a fresh draw, block 4 by (1 − 0.9): smaller relative change
    rel = {name: ((watched[name] - before[name]).norm() / before[name].norm()).item() for name in ("head", "block4")}
    assert rel["block4"] < rel["head"]


def test_contrastive_trial_runs_every_stage(colour_digits, tmp_path):
    records = []
    result = fit(_config(resl={"strategy": "sp", "interval": 1}), records.append, dataset=colour_digits,
                 pretrain_cache=tmp_path)
    assert result.status == "finished", result.error
    phases = [(r.phase, r.epoch) for r in records]
    assert phases == [("pretrain", 0), ("cluster", 0), ("cluster", 1), ("selflabel_warmup", 0),
                      ("selflabel", 0), ("selflabel", 1)]
    assert math.isfinite(records[0].loss_contrastive)
    cluster = [r for r in records if r.phase == "cluster"]
    assert all(math.isfinite(r.loss_contrastive) and math.isfinite(r.loss_cluster) for r in cluster)
    assert [r.reset_applied for r in cluster] == [False, True]
    selflabel = [r for r in records if r.phase == "selflabel"]
    assert all(0 <= r.confident_fraction <= 1 and 0 <= r.acc <= 1 for r in selflabel)
    assert [r.reset_applied for r in selflabel] == [False, True]  # SP reset after epoch 0 (R = 1), none after last
    assert result.final["acc"] == selflabel[-1].acc and result.labels.shape == (colour_digits.n,)
    assert result.selflabel_time_s > 0


def test_self_labeling_resumes_from_its_checkpoint(colour_digits, tmp_path):
    cache = tmp_path / "cache"
    full = fit(_config(checkpoint_every=1), dataset=colour_digits, pretrain_cache=cache)
    short = fit(_config(checkpoint_every=1, selflabel={"epochs": 1}), dataset=colour_digits,
                checkpoint_dir=tmp_path / "run", pretrain_cache=cache)  # "interrupted" after self-labeling epoch 0
    resumed_records = []
    resumed = fit(_config(checkpoint_every=1), resumed_records.append, dataset=colour_digits,
                  checkpoint_dir=tmp_path / "run", pretrain_cache=cache)
    assert [(r.phase, r.epoch) for r in resumed_records] == [("selflabel", 1)]
    assert resumed.final == full.final
    # self-labeling's time goes on from the checkpoint's: this run's epoch plus the saved warm-up and epoch 0
    assert resumed.selflabel_time_s > short.selflabel_time_s * 0.9 + resumed_records[0].time_s


def test_lfss_trial_records_stability(tmp_path):
    digits = load_dataset("digits")
    records = []
    config = make_config({"train": {"algorithm": "lfss", "epochs": 3}, "net": {"hidden": [128, 64]},
                          "lfss": {"warmup_epochs": 0}, "eval": {"subsample": 300}, "device": "cpu"})
    result = fit(config, records.append, dataset=digits)
    assert result.status == "finished", result.error
    assert [r.phase for r in records] == ["cluster"] * 3
    assert all(-1 <= r.stability_d1 <= r.stability_d5 <= r.stability_d9 <= 1 for r in records)
    assert math.isnan(records[0].stability_bin_change) and 0 <= records[1].stability_bin_change <= 1
    assert records[0].loss_cluster == 0 and records[1].loss_cluster > 0  # cluster loss after η = 0 epochs
    assert result.final["acc"] > 0.3  # k-means on a briefly trained embedding of 10 digit classes


def test_trials_differing_only_in_self_labeling_share_the_clustering_stage(colour_digits, tmp_path):
    first_records, second_records = [], []
    first = fit(_config(), first_records.append, dataset=colour_digits, pretrain_cache=tmp_path)
    second = fit(_config(resl={"strategy": "ht", "interval": 1}), second_records.append, dataset=colour_digits,
                 pretrain_cache=tmp_path)
    assert not first.cluster_cached and second.cluster_cached and second.status == "finished"
    def upstream(records):  # repr compares NaN fields as equal
        return [repr(r) for r in records if r.phase in ("pretrain", "cluster")]

    assert upstream(second_records) == upstream(first_records)  # replayed as recorded
    assert len(list(tmp_path.glob("cluster-*.pt"))) == 1


def test_contrastive_clustering_loss_decreases_on_a_fixed_batch(colour_digits):
    trial = Trial(_config(), colour_digits, torch.device("cpu"))
    trial.init_clustering()
    g = torch.Generator().manual_seed(2)
    index = torch.arange(64)
    x = colour_digits.x[index]
    a, b = trial.state.augmenter(x, g), trial.state.augmenter(x, g)
    losses = []
    for _ in range(12):
        terms = trial.state.model(a, b, index)
        trial.optimizer.zero_grad()
        terms["loss"].backward()
        trial.optimizer.step()
        losses.append({name: value.item() for name, value in terms.items()})
    assert set(losses[0]) == {"loss", "loss_cluster", "loss_contrastive"}
    assert losses[-1]["loss"] < 0.9 * losses[0]["loss"]
