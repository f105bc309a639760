"""A study's trials as frames: which trials are seeds of one configuration, which settings vary between
configurations, and the labels they give."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from raydc.config import flatten, make_config
from raydc.tables.results import configuration_labels, load_trials, varying_columns
from raydc.config.identity import trial_id
from raydc.tables.store import ResultStore


def _trials(*overrides: dict) -> pd.DataFrame:
    """Two seeds of each configuration ``overrides`` gives (on top of an IDEC trial on digits)."""
    rows = []
    for i, train in enumerate(overrides):
        for seed in (0, 1):
            config = make_config({"seed": seed, "data": {"name": "digits"}, "train": {"algorithm": "idec", **train}})
            rows.append({**flatten(config), "config_id": f"c{i}"})
    return pd.DataFrame(rows)


def test_a_missing_value_counts_as_a_value():
    """grad_clip None (no clipping) and 5.0 are two configurations, with two labels."""
    trials = _trials({}, {"grad_clip": 5.0})
    assert varying_columns(trials) == ["train.grad_clip"]
    assert configuration_labels(trials).to_dict() == {"c0": "train.grad_clip=None", "c1": "train.grad_clip=5"}


def _study(root: Path, *configs: dict) -> Path:
    rows = [{"trial_id": trial_id(c), "status": "finished", **flatten(c)} for c in map(make_config, configs)]
    ResultStore(root).append(rows)
    return root


def test_trials_are_seeds_of_one_configuration_exactly_when_their_trial_ids_say_so(tmp_path):
    """Execution settings, the data directory, and the affine style on a colour set change no trial id."""
    digits, cifar = {"name": "digits"}, {"name": "cifar10"}
    study = _study(tmp_path,
                   {"seed": 0, "data": digits},
                   {"seed": 1, "data": {**digits, "dir": "/elsewhere"}, "device": "cpu", "checkpoint_every": 3,
                    "train": {"compile": True, "cuda_graphs": False}},
                   {"seed": 0, "data": {**digits, "affine": "smooth"}},
                   {"seed": 0, "data": cifar, "net": {"arch": "resnet18"}},
                   {"seed": 1, "data": {**cifar, "affine": "smooth"}, "net": {"arch": "resnet18"}})
    ids = load_trials(study).set_index(["data.name", "seed", "data.affine"])["config_id"]
    assert ids["digits", 0, "torchvision"] == ids["digits", 1, "torchvision"] != ids["digits", 0, "smooth"]
    assert ids["cifar10", 0, "torchvision"] == ids["cifar10", 1, "smooth"]
    assert ids["digits", 0, "torchvision"] == trial_id(make_config({"data": digits}))[:12]


def test_a_configuration_that_no_longer_validates_keeps_an_id_of_its_own(tmp_path):
    config = make_config({"data": {"name": "digits"}, "net": {"hidden": [64, 32]}})
    study = _study(tmp_path, config.model_dump())
    ResultStore(study).append([{"trial_id": "old", "status": "finished", **flatten(config),
                                "brb.layers": "encoder,retired"}])
    trials = load_trials(study).set_index("trial_id")
    assert trials.loc[trial_id(config), "config_id"] == trial_id(config)[:12]  # net.hidden read back as a list
    assert pd.notna(trials.loc["old", "config_id"]) and trials["config_id"].nunique() == 2


def test_a_label_shows_only_the_settings_that_act():
    """A baseline ignores α: its label names none, while the BRB configurations' labels do."""
    rows = []
    for i, brb in enumerate(({"mode": "baseline", "alpha": 0.8}, {"mode": "brb", "alpha": 0.6},
                             {"mode": "brb", "alpha": 0.8})):
        config = make_config({"data": {"name": "digits"}, "brb": brb})
        rows.append({**flatten(config), "config_id": f"c{i}"})
    trials = pd.DataFrame(rows)
    trials.loc[0, "brb.alpha"] = 0.6  # as a grid over α records a baseline at each α it collapses
    assert configuration_labels(trials).to_dict() == {"c0": "baseline", "c1": "brb α=0.6", "c2": "brb α=0.8"}
