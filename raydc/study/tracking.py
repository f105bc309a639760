"""Per-epoch metrics sent live to the trackers researchers already use: TensorBoard, MLflow and Weights & Biases.

Each trial is one run of each tracker, named by its trial id, with its config as parameters and grouped by study.
Every numeric column of the trial's epochs.parquet rows is logged as "<phase>/<column>" at step = the epoch within
that phase. The libraries' own clients write: torch's SummaryWriter, MlflowClient, wandb.init. A tracker that fails
(a server down, a full disk) is dropped for the rest of the trial after one report: a trial never fails or loses a
row because of it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from raydc.files.atomic import exclusive
from raydc.engine.records import EpochRecord

log = logging.getLogger(__name__)

# tracker -> (module it needs, extra that installs it)
EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}
ERRORS_FILE = "tracking-errors.log"  # in the study directory: one line per tracker a trial had to drop
MLFLOW_PARAMS_PER_BATCH = 100  # MLflow's limit on parameters in one log_batch
MLFLOW_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorBoardSpec(_Strict):
    log_dir: str | None = None  # default: <study dir>/tensorboard, one subdirectory per trial


class MlflowSpec(_Strict):
    tracking_uri: str | None = None  # default: sqlite:///<study dir>/mlflow.db
    experiment: str | None = None    # default: the study's name


class WandbSpec(_Strict):
    mode: Literal["online", "offline", "disabled"] | None = None  # None: W&B's own default (WANDB_MODE, or online)
    project: str | None = None  # default: the study's name
    entity: str | None = None


class TrackingSpec(_Strict):
    """A study file's `tracking:` section; `true` or an empty mapping turns a tracker on with its defaults."""

    tensorboard: TensorBoardSpec | None = None
    mlflow: MlflowSpec | None = None
    wandb: WandbSpec | None = None

    @field_validator("tensorboard", "mlflow", "wandb", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value

    def enabled(self) -> list[str]:
        return [name for name in EXTRAS if getattr(self, name) is not None]

    def missing_extras(self) -> list[tuple[str, str]]:
        """(tracker, pip command) of every tracker asked for whose library is not installed here."""
        return [(name, f"pip install 'raydc[{EXTRAS[name][1]}]'") for name in self.enabled()
                if importlib.util.find_spec(EXTRAS[name][0]) is None]


def epoch_values(record: EpochRecord) -> dict[str, float]:
    """The record's numeric columns that hold a value (NaN means not measured this epoch)."""
    values = {}
    for name, value in record.to_dict().items():
        if name in ("phase", "epoch") or not isinstance(value, (int, float)):
            continue
        if math.isfinite(value):
            values[name] = float(value)
    return values


class _TensorBoard:
    def __init__(self, spec: TensorBoardSpec, run: RunInfo):
        from torch.utils.tensorboard import SummaryWriter

        root = Path(spec.log_dir) if spec.log_dir else run.study_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(root / run.trial_id))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(run.config.items())))

    def log(self, phase: str, epoch: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{phase}/{name}", value, epoch)
        self.writer.flush()  # live: TensorBoard shows each epoch as it ends

    def close(self, status: str) -> None:
        self.writer.close()


class _Mlflow:
    def __init__(self, spec: MlflowSpec, run: RunInfo):
        from mlflow import MlflowClient
        from mlflow.entities import Param

        # MLflow retries an unreachable server 7 times with doubling waits (minutes, in every trial); a few seconds
        # say as much. A researcher's own setting wins.
        for name, value in MLFLOW_RETRIES.items():
            os.environ.setdefault(name, value)
        uri = spec.tracking_uri or f"sqlite:///{run.study_dir.resolve() / 'mlflow.db'}"
        name = spec.experiment or run.study
        # One trial at a time opens the store (a fresh SQLite store creates its tables then) and the experiment.
        with exclusive(run.study_dir / ".mlflow.lock"):
            self.client = MlflowClient(uri)
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        tags = {"raydc.study": run.study, "raydc.trial_id": run.trial_id}
        found = self.client.search_runs([experiment_id], f"tags.`raydc.trial_id` = '{run.trial_id}'", max_results=1)
        if found:  # a retried or resumed trial goes on with its run
            self.run_id = found[0].info.run_id
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=run.trial_id, tags=tags).info.run_id
            params = [Param(key, str(value)) for key, value in sorted(run.config.items())]
            for start in range(0, len(params), MLFLOW_PARAMS_PER_BATCH):
                self.client.log_batch(self.run_id, params=params[start:start + MLFLOW_PARAMS_PER_BATCH])

    def log(self, phase: str, epoch: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(f"{phase}/{name}", value, now, epoch)
                                                    for name, value in values.items()])

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if status == "finished" else "FAILED")


class _Wandb:
    def __init__(self, spec: WandbSpec, run: RunInfo):
        import wandb

        # The same trial of the same study directory is one run: a retried trial resumes it.
        run_id = hashlib.sha256(f"{run.study_dir.resolve()}:{run.trial_id}".encode()).hexdigest()[:16]
        self.run = wandb.init(project=spec.project or run.study, entity=spec.entity, group=run.study,
                              name=run.trial_id, id=run_id, resume="allow", config=run.config,
                              dir=str(run.study_dir), mode=spec.mode, reinit="create_new",
                              settings=wandb.Settings(silent=True, console="off"))
        self.phases: set[str] = set()

    def log(self, phase: str, epoch: int, values: dict[str, float]) -> None:
        if phase not in self.phases:  # each phase's metrics are plotted against its own epochs
            self.run.define_metric(f"{phase}/epoch")
            self.run.define_metric(f"{phase}/*", step_metric=f"{phase}/epoch")
            self.phases.add(phase)
        self.run.log({f"{phase}/epoch": epoch, **{f"{phase}/{name}": value for name, value in values.items()}})

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "finished" else 1)


class RunInfo:
    """What names a trial's run in every tracker."""

    def __init__(self, study: str, study_dir: Path, trial_id: str, config: dict[str, Any]):
        self.study, self.study_dir, self.trial_id = study, Path(study_dir), trial_id
        self.config = {k: json.dumps(v) if isinstance(v, list) else v for k, v in config.items()}


OPENERS: dict[str, Callable[[Any, RunInfo], Any]] = {"tensorboard": _TensorBoard, "mlflow": _Mlflow,
                                                     "wandb": _Wandb}


class Trackers:
    """The trackers of one trial; each failure drops that tracker after one line in the study's ERRORS_FILE."""

    def __init__(self, spec: TrackingSpec | None, run: RunInfo):
        self.run = run
        self.active: dict[str, Any] = {}
        for name in spec.enabled() if spec is not None else []:
            try:
                self.active[name] = OPENERS[name](getattr(spec, name), run)
            except Exception as exc:  # noqa: BLE001  a tracker's failure must never fail the trial
                self._report(name, exc)

    def log(self, record: EpochRecord) -> None:
        if not self.active:
            return
        values = epoch_values(record)
        for name, tracker in list(self.active.items()):
            try:
                tracker.log(record.phase, record.epoch, values)
            except Exception as exc:  # noqa: BLE001
                self._drop(name, exc)

    def close(self, status: str) -> None:
        for name, tracker in list(self.active.items()):
            try:
                tracker.close(status)
            except Exception as exc:  # noqa: BLE001
                self._report(name, exc)
        self.active.clear()

    def _drop(self, name: str, exc: Exception) -> None:
        tracker = self.active.pop(name)
        self._report(name, exc)
        try:
            tracker.close("failed")
        except Exception:  # noqa: BLE001  already reported
            pass

    def _report(self, name: str, exc: Exception) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} trial {self.run.trial_id}: {name} dropped: " \
               f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.warning(line)
        try:
            with open(self.run.study_dir / ERRORS_FILE, "a") as errors:
                errors.write(line + "\n")
        except OSError:
            pass


def tracking_offset(study_dir: Path | str) -> int:
    """Where the next tracking problem will be written (tracking_problems' `since`)."""
    path = Path(study_dir) / ERRORS_FILE
    return path.stat().st_size if path.exists() else 0


def tracking_problems(study_dir: Path | str, since: int = 0) -> list[str]:
    """Lines of the study's tracking errors from byte offset `since` on."""
    path = Path(study_dir) / ERRORS_FILE
    if not path.exists():
        return []
    with open(path) as errors:
        errors.seek(since)
        return [line.rstrip("\n") for line in errors if line.strip()]
