"""Kept models: saved with a finished trial, loaded weights-only, used as an estimator on raw samples."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import load_digits

import raydc
from raydc.cli import main
from raydc.engine.model import InvalidInput, model_path
from raydc.engine.population import fit_population
from raydc.config.identity import trial_id
from raydc.tables.store import ResultStore

SMALL = {"net": {"hidden": [64, 32]}, "pretrain": {"epochs": 10}, "train": {"epochs": 3}}  # clusters, not collapse


def _config(algorithm="dec", seed=0, **train):
    return raydc.make_config({**SMALL, "seed": seed, "train": {**SMALL["train"], "algorithm": algorithm, **train}})


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """A directory with DEC and DCN trials recorded as `raydc train` records them, models included."""
    root = tmp_path_factory.mktemp("kept")
    store, records = ResultStore(root), {}
    for algorithm in ("dec", "dcn"):
        config = _config(algorithm)
        record = raydc.fit(config)
        tid = trial_id(config)
        store.save_model(tid, record)
        records[algorithm] = (tid, record)
    return root, records


@pytest.mark.parametrize("algorithm", ["dec", "dcn"])
def test_a_kept_model_reproduces_the_recorded_assignments_from_raw_samples(kept, algorithm):
    root, records = kept
    tid, record = records[algorithm]
    model = raydc.load_model(root, tid)
    raw = load_digits().data  # values 0..16, (n, 64): as a user holds them
    assert len(np.unique(record.labels)) == 10
    assert np.array_equal(model.predict(raw), record.labels)
    assert np.allclose(model.transform(raw), record.embedding, atol=1e-5)
    assert model.cluster_centers_.shape == (10, 10) and model.config["train.algorithm"] == algorithm
    images = raw.reshape(-1, 8, 8)
    assert np.array_equal(model.predict(images), record.labels)  # (n, H, W) and (n, 1, H, W) are the same samples
    assert np.array_equal(model.predict(images[:, None].astype(np.uint8)), record.labels)


def test_a_model_file_loads_weights_only(kept):
    root, records = kept
    state = torch.load(model_path(root, records["dec"][0]), weights_only=True)
    assert set(state) == {"format", "config", "net", "centers", "preprocess"}
    assert state["preprocess"]["resize"] == 28 and state["preprocess"]["raw_high"] == 16.0


@pytest.mark.parametrize("bad, message", [
    (np.zeros((5, 63)), "expected shape (n, 64), (n, 1, 8, 8), (n, 8, 8, 1), (n, 8, 8)"),
    (np.full((5, 64), np.nan), "5 samples hold NaN or infinite values (the first: sample 0)"),
    (np.array([["a"] * 64] * 5), "expected numbers"),
    (np.full((5, 64), 255.0), "values must lie in [0, 16]"),
    (np.zeros((0, 64)), "no samples"),
    (np.zeros(64), "expected shape"),
])
def test_bad_samples_fail_with_one_message_saying_what_was_expected(kept, bad, message):
    model = raydc.load_model(kept[0], kept[1]["dec"][0])
    with pytest.raises(InvalidInput) as caught:
        model.predict(bad)
    assert message in str(caught.value)


def test_a_missing_model_names_the_kept_ones(kept):
    with pytest.raises(FileNotFoundError, match="kept: "):
        raydc.load_model(kept[0], "0000000000000000")


def test_population_members_keep_models_that_reproduce_their_assignments(tmp_path):
    configs = [_config("idec", seed) for seed in (0, 1)]
    store = ResultStore(tmp_path)
    for config, record in zip(configs, fit_population(configs)):
        store.save_model(trial_id(config), record)
        model = raydc.load_model(tmp_path, trial_id(config))
        assert np.array_equal(model.predict(load_digits().data), record.labels)


def test_train_keeps_the_model_and_predict_labels_a_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--set", "net.hidden=[32]", "--set", "pretrain.epochs=5", "--set", "train.epochs=2",
                 "--out", str(out)]) == 0
    (tid,) = ResultStore(out).trials().column("trial_id").to_pylist()
    samples = tmp_path / "samples.csv"
    pd.DataFrame(load_digits().data[:50], columns=[f"px{i}" for i in range(64)]).to_csv(samples, index=False)
    labels = tmp_path / "labels.parquet"
    assert main(["predict", str(model_path(out, tid)), str(samples), "--out", str(labels)]) == 0
    predicted = pd.read_parquet(labels)
    recorded = ResultStore(out).load_assignments(tid)["labels"][:50]
    assert predicted["sample"].tolist() == list(range(50)) and np.array_equal(predicted["cluster"], recorded)
    np.save(tmp_path / "bad.npy", np.zeros((3, 10)))
    assert main(["predict", str(model_path(out, tid)), str(tmp_path / "bad.npy"), "--out", str(labels)]) == 2
    assert "expected shape" in capsys.readouterr().err


def test_export_copies_the_selected_configurations_seeds_with_a_card(tmp_path, capsys):
    study = tmp_path / "study"
    store = ResultStore(study)
    from raydc.tables.store import trial_row
    for lr in (1e-3, 1e-2):
        for seed in (0, 1):
            config = _config("dec", seed, lr=lr)
            record = raydc.fit(config)
            tid = trial_id(config)
            store.save_assignments(tid, record)
            store.save_model(tid, record)
            store.append([trial_row(tid, record)])
    out = tmp_path / "export"
    assert main(["export", str(study), "--criterion", "vi", "--out", str(out)]) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["criterion"] == "vi" and len(card["trials"]) == 2
    assert sorted(p.stem for p in (out / "models").glob("*.pt")) == sorted(t["trial_id"] for t in card["trials"])
    assert card["versions"]["raydc"] == raydc.__version__ and card["selection"][0]["criterion"] == "vi"
    assert raydc.load_model(out, card["trials"][0]["trial_id"]).predict(load_digits().data[:5]).shape == (5,)


def test_status_shows_the_space_the_kept_models_take(kept):
    from raydc.study.summary import describe_directory

    root, records = kept
    store = ResultStore(root)
    from raydc.tables.store import trial_row
    store.append([trial_row(tid, record) for tid, record in records.values()])
    assert "models: 2 kept in " in describe_directory(root) and "KiB (raydc.load_model)" in describe_directory(root)


@pytest.mark.parametrize("strategy", ["none", "ht"])
def test_a_self_labeling_trial_keeps_its_head_and_predicts_its_own_clusters(tmp_path, strategy):
    """A self-labeling trial's clusters are its head's predictions (ReSL-HT: the tortoise's): the kept model holds
    the head and reproduces them from raw samples."""
    config = raydc.make_config({**SMALL, "seed": 1, "selflabel": {"epochs": 2, "warmup_epochs": 1, "batch_size": 256},
                                "resl": {"strategy": strategy}})
    record = raydc.fit(config)
    tid = trial_id(config)
    ResultStore(tmp_path).save_model(tid, record)
    state = torch.load(model_path(tmp_path, tid), weights_only=True)
    assert {"head.weight", "head.bias", "norm.running_mean"} <= set(state["head"])
    model = raydc.load_model(tmp_path, tid)
    assert np.array_equal(model.predict(load_digits().data), record.labels)
    assert np.allclose(model.transform(load_digits().data), record.embedding, atol=1e-4)
