"""Readable summaries of a study: what a run would do (dry run) and what a study directory holds (status)."""
from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from raydc.config import make_config
from raydc.engine.model import MODELS_DIR, human_bytes, models_size
from raydc.tables.results import configuration_labels, load_trials
from raydc.tables.store import ResultStore
from raydc.study.journal import EpochJournal
from raydc.study.paths import StudyPaths
from raydc.study.plan import build_config
from raydc.study.populations import group_trials
from raydc.study.record import DONE_STATUSES, done_ids
from raydc.study.space import Dimension
from raydc.study.spec import Study, parse_study

SAMPLE_TRIALS = 5
BEST_TRIALS = 5


def _dimension(dim: Dimension) -> str:
    if dim.kind == "choice":
        return f"{dim.key} {list(dim.values)}"
    return f"{dim.key} ~ {dim.kind}[{dim.low}, {dim.high}]"


def _params(params: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def describe_plan(study: Study, out: Path | None) -> str:
    """The dry-run report: how many trials, which dimensions, a sample of trials and one resolved config."""
    spec, search = study.spec, study.spec.search
    has_results = out is not None and (Path(out) / "trials.parquet").exists()
    done = done_ids(ResultStore(out)) if has_results else set()
    res = spec.resources
    lines = [f"study {spec.name}: {search.kind} search, {study.planned_count} trials, "
             + f"metric {spec.metric} ({spec.mode})",
             "space: " + ("; ".join(_dimension(d) for d in study.dimensions) or "(none)") + f"; seeds {search.seeds}",
             (f"per population of up to {res.population} trials: " if res.population > 1 else "per trial: ")
             + f"{res.cpu:g} cpu, {res.gpu:g} gpu, {res.workers} worker(s); "
             f"checkpoint every {spec.checkpoint_every} epochs; up to {spec.max_failures} retries"
             + (f"; ASHA grace {spec.asha.grace_period}, reduction {spec.asha.reduction_factor:g}"
                if spec.asha else "")]
    if spec.seed_groups:
        lines.append(f"metric vi: each Tune trial trains one configuration's {len(search.seeds)} seeds as one "
                     "population and reports their mean VI")
    if search.kind == "optuna":
        lines.append(f"optuna: TPE seeded {search.seed}, its study in <out>/optuna.db; finished configurations "
                     f"count toward n={search.n}")
    else:
        pending = [t for t in study.trials if t.trial_id not in done]
        lines.append(f"{len(pending)} to run, {len(study.trials) - len(pending)} already done"
                     + (f" in {out}" if out is not None else ""))
        if res.population > 1 and pending:
            planned = {t.trial_id: t.values for t in study.trials}
            groups = group_trials(planned, [t.trial_id for t in pending], res.population)
            lines.append(f"as {len(groups)} populations (one stacked model each; sizes "
                         f"{', '.join(str(n) for n in sorted({len(g) for g in groups}, reverse=True))})")
        lines += ["sample:"] + [f"  {t.trial_id}  {_params(t.params)}" for t in study.trials[:SAMPLE_TRIALS]]
    first = study.trials[0].values if study.trials else build_config(study.base, {}, search.seeds[0]).model_dump()
    first = make_config({**first, "device": res.device, "checkpoint_every": spec.checkpoint_every})
    lines += ["first trial, resolved:",
              yaml.safe_dump(first.model_dump(), sort_keys=False, default_flow_style=None).rstrip()]
    return "\n".join(lines)


def rank_configurations(root: Path, metric: str, mode: str) -> pd.DataFrame:
    """Finished configurations (per dataset) ranked by their mean metric over seeds: config_id, config (a label of the
    settings that act), data.name, mean, std and n (seeds with a value)."""
    try:
        trials = load_trials(root)
    except FileNotFoundError:
        return pd.DataFrame()
    trials = trials[trials[metric].notna() & np.isfinite(trials[metric].astype(float))]
    if trials.empty:
        return pd.DataFrame()
    trials = trials.assign(config=trials["config_id"].map(configuration_labels(trials)))
    ranked = trials.groupby(["config_id", "config", "data.name"])[metric].agg(["mean", "std", "count"]).reset_index()
    ranked = ranked.rename(columns={"count": "n"})
    if trials["data.name"].nunique() > 1:
        ranked["config"] = ranked["data.name"] + ": " + ranked["config"]
    return ranked.sort_values("mean", ascending=mode == "min", kind="stable").reset_index(drop=True)


def _mean_line(row: pd.Series) -> str:
    spread = f" ± {row['std']:.4f}" if row["n"] > 1 else ""
    return f"{row['mean']:.4f}{spread} (n={row['n']})"


def best_configuration(root: Path, metric: str, mode: str) -> str | None:
    """One line naming the study's best configuration by its mean over seeds, or None before any finished."""
    ranked = rank_configurations(root, metric, mode)
    if ranked.empty:
        return None
    return f"best configuration by mean {metric}: {_mean_line(ranked.iloc[0])}  {ranked.iloc[0]['config']}"


def describe_directory(root: Path) -> str:
    """`raydc status`: trials by status, what is still pending, time spent, and the best trials."""
    paths = StudyPaths.at(root)
    if not paths.spec_file.exists() and not (paths.root / "trials.parquet").exists():
        return f"{paths.root}: no study results here"
    study = parse_study(yaml.safe_load(paths.spec_file.read_text())) if paths.spec_file.exists() else None
    rows = ResultStore(paths.root).trials().to_pylist()
    counts = Counter(row["status"] for row in rows)
    recorded = {row["trial_id"] for row in rows if row["status"] in DONE_STATUSES}
    journals = list((paths.root / "journal").glob("*.jsonl"))
    interrupted = [j for j in journals if j.stem not in recorded and EpochJournal(j).rows()]
    lines = [f"study {study.spec.name if study else '?'} at {paths.root}"]
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none recorded"
    if study is not None:
        planned = {t.trial_id for t in study.trials}
        pending = len(planned - recorded) if planned else max(study.planned_count - len(recorded), 0)
        summary += f"; {pending} of {study.planned_count} planned still to run"
    lines.append(f"trials: {summary}; {len(interrupted)} interrupted (resumable)")
    kept, size = models_size(paths.root)
    if kept:
        lines.append(f"models: {kept} kept in {paths.root / MODELS_DIR}, {human_bytes(size)} (raydc.load_model)")
    times = [r["wall_time_s"] for r in rows if r["wall_time_s"] is not None]
    if times:
        lines.append(f"time: {_duration(sum(times))} of trial time; a trial took {_duration(min(times))} to "
                     f"{_duration(max(times))} (median {_duration(statistics.median(times))})")
    metric, mode = (study.spec.metric, study.spec.mode) if study else ("acc", "max")
    ranked = rank_configurations(paths.root, metric, mode)
    if len(ranked):
        lines.append(f"best configurations by mean {metric} over seeds ({mode}; ± the seeds' standard deviation):")
        lines += [f"  {_mean_line(row)}  {row['config']}  [config {row['config_id']}]"
                  for _, row in ranked.head(BEST_TRIALS).iterrows()]
    failures = [r for r in rows if r["status"] in ("failed", "error")]
    lines += [f"  {r['status']}: {r['trial_id']}  {r['error']}" for r in failures[:BEST_TRIALS]]
    return "\n".join(lines)
