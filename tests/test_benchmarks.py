"""Every benchmark script imports against the current package (they run only by hand, so nothing else would notice)."""
import importlib
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCHMARKS.glob("*.py")))
def test_benchmark_script_imports(script, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(script)
    assert callable(getattr(module, "main", None)), f"{script}.py has no main()"
    sys.modules.pop(script, None)


def _printed_lines(script: str, args: list[str], monkeypatch, capsys) -> list[str]:
    """What a benchmark's main() prints when run with the command-line arguments args."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(script)
    monkeypatch.setattr(sys, "argv", [script, *args])
    module.main()
    sys.modules.pop(script, None)
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("script", ["epoch_time", "brb_overhead"])
def test_timing_benchmarks_run_on_a_tiny_cpu_case(script, monkeypatch, capsys):
    """The epoch-time benchmarks drive the trial engine's internals directly: a tiny run catches API drift."""
    lines = _printed_lines(script, ["--device", "cpu", "--n", "300", "--epochs", "1", "--subsample", "200",
                                    "--eval-subsample", "100", "--algorithms", "dcn"], monkeypatch, capsys)
    rows = [line.split() for line in lines if line.startswith("dcn")]
    assert rows, "no timing row printed"
    for row in rows:
        seconds = [float(v.rstrip("%x")) for v in row[1:] if v[0].isdigit()]
        assert seconds and all(s >= 0 for s in seconds) and any(s > 0 for s in seconds), row


def test_eval_time_benchmark_runs_on_a_tiny_cpu_case(monkeypatch, capsys):
    lines = _printed_lines("eval_time", ["--device", "cpu", "--n", "400", "--members", "1", "3", "--subsample", "100",
                                         "--repeats", "1"], monkeypatch, capsys)
    rows = [line.split() for line in lines if line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [1, 3]
    assert all(float(v.rstrip("x")) > 0 for r in rows for v in r[1:]), rows


def test_recluster_benchmark_counts_operations_and_times_every_method(monkeypatch, capsys):
    from raydc.clustering.kmeans import RECLUSTER_METHODS

    lines = _printed_lines("recluster_time", ["--device", "cpu", "--n", "300", "--repeats", "1"], monkeypatch, capsys)
    counts = next(line for line in lines if line.startswith("operations:"))
    assert float(counts.split()[-1]) > 0 and int(counts.split()[3].rstrip(",")) > 0
    variants = {"em-diag", "kmedoids-kmeans++", "kmeans-x10", "em-x10", "em-diag-x10"}
    timed = {line.split()[0]: float(line.split()[1]) for line in lines
             if line.split()[0] in {*RECLUSTER_METHODS, *variants}}
    assert set(timed) == {*RECLUSTER_METHODS, *variants} and all(s > 0 for s in timed.values())


def test_em_reference_compares_both_codes_on_each_covariance(monkeypatch, capsys):
    lines = _printed_lines("em_reference", ["--dataset", "digits", "--seeds", "0", "--inits", "2"], monkeypatch, capsys)
    rows = [line.split() for line in lines if line.split()[0] in ("full", "diag")]
    assert [(r[0], r[1]) for r in rows] == [("full", "raydc"), ("full", "scikit-learn"),
                                            ("diag", "raydc"), ("diag", "scikit-learn")]
    assert all(0 < float(r[2]) <= 1 and float(r[-1]) > 0 for r in rows), rows


def test_gpu_suite_refuses_an_unknown_part_before_running_anything(tmp_path):
    import subprocess

    logs = tmp_path / "logs"
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_suite.sh"), str(logs), "eval", "throughputs"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": "false"})
    assert done.returncode == 2 and "unknown part throughputs" in done.stderr
    assert not logs.exists()  # not even the valid part before it ran


def test_byte_count_reads_inputs_and_writes_outputs_once(monkeypatch):
    """The traffic figures of profile_step.py --traffic (OperationCount.bytes): exact bytes for a product, a broadcast add, an in-place update
    and the fused Adam (which reads its gradients and rewrites parameters and both moments)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("profile_step")
    sys.modules.pop("profile_step", None)
    x, w, bias = torch.ones(8, 5), torch.ones(5, 3), torch.ones(3)
    with module.OperationCount() as moved:
        out = x @ w  # reads 40 + 15 floats, writes 24
        out = out + bias  # the bias is read once, not once per row: 24 + 3 read, 24 written
        out.mul_(2.0)  # read and written in place: 24 + 24
        torch.neg(out, out=torch.empty_like(out))  # an out= buffer is written, not read: 24 + 24
    assert dict(moved.bytes) == {"mm": 4 * 79, "add": 4 * 51, "mul_": 4 * 48, "neg": 4 * 48}
    params = [torch.zeros(10), torch.zeros(4, 2)]
    grads, exp_avg, exp_avg_sq = ([torch.ones_like(p) for p in params] for _ in range(3))
    step = torch.zeros(())
    with module.OperationCount() as moved:
        torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [], [step, step], lr=1e-3, beta1=0.9, beta2=0.999,
                           weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
    # 18 parameters: read p, g, m, v and write p, m, v (7 × 4 bytes each); the step count is read once per tensor
    assert moved.bytes["_fused_adam_"] == 18 * 7 * 4 + 2 * 4


def test_throughput_grid_is_fig8_and_amortizes_each_trials_steps(monkeypatch):
    """--grid fig8 gives 64 trials the paper's 64 (α, T, lr) settings; the amortized rate adds step / T per trial."""
    import argparse

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("throughput")
    sys.modules.pop("throughput", None)
    args = argparse.Namespace(grid="fig8", interval=20)
    points = [module.grid_point(rank, args) for rank in range(128)]
    assert len({p[1:] for p in points[:64]}) == 64 and points[64:] == [(1, *p[1:]) for p in points[:64]]
    assert {p[2] for p in points} == {5, 10, 20, 40} and {p[3] for p in points} == {5e-3, 1e-3, 5e-4, 1e-4}
    # 16 members, four at each T: a population epoch of 1 s gains 0.5 s × 4 × (1/5 + 1/10 + 1/20 + 1/40) = 0.75 s
    assert module.amortized_rate(args, 16, 1.0, 0.5, packed=False) == pytest.approx(16 / 1.75)
    # packed trials each take their own steps beside the others: two trials at T = 5 (α varies fastest)
    assert module.amortized_rate(args, 2, 1.0, 0.5, packed=True) == pytest.approx(2 / 1.1)
    assert module.amortized_rate(args, 4, 1.0, None, packed=False) is None
    seeds = argparse.Namespace(grid="seeds", interval=20)
    assert {module.grid_point(rank, seeds)[2] for rank in range(8)} == {20}


def test_store_scale_times_recording_and_the_rewrite_baseline(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("store_scale")
    monkeypatch.setattr(sys, "argv", ["store_scale", "--trials", "3", "--record", "4", "--baseline", "3"])
    module.main()
    sys.modules.pop("store_scale", None)
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split()[0] == "3" and "median" in line and "rewrite:" in line


def test_side_by_side_aligns_the_authors_wandb_run_with_a_raydc_trace(tmp_path, monkeypatch, capsys,
                                                                     finished_wandb_records):
    """A real W&B offline run, logged the way the authors' DEC logs, against a trace CSV that parts from it at epoch 3."""
    import wandb

    run = wandb.init(project="p", dir=str(tmp_path), mode="offline", settings=wandb.Settings(silent=True))
    accs = [0.60, 0.70, 0.72, 0.74, 0.75]
    for epoch, acc in enumerate(accs):
        run.log({"Clustering epoch": epoch, "Clustering metrics/ACC": acc, "Clustering metrics/NMI": acc,
                 **({"Clustering train/loss": 2.0 - epoch / 10, "Clustering metrics/min_size": 60 + epoch,
                     "Clustering metrics/max_size": 300} if epoch else {})})
    run.finish()
    theirs = tmp_path / "theirs.wandb"
    (source,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    finished_wandb_records(source)
    theirs.write_bytes(source.read_bytes())
    trace = tmp_path / "dec_baseline_seed0.csv"  # row e follows epoch e, the authors' epoch e + 1
    trace.write_text("epoch,loss,acc,nmi,ari,cl_change,reset_applied\n" + "".join(
        f"{e},0.001,{a},{a},0.5,0.1,False\n" for e, a in enumerate([0.69, 0.73, 0.50, 0.45])))
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("side_by_side")
    monkeypatch.setattr(sys, "argv", ["side_by_side", "--authors", str(theirs), "--raydc", str(trace)])
    module.main()
    sys.modules.pop("side_by_side", None)
    out = capsys.readouterr().out
    assert "first after epoch 3, and for good from epoch 3" in out
    assert "authors: first 60.00, best 75.00, last 75.00 ACC over 5 epochs" in out
    assert "63–300" in out  # the authors' smallest and largest cluster after three epochs


def test_side_by_side_reads_the_cluster_term_where_a_trace_has_it(tmp_path, monkeypatch):
    """Traces written before fidelity.py kept the loss terms read on, with the term unknown."""
    import math

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("side_by_side")
    sys.modules.pop("side_by_side", None)
    new, old = tmp_path / "new.csv", tmp_path / "old.csv"
    new.write_text("epoch,loss,loss_cluster,loss_reconstruction,acc,nmi,ari,cl_change,reset_applied\n"
                   "0,0.05,0.3,0.0485,0.7,0.7,0.6,0.1,False\n")
    old.write_text("epoch,loss,acc,nmi,ari,cl_change,reset_applied\n0,0.05,0.7,0.7,0.6,0.1,False\n")
    assert module.raydc_epochs(new)[1]["cluster"] == 0.3
    assert math.isnan(module.raydc_epochs(old)[1]["cluster"])
    assert module.raydc_epochs(old)[1]["acc"] == 0.7


def test_side_by_side_compares_several_seeds_as_two_groups(monkeypatch, capsys):
    """The two codes draw different streams from a seed: several runs of each compare by ACC's mean per epoch."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("side_by_side")
    sys.modules.pop("side_by_side", None)
    theirs = [{0: {"acc": 0.40}, 1: {"acc": 0.60}, 2: {"acc": 0.62}}, {0: {"acc": 0.50}, 1: {"acc": 0.58}}]
    ours = [{1: {"acc": 0.55}, 2: {"acc": 0.57}}, {1: {"acc": 0.45}, 2: {"acc": 0.61}}]
    module.print_groups(theirs, ours, every=25)
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["0"].split()[1:] == ["45.00", "±", "7.07", "(2)", "-"]
    assert rows["1"].split()[1:] == ["59.00", "±", "1.41", "(2)", "50.00", "±", "7.07", "(2)"]
    assert rows["2"].split()[1:] == ["62.00", "±", "0.00", "(1)", "59.00", "±", "2.83", "(2)"]
    monkeypatch.setattr(sys, "argv", ["side_by_side", "--authors", "a.wandb", "b.wandb", "--raydc", "a.csv"])
    with pytest.raises(SystemExit):
        module.main()
    assert "--authors has 2 runs and --raydc 1" in capsys.readouterr().err


def test_fidelity_stops_its_trials_when_terminated_and_says_how_to_go_on(tmp_path):
    """SIGTERM to the script ends its pool's workers (none is left training, orphaned) and exits non-zero."""
    import os
    import signal
    import subprocess
    import time

    import psutil

    script = [sys.executable, str(BENCHMARKS / "fidelity.py"), "--dataset", "digits", "--epochs", "500", "--seeds", "0",
              "--algorithms", "dcn", "--modes", "baseline", "--device", "cpu", "--trace", str(tmp_path)]
    run = subprocess.Popen(script, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(BENCHMARKS.parent)})
    deadline = time.monotonic() + 120
    while not (workers := psutil.Process(run.pid).children(recursive=True)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert workers, "the pool started no worker"
    time.sleep(3)  # the worker is inside its trial
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode != 0
    assert "interrupted" in err and "--seeds not finished" in err
    _, alive = psutil.wait_procs(workers, timeout=30)
    for orphan in alive:  # a failing run must not leave them training on
        orphan.kill()
    assert not alive, f"workers left running: {alive}"
    assert not list(tmp_path.iterdir()), "an unfinished trial wrote a trace"
