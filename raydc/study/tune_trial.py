"""The Ray Tune trainable: one study trial, run in-process or as a data-parallel Ray Train run."""
from __future__ import annotations

import functools
import math
import shutil
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from raydc.files.atomic import exclusive
from raydc.config import TrialConfig, flatten, make_config
from raydc.engine.records import EpochRecord, TrialRecord
from raydc.config.identity import trial_id
from raydc.tables.store import ResultStore, epoch_row
from raydc.study.faults import crash_if_requested
from raydc.study.journal import EpochJournal
from raydc.study.paths import StudyPaths
from raydc.study import populations
from raydc.study.plan import trial_values
from raydc.study.record import DONE_STATUSES, record_trial
from raydc.study.spec import ResourcesSpec
from raydc.study.tracking import RunInfo, Trackers, TrackingSpec

Forward = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a study needs besides its own parameters."""

    paths: StudyPaths
    planned: dict[str, dict[str, Any]]  # grid/random: trial id -> config values
    base: dict[str, Any]                # optuna: values every suggested trial starts from
    seed: int                           # optuna: the study's seed
    metric: str
    mode: str                           # max | min: which member's final value the population reports
    checkpoint_every: int
    resources: ResourcesSpec
    keep_models: bool = True
    seeds: tuple[int, ...] = ()         # seed groups: every seed of a configuration trains in one Tune trial
    study: str = "study"                # the study's name: trackers group its trials' runs under it
    tracking: TrackingSpec | None = None

    @property
    def seed_groups(self) -> bool:
        """Each Tune trial is one configuration's seeds, which report their mean (metric vi)."""
        return len(self.seeds) > 1

    def resolve(self, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """(trial id, config values) of a Tune trial's parameters."""
        if "population" in params:
            return self.resolve_all(params)[0]
        if "trial_id" in params:
            return params["trial_id"], self.planned[params["trial_id"]]
        values = trial_values(self.base, params, self.seed)
        return trial_id(make_config(values)), values

    def resolve_all(self, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """(trial id, config values) of every study trial a Tune trial runs: one, or a population's members."""
        if "population" in params:
            return [(tid, self.planned[tid]) for tid in populations.decode(params["population"])[1]]
        if self.seed_groups and "trial_id" not in params:  # an optuna suggestion, with every seed of the study
            return [(trial_id(make_config(values)), values)
                    for values in (trial_values(self.base, params, seed) for seed in self.seeds)]
        return [self.resolve(params)]

    def population_name(self, params: dict[str, Any], members: list[tuple[str, dict[str, Any]]]) -> str | None:
        """The checkpoint name of the population a Tune trial trains; None for a single trial."""
        if "population" in params:
            return populations.decode(params["population"])[0]
        return populations.population_id([tid for tid, _ in members]) if self.seed_groups else None

    def runtime_values(self, values: dict[str, Any], device: str) -> dict[str, Any]:
        """Add the settings that do not change a trial's identity."""
        return {**values, "device": device, "checkpoint_every": self.checkpoint_every}


@functools.lru_cache(maxsize=4)
def _dataset(name: str, data_dir: str | None):
    """Datasets stay loaded in a reused trial process."""
    from raydc.data import load_dataset

    return load_dataset(name, data_dir=data_dir)


class EpochReporter:
    """Journals every epoch row and forwards training epochs (clustering, then self-labeling) to Ray.

    The last epoch is forwarded only after the trial is recorded: a scheduler may stop a trial at any
    report, and a finished trial must never be cut off before its rows are on disk.
    """

    def __init__(self, tid: str, setup: TrialSetup, config: TrialConfig, journal: EpochJournal | None,
                 forward: Forward):
        self.tid, self.setup, self.journal, self.forward = tid, setup, journal, forward
        # The rank that journals is the one that tracks: one run per trial.
        self.trackers = Trackers(setup.tracking if journal is not None else None,
                                 RunInfo(setup.study, setup.paths.root, tid, flatten(config)))
        self.epochs = config.training_epochs
        self.offsets = {"cluster": 0, "selflabel": config.train.epochs}  # a phase's first step on Ray's clock
        self.latest = math.nan  # last evaluated value of the study's metric

    def metrics(self, epochs_done: int, **extra: Any) -> dict[str, Any]:
        return {self.setup.metric: self.latest, "epoch": epochs_done, "progress": epochs_done / self.epochs,
                "trial": self.tid, **extra}

    def __call__(self, record: EpochRecord) -> None:
        if self.journal is not None:
            self.journal.append(epoch_row(self.tid, record))
        self.trackers.log(record)
        crash_if_requested(self.setup.paths.root, record)
        if record.phase not in self.offsets:
            return
        value = getattr(record, self.setup.metric)
        if math.isfinite(value):
            self.latest = value
        done = self.offsets[record.phase] + record.epoch + 1
        if done < self.epochs:
            self.forward(self.metrics(done))


def execute(tid: str, values: dict[str, Any], setup: TrialSetup, forward: Forward, rank: int = 0) -> None:
    """Fit one trial (on one data-parallel rank); rank 0 journals and records it."""
    from raydc.engine.train import fit

    config = make_config(values)
    journal = EpochJournal(setup.paths.journal_file(tid)) if rank == 0 else None
    reporter = EpochReporter(tid, setup, config, journal, forward)
    record = fit(config, reporter, checkpoint_dir=setup.paths.checkpoint_dir(tid),
                 pretrain_cache=setup.paths.pretrain_cache, dataset=_dataset(config.data.name, config.data.dir))
    if rank == 0:
        record_trial(setup.paths, tid, record, setup.keep_models)
    reporter.trackers.close(record.status)
    reporter.latest = record.final.get(setup.metric, math.nan)
    done = reporter.epochs if record.status == "finished" else record.epochs_done
    forward(reporter.metrics(done, status=record.status, recorded=True))


def _recorded_metrics(setup: TrialSetup, tids: list[str]) -> dict[str, dict[str, Any] | None]:
    """The final report of each trial already recorded in the study directory (None for one that is not), from one
    read of the trials table."""
    rows = {r["trial_id"]: r for r in ResultStore(setup.paths.root).trials().to_pylist() if r["trial_id"] in tids}
    reports: dict[str, dict[str, Any] | None] = {}
    for tid in tids:
        row = rows.get(tid)
        if row is None or row["status"] not in DONE_STATUSES:
            reports[tid] = None
            continue
        value = row[setup.metric]  # None for a trial that failed before its first evaluation
        reports[tid] = {setup.metric: math.nan if value is None else value, "epoch": row["epochs_done"],
                        "progress": 1.0, "trial": tid, "status": row["status"], "recorded": True}
    return reports


def run_trial(params: dict[str, Any], setup: TrialSetup) -> None:
    """Ray Tune function trainable for one study trial, or for a population of them."""
    members = setup.resolve_all(params)
    name = setup.population_name(params, members)
    if name is not None and (len(members) > 1 or setup.paths.checkpoint_dir(name).exists()):
        _run_population(name, members, setup)  # (a lone member may resume its population)
        return
    tid, values = members[0]
    # Two optuna suggestions can be the same configuration: the second waits and reuses the first.
    with exclusive(setup.paths.lock_file(tid)):
        recorded = _recorded_metrics(setup, [tid])[tid]
        if recorded is not None:
            tune.report(recorded)
            return
        if setup.resources.workers > 1:
            _run_data_parallel(tid, values, setup)
        else:
            execute(tid, setup.runtime_values(values, setup.resources.device), setup, tune.report)
    shutil.rmtree(setup.paths.checkpoint_dir(tid), ignore_errors=True)


def _run_population(name: str, members: list[tuple[str, dict[str, Any]]], setup: TrialSetup) -> None:
    """The members not recorded yet train as one stacked model, resuming checkpoint `name` if it holds them; each is
    journaled and recorded as its own trial."""
    with ExitStack() as held:
        for tid, _ in sorted(members):  # one order for every process: no two populations wait on each other
            held.enter_context(exclusive(setup.paths.lock_file(tid)))
        recorded = _recorded_metrics(setup, [tid for tid, _ in members])
        before = [(row["status"], row[setup.metric]) for row in recorded.values() if row is not None]
        todo = [(tid, values) for tid, values in members if recorded[tid] is None]
        if todo:
            execute_population(todo, setup, tune.report, setup.paths.checkpoint_dir(name), before)
        else:
            tune.report({**recorded[members[0][0]], setup.metric: group_value(setup, before)})
    shutil.rmtree(setup.paths.checkpoint_dir(name), ignore_errors=True)  # every member is recorded now


def group_value(setup: TrialSetup, outcomes: list[tuple[str, float]]) -> float:
    """What a Tune trial of several study trials reports, from their (status, value): a configuration's seeds their
    mean, NaN if one diverged (raydc select never picks such a configuration); a population its best finished value."""
    finite = [value for status, value in outcomes if status == "finished" and math.isfinite(value)]
    if setup.seed_groups:
        complete = finite and all(status == "finished" for status, _ in outcomes)
        return sum(finite) / len(finite) if complete else math.nan
    return (max if setup.mode == "max" else min)(finite) if finite else math.nan


def execute_population(members: list[tuple[str, dict[str, Any]]], setup: TrialSetup, forward: Forward,
                       checkpoints: Path, recorded_before: list[tuple[str, float]] = ()) -> None:
    """fit_population over the members. After each epoch the live members' value goes to Ray (their mean for a
    configuration's seeds, else the best), and last group_value over them and the (status, value) recorded_before."""
    from raydc.engine.population import fit_population

    configs = [make_config(setup.runtime_values(values, setup.resources.device)) for _, values in members]
    reporters = [EpochReporter(tid, setup, config, EpochJournal(setup.paths.journal_file(tid)), _ignore)
                 for (tid, _), config in zip(members, configs)]
    recorded: set[str] = set()
    alive = set(range(len(members)))

    def record_failure(row: int, record: TrialRecord) -> None:  # now: the population may crash before it ends
        record_trial(setup.paths, members[row][0], record, setup.keep_models)
        reporters[row].trackers.close(record.status)
        recorded.add(members[row][0])
        alive.discard(row)

    def report(row: int, record: EpochRecord) -> None:
        reporter = reporters[row]
        reporter(record)
        if record.phase in reporter.offsets and row == max(alive):  # every live member has this epoch's record
            done = reporter.offsets[record.phase] + record.epoch + 1
            if done < reporter.epochs:
                value = group_value(setup, [("finished", reporters[r].latest) for r in alive])
                forward({**reporter.metrics(done), setup.metric: value})

    records = fit_population(configs, report, dataset=_dataset(configs[0].data.name, configs[0].data.dir),
                             pretrain_cache=setup.paths.pretrain_cache, checkpoint_dir=checkpoints,
                             on_failure=record_failure)
    for row, ((tid, _), record) in enumerate(zip(members, records)):
        if tid not in recorded:
            record_trial(setup.paths, tid, record, setup.keep_models)
            reporters[row].trackers.close(record.status)
    outcomes = [(r.status, r.final.get(setup.metric, math.nan)) for r in records]
    reporter = reporters[0]
    reporter.latest = group_value(setup, [*recorded_before, *outcomes])
    status = "finished" if any(r.status == "finished" for r in records) else "failed"
    forward(reporter.metrics(reporter.epochs, status=status, recorded=True, members=len(members)))


def _ignore(metrics: dict[str, Any]) -> None:
    """A population member forwards nothing itself: the population reports as one Tune trial."""


def _run_data_parallel(tid: str, values: dict[str, Any], setup: TrialSetup) -> None:
    """Launch a TorchTrainer from inside the Tune trial; rank 0's reports reach Tune through the callback."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    res = setup.resources
    per_worker = {"CPU": res.cpu, **({"GPU": res.gpu} if res.gpu > 0 else {})}
    trainer = TorchTrainer(
        _data_parallel_worker,
        train_loop_config={"trial_id": tid, "values": values, "setup": setup},
        scaling_config=ScalingConfig(num_workers=res.workers, use_gpu=res.gpu > 0, resources_per_worker=per_worker),
        torch_config=TorchConfig(backend="nccl" if res.gpu > 0 else "gloo"),
        run_config=RunConfig(name=f"{tid}-{uuid.uuid4().hex[:8]}", storage_path=str(setup.paths.ray_dir / "train"),
                             failure_config=FailureConfig(max_failures=0),  # Tune retries the whole trial
                             callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _data_parallel_worker(loop_config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    setup: TrialSetup = loop_config["setup"]
    device = str(ray.train.torch.get_device()) if setup.resources.gpu > 0 else "cpu"
    execute(loop_config["trial_id"], setup.runtime_values(loop_config["values"], device), setup,
            ray.train.report, rank=ray.train.get_context().get_world_rank())
