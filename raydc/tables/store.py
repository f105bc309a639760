"""The Parquet contract of a results directory, in one place.

<dir>/trials.parquet/  one row per trial: trial_id, status, error, seed, every config field as a flat
                       dotted column (brb.alpha, train.lr, ...), final metrics (acc, nmi, ari, intra_cd,
                       inter_cd, silhouette, ratio_share, loss, loss_reconstruction; kmeans_acc/nmi/ari of a
                       fresh k-means on the final embedding), epochs_done, timings
                       (wall_time_s, pretrain_time_s, cluster_time_s, selflabel_time_s, reset_time_s; a resumed
                       trial's include the runs before its checkpoint), ended_at (UTC), pretrain_cached,
                       cluster_cached (clustering stage shared with a trial that differs only in self-labeling),
                       resolved_device (where it ran; `device` is the requested one), node (the Ray node id that
                       ran it; null outside Ray or for a trial recorded by the driver), version.* columns.
<dir>/epochs.parquet/  one row per (trial_id, phase, epoch): the EpochRecord fields (raydc.engine.records).
<dir>/assignments/<trial_id>.npz   final labels (int32) and embedding of every sample (float16, standardised
                       per dimension, with the float32 mean and std that restore it).
<dir>/models/<trial_id>.pt   the trained network, centres and input preprocessing of a finished trial (raydc.engine.model).
<dir>/scores.parquet   written by `raydc select`: one row per finished trial, its label metrics and label-free scores.
<dir>/selection.parquet   written by `raydc select`: one row per (dataset, criterion), the pick, oracle and regret.

trials.parquet and epochs.parquet are directories of immutable parts (raydc.tables.parts): recording a trial writes one
part per table at a cost independent of the study's size, and a reader never sees a partial file. Appending a row
whose key already exists supersedes the old row, so resumed or re-run trials never duplicate or drop rows in what
`ResultStore.trials()` / `.epochs()` return (a plain read of the directory, e.g. pandas or DuckDB, also sees the
superseded rows of re-run trials until parts merge). Both tables of older studies, single files, stay readable.
The other files are written atomically (temporary file + rename).
"""
from __future__ import annotations

from datetime import datetime, timezone
import types
import typing
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from raydc.files.atomic import atomic_path
from raydc.tables.columns import description
from raydc.engine.model import model_path, save_model
from raydc.tables.parts import PartTable
from raydc.config import FORMER_DEFAULTS, TrialConfig, flatten
from raydc.engine.records import EPOCH_FIELDS, FINAL_METRICS, KMEANS_METRICS, EpochRecord, TrialRecord

TRIALS_FILE = "trials.parquet"
EPOCHS_FILE = "epochs.parquet"
ASSIGNMENTS_DIR = "assignments"
EPOCH_KEY = ("trial_id", "phase", "epoch")
VERSION_KEYS = ("raydc", "torch", "numpy")

_SCALAR_TYPES = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}


def _arrow_type(annotation: Any) -> pa.DataType:
    """Arrow type of a config field: Optional[X] → X (nullable), list → string, Literal → string."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _arrow_type(inner)
    if origin is typing.Literal or origin is list:
        return pa.string()
    return _SCALAR_TYPES[annotation]


def config_fields(model: type[BaseModel] = TrialConfig, prefix: str = "") -> list[pa.Field]:
    fields = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            fields += config_fields(info.annotation, f"{key}.")
        else:
            fields.append(pa.field(key, _arrow_type(info.annotation)))
    return fields


def trials_schema() -> pa.Schema:
    head = [pa.field("trial_id", pa.string()), pa.field("status", pa.string()), pa.field("error", pa.string())]
    finals = [pa.field(m, pa.float64()) for m in FINAL_METRICS + KMEANS_METRICS]
    tail = [pa.field("epochs_done", pa.int64())]
    tail += [pa.field(t, pa.float64()) for t in ("wall_time_s", "pretrain_time_s", "cluster_time_s", "selflabel_time_s",
                                                   "reset_time_s")]
    tail += [pa.field("ended_at", pa.timestamp("us", tz="UTC"))]
    tail += [pa.field("pretrain_cached", pa.bool_()), pa.field("cluster_cached", pa.bool_()),
             pa.field("resolved_device", pa.string()), pa.field("node", pa.string())]
    tail += [pa.field(f"version.{k}", pa.string()) for k in VERSION_KEYS]
    return _described("trials", head + config_fields() + finals + tail)


def epochs_schema() -> pa.Schema:
    types_ = {"phase": pa.string(), "epoch": pa.int64(), "reset_applied": pa.bool_()}
    return _described("epochs", [pa.field("trial_id", pa.string())]
                      + [pa.field(f, types_.get(f, pa.float64())) for f in EPOCH_FIELDS])


def _described(table: str, fields: list[pa.Field]) -> pa.Schema:
    """The fields, each with its one-line description (raydc.tables.columns) in its Parquet metadata."""
    return pa.schema([f.with_metadata({"description": description(table, f.name)}) for f in fields])


def scores_schema() -> pa.Schema:
    """scores.parquet (raydc.selection.select.trial_scores), in column order."""
    ids = [pa.field(c, pa.string()) for c in ("trial_id", "config_id", "config", "data.name")]
    values = ("acc", "nmi", "ari", "mdl_bits", "vi", "loss_reconstruction", "silhouette", "calinski_harabasz",
              "davies_bouldin", "agreement", "cross_ch", "effective_clusters")
    return pa.schema(ids + [pa.field("seed", pa.int64())] + [pa.field(c, pa.float64()) for c in values])


def selection_schema() -> pa.Schema:
    """selection.parquet (raydc.selection.select.select), in column order; the selected_* fields are null when nothing
    was scored."""
    fields = [("data.name", pa.string()), ("criterion", pa.string()), ("default", pa.bool_()),
              ("configs_scored", pa.int64()),
              ("oracle_config_id", pa.string()), ("oracle_config", pa.string()), ("oracle_acc", pa.float64()),
              ("selected_config_id", pa.string()), ("selected_config", pa.string()), ("selected_acc", pa.float64()),
              ("regret", pa.float64()), ("spearman", pa.float64())]
    return pa.schema([pa.field(name, type_) for name, type_ in fields])


def trial_row(tid: str, record: TrialRecord) -> dict[str, Any]:
    row = {"trial_id": tid, "status": record.status, "error": record.error, **record.config}
    row.update({m: record.final.get(m) for m in FINAL_METRICS + KMEANS_METRICS})
    row.update(epochs_done=record.epochs_done, wall_time_s=record.wall_time_s,
               pretrain_time_s=record.pretrain_time_s, cluster_time_s=record.cluster_time_s,
               selflabel_time_s=record.selflabel_time_s,
               ended_at=None if record.ended_at is None else datetime.fromtimestamp(record.ended_at, timezone.utc),
               reset_time_s=record.reset_time_s, pretrain_cached=record.pretrain_cached,
               cluster_cached=record.cluster_cached,
               resolved_device=record.device, node=record.node)
    row.update({f"version.{k}": record.versions.get(k) for k in VERSION_KEYS})
    return row


def epoch_row(tid: str, record: EpochRecord) -> dict[str, Any]:
    return {"trial_id": tid, **record.to_dict()}


def _absent_config_values() -> dict[str, Any]:
    """What a trial recorded before a config field existed ran with: the field's default, except where the default
    changed since (FORMER_DEFAULTS)."""
    return {**flatten(TrialConfig()), **FORMER_DEFAULTS}


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A table written under an older schema, in the current order and types: a missing config column holds what
    those trials ran with (so their configurations match newer rows'), any other missing column nulls."""
    if table.schema.equals(schema):
        return pa.Table.from_arrays(table.columns, schema=schema)  # with the current descriptions
    absent = _absent_config_values() if set(schema.names) - set(table.column_names) else {}
    columns = []
    for f in schema:
        if f.name in table.column_names:
            columns.append(table.column(f.name).cast(f.type))
        else:
            columns.append(pa.array([absent.get(f.name)] * len(table), f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _in_current_units(table: pa.Table) -> pa.Table:
    """An epochs part written while cl_change was a percentage (its description, if any, does not say fraction),
    with cl_change as the fraction it is now."""
    if "cl_change" not in table.column_names:
        return table
    field = table.schema.field("cl_change")
    if b"fraction" in ((field.metadata or {}).get(b"description") or b""):
        return table
    index = table.column_names.index("cl_change")
    return table.set_column(index, field, pc.divide(table.column(index).cast(pa.float64()), 100.0))


def rows_table(rows: Iterable[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows as dicts (a missing key is null) as a table of `schema`."""
    rows = list(rows)
    return pa.Table.from_pydict({name: [r.get(name) for r in rows] for name in schema.names}, schema=schema)


def write_table(table: pa.Table, path: Path) -> None:
    """Write a Parquet file atomically."""
    with atomic_path(path) as temp:
        pq.write_table(table, temp)


class ResultStore:
    """A results directory: record and read the trials and epochs tables, save assignments."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / ".store.lock"
        self._trials = PartTable(self.root / TRIALS_FILE, trials_schema(), ("trial_id",),
                                 lambda t: _conform(t, trials_schema()), lock)
        self._epochs = PartTable(self.root / EPOCHS_FILE, epochs_schema(), EPOCH_KEY,
                                 lambda t: _conform(_in_current_units(t), epochs_schema()), lock)

    def append(self, trials: Iterable[dict[str, Any]] = (), epochs: Iterable[dict[str, Any]] = ()) -> None:
        """Record rows: a trial row supersedes the one with its trial_id, an epoch row its (trial, phase, epoch).
        Epochs first, so a reader that sees a trial's row sees its epochs."""
        for table, rows in ((self._epochs, epochs), (self._trials, trials)):
            table.append(rows_table(rows, table.schema))

    def save_assignments(self, tid: str, record: TrialRecord) -> None:
        if record.labels is None:
            return
        # float16 keeps 11 significant bits: standardised per dimension first, its grid stays far finer than the
        # embedding's spread (MDL codes at 1/100 of a standard deviation) however far from the origin it sits.
        embedding = record.embedding.astype(np.float32)
        mean, std = embedding.mean(0), embedding.std(0)
        std[std == 0] = 1.0
        with atomic_path(self.root / ASSIGNMENTS_DIR / f"{tid}.npz") as temp, open(temp, "wb") as fh:
            np.savez_compressed(fh, labels=record.labels, embedding_z=((embedding - mean) / std).astype(np.float16),
                                embedding_mean=mean, embedding_std=std)

    def save_model(self, tid: str, record: TrialRecord) -> None:
        """The trial's trained network and centres as <dir>/models/<tid>.pt (raydc.engine.model)."""
        if record.model is not None:
            save_model(record.model, model_path(self.root, tid))

    def load_assignments(self, tid: str) -> dict[str, np.ndarray]:
        """{"labels", "embedding" (float32; float16 in files written before standardised storage)}."""
        with np.load(self.root / ASSIGNMENTS_DIR / f"{tid}.npz") as npz:
            saved = {k: npz[k] for k in npz.files}
        if "embedding_z" in saved:
            z, mean, std = saved.pop("embedding_z"), saved.pop("embedding_mean"), saved.pop("embedding_std")
            saved["embedding"] = z.astype(np.float32) * std + mean
        return saved

    def trials(self) -> pa.Table:
        return self._trials.read()

    def epochs(self) -> pa.Table:
        return self._epochs.read()
