"""The analysis notebooks and `raydc report` on a synthetic study directory of realistic shape:
a BRB α × T × lr grid and the Table 13 ablation variants, three algorithms, seeds, per-epoch records
with periodic resets, and saved assignments."""
from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
import yaml
from nbclient import NotebookClient

from raydc.cli import main
from raydc.config import flatten, make_config
from reference_metrics import cluster_acc
from raydc.report import (GRIDS, MissingDimension, ablation_markdown, ablation_summary, dynamics_curves, final_values,
                          grid_means, sweep_markdown, sweep_summary)
from raydc.report.ablations import AVERAGE, CAPTION
from raydc.report.sensitivity import baseline_means, grid_failures, plot_sensitivity
from raydc.config.identity import trial_id
from raydc.tables.store import ResultStore

ANALYSIS = Path(__file__).resolve().parents[1] / "analysis"
NOTEBOOKS = ("sensitivity_heatmaps", "ablations", "dynamics", "model_selection")
EPOCHS, SAMPLES, CLUSTERS = 12, 300, 5


def _quality(dataset: str, algorithm: str, mode: str, alpha: float, interval: int, lr: float, pretrain: int) -> float:
    """Expected ACC of a synthetic configuration: BRB helps unless its resets are strong and frequent."""
    q = {"dec": 0.62, "idec": 0.66, "dcn": 0.7}[algorithm] + {"optdigits": 0.0, "usps": -0.05}[dataset]
    q += {"baseline": 0.0, "recluster": 0.02, "reset": 0.01, "brb": 0.09}[mode]
    if mode == "brb":
        q -= 0.15 * (0.9 - alpha) * (20 / interval) + (0.04 if lr == 5e-4 else 0.0)
    return q - (0.0 if pretrain else 0.1)


def _trial(root_rng: np.random.Generator, y: np.ndarray, centres: np.ndarray, values: dict, quality: float):
    """Rows and assignments of one synthetic trial whose final labels reach about ``quality`` ACC."""
    config = make_config(values)
    tid = trial_id(config)
    rng = np.random.default_rng(int(tid, 16))
    wrong = rng.random(len(y)) > quality
    labels = np.where(wrong, rng.integers(0, CLUSTERS, len(y)), y)
    labels = rng.permutation(CLUSTERS)[labels].astype(np.int32)  # cluster ids are arbitrary per seed
    embedding = (centres[y] * (2 + 4 * quality) + rng.normal(size=centres[y].shape)) * rng.uniform(0.5, 20)
    acc = cluster_acc(y, labels)
    mode, interval = config.brb.mode, config.brb.interval
    epochs = []
    for epoch in range(EPOCHS):
        progress = (epoch + 1) / EPOCHS
        reset = mode != "baseline" and epoch > 0 and epoch % interval == 0
        dip = 0.05 if reset and mode in ("brb", "reset") else 0.0
        epochs.append({"trial_id": tid, "phase": "cluster", "epoch": epoch, "reset_applied": reset,
                       "loss": 1.0 - 0.5 * progress, "loss_cluster": 0.3 - 0.1 * progress,
                       "loss_reconstruction": 0.7 - 0.3 * progress,
                       "acc": acc - (1 - progress) * 0.2 - dip + rng.normal(0, 0.005),
                       "intra_cd": 0.8 - 0.2 * progress * quality + dip, "inter_cd": 0.9 + 0.3 * progress * quality,
                       "cl_change": np.nan if epoch == 0 else 0.1 * (1 - progress) + 0.2 * dip,
                       "silhouette": 0.3 + 0.2 * progress, "time_s": 0.1, "elapsed_s": 0.1 * (epoch + 1)})
    epochs += [{"trial_id": tid, "phase": "pretrain", "epoch": e, "loss": 1 / (e + 1),
                "loss_reconstruction": 1 / (e + 1)} for e in range(3 if config.pretrain.epochs else 0)]
    trial = {"trial_id": tid, "status": "finished", **flatten(config), "acc": acc, "nmi": acc - 0.05,
             "ari": acc - 0.1, "silhouette": 0.6 - 0.3 * quality + root_rng.normal(0, 0.02),
             "loss_reconstruction": np.nan if config.train.algorithm == "dec" else 0.5 - 0.2 * quality,
             "epochs_done": EPOCHS}
    return trial, epochs, (tid, labels, embedding)


def build_study(root: Path, datasets=("optdigits",), seeds=(0, 1)) -> Path:
    """Write trials, epochs and assignments of a synthetic study under ``root`` with ResultStore."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, CLUSTERS, SAMPLES)
    centres = rng.normal(size=(CLUSTERS, CLUSTERS))
    grid = [("brb", a, t, lr, 250) for a, t, lr in itertools.product((0.6, 0.8, 0.9), (5, 10), (5e-4, 1e-3))]
    ablation = [(m, 0.8, 5, lr, 250) for m, lr in itertools.product(("baseline", "recluster", "reset"), (5e-4, 1e-3))]
    scratch = [(m, 0.8, 5, 1e-3, 0) for m in ("baseline", "recluster", "reset", "brb")]
    trials, epochs = [], []
    store = ResultStore(root)
    for dataset, algorithm, (mode, alpha, interval, lr, pretrain), seed in itertools.product(
            datasets, ("dec", "idec", "dcn"), grid + ablation + scratch, seeds):
        values = {"seed": seed, "data": {"name": dataset}, "pretrain": {"epochs": pretrain},
                  "train": {"algorithm": algorithm, "lr": lr, "epochs": EPOCHS},
                  "brb": {"mode": mode, "alpha": alpha, "interval": interval}}
        quality = _quality(dataset, algorithm, mode, alpha, interval, lr, pretrain)
        trial, rows, (tid, labels, embedding) = _trial(rng, y, centres, values, quality)
        trials.append(trial)
        epochs += rows
        folder = root / "assignments"
        folder.mkdir(exist_ok=True)
        np.savez_compressed(folder / f"{tid}.npz", labels=labels, embedding=embedding.astype(np.float16))
    store.append(trials, epochs)
    return root


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return build_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="module")
def real_study(ray_cluster, tmp_path_factory) -> Path:
    """A small real study run by `raydc run` on local Ray: 2 algorithms × {baseline, BRB α × T} × 2 seeds."""
    root = tmp_path_factory.mktemp("real")
    spec = {"name": "analysis-real", "dataset": "digits",
            "base": {"net": {"hidden": [64, 32]}, "pretrain": {"epochs": 3}, "train": {"epochs": 4},
                     "brb": {"interval": 2, "subsample": 500}, "eval": {"subsample": 200}},
            "search": {"kind": "grid", "seeds": [0, 1],
                       "space": {"train.algorithm": ["dec", "dcn"], "brb.mode": ["baseline", "brb"],
                                 "brb.alpha": [0.7, 0.9], "brb.interval": [2, 3]}}}
    (root / "study.yaml").write_text(yaml.safe_dump(spec))
    assert main(["run", str(root / "study.yaml"), "--out", str(root / "out"), "--address", ray_cluster]) == 0
    return root / "out"


@pytest.mark.ray
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_headlessly(name, real_study, monkeypatch):
    monkeypatch.setenv("RAYDC_STUDY_DIR", str(real_study))
    notebook = nbformat.read(ANALYSIS / f"{name}.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ANALYSIS)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the notebook shows no figure"


def test_report_writes_every_figure_and_table(study, tmp_path, capsys):
    out = tmp_path / "figures"
    assert main(["report", str(study), "--out", str(out)]) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["ablation_relative_acc.png", "dynamics_optdigits_pretrained.png", "dynamics_optdigits_scratch.png",
                    "selection_scatter_optdigits.png", "sensitivity_alpha_T_optdigits.png"]
    assert all((out / p).stat().st_size > 10_000 for p in pngs)
    assert (out / "ablation_acc.md").read_text().count("\n") > 20
    assert "<table>" in (out / "selection.html").read_text()
    printed = capsys.readouterr().out
    assert "skipped sensitivity_resl_R_alpha_optdigits.png: no finished trial has resl.strategy = sp" in printed


def test_report_skips_what_a_study_lacks(tmp_path, capsys):
    """A study of BRB trials only has no ablation baseline: those outputs are skipped, the rest render."""
    study = build_study(tmp_path / "study", seeds=(0,))
    store = ResultStore(study)
    trials = store.trials()
    keep = trials.filter(pc.equal(trials["brb.mode"], "brb")).to_pylist()
    shutil.rmtree(study / "trials.parquet")
    store.append(keep)
    assert main(["report", str(study), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "skipped ablation tables and bars: an ablation needs baseline trials" in printed
    assert (tmp_path / "out" / "sensitivity_alpha_T_optdigits.png").stat().st_size > 10_000


@pytest.mark.ray
def test_report_and_select_on_a_real_study(real_study, tmp_path, capsys):
    out = tmp_path / "figures"
    assert main(["report", str(real_study), "--out", str(out)]) == 0
    pngs = list(out.glob("*.png"))
    assert pngs and all(p.stat().st_size > 10_000 for p in pngs)
    assert main(["select", str(real_study)]) == 0
    assert (real_study / "selection.parquet").exists() and "regret" in capsys.readouterr().out.lower()


# --- aggregation rules on small hand-made frames ---------------------------------------------------------------

def test_ablation_average_is_left_out_for_a_variant_missing_a_dataset():
    """DEC+BRB is worse than DEC on digits and has no usps trial: its average must not beat DEC's."""
    rows = []
    for dataset, algorithm, mode, seed in itertools.product(("digits", "usps"), ("dec", "idec"), ("baseline", "brb"),
                                                            (0, 1)):
        if (dataset, algorithm, mode) == ("usps", "dec", "brb"):
            continue  # every seed failed
        acc = {"digits": 0.7, "usps": 0.4}[dataset] + (-0.02 if (algorithm, mode) == ("dec", "brb") else 0.01)
        rows.append({"data.name": dataset, "train.algorithm": algorithm, "brb.mode": mode, "pretrain.epochs": 250,
                     "seed": seed, "acc": acc + 0.01 * seed})
    summary = ablation_summary(pd.DataFrame(rows))
    averages = summary[summary["dataset"] == AVERAGE].set_index(["train.algorithm", "brb.mode"])
    assert ("dec", "brb") not in averages.index and ("idec", "brb") in averages.index
    table = ablation_markdown(summary)
    dec_brb = next(line for line in table.splitlines() if line.startswith("| DEC+BRB+Pretrain |"))
    assert dec_brb.endswith("| – | – |") and "**" not in dec_brb
    dec = next(line for line in table.splitlines() if line.startswith("| DEC+Pretrain |"))
    assert dec.endswith("| **0.5650** |")
    assert CAPTION in table


def test_ablation_never_pools_trials_of_different_settings():
    """An α grid beside the ablation, at two learning rates: each learning rate is compared with its own baseline,
    and each α of BRB is a row of its own."""
    rows = []
    for lr, (mode, alpha), seed in itertools.product((5e-4, 1e-3), (("baseline", 0.8), ("brb", 0.6), ("brb", 0.8)),
                                                     (0, 1)):
        acc = {"baseline": 0.5, "brb": 0.6 if alpha == 0.8 else 0.1}[mode] + (0.2 if lr == 1e-3 else 0.0)
        rows.append({"data.name": "usps", "train.algorithm": "dec", "brb.mode": mode, "brb.alpha": alpha,
                     "train.lr": lr, "pretrain.epochs": 250, "seed": seed, "acc": acc})
    summary = ablation_summary(pd.DataFrame(rows)).set_index(["variant", "dataset"])
    assert summary.loc[("DEC+BRB+Pretrain (lr=0.0005) (α=0.8)", "usps"), "mean"] == pytest.approx(0.6)
    assert summary.loc[("DEC+BRB+Pretrain (lr=0.0005) (α=0.6)", "usps"), "mean"] == pytest.approx(0.1)
    assert summary.loc[("DEC+BRB+Pretrain (lr=0.001) (α=0.8)", "usps"), "mean"] == pytest.approx(0.8)
    assert summary.loc[("DEC+BRB+Pretrain (lr=0.001) (α=0.8)", "usps"), "relative"] == pytest.approx(100 * 0.1 / 0.7)
    assert summary.loc[("DEC+Pretrain (lr=0.001)", "usps"), "count"] == 2
    assert len(summary) == 12  # two learning rates × (baseline, BRB at two α) × (usps, AVERAGE)
    assert "| DEC+BRB+Pretrain (lr=0.0005) (α=0.6) |" in ablation_markdown(summary.reset_index())
    frame = pd.DataFrame(rows)
    with pytest.raises(MissingDimension, match="shares the settings of a baseline"):  # nothing left to compare
        ablation_summary(frame.assign(**{"train.algorithm": frame["brb.mode"].map({"baseline": "dec", "brb": "idec"})}))


def _grid_frame() -> pd.DataFrame:
    """One lr panel, α × T cells; DEC keeps five seeds per cell, DCN one (the others diverged), plus baselines."""
    rows = []
    for algorithm, alpha, interval, seed in itertools.product(("dec", "dcn"), (0.8, 0.9), (10, 20), range(5)):
        if algorithm == "dcn" and seed > 0:
            continue
        rows.append({"data.name": "usps", "train.algorithm": algorithm, "brb.mode": "brb", "brb.alpha": alpha,
                     "brb.interval": interval, "train.lr": 1e-3, "seed": seed, "status": "finished",
                     "acc": {"dec": 0.6, "dcn": 0.9}[algorithm], "config_id": f"{algorithm}{alpha}{interval}"})
    for algorithm, seed in itertools.product(("dec", "dcn"), range(4)):
        if algorithm == "dcn" and seed > 0:
            continue
        rows.append({"data.name": "usps", "train.algorithm": algorithm, "brb.mode": "baseline", "brb.alpha": 0.8,
                     "brb.interval": 10, "train.lr": 1e-3, "seed": seed, "status": "finished",
                     "acc": {"dec": 0.5, "dcn": 0.7}[algorithm], "config_id": f"{algorithm}-baseline"})
    return pd.DataFrame(rows)


def test_heatmap_cells_weigh_every_algorithm_equally():
    trials = _grid_frame()
    table = grid_means(trials, GRIDS[0])[1e-3]
    assert np.allclose(table.to_numpy(), 0.75)  # (0.6 + 0.9) / 2, however many seeds each algorithm kept
    assert baseline_means(trials, GRIDS[0], [1e-3])[1e-3] == pytest.approx(0.6)


def _diverged_grid() -> pd.DataFrame:
    """α × T cells of DEC, IDEC and DCN, three seeds each; every DCN seed of (α=0.6, T=5) failed, and one DEC seed
    of (α=0.8, T=20) was stopped early."""
    rows = []
    for alpha, interval, algorithm, seed in itertools.product((0.6, 0.8), (5, 20), ("dec", "idec", "dcn"), range(3)):
        failed = (alpha, interval, algorithm) == (0.6, 5, "dcn")
        stopped = (alpha, interval, algorithm, seed) == (0.8, 20, "dec", 0)
        rows.append({"data.name": "usps", "train.algorithm": algorithm, "brb.mode": "brb", "brb.alpha": alpha,
                     "brb.interval": interval, "train.lr": 1e-3, "seed": seed,
                     "status": "failed" if failed else "stopped" if stopped else "finished",
                     "acc": np.nan if failed else 0.1 if stopped else {"dec": 0.8, "idec": 0.85, "dcn": 0.5}[algorithm],
                     "config_id": f"{algorithm}{alpha}{interval}"})
    return pd.DataFrame(rows)


def test_a_cell_where_an_algorithm_failed_has_no_mean_and_counts_its_failures():
    """A mean of DEC and IDEC alone would make the cell where DCN diverged look best."""
    trials = _diverged_grid()
    means = grid_means(trials, GRIDS[0])[1e-3]
    assert means.isna().to_numpy().tolist() == [[True, False], [False, False]]
    assert means.to_numpy().ravel()[1:] == pytest.approx([(0.8 + 0.85 + 0.5) / 3] * 3)  # the stopped seed left out
    assert grid_failures(trials, GRIDS[0])[1e-3].to_numpy().tolist() == [[3, 0], [0, 0]]
    figure = plot_sensitivity(trials, GRIDS[0])
    assert {"–", "3✗"} <= {text.get_text() for text in figure.axes[0].texts}
    caption = figure.get_supxlabel()
    assert "–: an algorithm has no finished trial there" in caption and "n✗: n trials failed" in caption
    assert "over 3 seeds per configuration" not in caption  # the cell with a stopped seed has two


def _lfss_frame(modes=("baseline", "reset")) -> pd.DataFrame:
    rows = []
    for warmup, mode, seed in itertools.product((0, 200), modes, range(3)):
        acc = 0.5 + (0.2 if mode == "reset" else 0.0) + 0.01 * seed
        rows.append({"data.name": "cifar10", "train.algorithm": "lfss", "brb.mode": mode, "seed": seed,
                     "lfss.warmup_epochs": warmup, "lfss.unstable_ratio": 0.1, "lfss.noise": 1e-3,
                     "lfss.weight": 0.1, "acc": acc, "nmi": acc, "ari": acc})
    return pd.DataFrame(rows)


def test_sweep_refuses_to_pool_another_varied_setting_as_seeds():
    with pytest.raises(MissingDimension, match="brb.mode also varies"):
        sweep_summary(_lfss_frame(), "lfss.warmup_epochs")
    with pytest.raises(MissingDimension, match="brb.mode also varies"):
        sweep_markdown(_lfss_frame())
    assert sweep_summary(_lfss_frame(("reset",)), "lfss.warmup_epochs")["seeds"].tolist() == [3, 3]


def test_sweep_counts_a_missing_setting_as_a_value():
    """Seed 0 clipped its gradients and the others did not (None): not seeds of one configuration."""
    frame = _lfss_frame(("reset",))
    frame["train.grad_clip"] = np.where(frame["seed"] == 0, 5.0, np.nan)
    with pytest.raises(MissingDimension, match=r"train.grad_clip also varies \(5, None\)"):
        sweep_summary(frame, "lfss.warmup_epochs")


def test_final_values_keep_datasets_and_pretraining_apart_and_take_each_trials_last_epoch():
    rows = []
    # (trial, dataset, pretrain epochs, last epoch, final ACC): trial b ran fewer epochs, to epoch 5.
    for tid, dataset, pretrain, last, acc in (("a", "digits", 250, 9, 0.8), ("b", "digits", 250, 5, 0.6),
                                              ("c", "usps", 250, 9, 0.3), ("d", "digits", 0, 9, 0.5)):
        for epoch in range(last + 1):
            rows.append({"trial_id": tid, "data.name": dataset, "pretrain.epochs": pretrain, "train.algorithm": "dec",
                         "brb.mode": "baseline", "epoch": epoch, "acc": acc if epoch == last else 0.1})
    epochs = pd.DataFrame(rows)
    final = final_values(epochs).set_index(["data.name", "pretrained"])
    assert final.loc[("digits", True), "mean"] == pytest.approx(0.7) and final.loc[("digits", True), "count"] == 2
    assert final.loc[("usps", True), "mean"] == pytest.approx(0.3)
    assert final.loc[("digits", False), "mean"] == pytest.approx(0.5)
    curves = dynamics_curves(epochs, "acc")
    last = curves[curves["epoch"] == 9].set_index(["data.name", "pretrained"])["mean"]
    assert last.to_dict() == {("digits", False): 0.5, ("digits", True): 0.8, ("usps", True): 0.3}


def test_a_sampled_space_is_drawn_in_bins_not_one_cell_per_value():
    """An optuna or random search samples a new α and T per trial: the heatmap bins them into quantile bins."""
    rng = np.random.default_rng(0)
    rows = []
    for number in range(60):
        alpha, interval = rng.uniform(0.5, 0.95), int(rng.integers(5, 40))
        for algorithm in ("dec", "idec"):
            rows.append({"data.name": "usps", "train.algorithm": algorithm, "brb.mode": "brb", "brb.alpha": alpha,
                         "brb.interval": interval, "train.lr": 1e-3, "seed": 0, "status": "finished",
                         "acc": alpha / 2, "config_id": f"{algorithm}-{number}"})
    trials = pd.DataFrame(rows)
    (table,) = grid_means(trials, GRIDS[0]).values()
    assert table.shape == (5, 5)  # five α bins × five T bins, from 60 distinct values of each
    assert table.index[0].left < table.index[-1].left
    assert np.nanmean(table.to_numpy()[0]) < np.nanmean(table.to_numpy()[-1])  # α's effect still shows
    figure = plot_sensitivity(trials, GRIDS[0])
    assert all("–" in tick.get_text() for tick in figure.axes[0].get_yticklabels())  # labelled by range
