"""Population mode: members trained as one stacked model follow the trajectories fit() gives them alone."""
import math

import pytest

from raydc.config import ConfigError, make_config
from reference_metrics import cluster_acc
from raydc.engine.population import fit_population
from raydc.engine.train import fit

# The digits fixture at its native 8 × 8 (fast; resizing as Table 5 is tested in test_data.py).
SMALL = {"data": {"resize": None}, "net": {"hidden": [256, 128]}, "pretrain": {"epochs": 20}, "train": {"epochs": 6},
         "brb": {"interval": 2, "subsample": 1000}, "eval": {"subsample": 300}, "device": "cpu"}
# Batched matmuls and the stacked Adam round differently from addmm and the fused kernel in the last bit, and training
# amplifies that: DEC and DCN losses stay within ~1e-6 over these epochs, while IDEC is more sensitive in the plain
# path itself (scaling its initial weights by 1 + 1e-7 moves its cluster loss by ~1.5e-4 within 5 epochs).
LOSS_RTOL = {"dec": 1e-4, "dcn": 1e-4, "idec": 1e-3}
# bf16 keeps 8 mantissa bits: batched and plain products round apart sooner (up to 1.5e-3 with several threads;
# float32 activations after a bf16 product, the arithmetic this guards against, drift 8e-3)
BF16_LOSS_RTOL = 4e-3


def _config(seed=0, **groups):
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in SMALL.items()}
    for group, fields in groups.items():
        values[group] = {**values.get(group, {}), **fields} if isinstance(fields, dict) else fields
    return make_config({**values, "seed": seed})


def _cluster_records(records):
    return [r for r in records if r.phase == "cluster"]


def _alone(config, digits, cache):
    records = []
    result = fit(config, records.append, dataset=digits, pretrain_cache=cache)
    return result, _cluster_records(records)


def _together(configs, digits, cache):
    records = {i: [] for i in range(len(configs))}
    results = fit_population(configs, lambda i, r: records[i].append(r), dataset=digits, pretrain_cache=cache)
    return results, [_cluster_records(records[i]) for i in range(len(configs))]


def _assert_same_trajectory(alone, together, result_alone, result_together, algorithm="dec", rtol=None):
    assert [r.epoch for r in together] == [r.epoch for r in alone]
    assert [r.reset_applied for r in together] == [r.reset_applied for r in alone]
    for a, b in zip(alone, together):
        for field in ("loss", "loss_cluster", "loss_reconstruction"):
            if math.isnan(getattr(a, field)):
                assert math.isnan(getattr(b, field))
            else:
                expected = pytest.approx(getattr(a, field), rel=rtol or LOSS_RTOL[algorithm])
                assert getattr(b, field) == expected, (field, a.epoch)
        assert b.acc == pytest.approx(a.acc, abs=0.01)
    assert result_together.status == result_alone.status == "finished"
    assert result_together.final["acc"] == pytest.approx(result_alone.final["acc"], abs=0.01)
    assert result_together.epochs_done == result_alone.epochs_done
    # the same clusters, whatever ids a reclustering on a last-bit-different embedding gave them
    assert cluster_acc(result_alone.labels, result_together.labels) > 0.98
    assert result_together.embedding.shape == result_alone.embedding.shape


@pytest.mark.parametrize("algorithm,dcn_update,mode,precision,batch_norm", [
    ("dec", "epoch", "brb", "float32", False), ("idec", "epoch", "brb", "float32", False),
    ("dcn", "epoch", "brb", "float32", False), ("dcn", "step", "brb", "float32", False),
    ("dec", "epoch", "reset", "float32", False),  # reset keeps centroid moments
    ("dec", "epoch", "brb", "bf16", False),  # autocast: the stacked layers keep bf16 activations, as F.linear does
    # BatchNorm: batch statistics in the steps (DCN's re-embedding after a step too), running ones when embedding
    ("idec", "epoch", "brb", "float32", True), ("dcn", "step", "brb", "float32", True),
])
def test_one_member_population_reproduces_fit(algorithm, dcn_update, mode, precision, batch_norm, digits, cache):
    # With BatchNorm the lone and stacked embeddings part in their last bits; a best-of-ten reclustering k-means can
    # then keep another of two near-tied seedings: one seeding keeps this test on the stack's arithmetic
    seedings = {"recluster_inits": 1} if batch_norm else {}
    config = _config(train={"algorithm": algorithm, "augment": False, "dcn_update": dcn_update,
                            "precision": precision}, brb={"mode": mode, **seedings}, net={"batch_norm": batch_norm})
    result_alone, alone = _alone(config, digits, cache)
    [result_together], [together] = _together([config], digits, cache)
    _assert_same_trajectory(alone, together, result_alone, result_together, algorithm,
                            BF16_LOSS_RTOL if precision == "bf16" else None)
    assert set(result_together.final) == set(result_alone.final)
    assert result_together.config == result_alone.config


@pytest.mark.parametrize("batch_norm", [False, True])  # each member's BatchNorm statistics are its own
def test_each_member_matches_its_own_run(batch_norm, digits, cache):
    net = {"batch_norm": batch_norm}
    configs = [_config(seed=0, brb={"alpha": 0.8, "interval": 2}, train={"lr": 1e-3}, net=net),
               _config(seed=1, brb={"alpha": 0.6, "interval": 3}, train={"lr": 5e-4}, net=net),
               _config(seed=0, brb={"alpha": 0.9, "interval": 4}, train={"lr": 2e-3}, net=net)]
    results, together = _together(configs, digits, cache)
    for config, result, records in zip(configs, results, together):
        result_alone, alone = _alone(config, digits, cache)
        _assert_same_trajectory(alone, records, result_alone, result)
    # every member resets at its own multiples of T, never at epoch 0
    assert [[r.epoch for r in records if r.reset_applied] for records in together] == [[2, 4], [3], [4]]


def test_members_from_scratch_set_their_own_batch_norm_statistics_as_alone(digits, cache):
    """Without pretraining, each member's initial k-means sets its own BatchNorm running statistics from the data
    (training-mode embedding), as a lone trial's does. Before any reclustering: from scratch, a reclustering of
    embeddings a last bit apart may move the losses by 1e-3 (without BatchNorm too)."""
    configs = [_config(seed=seed, pretrain={"epochs": 0}, net={"batch_norm": True}, train={"epochs": 3},
                       brb={"mode": "baseline"}) for seed in (0, 1)]
    results, together = _together(configs, digits, cache)
    for config, result, records in zip(configs, results, together):
        result_alone, alone = _alone(config, digits, cache)
        _assert_same_trajectory(alone, records, result_alone, result)


def test_each_dcn_member_moves_its_own_centres(digits, cache):
    """Every member's pass after an epoch draws its own order and moves its own centres. Compared before the first
    reset: DCN assigns by a hard argmin at every step, and a reclustering of embeddings that differ by rounding may
    settle a near-tie differently (fit() alone on 1 vs 2 threads shows the same)."""
    configs = [_config(seed=0, brb={"interval": 4}, train={"algorithm": "dcn", "lr": 1e-3, "epochs": 4}),
               _config(seed=1, brb={"interval": 5}, train={"algorithm": "dcn", "lr": 5e-4, "epochs": 4}),
               _config(seed=0, brb={"interval": 6}, train={"algorithm": "dcn", "lr": 2e-3, "epochs": 4})]
    results, together = _together(configs, digits, cache)
    for config, result, records in zip(configs, results, together):
        result_alone, alone = _alone(config, digits, cache)
        _assert_same_trajectory(alone, records, result_alone, result, "dcn")


def test_diverging_member_fails_alone(digits, cache):
    configs = [_config(seed=0, train={"algorithm": "idec"}),
               _config(seed=0, train={"algorithm": "idec", "lr": 1e9}),
               _config(seed=1, train={"algorithm": "idec"})]
    results, together = _together(configs, digits, cache)
    assert results[1].status == "failed" and "non-finite" in results[1].error
    assert len(together[1]) < 6  # no epochs reported after it diverged
    assert results[1].wall_time_s < together[0][len(together[1])].elapsed_s  # its clock stopped when it failed
    assert results[1].cluster_time_s < results[0].cluster_time_s
    for i in (0, 2):
        assert results[i].status == "finished", results[i].error
        assert len(together[i]) == 6 and math.isfinite(results[i].final["loss"])
    result_alone, alone = _alone(configs[2], digits, cache)  # the survivors are untouched by the failure
    _assert_same_trajectory(alone, together[2], result_alone, results[2], "idec")


def test_a_population_whose_members_all_diverge_records_them_failed(digits, cache):
    configs = [_config(seed=seed, train={"algorithm": "idec", "lr": 1e9}) for seed in (0, 1)]
    results, _ = _together(configs, digits, cache)
    assert [r.status for r in results] == ["failed", "failed"]
    assert all("non-finite" in r.error for r in results)


def test_a_crashed_population_resumes_from_its_checkpoint(digits, cache, tmp_path):
    """A crash after epoch 3 (checkpoint after epochs 1 and 3) resumes with the failed member still failed and the
    others' epochs 4-5 and final results exactly those of an uninterrupted run."""
    configs = [_config(seed=0, train={"algorithm": "idec"}, checkpoint_every=2),
               _config(seed=0, train={"algorithm": "idec", "lr": 1e9}, checkpoint_every=2),
               _config(seed=1, brb={"alpha": 0.6, "interval": 3}, train={"algorithm": "idec", "lr": 5e-4},
                       checkpoint_every=2)]
    reference, uninterrupted = _together(configs, digits, cache)

    saved_elapsed = {}

    def crash_at_epoch_4(index, record):
        if record.phase == "cluster" and record.epoch == 3:
            saved_elapsed[index] = record.elapsed_s
        if record.phase == "cluster" and record.epoch == 4:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        fit_population(configs, crash_at_epoch_4, dataset=digits, pretrain_cache=cache, checkpoint_dir=tmp_path)
    resumed = {i: [] for i in range(3)}
    results = fit_population(configs, lambda i, r: resumed[i].append(r), dataset=digits, pretrain_cache=cache,
                             checkpoint_dir=tmp_path)
    assert results[1].status == "failed" and results[1].error == reference[1].error and not resumed[1]
    assert 0 < results[1].wall_time_s < saved_elapsed[0]  # stamped when it failed, kept by the checkpoint
    for i in (0, 2):
        assert [(r.phase, r.epoch) for r in resumed[i]] == [("cluster", 4), ("cluster", 5)]  # no pretraining again
        assert [r.loss for r in resumed[i]] == [r.loss for r in _cluster_records(uninterrupted[i])[4:]]
        assert results[i].final == reference[i].final and results[i].reset_time_s > 0
        assert (results[i].labels == reference[i].labels).all()
        # the clock goes on from the checkpoint: the crashed run's time counts
        assert resumed[i][0].elapsed_s > saved_elapsed[i] and results[i].wall_time_s > saved_elapsed[i]
        assert results[i].cluster_time_s > saved_elapsed[i] - results[i].pretrain_time_s - 1.0


def test_a_checkpoint_resumes_without_the_members_recorded_since(digits, cache, tmp_path):
    """A member recorded after the checkpoint (e.g. before a kill in the study's record loop) is left out of the
    resumed stack, its rows and Adam moments with it; the others go on exactly as uninterrupted."""
    configs = [_config(seed=0, train={"algorithm": "idec"}, checkpoint_every=2),
               _config(seed=0, train={"algorithm": "idec", "lr": 1e9}, checkpoint_every=2),
               _config(seed=1, brb={"alpha": 0.6, "interval": 3}, train={"algorithm": "idec", "lr": 5e-4},
                       checkpoint_every=2)]
    reference, uninterrupted = _together(configs, digits, cache)

    def crash_at_epoch_4(index, record):
        if record.phase == "cluster" and record.epoch == 4:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        fit_population(configs, crash_at_epoch_4, dataset=digits, pretrain_cache=cache, checkpoint_dir=tmp_path)
    resumed = {i: [] for i in range(2)}
    results = fit_population(configs[1:], lambda i, r: resumed[i].append(r), dataset=digits, pretrain_cache=cache,
                             checkpoint_dir=tmp_path)  # member 0 (alive at the checkpoint) is left out
    assert results[0].status == "failed" and not resumed[0]
    assert [(r.phase, r.epoch) for r in resumed[1]] == [("cluster", 4), ("cluster", 5)]
    # a stack of another size rounds its batched products differently in the last bit
    assert [r.loss for r in resumed[1]] == pytest.approx([r.loss for r in _cluster_records(uninterrupted[2])[4:]],
                                                         rel=1e-5)
    assert results[1].final == pytest.approx(reference[2].final, rel=1e-5, nan_ok=True)  # vi: NaN with no sibling seed


@pytest.mark.parametrize("change,field", [
    ({"train": {"batch_size": 128}}, "train.batch_size"),
    ({"train": {"algorithm": "dcn"}}, "train.algorithm"),
    ({"brb": {"mode": "disentangled"}}, "brb.mode"),
    ({"net": {"arch": "resnet18"}}, "net.arch"),
    ({"selflabel": {"epochs": 2}}, "selflabel.epochs"),
    ({"train": {"algorithm": "lfss"}}, "train.algorithm"),
    ({"pretrain": {"epochs": 10}}, "pretrain.epochs"),
    ({"net": {"batch_norm": True}}, "net.batch_norm"),
    ({"net": {"batch_norm": True}, "train": {"precision": "bf16"}}, "train.precision"),
])
def test_unstackable_configs_are_rejected_naming_the_field(change, field, digits):
    base = {k: v for k, v in SMALL.items()}
    other = make_config({**base, **{g: {**base.get(g, {}), **f} for g, f in change.items()}})
    with pytest.raises(ConfigError) as excinfo:
        fit_population([make_config(base), other], dataset=digits)
    assert excinfo.value.field == field and str(excinfo.value).startswith(field)
    with pytest.raises(ValueError, match="configs"):
        fit_population([], dataset=digits)


def test_stacked_embedding_runs_each_member_at_the_populations_precision(digits, product_dtypes):
    """A population's evaluation embeds as each member's Trial.measured_embedding does: bf16 products under bf16,
    float32 embeddings out."""
    import torch

    from raydc.engine.population.stack import StackedModels
    from raydc.engine.state import embed
    from raydc.engine.trial import Trial

    trials = [Trial(_config(seed, train={"precision": "bf16"}), digits, torch.device("cpu")) for seed in (0, 1)]
    for trial in trials:
        trial.init_clustering()
    stack = StackedModels([t.state.model for t in trials])
    with product_dtypes() as reduced:
        z16 = stack.embed(digits.x, "bf16")
    with product_dtypes() as full:
        z32 = stack.embed(digits.x)
    assert reduced.dtypes == {torch.bfloat16} and full.dtypes == {torch.float32}
    assert z16.dtype == torch.float32 and z16.shape == z32.shape == (2, digits.n, digits.n_clusters)
    for row, trial in enumerate(trials):
        assert torch.allclose(z32[row], embed(trial.state.net, digits.x), atol=1e-5)
        assert torch.allclose(z16[row], trial.measured_embedding(), rtol=2e-2, atol=1e-2)  # bf16: 8 mantissa bits
