"""A study's trials as frames: which settings vary between configurations, and the labels they give."""
from __future__ import annotations

import pandas as pd

from raydc.config import flatten, make_config
from raydc.results import configuration_labels, varying_columns


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
