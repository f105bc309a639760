"""Studies on a local Ray: grid and optuna end to end, incremental runs, a 2-worker Ray Train trial, a crashed
trial resuming from its checkpoint, and a killed driver whose rerun ends with exact, duplicate-free tables."""
import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from raydc.cli import main
from raydc.config import ConfigError
from raydc.study import runner
from raydc.tables.store import EPOCH_KEY, ResultStore, epochs_schema, trials_schema
from raydc.study.faults import MARKER
from raydc.study.journal import EpochJournal
from raydc.study.outcomes import UnfinishedTrials
from raydc.study.paths import StudyPaths
from raydc.study.runner import run_study
from raydc.study.spec import parse_study
from raydc.study.tune_trial import TrialSetup

pytestmark = pytest.mark.ray

PRETRAIN_EPOCHS, CLUSTER_EPOCHS = 2, 3
TINY_BASE = {"net": {"hidden": [64, 32]}, "pretrain": {"epochs": PRETRAIN_EPOCHS},
             "train": {"epochs": CLUSTER_EPOCHS}, "brb": {"interval": 1, "subsample": 500}, "eval": {"subsample": 200}}


def tiny_study(name: str, space: dict, seeds=(0,), **fields) -> dict:
    study = {"name": name, "dataset": "digits", "base": copy.deepcopy(TINY_BASE),
             "search": {"kind": "grid", "space": space, "seeds": list(seeds)}, "checkpoint_every": 1}
    for key, value in fields.items():
        study[key] = value
    return study


def rows(out, table: str) -> list[dict]:
    store = ResultStore(out)
    return (store.trials() if table == "trials" else store.epochs()).to_pylist()


def same_row(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)  # NaN == NaN


def assert_exact_epochs(out, trials: list[dict], pretrain: int = PRETRAIN_EPOCHS) -> None:
    """Every trial has exactly its pretraining epochs and its clustering epochs 0..epochs_done-1, once each."""
    epochs = rows(out, "epochs")
    keys = [tuple(r[k] for k in EPOCH_KEY) for r in epochs]
    assert len(keys) == len(set(keys)), "duplicate (trial, phase, epoch) rows"
    expected = {(t["trial_id"], "pretrain", e) for t in trials for e in range(pretrain)}
    expected |= {(t["trial_id"], "cluster", e) for t in trials for e in range(t["epochs_done"])}
    assert set(keys) == expected


def test_grid_study_end_to_end_then_extended_with_a_seed(ray_cluster, tmp_path, capsys):
    raw = tiny_study("grid", {"train.algorithm": ["dec", "idec"], "brb.mode": ["brb", "baseline"]})
    out = tmp_path / "grid"
    summary = run_study(parse_study(raw), out)
    assert summary.launched == 4 and summary.counts == {"finished": 4}
    # the directories read as one table by plain pyarrow, in the contract's schema
    assert pq.read_table(out / "trials.parquet").schema.remove_metadata().equals(trials_schema())
    assert pq.read_table(out / "epochs.parquet").schema.remove_metadata().equals(epochs_schema())
    first = rows(out, "trials")
    assert len(first) == 4 and all(t["epochs_done"] == CLUSTER_EPOCHS for t in first)
    assert len(rows(out, "epochs")) == 4 * (PRETRAIN_EPOCHS + CLUSTER_EPOCHS)
    assert_exact_epochs(out, first)
    assert {p.stem for p in (out / "assignments").glob("*.npz")} == {t["trial_id"] for t in first}
    assert parse_study(yaml.safe_load((out / "study.yaml").read_text())).spec == parse_study(raw).spec
    assert sum(t["pretrain_cached"] for t in first) >= 3  # one pretraining shared by the four trials

    raw["search"]["seeds"] = [0, 1]
    summary = run_study(parse_study(raw), out)
    assert summary.launched == 4 and summary.counts == {"finished": 8}
    second = {t["trial_id"]: t for t in rows(out, "trials")}
    assert all(same_row(second[t["trial_id"]], t) for t in first)  # the first seed's rows are untouched
    assert sorted(t["seed"] for t in second.values()) == [0] * 4 + [1] * 4
    assert_exact_epochs(out, list(second.values()))

    assert main(["status", str(out)]) == 0
    status = capsys.readouterr().out
    assert "8 finished" in status and "0 of 8 planned still to run" in status and "best configurations by mean acc over seeds" in status


def test_optuna_runs_n_distinct_trials_and_counts_finished_ones(ray_cluster, tmp_path):
    raw = tiny_study("optuna", {"brb.alpha": {"uniform": [0.6, 0.95]}, "train.lr": {"loguniform": [1e-4, 3e-3]}},
                     asha={"grace_period": 1, "reduction_factor": 2})
    raw["search"].update(kind="optuna", n=3, seed=1)
    out = tmp_path / "optuna"
    assert run_study(parse_study(raw), out).launched == 3
    raw["search"]["n"] = 4
    assert run_study(parse_study(raw), out).launched == 1  # three done count toward n

    trials = rows(out, "trials")
    assert len(trials) == 4 and {t["status"] for t in trials} <= {"finished", "stopped"}
    assert len({(t["brb.alpha"], t["train.lr"]) for t in trials}) == 4
    import optuna  # the search is Optuna's own study, continued by the rerun: optuna-dashboard reads it

    study = optuna.load_study(study_name="optuna", storage=f"sqlite:///{out / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 4
    assert {(t.params["brb.alpha"], t.params["train.lr"]) for t in study.trials} == {
        (t["brb.alpha"], t["train.lr"]) for t in trials}
    assert all(0.6 <= t["brb.alpha"] <= 0.95 and 1e-4 <= t["train.lr"] <= 3e-3 for t in trials)
    assert_exact_epochs(out, trials)


def test_optuna_with_asha_meets_a_recorded_failed_configuration_again(ray_cluster, tmp_path):
    from raydc.tables.store import ResultStore
    from raydc.study.tpe import tpe_search

    raw = tiny_study("optuna-failed", {}, asha={"grace_period": 1, "reduction_factor": 2}, max_failures=0,
                     resources={"concurrent": 1})
    raw["search"] = {"kind": "optuna", "n": 2, "space": {"train.lr": [1.0e30]}}  # diverges; suggested twice
    study = parse_study(raw)
    out = tmp_path / "optuna-failed"
    summary = run_study(study, out)  # the second suggestion reports the first one's record to ASHA
    assert summary.counts == {"failed": 1}
    search = tpe_search(study, ResultStore(out), StudyPaths.at(out))  # a rerun's TPE knows the failed configuration
    search.set_search_properties("acc", "max", {"train.lr": runner.tune.choice([1.0e30])})
    # optuna.db holds the first run's two suggestions, failed on NaN; the rerun adds the recorded outcome as pruned
    assert [t.state.name for t in search._ot_study.trials] == ["FAIL", "FAIL", "PRUNED"]


def test_optuna_rerun_resumes_a_trial_that_crashed_on_every_retry(ray_cluster, tmp_path):
    raw = tiny_study("optuna-error", {}, checkpoint_every=2, max_failures=0, resources={"concurrent": 1})
    raw["base"]["train"]["epochs"] = 4
    raw["search"] = {"kind": "optuna", "n": 2, "seed": 3, "space": {"brb.alpha": {"uniform": [0.6, 0.9]}}}
    out = tmp_path / "optuna-error"
    out.mkdir()
    (out / MARKER).write_text("cluster 2")  # the first trial dies after epoch 2; its checkpoint holds epochs 0-1
    assert run_study(parse_study(raw), out).counts == {"error": 1, "finished": 1}
    crashed = next(t for t in rows(out, "trials") if t["status"] == "error")
    summary = run_study(parse_study(raw), out)  # the crashed configuration again, not a new suggestion
    assert summary.launched == 1 and summary.counts == {"finished": 2}
    trial = next(t for t in rows(out, "trials") if t["trial_id"] == crashed["trial_id"])
    assert trial["status"] == "finished" and trial["brb.alpha"] == crashed["brb.alpha"]
    assert trial["epochs_done"] == 4 and not trial["pretrain_cached"]  # resumed: a fresh start finds pretraining cached
    assert_exact_epochs(out, rows(out, "trials"))


def test_optuna_rerun_suggests_first_the_configurations_cut_off_with_the_driver(tmp_path):
    """A driver killed mid-trial leaves its Optuna trials running in optuna.db: a rerun marks them failed and has Optuna
    suggest their exact parameters first (the same trial ids, so their checkpoints resume)."""
    import optuna

    from raydc.tables.store import ResultStore
    from raydc.study.tpe import storage_url, tpe_search

    raw = tiny_study("optuna-cut", {})
    raw["search"] = {"kind": "optuna", "n": 4, "space": {"brb.alpha": {"uniform": [0.6, 0.9]}}}
    paths = StudyPaths.at(tmp_path)
    cut = optuna.create_study(study_name="optuna-cut", storage=storage_url(paths), direction="maximize")
    for alpha in (0.7123456789012345, 0.95):  # 0.95 lies outside the space now: not resumed
        cut.enqueue_trial({"brb.alpha": alpha})
        cut.ask({"brb.alpha": optuna.distributions.FloatDistribution(0.5, 1.0)})
    search = tpe_search(parse_study(raw), ResultStore(tmp_path), paths)
    search.set_search_properties("acc", "max", {"brb.alpha": runner.tune.uniform(0.6, 0.9)})
    assert search.suggest("first") == {"brb.alpha": 0.7123456789012345}  # exactly: the same trial id, its checkpoint
    assert search.suggest("second")["brb.alpha"] not in (0.7123456789012345, 0.95)
    states = [t.state.name for t in optuna.load_study(study_name="optuna-cut", storage=storage_url(paths)).trials]
    assert states[:2] == ["FAIL", "FAIL"]


def test_two_worker_ray_train_trial_lands_in_the_same_tables(ray_cluster, tmp_path):
    raw = tiny_study("ddp", {}, resources={"cpu": 0.5, "workers": 2})
    out = tmp_path / "ddp"
    summary = run_study(parse_study(raw), out)
    assert summary.counts == {"finished": 1}
    (trial,) = rows(out, "trials")
    assert trial["epochs_done"] == CLUSTER_EPOCHS and trial["error"] is None
    assert_exact_epochs(out, [trial])
    assert (out / "assignments" / f"{trial['trial_id']}.npz").exists()


def test_killed_trial_process_resumes_from_its_checkpoint(ray_cluster, tmp_path):
    raw = tiny_study("crash", {}, checkpoint_every=2)
    raw["base"]["train"]["epochs"] = 4
    out = tmp_path / "crash"
    out.mkdir()
    (out / MARKER).write_text("cluster 2")  # dies after epoch 2; the last checkpoint holds epochs 0-1
    summary = run_study(parse_study(raw), out)
    assert not (out / MARKER).exists()  # the crash happened
    assert summary.counts == {"finished": 1}
    (trial,) = rows(out, "trials")
    assert trial["epochs_done"] == 4
    assert_exact_epochs(out, [trial])
    elapsed = {r["epoch"]: r["elapsed_s"] for r in rows(out, "epochs") if r["phase"] == "cluster"}
    # The retry resumed (a fresh start would have found the first process's pretraining cached) and its clock went on.
    assert not trial["pretrain_cached"] and trial["pretrain_time_s"] > 0
    assert elapsed[0] < elapsed[1] < elapsed[2] < elapsed[3] < trial["wall_time_s"]


def test_killed_population_resumes_from_its_checkpoint(ray_cluster, tmp_path):
    raw = tiny_study("population-crash", {"brb.alpha": [0.6, 0.9]}, checkpoint_every=2, resources={"population": 2})
    raw["base"]["train"]["epochs"] = 4
    out = tmp_path / "population-crash"
    out.mkdir()
    (out / MARKER).write_text("cluster 2")  # dies after epoch 2; the population's checkpoint holds epochs 0-1
    summary = run_study(parse_study(raw), out)
    assert not (out / MARKER).exists() and summary.launched == 1 and summary.counts == {"finished": 2}
    trials = rows(out, "trials")
    assert_exact_epochs(out, trials)
    assert not list((out / "checkpoints").glob("population-*"))  # removed once its members are recorded
    # the retry resumed: a fresh start would have found every member's pretraining cached
    assert sorted(t["pretrain_cached"] for t in trials) == [False, True]  # one pretraining for the shared seed
    for trial in trials:
        elapsed = {r["epoch"]: r["elapsed_s"] for r in rows(out, "epochs")
                   if r["phase"] == "cluster" and r["trial_id"] == trial["trial_id"]}
        assert elapsed[0] < elapsed[1] < elapsed[2] < elapsed[3] < trial["wall_time_s"]  # the clock went on


def _crashed_population(name: str, tmp_path) -> tuple[dict, Path]:
    """A population of two α that dies after cluster epoch 2 on every try (its checkpoint holds epochs 0-1)."""
    raw = tiny_study(name, {"brb.alpha": [0.6, 0.9]}, checkpoint_every=2, max_failures=0,
                     resources={"population": 2})
    raw["base"]["train"]["epochs"] = 4
    out = tmp_path / name
    out.mkdir()
    (out / MARKER).write_text("cluster 2")
    assert run_study(parse_study(raw), out).counts == {"error": 2}  # both members
    return raw, out


def test_interrupted_population_resumes_its_checkpoint_after_the_grid_grows(ray_cluster, tmp_path):
    import shutil

    raw, out = _crashed_population("population-grows", tmp_path)
    interrupted = {t["trial_id"] for t in rows(out, "trials")}
    (checkpoint,) = (out / "checkpoints").glob("population-*")
    shutil.copytree(checkpoint, checkpoint.with_name("population-stale"))  # as a kill while recording leaves one
    raw["search"]["space"]["brb.alpha"] = [0.7, 0.6, 0.9]  # a new α, planned first
    summary = run_study(parse_study(raw), out)
    assert summary.launched == 2 and summary.counts == {"finished": 3}
    trials = rows(out, "trials")
    assert_exact_epochs(out, trials)
    # resumed from the checkpoint, which kept their first run's pretraining (a fresh start finds both cached)
    assert sorted(t["pretrain_cached"] for t in trials if t["trial_id"] in interrupted) == [False, True]
    assert not list((out / "checkpoints").glob("population-*"))  # the stale one too: its members are recorded


def test_population_that_exhausts_its_retries_records_every_member_then_reruns(ray_cluster, tmp_path):
    raw, out = _crashed_population("population-error", tmp_path)
    # each member with the epochs it had journaled:
    assert sorted(t["epochs_done"] for t in rows(out, "trials")) == [2, 3]  # the crash came after member 0's epoch 2
    for trial in rows(out, "trials"):  # the process's own last words, and the settings it ran with
        assert trial["error"] and trial["error"] != "the trial process failed"
        assert trial["device"] == "cpu" and trial["checkpoint_every"] == 2
    summary = run_study(parse_study(raw), out)  # a rerun retries them from the population's checkpoint
    assert summary.launched == 1 and summary.counts == {"finished": 2}
    assert_exact_epochs(out, rows(out, "trials"))


def test_population_member_that_diverged_stays_failed_when_its_population_crashes(ray_cluster, tmp_path):
    raw = tiny_study("population-failed", {"train.lr": [1.0e-3, 1.0e30]}, checkpoint_every=2, max_failures=0,
                     resources={"population": 2})
    raw["base"]["train"]["epochs"] = 4
    out = tmp_path / "population-failed"
    out.mkdir()
    (out / MARKER).write_text("cluster 2")  # the population dies after the diverged member left it
    summary = run_study(parse_study(raw), out)
    assert summary.counts == {"error": 1, "failed": 1}
    failed = next(t for t in rows(out, "trials") if t["status"] == "failed")
    assert failed["train.lr"] == 1.0e30 and "non-finite" in failed["error"]
    summary = run_study(parse_study(raw), out)  # a rerun trains only the member that crashed
    assert summary.launched == 1 and summary.counts == {"failed": 1, "finished": 1}
    assert next(t for t in rows(out, "trials") if t["status"] == "failed") == failed


def test_killed_driver_then_resume_gives_exact_rows(ray_cluster, tmp_path):
    raw = tiny_study("killed", {"train.algorithm": ["dec", "idec", "dcn"]}, seeds=(0, 1))
    raw["base"]["train"]["epochs"] = 6
    path = tmp_path / "killed.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "killed"
    driver = subprocess.Popen([sys.executable, "-m", "raydc.cli", "run", str(path), "--out", str(out),
                               "--address", ray_cluster], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    deadline = time.monotonic() + 240
    while not ((out / "trials.parquet").exists() and len(rows(out, "trials")) >= 2):
        assert driver.poll() is None and time.monotonic() < deadline, "the driver ended before two trials finished"
        time.sleep(0.2)
    driver.kill()
    driver.wait()
    recorded = len(rows(out, "trials"))
    assert recorded < 6, "every trial finished before the driver was killed"

    assert main(["run", "--resume", "--out", str(out)]) == 0
    trials = rows(out, "trials")
    assert len(trials) == 6 and {t["status"] for t in trials} == {"finished"}
    assert len(rows(out, "epochs")) == 6 * (PRETRAIN_EPOCHS + 6)
    assert_exact_epochs(out, trials)


def test_resl_grid_shares_one_clustering_stage_and_records_self_labeling(ray_cluster, tmp_path):
    raw = tiny_study("resl", {"resl.strategy": ["none", "sp", "ht"]})
    raw["base"]["selflabel"] = {"epochs": 2, "warmup_epochs": 1, "batch_size": 500, "threshold": 0.5}
    raw["base"]["resl"] = {"interval": 1}
    out = tmp_path / "resl"
    summary = run_study(parse_study(raw), out)
    assert summary.counts == {"finished": 3}
    trials = rows(out, "trials")
    assert sum(t["cluster_cached"] for t in trials) == 2  # the clustering stage ran once for the three
    epochs = rows(out, "epochs")
    for t in trials:
        phases = [(e["phase"], e["epoch"]) for e in epochs if e["trial_id"] == t["trial_id"]]
        assert sorted(phases) == sorted([("pretrain", i) for i in range(PRETRAIN_EPOCHS)]
                                        + [("cluster", i) for i in range(CLUSTER_EPOCHS)]
                                        + [("selflabel_warmup", 0), ("selflabel", 0), ("selflabel", 1)])
        last = next(e for e in epochs if e["trial_id"] == t["trial_id"] and e["phase"] == "selflabel"
                    and e["epoch"] == 1)
        assert t["acc"] == last["acc"] and 0 <= last["confident_fraction"] <= 1
    keys = [tuple(e[k] for k in EPOCH_KEY) for e in epochs]
    assert len(keys) == len(set(keys))


def test_population_study_trains_stackable_trials_together_and_records_each(ray_cluster, tmp_path):
    from raydc.engine.train import fit

    raw = tiny_study("population", {"train.algorithm": ["dec", "idec"], "brb.alpha": [0.6, 0.9]}, seeds=(0, 1),
                     resources={"population": 3})
    out = tmp_path / "population"
    study = parse_study(raw)
    summary = run_study(study, out)
    assert summary.launched == 4 and summary.counts == {"finished": 8}  # (3 + 1) populations per algorithm
    trials = rows(out, "trials")
    assert_exact_epochs(out, trials)
    assert {p.stem for p in (out / "assignments").glob("*.npz")} == {t["trial_id"] for t in trials}
    member = study.trials[-1]  # trained in a population: it follows the trajectory fit() gives it alone
    alone = fit(member.values, pretrain_cache=out / "pretrain_cache")
    recorded = next(t for t in trials if t["trial_id"] == member.trial_id)
    assert recorded["brb.alpha"] == member.values["brb"]["alpha"]
    assert recorded["acc"] == pytest.approx(alone.final["acc"], abs=0.01)
    assert run_study(study, out).launched == 0  # a rerun finds every member recorded


class _FailedTrial:
    """What the driver's callback sees of a Tune trial that crashed on its last retry."""

    def __init__(self, config: dict, error_file):
        self.config, self.error_file, self.last_result = config, str(error_file), {}

    def get_error(self):
        return None  # the copy in storage is synced only after on_trial_error


def _setup(study, out, checkpoint_every=3) -> TrialSetup:
    return TrialSetup(paths=StudyPaths.at(out), planned={t.trial_id: t.values for t in study.trials},
                      base=study.base, seed=0, metric="acc", mode="max", checkpoint_every=checkpoint_every,
                      resources=study.spec.resources)


def test_error_trial_is_recorded_with_its_error_and_the_settings_it_ran_with(tmp_path):
    study = parse_study(tiny_study("err", {}))
    out = tmp_path / "err"
    (tid,) = [t.trial_id for t in study.trials]
    error_file = tmp_path / "error.txt"  # the driver's local copy, written before the callback runs
    error_file.write_text("Failure # 1 (occurred at now)\nTraceback ...\nValueError: the loss exploded\n")
    UnfinishedTrials(_setup(study, out), early_stopping=False).on_trial_error(0, [], _FailedTrial(
        {"trial_id": tid}, error_file))
    (trial,) = rows(out, "trials")
    assert trial["trial_id"] == tid and trial["status"] == "error"
    assert trial["error"] == "ValueError: the loss exploded"
    assert trial["device"] == "cpu" and trial["checkpoint_every"] == 3  # as a finished trial's row would say


def test_error_trial_with_invalid_parameters_does_not_end_the_study(tmp_path):
    study = parse_study({"name": "oi", "dataset": "digits",
                         "search": {"kind": "optuna", "n": 2, "space": {"brb.alpha": {"uniform": [0.6, 0.9]}}}})
    out = tmp_path / "oi"
    trial = _FailedTrial({"pretrain.batch_size": 100.5}, tmp_path / "missing.txt")
    UnfinishedTrials(_setup(study, out), early_stopping=False).on_trial_error(0, [], trial)  # no raise
    assert not (out / "trials.parquet").exists()


@pytest.mark.parametrize("cpus, cpu, workers, concurrent, address, expected", [
    (2, 0.5, 2, None, None, 1), (4, 0.5, 2, None, None, 3), (8, 1, 2, None, None, 3),  # launchers hold a share too
    (8, 1, 2, 2, None, 2), (8, 1, 2, 9, None, 3),  # a local Ray never grows past what fits
    (2, 1, 2, None, "cluster:6379", 1),  # a cluster may grow: the trial waits for its workers
    (0, 1, 2, 6, "cluster:6379", 6),  # an autoscaling cluster with no workers yet grows to what the study asks
    (2, 1, 1, None, None, None), (2, 1, 1, 3, "cluster:6379", 3),  # Tune accounts for single-process trials
])
def test_data_parallel_trials_launch_only_as_many_as_fit(monkeypatch, cpus, cpu, workers, concurrent, address,
                                                         expected):
    monkeypatch.setattr(runner.ray, "cluster_resources", lambda: {"CPU": float(cpus)})
    resources = {"cpu": cpu, "workers": workers, **({"concurrent": concurrent} if concurrent else {})}
    study = parse_study(tiny_study("ddp", {}, resources=resources))
    assert runner._concurrency(study, address) == expected


def test_data_parallel_trial_that_cannot_fit_on_the_local_ray_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "connect", lambda address: False)  # as if a 2-CPU local Ray were running
    monkeypatch.setattr(runner.ray, "cluster_resources", lambda: {"CPU": 2.0})
    study = parse_study(tiny_study("ddp", {}, resources={"cpu": 1, "workers": 2}))
    with pytest.raises(ConfigError, match=r"resources\.workers: .*2\.01 CPU.*local Ray has 2 CPU"):
        run_study(study, tmp_path / "ddp")  # instead of waiting forever for the second worker
    assert not (tmp_path / "ddp" / "trials.parquet").exists()
    assert not (tmp_path / "ddp" / "study.yaml").exists()  # which --resume would take for a study to continue


@pytest.mark.parametrize("resources, field", [
    ({"cpu": 64}, r"resources\.cpu: a trial needs 64 CPU but the local Ray has 2"),
    ({"cpu": 4, "population": 2}, r"resources\.cpu: a trial needs 4 CPU"),  # a population is one trial
    ({"gpu": 2}, r"resources\.gpu: a trial needs 2 GPU but the local Ray has 1"),
])
def test_trial_larger_than_the_local_ray_is_refused(monkeypatch, resources, field):
    monkeypatch.setattr(runner.ray, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 1.0})
    study = parse_study(tiny_study("big", {"brb.alpha": [0.6, 0.9]}, resources=resources))
    with pytest.raises(ConfigError, match=field):
        runner._concurrency(study, None)  # instead of waiting forever for resources that never come
    assert runner._concurrency(study, "cluster:6379") is None  # a cluster may grow to hold it


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_stops_the_run_and_resume_completes_it(ray_cluster, tmp_path, signum):
    """Ctrl-C in a terminal (SIGINT to the foreground group) and a scheduler's preemption (SIGTERM to the job's
    group): exit 128 + signal, raydc's own resume command, trials resumable, and the resumed study ends with exact
    rows. The run joins the session's Ray: a second Ray started beside it times out on a loaded 2-core machine."""
    raw = tiny_study(f"signal-{signum}", {"train.algorithm": ["dec", "idec", "dcn"]}, seeds=(0, 1))
    raw["base"]["train"]["epochs"] = 40
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "study"
    command = [sys.executable, "-m", "raydc.cli", "run", str(path), "--out", str(out)]
    driver = subprocess.Popen(command + ["--address", ray_cluster], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True,
                              env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    deadline = time.monotonic() + 300
    journals = out / "journal"

    def midway() -> bool:
        """A trial is recorded and another is under way, far from its end: the signal interrupts that one (a trial
        near its end, started beside the recorded one, may still be recorded while the run stops)."""
        recorded = {t["trial_id"] for t in rows(out, "trials")}
        return bool(recorded) and any(j.stem not in recorded and 0 < len(EpochJournal(j).rows()) <= 20
                                      for j in journals.glob("*.jsonl"))

    while not midway():
        assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
        time.sleep(0.2)
    os.killpg(driver.pid, signum)
    stdout, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 128 + signum, (stdout, stderr)
    assert f"resume with: raydc run --resume --out {out}" in stderr
    for stray in ("Tuner.restore", "Traceback", "FileNotFoundError"):
        assert stray not in stdout + stderr
    assert len(rows(out, "trials")) < 6
    status = subprocess.run([sys.executable, "-m", "raydc.cli", "status", str(out)], capture_output=True, text=True)
    interrupted = int(status.stdout.split(" interrupted (resumable)")[0].rsplit(" ", 1)[1])
    assert interrupted >= 1, status.stdout

    assert main(["run", "--resume", "--out", str(out)]) == 0
    trials = rows(out, "trials")
    assert len(trials) == 6 and {t["status"] for t in trials} == {"finished"}
    assert_exact_epochs(out, trials)


def _overlapping_pairs(trials: list[dict]) -> int:
    """Pairs of trials whose runs overlapped in time (each ran from ended_at − wall_time_s to ended_at)."""
    spans = [(t["ended_at"].timestamp() - t["wall_time_s"], t["ended_at"].timestamp()) for t in trials]
    return sum(1 for i, a in enumerate(spans) for b in spans[i + 1:] if a[0] < b[1] and b[0] < a[1])


def test_a_crashed_trial_attempt_leaves_every_slot_busy(ray_cluster, tmp_path):
    """The crash drill kills one trial's process early; the other trials still run two at a time on 2 CPUs."""
    raw = tiny_study("crash-slots", {"train.algorithm": ["dec", "idec", "dcn"]}, seeds=(0, 1), max_failures=2)
    # A fit (about 20 s) longer than a fresh trial process's start (about 14 s on 2 busy cores): with two slots,
    # each fit then overlaps one in the other slot, whatever the start times' jitter.
    raw["base"]["train"]["epochs"] = 100
    out = tmp_path / "crash-slots"
    out.mkdir()
    (out / MARKER).write_text("cluster 1")
    started = time.monotonic()
    summary = run_study(parse_study(raw), out)
    wall = time.monotonic() - started
    assert summary.counts == {"finished": 6} and not (out / MARKER).exists()
    trials = rows(out, "trials")
    crashed = max(trials, key=lambda t: t["ended_at"])  # a retried trial runs last
    others = [t for t in trials if t is not crashed]
    print(f"trial-seconds per wall second: {sum(t['wall_time_s'] for t in trials) / wall:.2f}")
    assert _overlapping_pairs(others) >= 1  # a slot lost to the crash would leave the others one at a time: none


def test_a_vi_search_trains_every_seed_of_each_suggestion_together(ray_cluster, tmp_path):
    raw = tiny_study("vi", {"train.lr": {"loguniform": [1e-4, 1e-2]}}, seeds=(0, 1), metric="vi",
                     asha={"grace_period": 1, "reduction_factor": 2})
    raw["search"].update(kind="optuna", n=2, seed=2)
    out = tmp_path / "vi"
    study = parse_study(raw)
    assert study.spec.mode == "min"  # vi's own direction
    assert run_study(study, out).launched == 2
    raw["search"]["n"] = 3
    assert run_study(parse_study(raw), out).launched == 1  # two configurations done count toward n

    trials = rows(out, "trials")
    by_lr = {}
    for t in trials:
        by_lr.setdefault(t["train.lr"], []).append(t)
    assert len(by_lr) == 3 and all(sorted(t["seed"] for t in seeds) == [0, 1] for seeds in by_lr.values())
    for seeds in by_lr.values():
        if all(t["status"] == "finished" for t in seeds):  # VI is symmetric: both seeds hold the pair's value
            assert seeds[0]["vi"] == seeds[1]["vi"] and seeds[0]["vi"] >= 0
    assert_exact_epochs(out, trials)


def test_a_vi_grid_groups_each_configuration_with_its_seeds(ray_cluster, tmp_path, capsys):
    raw = tiny_study("vi-grid", {"train.lr": [1e-3, 1e-2]}, seeds=(0, 1, 2), metric="vi")
    out = tmp_path / "vi-grid"
    assert run_study(parse_study(raw), out).launched == 2
    assert "as 2 configurations" in capsys.readouterr().out
    trials = rows(out, "trials")
    assert len(trials) == 6 and all(t["status"] == "finished" and t["vi"] >= 0 for t in trials)


def test_a_label_free_search_suggests_and_reports_the_same_whatever_the_labels(tmp_path, monkeypatch):
    """The real searcher and trial code in this process, driven as Tune drives them, once on the true labels and
    once on permuted ones: the same suggestions, the same reported values."""
    import dataclasses

    import torch

    from raydc.data import load_dataset
    from raydc.study import tune_trial
    from raydc.study.tpe import tpe_search

    raw = tiny_study("perm", {"train.lr": {"loguniform": [1e-4, 1e-2]}}, seeds=(0, 1), metric="vi")
    raw["search"].update(kind="optuna", n=3)
    study = parse_study(raw)
    digits = load_dataset("digits")
    shuffle = torch.randperm(digits.n, generator=torch.Generator().manual_seed(1))
    traces = {}
    for name, data in (("true", digits), ("permuted", dataclasses.replace(digits, y=digits.y[shuffle]))):
        monkeypatch.setattr(tune_trial, "_dataset", lambda *_, data=data: data)
        paths = StudyPaths.at(tmp_path / name)
        setup = TrialSetup(paths=paths, planned={}, base=study.base, seed=0, metric="vi", mode="min",
                           checkpoint_every=1, resources=study.spec.resources, seeds=(0, 1))
        search = tpe_search(study, ResultStore(paths.root), paths)
        search.set_search_properties("vi", "min", {d.key: runner._tune_domain(d) for d in study.dimensions})
        trace = []
        for number in range(3):
            params = search.suggest(str(number))
            reports = []
            tune_trial.execute_population(setup.resolve_all(params), setup, reports.append,
                                          paths.checkpoint_dir(str(number)))
            search.on_trial_complete(str(number), reports[-1])
            trace.append((params, [report["vi"] for report in reports]))
        traces[name] = trace
        accs = [t["acc"] for t in rows(paths.root, "trials")]
    assert traces["true"] == traces["permuted"]
    assert len({json.dumps(params) for params, _ in traces["true"]}) == 3
    assert accs != [t["acc"] for t in rows(tmp_path / "true", "trials")]  # the labels did change what ACC says
