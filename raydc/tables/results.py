"""A study directory's tables as pandas frames, with configurations named and labelled.

A configuration is a trial's config without its seed: trials that differ only in seed are seeds of
one configuration and share a ``config_id``, the trial id (raydc.config.identity.trial_id) of the config with its seed
and data directory at their defaults, so trial ids and configurations agree on what makes two trials differ.
Fields that say where or how a trial ran rather than what it trained (device, checkpoint interval, CUDA graphs,
compilation, data directory) are not part of a configuration.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from raydc.config import EXECUTION_FIELDS, ConfigError, make_config, unflatten
from raydc.config.effects import affects
from raydc.config.identity import configuration_id
from raydc.tables.store import TRIALS_FILE, ResultStore, config_fields

NOT_CONFIGURATION = ("seed", "data.dir", *EXECUTION_FIELDS)
# Short names for labels in tables and figure legends; other columns keep their dotted name.
SHORT_NAMES = {"train.algorithm": "", "brb.mode": "", "brb.alpha": "α", "brb.interval": "T", "train.lr": "lr",
               "pretrain.epochs": "pretrain"}
LABEL_FIRST = ("train.algorithm", "brb.mode")


def configuration_columns() -> list[str]:
    return [f.name for f in config_fields() if f.name not in NOT_CONFIGURATION]


def _config_id(values: dict[str, Any]) -> str:
    """The trial id of one configuration's columns (nulls as None); a hash of the values where they no longer
    make a valid config (a value an older version accepted)."""
    try:
        return configuration_id(make_config(unflatten(values)))
    except ConfigError:
        return hashlib.sha256(json.dumps(list(values.values()), default=str).encode()).hexdigest()[:12]


def _config_ids(trials: pd.DataFrame) -> pd.Series:
    """config_id of each row, built once per distinct configuration: a study holds many seeds of each."""
    columns = configuration_columns()
    values = trials[columns].astype(object).where(trials[columns].notna(), None)
    rows = list(values.itertuples(index=False, name=None))
    ids = {row: _config_id(dict(zip(columns, row))) for row in set(rows)}
    return pd.Series([ids[row] for row in rows], index=trials.index)


def load_trials(study_dir: Path | str, finished_only: bool = True) -> pd.DataFrame:
    """trials.parquet with a ``config_id`` column; by default only trials whose status is finished."""
    if not (Path(study_dir) / TRIALS_FILE).exists():
        raise FileNotFoundError(f"{study_dir}: no {TRIALS_FILE} (not a study directory?)")
    trials = ResultStore(study_dir).trials().to_pandas()
    if finished_only:
        trials = trials[trials["status"] == "finished"].reset_index(drop=True)
    trials["config_id"] = _config_ids(trials) if len(trials) else pd.Series(dtype=str)
    return trials


def load_epochs(study_dir: Path | str, trials: pd.DataFrame | None = None,
                phase: str | tuple[str, ...] = "cluster") -> pd.DataFrame:
    """Rows of epochs.parquet in ``phase`` (one name or several: "cluster", "selflabel_warmup", "selflabel",
    "pretrain") joined with their trial's configuration columns."""
    trials = load_trials(study_dir) if trials is None else trials
    phases = (phase,) if isinstance(phase, str) else tuple(phase)
    table = ResultStore(study_dir).epochs()
    # Filter in Arrow: the pretraining rows of a large study need never become a pandas frame.
    epochs = table.filter(pc.is_in(table["phase"], pa.array(phases, pa.string()))).to_pandas()
    keep = ["trial_id", "config_id", "seed", *configuration_columns()]
    return epochs.merge(trials[keep], on="trial_id", how="inner")


def for_dataset(frame: pd.DataFrame, dataset: str | None) -> pd.DataFrame:
    """Rows of one dataset; ``None`` is allowed when the frame holds only one."""
    names = sorted(frame["data.name"].unique())
    if dataset is None and len(names) == 1:
        dataset = names[0]
    if dataset not in names:
        raise ValueError(f"choose a dataset with dataset=...; the study has {', '.join(names) or 'none'}")
    return frame[frame["data.name"] == dataset]


def varying_columns(trials: pd.DataFrame, columns: list[str] | None = None) -> list[str]:
    """Configuration columns that take more than one value (missing counts as a value)."""
    columns = configuration_columns() if columns is None else columns
    return [c for c in columns if trials[c].nunique(dropna=False) > 1]


def format_value(value: object) -> str:
    if isinstance(value, pd.Interval):  # a bin of a sampled setting
        return f"{value.left:.3g}–{value.right:.3g}"
    if value is None or pd.isna(value):  # a null setting is None in the configuration
        return "None"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe(row: pd.Series, columns: list[str]) -> str:
    """A readable label of one configuration from the given columns, e.g. 'dec brb α=0.8 T=20'."""
    parts = []
    for column in columns:
        name = SHORT_NAMES.get(column, column)
        value = format_value(row[column])
        parts.append(f"{name}={value}" if name else value)
    return " ".join(parts)


def configuration_labels(trials: pd.DataFrame) -> pd.Series:
    """config_id → label built from the columns that vary within ``trials``, algorithm and mode first;
    the dataset is left out, since configurations are compared within a dataset."""
    varying = [c for c in varying_columns(trials) if c != "data.name"]
    columns = [c for c in LABEL_FIRST if c in varying] + [c for c in varying if c not in LABEL_FIRST]
    firsts = trials.drop_duplicates("config_id").set_index("config_id")
    return firsts.apply(lambda row: describe(row, _acting(row, columns)) or "default", axis=1)


def _acting(row: pd.Series, columns: list[str]) -> list[str]:
    """The columns whose setting acts in this configuration (a baseline shows no α)."""
    fields = {key: row[key] for key in configuration_columns() if key in row.index and pd.notna(row[key])}
    try:
        config = make_config(unflatten(fields))
    except ConfigError:  # a row of a study recorded under other rules: show everything
        return columns
    return [c for c in columns if affects(c, config)]
