"""Trackers: what a real TensorBoard event reader, a real MLflow client and W&B's offline run files hold after a trial
logged its epochs, and a tracker that fails leaving the trial untouched."""
from pathlib import Path

import pytest

from raydc.config import ConfigError
from raydc.engine.records import EpochRecord
from raydc.study.tracking import ERRORS_FILE, RunInfo, Trackers, TrackingSpec, tracking_problems

CONFIG = {"seed": 0, "brb.alpha": 0.8, "net.hidden": [64, 32], "train.algorithm": "dec"}


def _epochs() -> list[EpochRecord]:
    records = [EpochRecord(phase="pretrain", epoch=e, loss=1.0 / (e + 1), loss_reconstruction=1.0 / (e + 1))
               for e in range(2)]
    records += [EpochRecord(phase="cluster", epoch=e, loss=0.5 - 0.1 * e, acc=0.6 + 0.1 * e, mdl_bits=1000.0 - e,
                            reset_applied=e == 1) for e in range(3)]
    return records


def _log(spec: TrackingSpec, study_dir: Path, trial_id: str = "abc123") -> None:
    trackers = Trackers(spec, RunInfo("s", study_dir, trial_id, CONFIG))
    for record in _epochs():
        trackers.log(record)
    trackers.close("finished")


def test_tensorboard_event_files_hold_every_epoch_by_phase(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _log(TrackingSpec(tensorboard=True), tmp_path)
    events = EventAccumulator(str(tmp_path / "tensorboard" / "abc123"))
    events.Reload()
    assert [(e.step, pytest.approx(e.value)) for e in events.Scalars("cluster/acc")] == [(0, 0.6), (1, 0.7), (2, 0.8)]
    assert [e.step for e in events.Scalars("pretrain/loss_reconstruction")] == [0, 1]
    assert [e.value for e in events.Scalars("cluster/reset_applied")] == [0.0, 1.0, 0.0]
    assert "cluster/silhouette" not in events.Tags()["scalars"]  # never measured: nothing logged


def test_mlflow_local_store_holds_one_run_per_trial_with_its_config(tmp_path):
    from mlflow import MlflowClient

    _log(TrackingSpec(mlflow={}), tmp_path)
    _log(TrackingSpec(mlflow={}), tmp_path)  # the same trial again (a retry): its run goes on, no second run
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("s")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "abc123" and run.info.status == "FINISHED"
    assert run.data.params["brb.alpha"] == "0.8" and run.data.params["net.hidden"] == "[64, 32]"
    history = client.get_metric_history(run.info.run_id, "cluster/mdl_bits")
    assert sorted((m.step, m.value) for m in history)[:3] == [(0, 1000.0), (0, 1000.0), (1, 999.0)]


def test_wandb_offline_run_files_hold_the_config_and_every_epoch(tmp_path, finished_wandb_records):
    import json

    _log(TrackingSpec(wandb={"mode": "offline"}), tmp_path)
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    records = finished_wandb_records(run_file)
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert runs[0].display_name == "abc123" and runs[0].run_group == "s" and runs[0].project == "s"
    config = {item.key: json.loads(item.value_json) for item in runs[0].config.update}
    assert config["brb.alpha"] == 0.8
    history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    cluster = [h for h in history if "cluster/acc" in h]
    assert [(h["cluster/epoch"], h["cluster/acc"]) for h in cluster] == [(0, 0.6), (1, 0.7), (2, pytest.approx(0.8))]
    assert len([h for h in history if "pretrain/loss" in h]) == 2


def test_a_tracker_that_fails_is_dropped_once_and_the_others_go_on(tmp_path, monkeypatch):
    import time

    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)  # raydc's bound on MLflow's retries (minutes by its own defaults)
    started = time.monotonic()
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")  # TensorBoard cannot make its run directory under a file
    spec = TrackingSpec(tensorboard={"log_dir": str(blocked)}, mlflow={"tracking_uri": "http://127.0.0.1:9"})
    trackers = Trackers(spec, RunInfo("s", tmp_path, "t1", CONFIG))
    for record in _epochs():
        trackers.log(record)  # never raises
    trackers.close("finished")
    problems = tracking_problems(tmp_path)
    assert len(problems) == 2 and {p.split(": ")[1].split()[0] for p in problems} == {"tensorboard", "mlflow"}
    assert (tmp_path / ERRORS_FILE).exists()
    assert time.monotonic() - started < 60  # a dead server is given up in seconds


def test_a_study_naming_a_tracker_that_is_not_installed_fails_before_any_compute(monkeypatch):
    import importlib.util

    from raydc.study.spec import parse_study

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    study = {"name": "s", "dataset": "digits", "tracking": {"tensorboard": True, "wandb": {"mode": "offline"}}}
    with pytest.raises(ConfigError, match=r"tracking\.wandb.*pip install 'raydc\[wandb\]'"):
        parse_study(study)
    with pytest.raises(ConfigError, match=r"tracking\.mlflow\.uri.*unknown field"):
        parse_study({**study, "tracking": {"mlflow": {"uri": "x"}}})


@pytest.mark.ray
def test_a_study_tracks_every_trial_live_in_each_tracker(ray_cluster, tmp_path, capsys, finished_wandb_records):
    """A two-trial study with all three trackers (MLflow's default store in the study directory, W&B offline): one
    run per trial in each, grouped by the study, holding every clustering epoch."""
    from mlflow import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from raydc.study.runner import run_study
    from raydc.study.spec import parse_study

    raw = {"name": "tracked", "dataset": "digits", "checkpoint_every": 1,
           "base": {"net": {"hidden": [64, 32]}, "pretrain": {"epochs": 2}, "train": {"epochs": 3},
                    "eval": {"subsample": 200}},
           "search": {"kind": "grid", "space": {"train.lr": [1e-3, 1e-2]}},
           "tracking": {"tensorboard": True, "mlflow": {}, "wandb": {"mode": "offline"}}}
    out = tmp_path / "tracked"
    assert run_study(parse_study(raw), out).counts == {"finished": 2}
    tids = sorted(p.stem for p in (out / "models").glob("*.pt"))
    assert sorted(p.name for p in (out / "tensorboard").iterdir()) == tids
    for tid in tids:
        events = EventAccumulator(str(out / "tensorboard" / tid))
        events.Reload()
        assert [e.step for e in events.Scalars("cluster/acc")] == [0, 1, 2]
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id])
    assert sorted(r.info.run_name for r in runs) == tids and {r.info.status for r in runs} == {"FINISHED"}
    assert all(len(client.get_metric_history(r.info.run_id, "cluster/loss")) == 3 for r in runs)
    run_files = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    names = sorted(next(r.run.display_name for r in finished_wandb_records(f)
                   if r.WhichOneof("record_type") == "run")
                   for f in run_files)
    assert names == tids
    assert "tracking:" not in capsys.readouterr().out  # nothing dropped
