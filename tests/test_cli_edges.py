"""The command's edges: a reader that goes away, a file where a directory belongs, a directory that holds another
study, a missing dataset."""
import subprocess
import sys
import urllib.error

import pytest
import yaml

from raydc.cli import main
from raydc.data import files

STUDY = {"name": "edges", "dataset": "digits", "search": {"kind": "grid", "space": {"brb.alpha": [0.6, 0.8]}}}


def test_dry_run_into_a_closed_pipe_ends_quietly(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    # `true` reads nothing and exits long before Python has started: every write meets a closed pipe
    shell = f"{sys.executable} -m raydc.cli run {path} --out {tmp_path / 'out'} --dry-run | true"
    done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=120)
    assert done.stderr == "" and done.returncode == 141


def test_dry_run_refuses_a_directory_that_holds_another_study(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "study.yaml").write_text(yaml.safe_dump({**STUDY, "name": "other"}))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    assert main(["run", str(path), "--out", str(out), "--dry-run"]) == 2
    assert "holds the results of study 'other'; choose another --out" in capsys.readouterr().err


def test_report_into_a_file_names_the_option(tmp_path, capsys):
    target = tmp_path / "figures.png"
    target.write_text("")
    assert main(["report", str(tmp_path), "--out", str(target)]) == 2
    assert f"--out: {target} is a file" in capsys.readouterr().err


def test_train_with_a_missing_dataset_leaves_no_directory_and_says_what_to_do(tmp_path, monkeypatch, capsys):
    def refuse(url):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(files, "open_url", refuse)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAYDC_DATA_DIR", str(tmp_path / "nowhere"))
    out = tmp_path / "run"
    assert main(["train", "--set", "data.name=usps", "--out", str(out)]) == 2
    assert not out.exists()
    from raydc.data import check_available
    from raydc.data.errors import DatasetUnavailable

    with pytest.raises(DatasetUnavailable) as raised:
        check_available("usps", tmp_path / "nowhere")
    message = str(raised.value)
    assert "download=True" not in message and "any raydc command that uses it downloads it" in message
    assert "RAYDC_DATA_DIR" in message
