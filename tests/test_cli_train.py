"""`raydc train`: one trial from YAML + overrides into the study layout; bad input exits 2 before compute."""
import pyarrow.parquet as pq

from raydc.cli import main
from raydc.tables.store import epochs_schema, trials_schema

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


def test_a_resumed_train_keeps_the_rows_of_the_run_it_resumes(tmp_path, monkeypatch, capsys):
    import raydc.cli as cli

    out = tmp_path / "out"
    args = ["train", *TINY, "--set", "train.epochs=4", "--set", "checkpoint_every=2", "--out", str(out)]
    shown = cli.print_epoch

    def crash_at_cluster_epoch_3(record):
        shown(record)
        if record.phase == "cluster" and record.epoch == 3:
            raise KeyboardInterrupt  # killed after the epoch-1 checkpoint, before the end
    monkeypatch.setattr(cli, "print_epoch", crash_at_cluster_epoch_3)
    try:
        main(args)
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(cli, "print_epoch", shown)
    assert main(args) == 0
    assert "cluster      0" not in capsys.readouterr().out.split("cluster      3")[-1]  # the rerun resumed
    epochs = pq.read_table(out / "epochs.parquet").to_pylist()
    assert sorted((r["phase"], r["epoch"]) for r in epochs) == [("cluster", e) for e in range(4)] + [
        ("pretrain", 0), ("pretrain", 1)]
    assert all(r["time_s"] > 0 for r in epochs if r["phase"] == "pretrain")


def test_unreadable_inputs_exit_2_naming_them(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for args, named in ([str(tmp_path / "missing.yaml")], "missing.yaml"), ([str(broken)], "broken.yaml"), (
            ["--set", "train.lr=["], "train.lr"), (["--out", str(a_file)], "--out"):
        out = ["--out", str(tmp_path / "out")] if "--out" not in args else []
        assert main(["train", *args, *out]) == 2, args
        assert named in capsys.readouterr().err
