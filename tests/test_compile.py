"""train.compile: the step's forward and backward fused by torch.compile compute what the eager step computes."""
import math

import pytest
import torch
from torch._dynamo.utils import counters

from raydc.clustering.objectives import dec_cluster_loss
from raydc.config import ConfigError, make_config
from raydc.compute.fused import RECOMPILE_LIMIT, fuse, require_compiler
from raydc.engine.population import fit_population
from raydc.config.identity import trial_id
from raydc.engine.train import fit
from raydc.engine.trial import Trial

def _cpu_compiler() -> bool:
    try:
        require_compiler("cpu")
    except ConfigError:
        return False
    return True


compiles = pytest.mark.skipif(not _cpu_compiler(), reason="needs a C++ compiler for inductor's CPU code")
# The digits fixture at its native 8 × 8 (fast; resizing as Table 5 is tested in test_data.py).
SMALL = {"data": {"resize": None}, "net": {"hidden": [128, 64]}, "pretrain": {"epochs": 3}, "train": {"epochs": 4},
         "brb": {"interval": 2, "subsample": 1000}, "eval": {"subsample": 300}, "device": "cpu"}


def _config(compiled, algorithm="idec", seed=0, device="cpu", **train):
    return make_config({**SMALL, "seed": seed, "device": device,
                        "train": {**SMALL["train"], "algorithm": algorithm, "compile": compiled, **train}})


def _cluster_records(config, digits, cache):
    records = []
    result = fit(config, records.append, dataset=digits, pretrain_cache=cache)
    assert result.status == "finished", result.error
    return result, [r for r in records if r.phase == "cluster"]


def _assert_same_run(eager, compiled, rel=1e-4):
    (eager_result, eager_records), (compiled_result, compiled_records) = eager, compiled
    assert [r.reset_applied for r in compiled_records] == [r.reset_applied for r in eager_records]
    for a, b in zip(eager_records, compiled_records):
        for field in ("loss", "loss_cluster"):
            assert getattr(b, field) == pytest.approx(getattr(a, field), rel=rel), (a.epoch, field)
    assert math.isclose(compiled_result.final["acc"], eager_result.final["acc"], abs_tol=0.01)


@compiles
def test_compiled_dec_loss_keeps_its_targets_constant_under_vmap():
    """DEC's targets p are constants: the compiled, vmapped loss has the closed-form gradient of the eager one."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(3, 2 * 16, 5, generator=generator, requires_grad=True)
    centers = torch.randn(3, 4, 5, generator=generator, requires_grad=True)

    def loss(z, centers):
        return torch.func.vmap(lambda z, c: dec_cluster_loss(z, c, views=2))(z, centers).sum()

    eager = torch.autograd.grad(loss(z, centers), (z, centers))
    compiled = torch.autograd.grad(torch.compile(loss, fullgraph=True)(z, centers), (z, centers))
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


@compiles
@pytest.mark.parametrize("algorithm", ["idec", "dcn"])
def test_compiled_steps_follow_the_eager_trajectory(algorithm, digits, cache):
    eager = _cluster_records(_config(False, algorithm), digits, cache)
    graphs_before = counters["stats"]["unique_graphs"]
    compiled = _cluster_records(_config(True, algorithm), digits, cache)
    assert counters["stats"]["unique_graphs"] > graphs_before or algorithm == "dcn"  # idec compiled first: dcn reuses
    _assert_same_run(eager, compiled)


@compiles
def test_compiled_population_follows_the_eager_population(digits, cache):
    def run(compiled):
        configs = [_config(compiled, seed=s, lr=lr) for s, lr in ((0, 1e-3), (1, 2e-3))]
        records = {0: [], 1: []}
        results = fit_population(configs, lambda i, r: records[i].append(r), dataset=digits, pretrain_cache=cache)
        return [(res, [r for r in records[i] if r.phase == "cluster"]) for i, res in enumerate(results)]

    for eager, compiled in zip(run(False), run(True)):
        _assert_same_run(eager, compiled)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_compiled_population_replays_as_graphs(digits, cache):
    """Its batches are strided views of the epoch's (M, n, ...) data, captured from contiguous copies."""
    runs = []
    for compiled, graphs in ((False, False), (True, True)):
        configs = [_config(compiled, seed=s, lr=lr, device="cuda", cuda_graphs=graphs) for s, lr in ((0, 1e-3), (1, 2e-3))]
        records = {0: [], 1: []}
        results = fit_population(configs, lambda i, r: records[i].append(r), dataset=digits, pretrain_cache=cache)
        runs.append([(res, [r for r in records[i] if r.phase == "cluster"]) for i, res in enumerate(results)])
    for eager, compiled in zip(*runs):
        _assert_same_run(eager, compiled)


@compiles
def test_a_trial_uses_the_compiled_model_only_when_asked(digits):
    for compiled in (False, True):
        trial = Trial(_config(compiled), digits, torch.device("cpu"))
        trial.init_clustering()
        assert (trial.step_model is not trial.state.model) == compiled
        assert isinstance(trial.step_model, torch._dynamo.eval_frame.OptimizedModule) == compiled


@compiles
def test_a_process_keeps_compiled_steps_for_many_kinds_of_trial():
    fuse(lambda x: x + 1, "cpu")
    assert torch._dynamo.config.recompile_limit >= RECOMPILE_LIMIT


def test_compilation_does_not_change_the_trial_id():
    assert trial_id(_config(True)) == trial_id(_config(False))


def test_lfss_refuses_compilation():
    with pytest.raises(ConfigError, match="train.compile"):
        make_config({"train": {"algorithm": "lfss", "compile": True}})


def test_a_missing_compiler_is_named_before_any_compute(digits, monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(ConfigError, match="train.compile.*no-such-compiler"):
        fit(_config(True), dataset=digits)
    Trial(_config(False), digits, torch.device("cpu"))  # only a compiled trial needs the compiler


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_steps_replay_as_graphs(digits, tmp_path):
    eager = _cluster_records(_config(False, device="cuda", cuda_graphs=False), digits, tmp_path)
    compiled = _cluster_records(_config(True, device="cuda", cuda_graphs=True), digits, tmp_path)
    _assert_same_run(eager, compiled)
