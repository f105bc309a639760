"""`raydc slurm`: the sbatch script follows Ray's pattern with the job's own ports and temporary directory, bad
arguments fail before anything is written, and a study submitted to a real one-node SLURM runs to its end."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from raydc.cli import main
from raydc.config import ConfigError
from raydc.study.slurm import SlurmJob

STARTER = Path(__file__).parent / "slurm" / "start_local_slurm.sh"
TINY = {"name": "slurm-tiny", "dataset": "digits", "search": {"kind": "grid", "space": {"train.lr": [1e-3, 1e-2]}},
        "base": {"net": {"hidden": [64, 32]}, "pretrain": {"epochs": 2}, "train": {"epochs": 3},
                 "eval": {"subsample": 200}}}


def test_the_script_starts_ray_as_ray_documents_it_with_the_jobs_own_ports(tmp_path):
    script = SlurmJob(tmp_path / "s.yaml", tmp_path / "out", nodes=4, cpus_per_node=16, gpus_per_node=4,
                      time="24:00:00").script()
    assert "#SBATCH --nodes=4" in script and "#SBATCH --gpus-per-task=4" in script
    assert "#SBATCH --time=24:00:00" in script and f"#SBATCH --output={tmp_path / 'out'}/slurm-%j.log" in script
    assert "start --head --block" in script and 'for node in "${nodes[@]:1}"' in script
    assert "SLURM_JOB_ID %" in script and "--temp-dir=\"$temp_dir\"" in script  # two jobs on a node never collide
    assert "--include-dashboard=false" in script  # no dashboard listening on the cluster's network
    assert f"-m raydc.cli run {tmp_path / 's.yaml'} --out {tmp_path / 'out'} --address" in script


@pytest.mark.parametrize("flag, value, field", [("--time", "tomorrow", "--time"), ("--nodes", "0", "--nodes"),
                                                ("--cpus-per-node", "0", "--cpus-per-node")])
def test_bad_arguments_fail_before_anything_is_written(tmp_path, capsys, flag, value, field):
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump(TINY))
    assert main(["slurm", str(study), "--out", str(tmp_path / "out"), flag, value]) == 2
    assert f"raydc: error: {field}:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bad_study_fails_before_the_script_is_written(tmp_path, capsys):
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({**TINY, "metric": "accuracy"}))
    assert main(["slurm", str(study), "--out", str(tmp_path / "out")]) == 2
    assert "metric: unknown metric" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_submitting_without_sbatch_says_where_to_submit(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump(TINY))
    with pytest.raises(ConfigError, match="--submit: sbatch is not on PATH"):
        from raydc.study.slurm import submit

        submit(SlurmJob(study, tmp_path / "out").write())


def _job_state(job_id: str) -> str:
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    return next((word.split("=", 1)[1] for word in shown.split() if word.startswith("JobState=")), "UNKNOWN")


@pytest.fixture
def local_slurm(tmp_path):
    """A one-node SLURM on this machine, started by tests/slurm/start_local_slurm.sh; the daemons it started end
    with the test."""
    pids = tmp_path / "slurm.pids"
    started = subprocess.run(["bash", str(STARTER), str(pids)], capture_output=True, text=True)
    if started.returncode == 3:
        pytest.skip(f"no SLURM can be installed or run here: {started.stderr.strip()}")
    assert started.returncode == 0, started.stderr
    yield
    for pid in pids.read_text().split() if pids.exists() else []:
        subprocess.run(["kill", pid], check=False)


@pytest.mark.slurm
def test_a_study_submitted_to_slurm_runs_to_its_end(local_slurm, tmp_path):
    """`raydc slurm --submit` on a real SLURM (Debian's slurm-wlm and munge), then the job's Ray runs the study to
    its end."""
    study, out = tmp_path / "tiny.yaml", tmp_path / "out"
    study.write_text(yaml.safe_dump(TINY))
    command = [sys.executable, "-m", "raydc.cli", "slurm", str(study), "--out", str(out), "--cpus-per-node",
               str(min(os.cpu_count() or 1, 2)), "--time", "00:15:00", "--submit"]
    submitted = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split("submitted job ")[1].split(";")[0]
    deadline = time.monotonic() + 600
    while _job_state(job_id) in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
        assert time.monotonic() < deadline, "the job did not end in 10 minutes"
        time.sleep(2)
    log = (out / f"slurm-{job_id}.log").read_text()
    assert _job_state(job_id) == "COMPLETED", log[-3000:]
    assert "trials: 2 finished" in log
    from raydc.tables.store import ResultStore

    assert sorted(ResultStore(out).trials().column("status").to_pylist()) == ["finished", "finished"]
