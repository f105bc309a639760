"""LFSS sweeps, self-labeling dynamics and LFSS stability on a synthetic study directory: LFSS trials
that sweep η and σ one at a time (plus one trial off both sweeps), and ReSL trials with several
configurations per strategy, each with per-epoch rows of its phases."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from raydc.config import flatten, make_config
from raydc.engine.records import EpochRecord, TrialRecord
from raydc.report import (MissingDimension, best_configurations, plot_selflabeling, render_report, sweep_markdown,
                          sweep_summary, swept_columns)
from raydc.tables.results import load_epochs, load_trials
from raydc.config.identity import trial_id
from raydc.tables.store import ResultStore, epoch_row, trial_row

DATASET = "cifar10"
CLUSTER_EPOCHS, SELFLABEL_EPOCHS, SELFLABEL_WARMUP, INTERVAL = 12, 15, 2, 5
SEEDS = (0, 1, 2)
# (η, σ): an η sweep at σ = 0.001, a σ sweep at η = 8, and one trial on neither sweep.
LFSS_POINTS = [(0, 1e-3), (4, 1e-3), (8, 1e-3), (8, 1e-4), (8, 1e-2), (4, 1e-2)]
OFF_SWEEP = (4, 1e-2)
# (strategy, setting overrides, final ACC): two configurations of SP and of HT, the better one named first.
RESL_RUNS = [("none", {}, 0.70), ("sp", {"alpha": 0.9}, 0.78), ("sp", {"alpha": 0.5}, 0.72),
             ("ht", {"momentum": 0.99}, 0.75), ("ht", {"momentum": 0.999}, 0.73)]


def lfss_acc(warmup: int, noise: float, seed: int) -> float:
    """Final ACC of a synthetic LFSS trial: 1 point per η step, σ on a log scale; the off-sweep trial is far off."""
    if (warmup, noise) == OFF_SWEEP:
        return 0.95
    return 0.5 + 0.01 * warmup + 0.02 * np.log10(noise / 1e-4) + 0.01 * seed


def _rows(values: dict, final: dict[str, float], epochs: list[EpochRecord]) -> tuple[dict, list[dict]]:
    """The trials.parquet row and epochs.parquet rows of one synthetic trial."""
    config = make_config(values)
    tid = trial_id(config)
    record = TrialRecord(config=flatten(config), status="finished", final=final, epochs_done=len(epochs))
    return trial_row(tid, record), [epoch_row(tid, e) for e in epochs]


def _write(root: Path, trials: list[tuple[dict, list[dict]]]) -> Path:
    ResultStore(root).append([t for t, _ in trials], [e for _, rows in trials for e in rows])
    return root


def _finals(acc: float) -> dict[str, float]:
    return {"acc": acc, "nmi": acc - 0.05, "ari": acc - 0.1}


def _lfss_epochs(acc: float, warmup: int, noise: float) -> list[EpochRecord]:
    """Stability rises (less with more noise), dips when warm-up ends and its bins settle; ACC approaches its end."""
    rows = []
    for epoch in range(CLUSTER_EPOCHS):
        progress = (epoch + 1) / CLUSTER_EPOCHS
        mean = 0.5 + (0.4 - 0.05 * np.log10(noise / 1e-4)) * progress - (0.1 if epoch == warmup else 0.0)
        change = np.nan if epoch == 0 else (0.6 + 0.1 * warmup / 8) * (1 - progress)
        deciles = {f"stability_d{d}": mean - 0.3 * (1 - progress) * (5 - d) / 4 for d in range(1, 10)}
        rows.append(EpochRecord(phase="cluster", epoch=epoch, acc=acc - 0.2 * (1 - progress), stability_mean=mean,
                                stability_bin_change=change,
                                **deciles))
    return rows


def _selflabel_epochs(acc: float, resets: bool) -> list[EpochRecord]:
    rows = [EpochRecord(phase="cluster", epoch=e, acc=acc - 0.15) for e in range(3)]
    rows += [EpochRecord(phase="selflabel_warmup", epoch=e, loss=1.0 / (e + 1)) for e in range(SELFLABEL_WARMUP)]
    for epoch in range(SELFLABEL_EPOCHS):
        progress = (epoch + 1) / SELFLABEL_EPOCHS
        reset = resets and epoch > 0 and epoch % INTERVAL == 0
        dip = 0.03 if reset else 0.0
        rows.append(EpochRecord(phase="selflabel", epoch=epoch, acc=acc - 0.1 * (1 - progress) - dip,
                                nmi=acc - 0.1, ari=acc - 0.15, nmi_match=0.7 + 0.2 * progress,
                                confident_fraction=0.3 + 0.5 * progress - dip,
                                cl_change=np.nan if epoch == 0 else 0.05 * (1 - progress) + dip,
                                reset_applied=reset))
    return rows


def build_contrastive_study(root: Path) -> Path:
    trials = []
    base = {"data": {"name": DATASET}, "net": {"arch": "resnet18"}}
    for (warmup, noise), seed in itertools.product(LFSS_POINTS, SEEDS):
        acc = lfss_acc(warmup, noise, seed)
        values = {**base, "seed": seed, "train": {"algorithm": "lfss", "epochs": CLUSTER_EPOCHS},
                  "selflabel": {"epochs": 0}, "lfss": {"warmup_epochs": warmup, "noise": noise}}
        trials.append(_rows(values, _finals(acc), _lfss_epochs(acc, warmup, noise)))
    for (strategy, settings, acc), seed in itertools.product(RESL_RUNS, SEEDS[:2]):
        values = {**base, "seed": seed, "train": {"algorithm": "idec", "epochs": 3},
                  "selflabel": {"epochs": SELFLABEL_EPOCHS, "warmup_epochs": SELFLABEL_WARMUP},
                  "resl": {"strategy": strategy, "interval": INTERVAL, **settings}}
        final = acc + 0.005 * seed
        trials.append(_rows(values, _finals(final), _selflabel_epochs(final, strategy != "none")))
    return _write(root, trials)


def build_brb_study(root: Path) -> Path:
    """Two DEC trials with clustering epochs only: no LFSS trials, no self-labeling."""
    epochs = [EpochRecord(phase="cluster", epoch=e, acc=0.6 + 0.01 * e, intra_cd=0.5, inter_cd=1.0, cl_change=1.0)
              for e in range(4)]
    return _write(root, [_rows({"seed": seed, "train": {"epochs": 4}}, _finals(0.64), epochs) for seed in (0, 1)])


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return build_contrastive_study(tmp_path_factory.mktemp("contrastive"))


@pytest.fixture(scope="module")
def trials(study):
    return load_trials(study)


def test_load_epochs_takes_the_phase(study, trials):
    assert set(load_epochs(study, trials)["phase"]) == {"cluster"}
    selflabel = load_epochs(study, trials, phase="selflabel")
    assert set(selflabel["phase"]) == {"selflabel"} and len(selflabel) == len(RESL_RUNS) * 2 * SELFLABEL_EPOCHS
    both = load_epochs(study, trials, phase=("selflabel_warmup", "selflabel"))
    assert len(both) == len(selflabel) + len(RESL_RUNS) * 2 * SELFLABEL_WARMUP
    assert "resl.strategy" in selflabel.columns


def test_swept_columns_are_the_ones_that_vary_around_the_held_point(trials):
    assert swept_columns(trials, DATASET) == ["lfss.warmup_epochs", "lfss.noise"]


def test_sweep_table_holds_the_means_over_seeds_at_the_held_point(trials):
    summary = sweep_summary(trials, "lfss.warmup_epochs", DATASET)
    assert list(summary.index) == [0, 4, 8]  # the off-sweep trial (η = 4, σ = 0.01) is left out
    for warmup in (0, 4, 8):
        accs = [lfss_acc(warmup, 1e-3, s) for s in SEEDS]
        assert summary.loc[warmup, "acc_mean"] == pytest.approx(np.mean(accs))
        assert summary.loc[warmup, "acc_std"] == pytest.approx(np.std(accs, ddof=1))
        assert summary.loc[warmup, "ari_mean"] == pytest.approx(np.mean(accs) - 0.1)
        assert summary.loc[warmup, "seeds"] == len(SEEDS)
    noise = sweep_summary(trials, "lfss.noise", DATASET)
    assert noise.loc[1e-2, "nmi_mean"] == pytest.approx(np.mean([lfss_acc(8, 1e-2, s) - 0.05 for s in SEEDS]))


def test_sweep_markdown_is_table_10(trials):
    text = sweep_markdown(trials, DATASET)
    assert "| Metric | η = 0 | η = 4 | η = 8 |" in text
    assert "| Metric | σ = 0.0001 | σ = 0.001 | σ = 0.01 |" in text
    acc_row = next(line for line in text.splitlines() if line.startswith("| ACC"))
    assert acc_row == "| ACC | 0.5300±0.0100 | 0.5700±0.0100 | **0.6100±0.0100** |"
    assert "δ = 0.1, σ = 0.001, λ = 0.1 held" in text and "over 3 seeds" in text


def test_best_configuration_per_strategy_by_final_acc(study, trials):
    epochs = load_epochs(study, trials, phase="selflabel")
    best = best_configurations(epochs).set_index("strategy")
    assert list(best.index) == ["none", "sp", "ht"]
    assert best.loc["sp", "label"] == "ReSL-SP α=0.9 R=5" and best.loc["ht", "label"] == "ReSL-HT μ=0.99 R=5"
    assert best.loc["sp", "configurations"] == 2 and best.loc["none", "label"] == "no reset"
    fig = plot_selflabeling(epochs, DATASET)
    assert "best configuration per strategy by final ACC" in fig.get_suptitle()


def test_report_renders_the_new_figures_and_table(study, tmp_path):
    report = render_report(study, tmp_path / "out", log=lambda _: None)
    names = {p.name for p in report.written}
    for png in (f"lfss_sweeps_{DATASET}.png", f"lfss_stability_{DATASET}.png", f"selflabel_dynamics_{DATASET}.png"):
        assert png in names and (tmp_path / "out" / png).stat().st_size > 10_000
    assert "| ACC | 0.5300±0.0100" in (tmp_path / "out" / f"lfss_sweeps_{DATASET}.md").read_text()
    assert "lfss_sweeps_cifar10" in (tmp_path / "out" / "index.md").read_text()


def test_a_study_without_these_rows_skips_them_with_the_reason(tmp_path):
    report = render_report(build_brb_study(tmp_path / "brb"), tmp_path / "out", log=lambda _: None)
    skipped = dict(report.skipped)
    assert skipped["lfss_sweeps_digits.md"] == "the study has no LFSS trials (train.algorithm: lfss)"
    assert skipped["lfss_stability_digits.png"] == "the study has no LFSS stability records on digits"
    assert skipped["selflabel_dynamics_digits.png"].startswith("the study has no self-labeling epochs")
    assert (tmp_path / "out" / "dynamics_digits_pretrained.png").exists()


def test_lfss_trials_at_one_setting_do_not_sweep(trials):
    one_point = trials[(trials["lfss.warmup_epochs"] == 8) & (trials["lfss.noise"] == 1e-3)]
    with pytest.raises(MissingDimension, match="no LFSS setting takes two or more values"):
        sweep_markdown(one_point, DATASET)
