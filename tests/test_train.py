"""The trial engine end to end on `digits`: resets, reclustering, momentum, records, determinism, resume."""
import math

import pytest
import torch

from raydc.config import make_config
from raydc.engine.records import EPOCH_FIELDS, EpochRecord
from raydc.engine.pretrain import pretrained_state
from raydc.engine.train import fit
from raydc.engine.state import embed
from raydc.engine.trial import Trial

# The digits fixture at its native 8 × 8 (fast; resizing as Table 5 is tested in test_data.py).
SMALL = {"data": {"resize": None}, "net": {"hidden": [256, 128]}, "pretrain": {"epochs": 20}, "train": {"epochs": 5},
         "brb": {"interval": 2, "subsample": 1000}, "eval": {"subsample": 300}, "device": "cpu"}


def _config(**groups):
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in SMALL.items()}
    for group, fields in groups.items():
        values[group] = {**values.get(group, {}), **fields} if isinstance(fields, dict) else fields
    return make_config(values)


def _ready_trial(config, data, cache):
    trial = Trial(config, data, torch.device("cpu"))
    pretrained_state(trial.state.net, data, config, trial.state.augmenter, cache, lambda epoch, loss: None)
    trial.init_clustering()
    trial.train_epoch()
    return trial


@pytest.mark.parametrize("algorithm", ["dec", "idec", "dcn"])
@pytest.mark.parametrize("mode", ["baseline", "brb"])
def test_fit_records(algorithm, mode, digits, cache):
    records: list[EpochRecord] = []
    result = fit(_config(train={"algorithm": algorithm}, brb={"mode": mode}), records.append, dataset=digits,
                 pretrain_cache=cache)
    assert result.status == "finished", result.error
    assert [r.phase for r in records] == ["pretrain"] * 20 + ["cluster"] * 5
    cluster = [r for r in records if r.phase == "cluster"]
    assert [r.epoch for r in cluster] == list(range(5))
    expected_resets = [2, 4] if mode == "brb" else []
    assert [r.epoch for r in cluster if r.reset_applied] == expected_resets  # multiples of T, never epoch 0
    for r in cluster:
        assert set(r.to_dict()) == set(EPOCH_FIELDS)
        assert 0 <= r.acc <= 1 and 0 <= r.nmi <= 1 and -1 <= r.ari <= 1
        assert 0 <= r.cl_change <= 1 and -1 <= r.silhouette <= 1 and 0 <= r.ratio_share <= 1
        assert r.intra_cd >= 0 and r.inter_cd >= 0 and math.isfinite(r.loss)
        assert math.isfinite(r.loss_reconstruction) == (algorithm != "dec")
    assert result.final["acc"] == cluster[-1].acc
    assert result.final["acc"] > 0.3  # far above chance (0.1) even after a few epochs
    assert result.labels.shape == (digits.n,) and result.embedding.shape == (digits.n, 10)


@pytest.mark.parametrize("algorithm", ["dec", "dcn"])
def test_brb_step_refits_centroids_and_zeroes_momentum(algorithm, digits, cache):
    trial = _ready_trial(_config(train={"algorithm": algorithm}, brb={"mode": "brb"}), digits, cache)
    encoder_before = trial.state.net.encoder[0].weight.clone()
    embedding_before = trial.state.net.embedding_layer.weight.clone()
    centers_before = trial.state.model.centers.detach().clone()
    trial.periodic_step()
    assert not torch.allclose(trial.state.net.encoder[0].weight, encoder_before)  # encoder perturbed
    assert torch.equal(trial.state.net.embedding_layer.weight, embedding_before)   # embedding layer left alone
    assert not torch.allclose(trial.state.model.centers, centers_before)
    if algorithm == "dec":
        state = trial.optimizer.state[trial.state.model.centers]
        assert state["exp_avg"].abs().sum() == 0 and state["exp_avg_sq"].abs().sum() == 0
    else:
        assert torch.all(trial.state.model.counts == 100)  # DCN's running counts restart with the new centres
        assert torch.equal(trial.state.model.assignments, trial.state.model.predict(embed(trial.state.net, digits.x)))


def test_brb_step_embeds_every_sample_once(digits, cache, monkeypatch):
    """The reassignment needs the whole dataset's embedding; the reclustering subsample is read from it."""
    trial = _ready_trial(_config(brb={"mode": "brb", "subsample": 1000}), digits, cache)
    encode, rows = trial.state.net.encode, []
    monkeypatch.setattr(trial.state.net, "encode", lambda x: rows.append(len(x)) or encode(x))
    trial.periodic_step()
    assert sum(rows) == digits.n
    assert torch.equal(trial.state.model.assignments, trial.state.model.predict(embed(trial.state.net, digits.x)))


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_evaluation_embeds_at_the_trials_precision_and_what_feeds_training_in_float32(precision, digits, cache,
                                                                                      monkeypatch, product_dtypes):
    """Evaluation runs the network at train.precision (bf16 products under bf16) and scores a float32 embedding; the
    initial k-means, the BRB step and DCN's centre pass (whose embedding evaluation then reuses) embed in float32."""
    config = _config(train={"algorithm": "dcn", "precision": precision}, brb={"mode": "brb"})
    trial = Trial(config, digits, torch.device("cpu"))
    pretrained_state(trial.state.net, digits, config, trial.state.augmenter, cache, lambda epoch, loss: None)
    encode, products = trial.state.net.encode, []

    def recording_encode(x):
        with product_dtypes() as seen:
            z = encode(x)
        products.append(seen.dtypes)
        return z
    monkeypatch.setattr(trial.state.net, "encode", recording_encode)
    trial.init_clustering()
    trial.periodic_step()
    trial._sweep_centers()
    assert products == [{torch.float32}] * 3
    trial.evaluate(EpochRecord(phase="cluster", epoch=0))  # reuses the centre pass's embedding
    assert len(products) == 3
    trial.epoch_embedding = None
    record = EpochRecord(phase="cluster", epoch=0)
    trial.evaluate(record)
    assert products[3:] == [{torch.bfloat16 if precision == "bf16" else torch.float32}]
    assert trial.measured_embedding().dtype == torch.float32 and math.isfinite(record.acc)


@pytest.mark.parametrize("drop_last", [True, False])
def test_dcn_epoch_update_keeps_centres_through_steps_then_moves_them_per_batch(drop_last, digits, cache):
    trial = _ready_trial(_config(train={"algorithm": "dcn", "drop_last": drop_last}), digits, cache)
    model, k = trial.state.model, digits.n_clusters
    before = model.centers.clone()
    index = torch.arange(256)
    trial._step(digits.x[index], None, index)
    assert torch.equal(model.centers, before)  # network steps leave the centres alone
    state = trial.state.generator.get_state()
    trial._sweep_centers()
    z = embed(trial.state.net, digits.x)
    order = torch.randperm(digits.n, generator=torch.Generator().set_state(state))
    if drop_last:  # the pass takes the training epoch's batches, as the authors' code its training loader's
        order = order[: digits.n - digits.n % trial.config.train.batch_size]
    expected = before.clone()
    for batch in z[order].split(trial.config.train.batch_size):  # the authors' rule, one centre at a time
        labels = ((batch[:, None] - expected[None]) ** 2).sum(-1).argmin(1)
        expected = torch.stack([expected[j] + (batch[labels == j].mean(0) - expected[j]) / 101
                                if (labels == j).any() else expected[j] for j in range(k)])
    assert torch.allclose(model.centers, expected, atol=1e-5)
    assert torch.equal(trial.epoch_embedding, z)  # evaluation reuses the pass's embedding


@pytest.mark.parametrize("update", ["epoch", "step"])
def test_dcn_loss_assigns_by_nearest_centre_or_by_stored_assignments(update, digits, cache):
    trial = _ready_trial(_config(train={"algorithm": "dcn", "dcn_update": update}), digits, cache)
    model, index = trial.state.model, torch.arange(512)
    x = digits.x[index]
    with torch.no_grad():
        loss = model(x, None, index)["loss_cluster"]
        nearest_labels = model.predict(embed(trial.state.net, x))
        model.assignments[index] = (nearest_labels + 1) % digits.n_clusters  # stored S_t now disagrees
        moved = model(x, None, index)["loss_cluster"]
    assert torch.equal(moved, loss) == (update == "epoch")


def test_momentum_kept_when_disabled(digits, cache):
    trial = _ready_trial(_config(brb={"mode": "brb", "reset_momentum": False}), digits, cache)
    trial.periodic_step()
    assert trial.optimizer.state[trial.state.model.centers]["exp_avg"].abs().sum() > 0


def _effects(mode, digits, cache):
    trial = _ready_trial(_config(brb={"mode": mode}), digits, cache)
    w, c = trial.state.net.encoder[0].weight.clone(), trial.state.model.centers.detach().clone()
    trial.periodic_step()
    return (not torch.equal(trial.state.net.encoder[0].weight, w)), (not torch.equal(trial.state.model.centers, c))


@pytest.mark.parametrize("mode,weights_change,centers_change", [
    ("recluster", False, True),
    ("reset", True, False),
    ("brb", True, True),
    ("disentangled", False, True),
    ("embedding_noise", False, True),
    ("perturb_only", True, True),
    ("scaled_gaussian", True, True),
])
def test_each_mode_touches_what_it_should(mode, weights_change, centers_change, digits, cache):
    assert _effects(mode, digits, cache) == (weights_change, centers_change)


@pytest.mark.parametrize("method, function, settings, expected", [
    ("kmeans", "kmeans", {}, {"n_init": 10}),  # the authors' scikit-learn KMeans(n_init=10)
    ("kmeans", "kmeans", {"recluster_inits": 3}, {"n_init": 3}),
    ("em", "gmm_em", {}, {"n_init": 10, "covariance": "full"}),  # the authors' GaussianMixture
    ("em", "gmm_em", {"recluster_inits": 2, "em_covariance": "diag"}, {"n_init": 2, "covariance": "diag"}),
    ("kmedoids", "kmedoids", {}, {"init": "heuristic"}),  # the authors' KMedoids
    ("kmedoids", "kmedoids", {"kmedoids_init": "kmeans++"}, {"init": "kmeans++"}),
])
def test_reclustering_takes_the_configured_options(method, function, settings, expected, monkeypatch, digits, cache):
    import raydc.clustering.kmeans as kmeans_module

    calls, run = [], getattr(kmeans_module, function)
    monkeypatch.setattr(kmeans_module, function, lambda *a, **kw: calls.append(kw) or run(*a, **kw))
    trial = _ready_trial(_config(brb={"mode": "recluster", "recluster": method, **settings}), digits, cache)
    calls.clear()
    trial.periodic_step()
    assert calls == [expected]
    assert torch.isfinite(trial.state.model.centers).all()


def test_initial_kmeans_keeps_the_configured_number_of_seedings(monkeypatch, digits, cache):
    import raydc.engine.state as state_module

    seedings, run = [], state_module.kmeans
    monkeypatch.setattr(state_module, "kmeans", lambda *a, **kw: seedings.append(kw["n_init"]) or run(*a, **kw))
    for inits in (10, None):
        seedings.clear()
        _ready_trial(_config(train={"init_kmeans_inits": inits} if inits else {}), digits, cache)
        assert seedings == [inits or 4]  # 4 by default, the rows measured before the setting existed


def test_disentangled_centroids_are_label_means_of_unperturbed_embedding(digits, cache):
    trial = _ready_trial(_config(brb={"mode": "disentangled", "subsample": 5000}), digits, cache)
    trial.periodic_step()
    from raydc.engine.state import embed
    z = embed(trial.state.net, digits.x)
    # with the subsample covering the data, every centroid is a mean of unperturbed embeddings
    centers = trial.state.model.centers.detach()
    hull_lo, hull_hi = z.min(0).values, z.max(0).values
    assert torch.all(centers >= hull_lo - 1e-5) and torch.all(centers <= hull_hi + 1e-5)


def test_same_seed_same_metrics_and_different_seed_differs(digits, cache):
    config = _config(brb={"mode": "brb"})
    a = fit(config, dataset=digits)
    b = fit(config, dataset=digits, pretrain_cache=cache)  # cached pretraining gives the same trial
    assert a.final == b.final
    c = fit(_config(brb={"mode": "brb"}, seed=1), dataset=digits, pretrain_cache=cache)
    assert c.final != a.final


@pytest.mark.parametrize("algorithm", ["dec", "dcn"])
def test_resume_from_checkpoint_matches_uninterrupted_run(algorithm, tmp_path, digits, cache):
    full = fit(_config(checkpoint_every=1, train={"algorithm": algorithm}), dataset=digits, pretrain_cache=cache)
    short = _config(checkpoint_every=1, train={"algorithm": algorithm, "epochs": 3})
    fit(short, dataset=digits, checkpoint_dir=tmp_path, pretrain_cache=cache)  # "interrupted" after epoch 2
    resumed_records = []
    resumed = fit(_config(checkpoint_every=1, train={"algorithm": algorithm}), resumed_records.append, dataset=digits,
                  checkpoint_dir=tmp_path, pretrain_cache=cache)
    assert [r.epoch for r in resumed_records] == [3, 4]  # only the missing epochs run
    assert resumed.final == full.final


def test_a_resumed_trial_records_what_the_whole_trial_cost(tmp_path, digits):
    """Times, elapsed seconds and whether pretraining was cached carry over from the run before the crash."""
    short_records = []
    short = fit(_config(checkpoint_every=1, train={"epochs": 3}), short_records.append, dataset=digits,
                checkpoint_dir=tmp_path)  # pretrains itself: no cache yet
    resumed_records = []
    resumed = fit(_config(checkpoint_every=1), resumed_records.append, dataset=digits, checkpoint_dir=tmp_path)
    assert not short.pretrain_cached and not resumed.pretrain_cached
    assert resumed.pretrain_time_s == short.pretrain_time_s > 0
    assert resumed.cluster_time_s > short_records[-1].elapsed_s - short.pretrain_time_s
    assert resumed_records[0].elapsed_s > short_records[-1].elapsed_s
    assert resumed.wall_time_s > resumed_records[-1].elapsed_s > short.wall_time_s * 0.9


def test_pretrain_cache_reused_and_identical(tmp_path, digits):
    first = fit(_config(), dataset=digits, pretrain_cache=tmp_path)
    second_records = []
    second = fit(_config(), second_records.append, dataset=digits, pretrain_cache=tmp_path)
    assert not first.pretrain_cached and second.pretrain_cached
    assert [r.phase for r in second_records].count("pretrain") == 20
    assert second.final == first.final


def test_diverging_trial_fails_with_reason(digits):
    broken = digits.to("cpu")
    broken.x = broken.x.clone()
    broken.x[:5] = float("nan")
    result = fit(_config(), dataset=broken)
    assert result.status == "failed" and "non-finite" in result.error


@pytest.mark.parametrize("drop_last", [True, False])
def test_clustering_epochs_drop_the_last_short_batch(drop_last, digits, cache, monkeypatch):
    trial = Trial(_config(train={"drop_last": drop_last}), digits, torch.device("cpu"))
    pretrained_state(trial.state.net, digits, trial.config, trial.state.augmenter, cache, lambda epoch, loss: None)
    trial.init_clustering()
    sizes, step = [], trial.train_step
    monkeypatch.setattr(trial, "train_step", lambda x, *rest: (sizes.append(len(x)), step(x, *rest))[1])
    trial.train_epoch()
    # 1797 digits = 7 batches of 256 + 5: the authors' loader drops the 5 (DEC's targets from 5 samples are noise)
    assert sizes == [256] * 7 + ([] if drop_last else [5])
