"""Run a study on Ray: skip what its directory already holds, launch the rest as Ray Tune trials."""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from raydc.config import ConfigError
from raydc.engine.population import stacking_key
from raydc.config.identity import configuration_id
from raydc.tables.store import ResultStore
from raydc.study.outcomes import UnfinishedTrials
from raydc.study.paths import StudyPaths
from raydc.study.populations import discard_recorded, encode, plan_populations, saved_populations
from raydc.study.interrupt import StopRequest, interruptible
from raydc.study.progress import ProgressLine, recorded_best
from raydc.study.record import discard_scratch, done_ids
from raydc.study.space import Dimension
from raydc.study.spec import Study, dump_spec
from raydc.study.summary import best_configuration
from raydc.study.tune_trial import TrialSetup, run_trial
from raydc.study.tracking import ERRORS_FILE, tracking_offset, tracking_problems

# A Tune trial that only launches Ray Train workers holds almost nothing itself (zero is not accepted).
LAUNCHER_CPU = 0.01


@dataclass(frozen=True)
class RunSummary:
    launched: int               # trials started by this run
    counts: dict[str, int]      # trials in the directory by status, after the run
    elapsed_s: float


def write_spec(study: Study, paths: StudyPaths) -> None:
    paths.root.mkdir(parents=True, exist_ok=True)
    tmp = paths.spec_file.with_suffix(".yaml.tmp")
    tmp.write_text(dump_spec(study.spec))
    os.replace(tmp, paths.spec_file)


def connect(address: str | None) -> None:
    """Join the given cluster, or start a local Ray with no dashboard (unless Ray is up already)."""
    if ray.is_initialized():
        return
    # Trial output stays in Ray's log files; the driver prints one progress line.
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)


def _local_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _tune_domain(dim: Dimension) -> Any:
    if dim.kind == "choice":
        return tune.choice(list(dim.values))
    if dim.kind == "int":
        return tune.randint(int(dim.low), int(dim.high) + 1)  # randint excludes its upper end
    return (tune.loguniform if dim.kind == "loguniform" else tune.uniform)(dim.low, dim.high)


def _concurrency(study: Study, address: str | None) -> int | None:
    """How many Tune trials may run at once: resources.concurrent, and for data-parallel trials (whose workers Tune
    does not account for) no more than fit. Raises when not one trial fits on a local Ray."""
    res = study.spec.resources
    total = ray.cluster_resources()
    if res.workers == 1:
        if address is None:  # a local Ray never grows: Tune would wait forever for a trial larger than it
            for field, kind, need in (("resources.cpu", "CPU", res.cpu), ("resources.gpu", "GPU", res.gpu)):
                if need > total.get(kind, 0) + 1e-9:
                    raise ConfigError(field, f"a trial needs {need:g} {kind} but the local Ray has "
                                             f"{total.get(kind, 0):g}; lower {field}, or join a larger cluster "
                                             "with --address")
        return res.concurrent
    # Each trial's launcher holds its own CPU share beside its workers'; Ray Train waits forever for what is missing.
    needs = {"CPU": LAUNCHER_CPU + res.workers * res.cpu, **({"GPU": res.workers * res.gpu} if res.gpu > 0 else {})}
    fits = min(int(total.get(kind, 0) / need + 1e-9) for kind, need in needs.items())
    if fits == 0 and address is None:  # a local Ray never grows
        have = ", ".join(f"{total.get(kind, 0):g} {kind}" for kind in needs)
        want = ", ".join(f"{need:g} {kind}" for kind, need in needs.items())
        raise ConfigError("resources.workers", f"a trial of {res.workers} workers needs {want} (its launcher "
                                               f"included) but the local Ray has {have}; lower resources.workers "
                                               "or resources.cpu/gpu, or join a larger cluster with --address")
    if address is None:
        return min(fits, res.concurrent or fits)
    if res.concurrent is not None:  # the researcher knows how far the autoscaler can grow
        return res.concurrent
    print(f"at most {max(1, fits)} data-parallel trial(s) at a time: what the cluster holds now (set "
          "resources.concurrent to let an autoscaling cluster run more)", flush=True)
    return max(1, fits)


def run_study(study: Study, out: str | Path, *, address: str | None = None) -> RunSummary:
    """Run every trial of the study that its directory does not hold yet; results land in `out`."""
    started = time.monotonic()
    spec = study.spec
    if address is None and spec.resources.gpu > 0 and not _local_gpu():
        raise ConfigError("resources.gpu", "this machine has no GPU; set resources.gpu: 0 to run the study on "
                                           "CPU, or join a GPU cluster with --address")
    paths = StudyPaths.at(out, spec.pretrain_cache)
    paths.check_holds(study.spec.name)
    store = ResultStore(paths.root)
    done = done_ids(store)
    for tid in done:
        discard_scratch(paths, tid)
    discard_recorded(paths, done)

    if spec.search.kind == "optuna":
        # finished configurations count toward n (with seed groups, each is all of its seeds)
        to_run = spec.search.n - len(done) // len(spec.search.seeds if spec.seed_groups else [0])
        param_space = {d.key: _tune_domain(d) for d in study.dimensions}
    else:
        pending = [t.trial_id for t in study.trials if t.trial_id not in done]
        to_run = len(pending)
        param_space = {"trial_id": tune.grid_search(pending)}
    print(f"study {spec.name}: {study.planned_count} trials planned, {len(done)} already done in {paths.root}, "
          f"{max(to_run, 0)} to run", flush=True)
    grouped = spec.resources.population > 1 or (spec.seed_groups and spec.search.kind != "optuna")
    if grouped and to_run > 0:
        size, key = ((len(spec.search.seeds), configuration_id) if spec.seed_groups
                     else (spec.resources.population, stacking_key))
        groups = plan_populations({t.trial_id: t.values for t in study.trials}, pending, size,
                                  saved_populations(paths), key)
        param_space = {"population": tune.grid_search([encode(name, members) for name, members in groups])}
        what = "configurations, each trained with its seeds as one population" if spec.seed_groups else "populations"
        print(f"as {len(groups)} {what} of up to {size} trials", flush=True)
        to_run = len(groups)
    problems_seen = tracking_offset(paths.root)
    joined_before = ray.is_initialized()  # a caller's Ray stays up
    try:
        with interruptible() as stop:  # Tune's own SIGINT handler is off: raydc stops and resumes itself
            if to_run > 0:
                connect(address)
                stop.arm()  # ray.init installs its own SIGTERM handler
            concurrency = _concurrency(study, address) if to_run > 0 else None  # raises when not one trial fits
            write_spec(study, paths)  # only after every check: --resume continues any directory with a spec
            if to_run > 0:
                stop.raise_if_set()
                _run_tune(study, paths, store, param_space, to_run, concurrency, stop)
            stop.raise_if_set()
    finally:
        if ray.is_initialized() and not joined_before:
            ray.shutdown()  # ends this run's trial actors: their checkpoints and journals stay for --resume
    now_done = done_ids(store)
    for tid in now_done - done:
        discard_scratch(paths, tid)
    discard_recorded(paths, now_done)
    counts = dict(Counter(store.trials().column("status").to_pylist()))
    problems = tracking_problems(paths.root, problems_seen)
    if problems:  # once per run: each trial already went on without the tracker
        print(f"tracking: {len(problems)} tracker(s) dropped by trials, first: {problems[0]} "
              f"(all in {paths.root / ERRORS_FILE})", flush=True)
    print(f"results: {paths.root}/trials.parquet, epochs.parquet, assignments/")
    print("trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), flush=True)
    best = best_configuration(paths.root, spec.metric, spec.mode)
    if best:
        print(best, flush=True)
    return RunSummary(max(to_run, 0), counts, time.monotonic() - started)


def _run_tune(study: Study, paths: StudyPaths, store: ResultStore, param_space: dict[str, Any], to_run: int,
              concurrency: int | None, stop: StopRequest) -> None:
    spec = study.spec
    res = spec.resources
    setup = TrialSetup(paths=paths, planned={t.trial_id: t.values for t in study.trials}, base=study.base,
                       seed=spec.search.seeds[0], metric=spec.metric, mode=spec.mode,
                       checkpoint_every=spec.checkpoint_every, resources=res, keep_models=spec.keep_models,
                       seeds=tuple(spec.search.seeds) if spec.seed_groups else (), study=spec.name,
                       tracking=spec.tracking)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the progress line replaces Tune's tables
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # SIGINT stops the run through raydc.study.interrupt
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    # Tune's result grid, which raydc never reads (results live in the store), warns about every trial a signal or
    # a crash stopped before its first report.
    logging.getLogger("ray.tune.analysis").setLevel(logging.ERROR)
    trial_resources = {"cpu": res.cpu, "gpu": res.gpu} if res.workers == 1 else {"cpu": LAUNCHER_CPU}
    scheduler = None
    if spec.asha is not None:
        scheduler = tune.schedulers.ASHAScheduler(time_attr="epoch", max_t=study.max_epochs,
                                                  grace_period=spec.asha.grace_period,
                                                  reduction_factor=spec.asha.reduction_factor)
    optuna = spec.search.kind == "optuna"
    if optuna:
        from raydc.study.tpe import tpe_search  # optuna loads for optuna studies only
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(run_trial, setup=setup), trial_resources),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=spec.metric, mode=spec.mode, search_alg=tpe_search(study, store, paths) if optuna else None,
            # No actor reuse: after a trial's process dies, Ray Tune 2.60 with reused actors runs every later trial
            # one at a time (a slot is never given back); a fresh actor per trial keeps every slot busy.
            scheduler=scheduler, num_samples=to_run if optuna else 1, reuse_actors=False,
            max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(
            name=time.strftime("tune-%Y%m%d-%H%M%S"), storage_path=str(paths.ray_dir), verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures), stop=stop,
            callbacks=[UnfinishedTrials(setup, early_stopping=scheduler is not None, interrupted=stop),
                       ProgressLine(to_run, spec.metric, spec.mode, recorded_best(store, spec.metric, spec.mode))]),
    )
    tuner.fit()

