"""CUDA-graph replay of pretraining and clustering steps computes what the eager step computes (GPU tests skip without CUDA)."""
import math

import pytest
import torch
import torch.nn.functional as F

from raydc.compute.captured import CapturedStep
from raydc.clustering.kmeans import sq_distances
from raydc.config import make_config
from raydc.data.dataset import standardize
from raydc.engine.population import fit_population
from raydc.compute.precision import network_precision
from raydc.config.identity import trial_id
from raydc.engine.train import fit
from raydc.engine.trial import Trial, uses_cuda_graphs

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# The digits fixture at its native 8 × 8 (fast; resizing as Table 5 is tested in test_data.py).
SMALL = {"data": {"resize": None}, "net": {"hidden": [256, 128]}, "pretrain": {"epochs": 5}, "train": {"epochs": 5},
         "brb": {"interval": 2, "subsample": 1000}, "eval": {"subsample": 300}}


def _config(device, graphs, algorithm="idec", precision="float32", seed=0, train=None, **brb):
    train = {**SMALL["train"], "algorithm": algorithm, "cuda_graphs": graphs, "precision": precision, **(train or {})}
    return make_config({**SMALL, "train": train, "brb": {**SMALL["brb"], **brb}, "device": device, "seed": seed})


def _cluster_losses(config, digits, cache):
    records = []
    result = fit(config, records.append, dataset=digits, pretrain_cache=cache)
    assert result.status == "finished", result.error
    return result, [r for r in records if r.phase == "cluster"]


def test_execution_settings_do_not_change_the_trial_id():
    assert trial_id(_config("cpu", True)) == trial_id(_config("cpu", False))
    assert trial_id(_config("cpu", True)) != trial_id(_config("cpu", True, algorithm="dec"))


def test_graphs_are_off_on_the_cpu(digits):
    trial = Trial(_config("cpu", True), digits, torch.device("cpu"))
    trial.init_clustering()
    trial.train_epoch()
    assert not uses_cuda_graphs(trial.config, trial.state.device) and not trial.train_step.graphs


def test_disabled_step_runs_eagerly_every_call():
    calls = []
    step = CapturedStep(lambda x: calls.append(x.sum().item()), enabled=False)
    for value in (1.0, 2.0, 3.0, 4.0):
        step(torch.full((2,), value))
    assert calls == [2.0, 4.0, 6.0, 8.0] and not step.graphs


@cuda
def test_replayed_step_reads_each_new_input():
    total = torch.zeros((), device="cuda")
    step = CapturedStep(lambda x: total.add_(x.sum()), enabled=True)
    values = [float(v) for v in range(1, 8)]
    for value in values:
        step(torch.full((3,), value, device="cuda"))
    assert step.graphs  # captured after the warm-up calls, then replayed
    assert total.item() == pytest.approx(3 * sum(values))


@cuda
@pytest.mark.parametrize("algorithm", ["dec", "idec", "dcn"])
def test_graphs_follow_the_eager_trajectory(algorithm, digits, tmp_path):
    eager, eager_records = _cluster_losses(_config("cuda", False, algorithm), digits, tmp_path)
    graphed, graphed_records = _cluster_losses(_config("cuda", True, algorithm), digits, tmp_path)
    assert [r.reset_applied for r in graphed_records] == [r.reset_applied for r in eager_records]
    for a, b in zip(eager_records, graphed_records):
        for field in ("loss", "loss_cluster"):
            assert getattr(b, field) == pytest.approx(getattr(a, field), rel=1e-4), (a.epoch, field)
    assert math.isclose(graphed.final["acc"], eager.final["acc"], abs_tol=0.01)


@cuda
def test_pretraining_steps_replay_as_graphs(digits, tmp_path):
    losses = {}
    for graphs in (False, True):  # separate caches: each run pretrains
        records = []
        fit(_config("cuda", graphs), records.append, dataset=digits, pretrain_cache=tmp_path / str(graphs))
        losses[graphs] = [r.loss for r in records if r.phase == "pretrain"]
    assert len(losses[True]) == SMALL["pretrain"]["epochs"]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)


@cuda
def test_tf32_training_keeps_distances_in_full_precision():
    gen = torch.Generator(device="cuda").manual_seed(0)
    z = 30 + torch.randn(4096, 10, device="cuda", generator=gen)  # off the origin: TF32's cross term would cancel
    centers = 30 + torch.randn(10, 10, device="cuda", generator=gen)
    full = sq_distances(z, centers)
    with network_precision("tf32", "cuda"):
        under_tf32 = sq_distances(z, centers)
        tf32_cross = z @ centers.T
    assert torch.equal(under_tf32, full)
    assert not torch.equal(tf32_cross, z.double().mm(centers.double().T).float())  # TF32 was in effect


def test_distances_stay_float32_under_bf16_autocast():
    gen = torch.Generator().manual_seed(0)
    z, centers = 30 + torch.randn(512, 10, generator=gen), 30 + torch.randn(10, 10, generator=gen)
    with network_precision("bf16", "cpu"):
        assert torch.mm(z, centers.T).dtype == torch.bfloat16  # autocast is in effect for the network
        under_bf16 = sq_distances(z, centers)
        from_bf16_embedding = sq_distances(z.bfloat16(), centers)
    assert under_bf16.dtype == torch.float32 and torch.equal(under_bf16, sq_distances(z, centers))
    assert torch.equal(from_bf16_embedding, sq_distances(z.bfloat16().float(), centers))


@pytest.mark.parametrize("algorithm", ["idec", "dcn"])
def test_bf16_follows_the_float32_trajectory_within_noise(algorithm, digits, tmp_path):
    full, full_records = _cluster_losses(_config("cpu", False, algorithm), digits, tmp_path)
    fast, fast_records = _cluster_losses(_config("cpu", False, algorithm, precision="bf16"), digits, tmp_path)
    assert [r.loss for r in fast_records] != [r.loss for r in full_records]  # the bf16 path ran
    for a, b in zip(full_records, fast_records):
        assert b.loss_cluster == pytest.approx(a.loss_cluster, rel=0.1), a.epoch
    assert math.isclose(fast.final["acc"], full.final["acc"], abs_tol=0.1)


@cuda
def test_bf16_steps_replay_as_graphs(digits, tmp_path):
    eager, eager_records = _cluster_losses(_config("cuda", False, precision="bf16"), digits, tmp_path)
    graphed, graphed_records = _cluster_losses(_config("cuda", True, precision="bf16"), digits, tmp_path)
    for a, b in zip(eager_records, graphed_records):
        assert b.loss == pytest.approx(a.loss, rel=1e-3), a.epoch
    assert math.isclose(graphed.final["acc"], eager.final["acc"], abs_tol=0.02)


@cuda
def test_tf32_follows_the_float32_trajectory_within_noise(digits, tmp_path):
    full, full_records = _cluster_losses(_config("cuda", True), digits, tmp_path)
    fast, fast_records = _cluster_losses(_config("cuda", True, precision="tf32"), digits, tmp_path)
    for a, b in zip(full_records, fast_records):
        assert b.loss_cluster == pytest.approx(a.loss_cluster, rel=0.05), a.epoch
    assert math.isclose(fast.final["acc"], full.final["acc"], abs_tol=0.05)


@cuda
def test_the_step_is_captured_for_full_and_last_batches(digits):
    config = _config("cuda", True, train={"drop_last": False})  # with drop_last the short batch is never trained
    trial = Trial(config, digits.to(torch.device("cuda")), torch.device("cuda"))
    trial.init_clustering()
    for _ in range(3):  # the last, shorter batch comes once per epoch: captured after two warm-up epochs
        trial.train_epoch()
    assert uses_cuda_graphs(trial.config, trial.state.device) and len(trial.train_step.graphs) == 2


@cuda
def test_contrastive_steps_replay_as_graphs(digits, tmp_path, monkeypatch):
    """ResNet-18 with BatchNorm, two views, InfoNCE and gradient clipping, captured like the autoencoder step."""
    images = F.interpolate(digits.x[:300] / 16, size=(16, 16), mode="bilinear").repeat(1, 3, 1, 1)
    colour = standardize("colour-digits", images, digits.y[:300], 10)
    config = {"net": {"arch": "resnet18", "hidden": [64, 32], "embedding_dim": 16, "projector_width": 64,
                      "projector_dim": 16},
              "pretrain": {"epochs": 1, "batch_size": 64}, "train": {"algorithm": "idec", "epochs": 3, "batch_size": 64},
              "brb": {"interval": 2, "subsample": 200}, "eval": {"subsample": 100}, "device": "cuda"}
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)  # convolution backward is otherwise free to differ between runs
    runs = {}
    for graphs in (False, True):
        values = {**config, "train": {**config["train"], "cuda_graphs": graphs}}
        runs[graphs] = _cluster_losses(make_config(values), colour, tmp_path)[1]
    for a, b in zip(runs[False], runs[True]):
        assert b.loss == pytest.approx(a.loss, rel=1e-3), a.epoch


@cuda
@pytest.mark.parametrize("algorithm", ["dec", "dcn"])
def test_a_graphed_population_follows_each_member_alone(algorithm, digits, tmp_path):
    configs = [_config("cuda", True, algorithm, seed=seed, alpha=alpha)
               for seed, alpha in ((0, 0.8), (1, 0.6), (2, 0.9))]
    together = {i: [] for i in range(len(configs))}
    results = fit_population(configs, lambda i, r: together[i].append(r), dataset=digits, pretrain_cache=tmp_path)
    for i, config in enumerate(configs):
        alone, alone_records = _cluster_losses(config, digits, tmp_path)
        mine = [r for r in together[i] if r.phase == "cluster"]
        assert results[i].status == "finished"
        for a, b in zip(alone_records, mine, strict=True):
            assert b.loss == pytest.approx(a.loss, rel=1e-4), (i, a.epoch)
        assert math.isclose(results[i].final["acc"], alone.final["acc"], abs_tol=0.01)
