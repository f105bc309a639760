"""The models a label-free criterion selects, copied out with a model card; and raw samples read from a file for
`raydc predict`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raydc.engine.model import InvalidInput, model_path

CARD_FILE = "model_card.json"


def export_selected(study_dir: Path | str, criterion: str, out: Path | str) -> list[dict[str, Any]]:
    """Copy the models of every seed of the configuration `criterion` selects (per dataset) into `out/models/`,
    with `out/model_card.json` (`out/<dataset>/` for a study of several datasets); returns the cards. FileNotFoundError when a selected trial kept no model."""
    from raydc.selection.select import run_selection
    from raydc.engine.train import versions

    scores, configs, selection = run_selection(study_dir, (criterion,))
    chosen = selection.dropna(subset=["selected_config_id"])
    if chosen.empty:
        raise ValueError(f"{study_dir}: criterion {criterion} selects no configuration (no finished trial it scores)")
    out = Path(out)
    several = len(chosen) > 1
    cards = []
    for _, row in chosen.iterrows():
        dataset, config_id = row["data.name"], row["selected_config_id"]
        members = scores[scores["config_id"] == config_id].sort_values("seed")
        missing = [t for t in members["trial_id"] if not model_path(study_dir, t).exists()]
        if missing:
            raise FileNotFoundError(f"{study_dir}: selected trials kept no model ({', '.join(missing)}); "
                                    "rerun them with keep_models: true")
        target = out / dataset if several else out
        target.mkdir(parents=True, exist_ok=True)
        for tid in members["trial_id"]:  # the study's layout: raydc.load_model(target, tid) reads them
            model_path(target, tid).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(model_path(study_dir, tid), model_path(target, tid))
        card = {"criterion": criterion, "data.name": dataset, "config_id": config_id,
                "config": _config_of(study_dir, members["trial_id"].iloc[0]),
                "trials": json.loads(members.to_json(orient="records")),
                "configuration": json.loads(configs[configs["config_id"] == config_id].to_json(orient="records"))[0],
                "selection": json.loads(selection[selection["data.name"] == dataset].to_json(orient="records")),
                "versions": versions()}
        (target / CARD_FILE).write_text(json.dumps(card, indent=2, default=str) + "\n")
        cards.append(card)
    return cards


def _config_of(study_dir: Path | str, tid: str) -> dict[str, Any]:
    from raydc.files.checkpoint import load

    return load(model_path(study_dir, tid))["config"]


def read_samples(path: Path | str) -> np.ndarray:
    """Samples from .npy, .npz (its only array, or the one named X or data), .csv (numbers, a header row allowed)
    or .parquet (every column numeric, one feature each)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            names = [n for n in ("X", "data") if n in npz.files] or npz.files
            if len(names) != 1:
                raise InvalidInput(f"{path}: holds {', '.join(npz.files)}; name the samples X or data")
            return npz[names[0]]
    if suffix == ".csv":
        frame = pd.read_csv(path, header=None)
        if not all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes):  # a header row
            frame = pd.read_csv(path)
        return _numeric(frame, path)
    if suffix == ".parquet":
        return _numeric(pd.read_parquet(path), path)
    raise InvalidInput(f"{path}: samples are read from .npy, .npz, .csv or .parquet, not {suffix or 'no suffix'}")


def _numeric(frame: pd.DataFrame, path: Path) -> np.ndarray:
    bad = [str(c) for c, t in frame.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    if bad:
        raise InvalidInput(f"{path}: columns {', '.join(bad[:5])} are not numeric; one numeric column per feature")
    return frame.to_numpy()
