"""`raydc train`: one trial from YAML + overrides into the study layout; bad input exits 2 before compute."""
import pyarrow.parquet as pq

from raydc.cli import main
from raydc.store import epochs_schema, trials_schema

TINY = ["--set", "net.hidden=[64, 32]", "--set", "pretrain.epochs=2", "--set", "train.epochs=3",
        "--set", "eval.subsample=200", "--set", "device=cpu", "--set", "brb.interval=2"]


def test_train_writes_tables(tmp_path, capsys):
    config = tmp_path / "trial.yaml"
    config.write_text("train: {algorithm: dcn}\nbrb: {mode: brb}\n")
    assert main(["train", str(config), *TINY, "--out", str(tmp_path / "out")]) == 0
    trials = pq.read_table(tmp_path / "out" / "trials.parquet")
    epochs = pq.read_table(tmp_path / "out" / "epochs.parquet")
    assert trials.schema.equals(trials_schema()) and epochs.schema.equals(epochs_schema())
    assert trials.num_rows == 1 and trials.column("train.algorithm").to_pylist() == ["dcn"]
    assert epochs.num_rows == 2 + 3
    assert len(list((tmp_path / "out" / "assignments").glob("*.npz"))) == 1
    out = capsys.readouterr().out
    assert "cluster      2" in out and "reset" in out and "trials.parquet" in out


def test_bad_override_exits_2_naming_field(tmp_path, capsys):
    assert main(["train", "--set", "brb.alpha=2", "--out", str(tmp_path / "out")]) == 2
    assert "brb.alpha" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
