"""Training dynamics (the BRB paper's Fig 1/2/6): ACC, intra-CD, inter-CD and CL Change against the
clustering epoch, mean ± std over trials, one line per variant, reset epochs marked."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from raydc.tables.results import for_dataset
from raydc.errors import MissingDimension
from raydc.report.style import MODE_COLOURS, figure, styled
from raydc.report.variants import algorithm_rank, mode_label, mode_rank, pretrained, pretraining_title

# (column, axis label), every value in the tables' own unit (raydc.tables.columns).
PANELS = (("acc", "ACC"), ("intra_cd", "intra-CD"), ("inter_cd", "inter-CD"), ("cl_change", "CL Change"))
# Datasets and pretraining settings are never pooled into one line.
VARIANT = ["data.name", "pretrained", "train.algorithm", "brb.mode"]
# The variant whose periodic steps are drawn, in order of preference.
MARKED_MODES = ("brb", "reset", "recluster")


def dynamics_curves(epochs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, std and count of ``metric`` per (dataset, pretraining, algorithm, mode, epoch) over the evaluated
    epochs; ``pretrained`` is pretrain.epochs > 0."""
    evaluated = epochs.dropna(subset=[metric])
    evaluated = evaluated.assign(pretrained=pretrained(evaluated))
    return evaluated.groupby([*VARIANT, "epoch"])[metric].agg(["mean", "std", "count"]).reset_index()


def final_values(epochs: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """Mean, std and count of ``metric`` per (dataset, pretraining, algorithm, mode) at each trial's own last
    evaluated epoch, so trials run for different numbers of epochs each count once; the trials are those in
    ``epochs`` (load_epochs keeps finished trials only)."""
    evaluated = epochs.dropna(subset=[metric])
    last = evaluated.sort_values("epoch").groupby("trial_id").tail(1)
    last = last.assign(pretrained=pretrained(last))
    return last.groupby(VARIANT)[metric].agg(["mean", "std", "count"]).reset_index()


def reset_epochs(epochs: pd.DataFrame, mode: str) -> list[int]:
    """Epochs at which at least half of the mode's trials applied their periodic step."""
    rows = epochs[epochs["brb.mode"] == mode]
    share = rows.groupby("epoch")["reset_applied"].mean()
    return sorted(share.index[share >= 0.5])


def _one_setting(epochs: pd.DataFrame, with_pretraining: bool | None) -> tuple[pd.DataFrame, bool]:
    flags = pretrained(epochs)
    settings = sorted(flags.unique())
    if with_pretraining is None and len(settings) == 1:
        with_pretraining = bool(settings[0])
    if with_pretraining not in settings:
        raise ValueError(f"choose with_pretraining=True/False; the study has {settings}")
    return epochs[flags == with_pretraining], with_pretraining


@styled
def plot_dynamics(epochs: pd.DataFrame, dataset: str | None = None, with_pretraining: bool | None = None) -> Figure:
    """One row per algorithm, one column per metric; the baseline's final ACC as a dashed reference line
    (the 'reclustering barrier' of Fig 1) and the periodic steps of BRB (or its ablation) as dotted lines."""
    if epochs.empty or epochs[[p[0] for p in PANELS]].isna().all().all():
        raise MissingDimension("no evaluated clustering epochs")
    epochs, with_pretraining = _one_setting(for_dataset(epochs, dataset), with_pretraining)
    algorithms = sorted(epochs["train.algorithm"].unique(), key=algorithm_rank)
    modes = sorted(epochs["brb.mode"].unique(), key=mode_rank)
    marked = next((m for m in MARKED_MODES if m in modes), None)
    resets = reset_epochs(epochs, marked) if marked else []
    curves = {metric: dynamics_curves(epochs, metric) for metric, _ in PANELS}
    fig = figure(12.0, 0.8 + 2.4 * len(algorithms))
    axes = fig.subplots(len(algorithms), len(PANELS), squeeze=False, sharex=True)
    for row, algorithm in enumerate(algorithms):
        for col, (metric, label) in enumerate(PANELS):
            ax = axes[row, col]
            for epoch in resets:
                ax.axvline(epoch, color=MODE_COLOURS.get(marked, "grey"), alpha=0.3, linewidth=0.7, linestyle=":")
            for mode in modes:
                curve = curves[metric]
                curve = curve[(curve["train.algorithm"] == algorithm) & (curve["brb.mode"] == mode)]
                colour = MODE_COLOURS.get(mode, "tab:gray")
                ax.plot(curve["epoch"], curve["mean"], color=colour, linewidth=1.4)
                ax.fill_between(curve["epoch"], curve["mean"] - curve["std"].fillna(0),
                                curve["mean"] + curve["std"].fillna(0), color=colour, alpha=0.2, linewidth=0)
                if metric == "acc" and mode == "baseline" and len(curve):
                    ax.axhline(curve["mean"].iloc[-1], color=colour, linestyle="--", linewidth=1)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{algorithm.upper()}: {label}")
            if row == len(algorithms) - 1:
                ax.set_xlabel("clustering epoch")
    handles = [Line2D([], [], color=MODE_COLOURS.get(m, "tab:gray"), linewidth=2,
                      label=mode_label(m)) for m in modes]
    if "baseline" in modes:
        handles.append(Line2D([], [], color=MODE_COLOURS["baseline"], linestyle="--", label="baseline final ACC"))
    if resets:
        handles.append(Line2D([], [], color=MODE_COLOURS.get(marked, "grey"), linestyle=":",
                              label=f"{mode_label(marked)} step"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    seeds = epochs.groupby("config_id")["trial_id"].nunique()
    configs = epochs.groupby(["train.algorithm", "brb.mode"])["config_id"].nunique().max()
    pooled = f"; up to {configs} configurations pooled per line" if configs > 1 else ""
    fig.suptitle(f"{epochs['data.name'].iloc[0]}, {pretraining_title(with_pretraining)}: mean ± std over trials "
                 f"({seeds.min()}{'' if seeds.min() == seeds.max() else f'–{seeds.max()}'} seeds per configuration"
                 f"{pooled})")
    return fig
