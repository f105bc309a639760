"""One deep-clustering trial end to end: pretrain (or load cached) → k-means init → cluster epochs with BRB →
self-labeling → records, with checkpoints and resume."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from raydc.evaluation import metrics
from raydc.files.atomic import exclusive
from raydc.files.checkpoint import atomic_save, load
from raydc.engine.clock import TrialClock
from raydc.engine.cluster_epochs import Member, is_checkpoint_epoch, run_cluster_epochs
from raydc.clustering.kmeans import kmeans
from raydc.config import ConfigError, TrialConfig, flatten, make_config
from raydc.data import Dataset, load_dataset, resized
from raydc.errors import TrialDiverged
from raydc.engine.model import model_state
from raydc.engine.pretrain import cluster_cache_path, is_contrastive, pretrained_state
from raydc.engine.records import FINAL_METRICS, KMEANS_METRICS, EpochRecord, TrialRecord
from raydc.selflabel import SelfLabeling
from raydc.engine.state import TrialState, embed
from raydc.engine.trial import Trial

Report = Callable[[EpochRecord], None]
KMEANS_SCORE_INITS = 4  # seedings of the fresh k-means that scores an embedding, fixed so scores stay comparable


def resolve_device(name: str) -> torch.device:
    """The torch device `name` (a validated config.device) asks for; ConfigError when this machine lacks it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    # fail here, before the dataset is loaded, rather than at the first tensor moved there
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError("device", f"{name!r} asked for, but this machine has no CUDA device; use auto or cpu")
        if device.index is not None and device.index >= count:
            raise ConfigError("device", f"{name!r} asked for, but this machine has {count} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device", f"{name!r} asked for, but MPS is not available here; use auto or cpu")
    return device


def versions() -> dict[str, str]:
    import raydc

    return {"raydc": raydc.__version__, "torch": torch.__version__, "numpy": np.__version__}


def fit(config: TrialConfig | dict[str, Any], report: Report | None = None, *,
        checkpoint_dir: Path | str | None = None, pretrain_cache: Path | str | None = None,
        dataset: Dataset | None = None) -> TrialRecord:
    """Run one trial, calling report(record) once per epoch, and return its TrialRecord.

    Stages: pretraining (or the cache), clustering epochs with BRB, then self-labeling when
    config.selflabel.epochs > 0. With checkpoint_dir, the full state is saved every config.checkpoint_every
    epochs (and at the end of each stage) and an existing checkpoint there is resumed: only epochs after it
    are run and reported. Pretraining is read from / written to pretrain_cache (default: checkpoint_dir).
    """
    config = config if isinstance(config, TrialConfig) else make_config(config)
    report = report or (lambda record: None)
    clock = TrialClock()
    device = resolve_device(config.device)
    data = resized(dataset or load_dataset(config.data.name, data_dir=config.data.dir), config.resize_side).to(device)
    trial = Trial(config, data, device)
    state = trial.state
    ckpt_path = Path(checkpoint_dir) / "trial.pt" if checkpoint_dir is not None else None
    cache = Path(pretrain_cache) if pretrain_cache is not None else (Path(checkpoint_dir) if checkpoint_dir else None)
    result = TrialRecord(config=flatten(config), status="running", device=str(device), versions=versions())

    def save(**extra: Any) -> None:
        if ckpt_path is not None:
            atomic_save({**trial.state_dict(), **extra, "clock": clock.state_dict(),
                         "pretrain_cached": result.pretrain_cached}, ckpt_path)

    try:
        saved = load(ckpt_path, device) if ckpt_path is not None and ckpt_path.exists() else None
        shared = cluster_cache_path(config, cache)
        if saved is not None:
            trial.load_state_dict(saved)
            if "clock" in saved:  # checkpoints written before the clock was kept start their totals from zero
                clock.load_state_dict(saved["clock"])
            result.pretrain_cached = bool(saved.get("pretrain_cached", True))
            with clock.stage("cluster_time_s"):
                final = cluster_stage(trial, report, save, clock, result)
        elif shared is not None:  # trials that differ only in self-labeling share one clustering stage
            with exclusive(shared.with_suffix(".lock")):
                result.cluster_cached = shared.exists()
                if result.cluster_cached:
                    replay_cluster_stage(trial, load(shared, device), report)
                else:
                    records = _Recorder(report)
                    with clock.stage("pretrain_time_s"):
                        result.pretrain_cached = pretrain(state, cache, records, clock.elapsed)
                        trial.init_clustering()
                    with clock.stage("cluster_time_s"):
                        cluster_stage(trial, records, save, clock, result)
                    atomic_save({"trial": trial.state_dict(), "records": records.rows}, shared)
            final = None
        else:
            with clock.stage("pretrain_time_s"):
                result.pretrain_cached = pretrain(state, cache, report, clock.elapsed)
                trial.init_clustering()
            with clock.stage("cluster_time_s"):
                final = cluster_stage(trial, report, save, clock, result)
        eval_net = state.model.eval_net
        if config.selflabel.epochs > 0:
            with clock.stage("selflabel_time_s"):
                stage = state.self_labeling()
                final = self_labeling_stage(state, stage, (saved or {}).get("selflabel"), report, save, clock.elapsed)
            eval_net = stage.strategy.eval_model(stage.classifier).net
        if final is None:  # resumed from a finished checkpoint: nothing ran, evaluate once more
            final = EpochRecord(phase="final", epoch=state.epoch)
            if config.selflabel.epochs > 0:
                state.score_self_labeling(final, stage)
            else:
                trial.evaluate(final)
        result.final = {m: getattr(final, m) for m in FINAL_METRICS}
        result.epochs_done = state.epoch + 1
        # the clustering stage's measured embedding; a self-labeling head trains (and is scored) in float32
        z = embed(eval_net, data.x) if config.selflabel.epochs > 0 else trial.measured_embedding()
        result.final.update(kmeans_scores(z, data, state.generator))
        result.labels = state.prev_labels.cpu().numpy().astype(np.int32)
        result.embedding = z.cpu().numpy().astype(np.float32)
        classifier = stage.strategy.eval_model(stage.classifier) if config.selflabel.epochs > 0 else None
        result.model = model_state(config, result.config, eval_net, state.model.centers, data.mean, data.std,
                                   classifier)
        result.status = "finished"
    except TrialDiverged as exc:
        result.status, result.error = "failed", str(exc)
    for name, seconds in clock.state_dict().items():
        setattr(result, name, seconds)
    result.ended_at = time.time()
    return result


class _Recorder:
    """Reports every record and keeps it, so a shared stage can be replayed to later trials."""

    def __init__(self, report: Report):
        self.report, self.rows = report, []

    def __call__(self, record: EpochRecord) -> None:
        self.rows.append(record.to_dict())
        self.report(record)


def replay_cluster_stage(trial: Trial, stored: dict[str, Any], report: Report) -> None:
    """Continue from a shared clustering stage: its state, and its records reported again for this trial."""
    trial.load_state_dict(stored["trial"])
    for row in stored["records"]:
        report(EpochRecord(**row))


def pretrain(state: TrialState, cache: Path | None, report: Report, elapsed: Callable[[], float]) -> bool:
    """Pretrain the trial's network (or load it from the cache), reporting every epoch's loss; True if cached."""
    loss_field = "loss_contrastive" if is_contrastive(state.net) else "loss_reconstruction"

    epoch_end = [elapsed()]

    def on_epoch(epoch: int, loss: float) -> None:
        now = elapsed()
        report(EpochRecord(phase="pretrain", epoch=epoch, loss=loss, **{loss_field: loss}, time_s=now - epoch_end[0],
                           elapsed_s=now))
        epoch_end[0] = now

    if state.config.pretrain.epochs == 0:
        return False
    return pretrained_state(state.net, state.data, state.config, state.augmenter, cache, on_epoch)[1]


class OneTrial:
    """The cluster loop's engine for a lone trial: its own model, optimizer and steps (raydc.engine.trial)."""

    def __init__(self, trial: Trial):
        self.trial = trial

    def periodic_step(self, row: int) -> None:
        self.trial.periodic_step()

    def train_epoch(self) -> list[dict[str, float]]:
        return [self.trial.train_epoch()]

    def finite_centers(self) -> list[bool]:
        return [bool(torch.isfinite(self.trial.state.model.centers).all())]

    def keep(self, rows: list[int]) -> None:
        """Nothing to rebuild: a lone trial that diverged has already raised."""

    def end_epoch(self) -> list[dict[str, float]]:
        return [self.trial.state.end_epoch()]

    def evaluate(self, records: list[EpochRecord], last: bool) -> None:
        self.trial.evaluate(records[0])


def cluster_stage(trial: Trial, report: Report, save: Callable[..., None], clock: TrialClock,
                  result: TrialRecord) -> EpochRecord | None:
    """Clustering epochs after the last finished one; returns the final epoch's record if it ran now."""

    def diverged() -> None:
        raise TrialDiverged(result.error)

    member = Member(trial.state, result, report, lambda seconds: clock.add("reset_time_s", seconds), diverged)
    run_cluster_epochs([member], OneTrial(trial), clock, trial.state.epoch + 1, lambda epoch, last: save())
    return member.final


def self_labeling_stage(state: TrialState, stage: SelfLabeling, saved: dict[str, Any] | None, report: Report,
                        save: Callable[..., None], elapsed: Callable[[], float]) -> EpochRecord | None:
    """Head warm-up on the clustering labels, then self-labeling epochs with the configured ReSL resets."""
    config = state.config
    cfg = config.selflabel
    if saved is None:
        labels = state.model.predict(embed(state.model.eval_net, state.data.x))
        for epoch in range(cfg.warmup_epochs):
            loss = stage.warmup_epoch(labels)
            report(EpochRecord(phase="selflabel_warmup", epoch=epoch, loss=loss, elapsed_s=elapsed()))
        saved = {"epoch": -1, "reset_pending": False}
    else:
        stage.load_state_dict(saved["state"])
        state.remember_labels(saved["prev_labels"])
    reset_pending = saved["reset_pending"]
    final = None
    for epoch in range(saved["epoch"] + 1, cfg.epochs):
        t_epoch = time.perf_counter()
        record = EpochRecord(phase="selflabel", epoch=epoch, reset_applied=reset_pending)
        for name, value in stage.train_epoch().items():
            setattr(record, name, value)
        if not np.isfinite(record.loss):
            raise TrialDiverged(f"non-finite loss at self-labeling epoch {epoch}")
        state.score_self_labeling(record, stage)
        reset_pending = stage.strategy.end_epoch(stage.classifier, epoch)  # marks the next epoch's record
        record.time_s = time.perf_counter() - t_epoch
        record.elapsed_s = elapsed()
        report(record)
        last = epoch == cfg.epochs - 1
        if is_checkpoint_epoch(config, epoch, last):
            save(selflabel={"epoch": epoch, "reset_pending": reset_pending, "state": stage.state_dict(),
                            "prev_labels": state.prev_labels})
        if last:
            final = record
    return final


def kmeans_scores(z: torch.Tensor, data: Dataset, generator: torch.Generator) -> dict[str, float]:
    """ACC/NMI/ARI of a fresh k-means on the embedding (as ClustPy reports `labels_`)."""
    _, labels = kmeans(z, data.n_clusters, generator, n_init=KMEANS_SCORE_INITS)
    y = data.y
    return dict(zip(KMEANS_METRICS, metrics.label_scores(y, labels)))



