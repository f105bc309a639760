"""The Parquet contract: schema, upsert without duplicates, tolerance of older files."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raydc.config import flatten, make_config
from raydc.engine.records import EpochRecord, TrialRecord
from raydc.config.identity import trial_id
from raydc.tables.store import ResultStore, epoch_row, epochs_schema, trial_row, trials_schema


def _record(acc):
    config = make_config({"seed": 3})
    return config, TrialRecord(config=flatten(config), status="finished", final={"acc": acc}, epochs_done=2)


def test_schema_has_unique_names_and_every_config_field():
    names = trials_schema().names
    assert len(names) == len(set(names))
    assert set(flatten(make_config())) <= set(names)
    assert epochs_schema().names[:3] == ["trial_id", "phase", "epoch"]


def test_upsert_replaces_rows_instead_of_duplicating(tmp_path):
    store = ResultStore(tmp_path)
    config, record = _record(0.5)
    tid = trial_id(config)
    epochs = [epoch_row(tid, EpochRecord(phase="cluster", epoch=e, acc=0.1 * e)) for e in range(3)]
    store.append([trial_row(tid, record)], epochs)
    _, better = _record(0.9)
    store.append([trial_row(tid, better)], epochs[1:])  # a resumed trial reports its last epochs again
    trials, rows = store.trials(), store.epochs()
    assert trials.num_rows == 1 and trials.column("acc").to_pylist() == [0.9]
    assert rows.num_rows == 3 and sorted(rows.column("epoch").to_pylist()) == [0, 1, 2]
    assert trials.schema.equals(trials_schema()) and rows.schema.equals(epochs_schema())
    assert trials.column("seed").to_pylist() == [3]


def test_file_from_an_older_schema_gains_missing_columns(tmp_path):
    config, record = _record(0.5)
    row = trial_row(trial_id(config), record)
    old_schema = pa.schema([f for f in trials_schema() if f.name != "kmeans_acc"])
    pq.write_table(pa.Table.from_pylist([{f.name: row.get(f.name) for f in old_schema}], schema=old_schema),
                   tmp_path / "trials.parquet")
    table = ResultStore(tmp_path).trials()
    assert table.schema.equals(trials_schema())
    assert table.column("kmeans_acc").to_pylist() == [None] and table.column("acc").to_pylist() == [0.5]


def test_trial_row_records_where_it_ran(tmp_path):
    config, record = _record(0.5)
    record.device = "cuda:0"
    store = ResultStore(tmp_path)
    store.append([trial_row(trial_id(config), record)])
    table = store.trials()
    assert table.column("resolved_device").to_pylist() == ["cuda:0"] and table.column("device").to_pylist() == ["auto"]


def test_a_saved_embedding_keeps_its_mdl_wherever_it_sits(tmp_path):
    from raydc.evaluation.mdl import mdl_cost
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 5000)
    centres = rng.normal(size=(10, 10)) * 5
    # Tight clusters far from the origin: float16 of the raw values would be spaced 0.125 apart here.
    embedding = (200 + centres[labels] + 0.05 * rng.normal(size=(5000, 10))).astype(np.float32)
    store = ResultStore(tmp_path)
    store.save_assignments("t", TrialRecord(config={}, status="finished", labels=labels, embedding=embedding))
    saved = store.load_assignments("t")
    assert saved["embedding"].dtype == np.float32 and np.array_equal(saved["labels"], labels)
    assert mdl_cost(saved["embedding"], labels) == pytest.approx(mdl_cost(embedding, labels), rel=1e-3)
    assert np.abs(saved["embedding"] - embedding).max() < 0.01


def test_every_column_written_carries_its_description_with_its_unit(tmp_path):
    """The Parquet parts a store writes describe each of their columns in the field metadata (raydc.tables.columns)."""
    import pyarrow.parquet as pq

    from raydc.engine.records import EpochRecord
    from raydc.tables.store import ResultStore, epoch_row, epochs_schema, trials_schema

    for schema in (trials_schema(), epochs_schema()):
        assert all(f.metadata and f.metadata[b"description"].strip() for f in schema)
    assert b"fraction [0, 1]" in trials_schema().field("acc").metadata[b"description"]
    assert b"bits" in epochs_schema().field("mdl_bits").metadata[b"description"]
    store = ResultStore(tmp_path)
    store.append(epochs=[epoch_row("t1", EpochRecord(phase="cluster", epoch=0, acc=0.5))])
    (part,) = (tmp_path / "epochs.parquet").glob("*.parquet")
    written = pq.read_schema(part)
    assert written.field("cl_change").metadata[b"description"].endswith(b"fraction [0, 1]")
    assert store.epochs().schema.field("time_s").metadata[b"description"].endswith(b"seconds")


@pytest.mark.parametrize("old_description", [None, b"cluster label change since the last evaluation, percent [0, 100]"])
def test_cl_change_recorded_as_a_percentage_reads_as_a_fraction(tmp_path, old_description):
    """Epochs written while cl_change was a percentage (described as such, or before descriptions) read back in the
    one unit of today's rows, beside them."""
    store = ResultStore(tmp_path)
    store.append(epochs=[epoch_row("new", EpochRecord(phase="cluster", epoch=1, cl_change=0.25))])
    old = pa.Table.from_pylist([epoch_row("old", EpochRecord(phase="cluster", epoch=1, cl_change=40.0))],
                               schema=epochs_schema())
    field = old.schema.field("cl_change").with_metadata({b"description": old_description} if old_description else {})
    old = old.set_column(old.column_names.index("cl_change"), field, old.column("cl_change"))
    pq.write_table(old, tmp_path / "epochs.parquet" / "part-000000000000-000000000000-1.parquet")
    values = dict(zip(*(store.epochs().column(c).to_pylist() for c in ("trial_id", "cl_change"))))
    assert values == {"new": 0.25, "old": pytest.approx(0.40)}
