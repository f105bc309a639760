"""Every benchmark script imports against the current package (they run only by hand, so nothing else would notice)."""
import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", sorted(p.stem for p in BENCHMARKS.glob("*.py")))
def test_benchmark_script_imports(script, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(script)
    assert callable(getattr(module, "main", None)), f"{script}.py has no main()"
    sys.modules.pop(script, None)


@pytest.mark.parametrize("script", ["epoch_time", "brb_overhead"])
def test_timing_benchmarks_run_on_a_tiny_cpu_case(script, monkeypatch, capsys):
    """The epoch-time benchmarks drive the trial engine's internals directly: a tiny run catches API drift."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(script)
    monkeypatch.setattr(sys, "argv", [script, "--device", "cpu", "--n", "300", "--epochs", "1", "--subsample", "200",
                                      "--eval-subsample", "100", "--algorithms", "dcn"])
    module.main()
    sys.modules.pop(script, None)
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("dcn")]
    assert rows, "no timing row printed"
    for row in rows:
        seconds = [float(v.rstrip("%x")) for v in row[1:] if v[0].isdigit()]
        assert seconds and all(s >= 0 for s in seconds) and any(s > 0 for s in seconds), row


def test_eval_time_benchmark_runs_on_a_tiny_cpu_case(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("eval_time")
    monkeypatch.setattr(sys, "argv", ["eval_time", "--device", "cpu", "--n", "400", "--members", "1", "3",
                                      "--subsample", "100", "--repeats", "1"])
    module.main()
    sys.modules.pop("eval_time", None)
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [1, 3]
    assert all(float(v.rstrip("x")) > 0 for r in rows for v in r[1:]), rows


def test_recluster_benchmark_counts_operations_and_times_every_method(monkeypatch, capsys):
    from raydc.clustering.kmeans import RECLUSTER_METHODS

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("recluster_time")
    monkeypatch.setattr(sys, "argv", ["recluster_time", "--device", "cpu", "--n", "300", "--repeats", "1"])
    module.main()
    sys.modules.pop("recluster_time", None)
    lines = capsys.readouterr().out.splitlines()
    counts = next(line for line in lines if line.startswith("operations:"))
    assert float(counts.split()[-1]) > 0 and int(counts.split()[3].rstrip(",")) > 0
    timed = {line.split()[0]: float(line.split()[1]) for line in lines if line.split()[0] in RECLUSTER_METHODS}
    assert set(timed) == set(RECLUSTER_METHODS) and all(s > 0 for s in timed.values())


def test_gpu_suite_refuses_an_unknown_part_before_running_anything(tmp_path):
    import subprocess

    logs = tmp_path / "logs"
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_suite.sh"), str(logs), "eval", "throughputs"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": "false"})
    assert done.returncode == 2 and "unknown part throughputs" in done.stderr
    assert not logs.exists()  # not even the valid part before it ran
