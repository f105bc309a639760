"""Sensitivity heatmaps (the BRB paper's Fig 8/9, ReSL's R × α and R × μ grids): mean metric per
grid cell, one panel per panel value. As in the paper, a cell weighs every algorithm equally: seeds are
averaged within each configuration, configurations within each algorithm, then algorithms.

The functions take trials of every status (load_trials(study, finished_only=False)) so that divergence shows:
means use finished trials only, a cell in which one of the algorithms has no finished trial has no mean (the
others alone would not weigh every algorithm equally), and each cell counts its failed (diverged) trials.
Trials stopped early or crashed count in neither."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from raydc.tables.results import for_dataset, format_value
from raydc.errors import MissingDimension
from raydc.report.style import HEATMAP_CMAP, figure, styled
from raydc.report.variants import algorithm_rank


@dataclass(frozen=True)
class Grid:
    name: str                               # file stem of the figure
    rows: str                               # column on the vertical axis
    cols: str                               # column on the horizontal axis
    panels: str | None                      # one panel per value of this column
    only: tuple[str, object] | None         # (column, value) that selects the grid's trials
    baseline: tuple[str, object] | None     # (column, value) that selects the reference trials
    title: str


GRIDS = (
    Grid("alpha_T", rows="brb.alpha", cols="brb.interval", panels="train.lr", only=("brb.mode", "brb"),
         baseline=("brb.mode", "baseline"), title="BRB sensitivity: reset factor α × interval T"),
    Grid("resl_R_alpha", rows="resl.alpha", cols="resl.interval", panels=None, only=("resl.strategy", "sp"),
         baseline=("resl.strategy", "none"), title="ReSL-SP: retention α × reset interval R"),
    Grid("resl_R_mu", rows="resl.momentum", cols="resl.interval", panels=None, only=("resl.strategy", "ht"),
         baseline=("resl.strategy", "none"), title="ReSL-HT: momentum μ × reset interval R"),
)
AXIS_LABELS = {"brb.alpha": "reset factor α", "brb.interval": "reset interval T (epochs)", "train.lr": "lr",
               "resl.alpha": "retention α", "resl.interval": "reset interval R (epochs)",
               "resl.momentum": "momentum μ"}
METRIC_LABELS = {"acc": "ACC", "nmi": "NMI", "ari": "ARI"}


# An axis of a sampled (optuna/random) space has a value per trial: above MAX_LEVELS values it is cut into BINS
# quantile bins, each drawn as one row, column or panel.
MAX_LEVELS, BINS = 8, 5


def bin_continuous(trials: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``trials`` with each numeric column of ``columns`` that takes more than MAX_LEVELS values replaced by its
    quantile bin (a pandas Interval, labelled by its range)."""
    binned = trials
    for column in columns:
        values = trials[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and (
                values.nunique() > MAX_LEVELS):
            binned = binned.assign(**{column: pd.qcut(values, BINS, duplicates="drop").astype(object)})
    return binned


def _axes(grid: Grid) -> list[str]:
    return [c for c in (grid.rows, grid.cols, grid.panels) if c]


def _label(column: str) -> str:
    return AXIS_LABELS.get(column, column)


def _matching(trials: pd.DataFrame, condition: tuple[str, object] | None) -> pd.DataFrame:
    if condition is None:
        return trials
    column, value = condition
    return trials[trials[column] == value]


def grid_trials(trials: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """The trials that form the grid; MissingDimension if the study lacks one of its axes."""
    needed = [c for c in (grid.rows, grid.cols, grid.panels) if c] + [c for c, _ in filter(None, [grid.only])]
    absent = [c for c in needed if c not in trials.columns]
    if absent:
        raise MissingDimension(f"the study has no {absent[0]} column")
    inside = bin_continuous(_matching(trials, grid.only), _axes(grid))
    if not _finished(inside).any() and grid.only is not None:
        column, value = grid.only
        raise MissingDimension(f"no finished trial has {column} = {value}")
    for axis in (grid.rows, grid.cols):
        if inside[axis].nunique() < 2:
            raise MissingDimension(f"{axis} takes {inside[axis].nunique()} value(s) in the grid's trials; need ≥ 2")
    return inside


def _finished(trials: pd.DataFrame) -> pd.Series:
    return trials["status"] == "finished"


def balanced_mean(trials: pd.DataFrame, keys: list[str], metric: str) -> pd.Series:
    """Mean ``metric`` of the finished trials per ``keys``: over seeds per configuration, then configurations per
    algorithm, then algorithms; an algorithm with more surviving seeds or configurations weighs no more than the
    others. NaN where one of the algorithms in ``trials`` has no finished trial."""
    finished = trials[_finished(trials)]
    per_config = finished.groupby([*keys, "train.algorithm", "config_id"])[metric].mean()
    per_algorithm = per_config.groupby(level=[*keys, "train.algorithm"]).mean().unstack("train.algorithm")
    every_algorithm = per_algorithm.reindex(columns=sorted(trials["train.algorithm"].unique()))
    return every_algorithm.mean(axis=1, skipna=False)


def grid_means(trials: pd.DataFrame, grid: Grid, metric: str = "acc") -> dict[object, pd.DataFrame]:
    """Panel value → (rows × cols) table of the mean metric; one panel keyed None without a panel column."""
    inside = grid_trials(trials, grid)
    panels = sorted(inside[grid.panels].unique()) if grid.panels else [None]
    tables = {}
    for value in panels:
        cell = inside if value is None else inside[inside[grid.panels] == value]
        tables[value] = _cells(balanced_mean(cell, [grid.rows, grid.cols], metric), inside, grid)
    return tables


def grid_failures(trials: pd.DataFrame, grid: Grid) -> dict[object, pd.DataFrame]:
    """Panel value → (rows × cols) table of how many trials failed (diverged) in each cell, as grid_means."""
    inside = grid_trials(trials, grid)
    failed = inside.assign(failed=inside["status"] == "failed")
    panels = sorted(inside[grid.panels].unique()) if grid.panels else [None]
    tables = {}
    for value in panels:
        cell = failed if value is None else failed[failed[grid.panels] == value]
        counts = cell.groupby([grid.rows, grid.cols])["failed"].sum()
        tables[value] = _cells(counts, inside, grid).fillna(0).astype(int)
    return tables


def _cells(values: pd.Series, inside: pd.DataFrame, grid: Grid) -> pd.DataFrame:
    """A value per (row, col) as the grid's table, every row and column value of the grid in order."""
    return values.unstack(grid.cols).reindex(index=sorted(inside[grid.rows].unique()),
                                             columns=sorted(inside[grid.cols].unique()))


def baseline_means(trials: pd.DataFrame, grid: Grid, panels: list[object], metric: str = "acc") -> dict[object, float]:
    """Mean metric of the reference trials per panel (the panel's own value when it has some, else all)."""
    if grid.baseline is None or grid.baseline[0] not in trials.columns:
        return {}
    reference = _matching(trials, grid.baseline)
    if not _finished(reference).any():
        return {}
    overall = _overall_mean(reference, metric)
    out = {}
    for value in panels:
        same = reference if value is None else reference[reference[grid.panels] == value]
        out[value] = _overall_mean(same, metric) if _finished(same).any() else overall
    # A reference without a finished trial of every algorithm would not weigh them as the cells do.
    return {value: mean for value, mean in out.items() if pd.notna(mean)}


def _overall_mean(trials: pd.DataFrame, metric: str) -> float:
    """balanced_mean over all of ``trials``: the reference weighs algorithms as the cells do."""
    return float(balanced_mean(trials.assign(_all=0), ["_all"], metric).iloc[0])


def _averaged_over(trials: pd.DataFrame) -> str:
    algorithms = "/".join(a.upper() for a in sorted(trials["train.algorithm"].unique(), key=algorithm_rank))
    seeds = trials[_finished(trials)].groupby("config_id").size()
    per_cell = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}–{seeds.max()}"
    return f"mean over {algorithms} (equal weight), each over {per_cell} seeds per configuration"


@styled
def plot_sensitivity(trials: pd.DataFrame, grid: Grid = GRIDS[0], dataset: str | None = None,
                     metric: str = "acc") -> Figure:
    """Annotated heatmaps of the mean metric on one dataset, a shared colour scale, and the baseline
    without resets as reference (panel titles, a line on the colour bar; bold cells beat it); under a value, the
    number of the cell's trials that failed.

    ``trials``: load_trials(study, finished_only=False), so that failed trials show."""
    trials = for_dataset(trials, dataset)
    if all(c in trials.columns for c in _axes(grid)):  # the grid's bins, for the baseline's panels too
        trials = bin_continuous(trials, _axes(grid))
    tables = grid_means(trials, grid, metric)
    failures = grid_failures(trials, grid)
    baselines = baseline_means(trials, grid, list(tables), metric)
    values = np.concatenate([t.to_numpy().ravel() for t in tables.values()] + [np.array(list(baselines.values()))])
    norm = Normalize(vmin=np.nanmin(values), vmax=np.nanmax(values))
    n_rows, n_cols = next(iter(tables.values())).shape
    fig = figure(max(6.5, 1.0 + len(tables) * max(2.6, 0.62 * n_cols + 0.9)), 1.9 + 0.5 * n_rows)
    axes = fig.subplots(1, len(tables), squeeze=False, sharey=True)[0]
    for ax, (panel, table) in zip(axes, tables.items()):
        image = ax.imshow(table.to_numpy(), cmap=HEATMAP_CMAP, norm=norm, aspect="auto")
        _annotate(ax, table.to_numpy(), failures[panel].to_numpy(), norm, baselines.get(panel, np.inf))
        ax.set_xticks(range(table.shape[1]), [format_value(v) for v in table.columns])
        ax.set_yticks(range(table.shape[0]), [format_value(v) for v in table.index])
        ax.set_xlabel(_label(grid.cols))
        ax.tick_params(length=0)
        ax.spines[:].set_visible(False)
        title = f"{_label(grid.panels)} = {format_value(panel)}" if grid.panels else ""
        if panel in baselines:
            title += ("\n" if title else "") + f"baseline {baselines[panel]:.3f}"
        ax.set_title(title)
    axes[0].set_ylabel(_label(grid.rows))
    bar = fig.colorbar(image, ax=list(axes), shrink=0.9, label=f"mean {METRIC_LABELS.get(metric, metric)}")
    single_baseline = len(set(baselines.values())) == 1
    if single_baseline:
        bar.ax.axhline(next(iter(baselines.values())), color="white", linewidth=2)
        bar.ax.axhline(next(iter(baselines.values())), color="black", linewidth=1, linestyle="--")
    fig.suptitle(f"{grid.title} — {trials['data.name'].iloc[0]}")
    caption = _averaged_over(grid_trials(trials, grid))
    if baselines:
        caption += "; bold: above the baseline" + (" (dashed on the colour bar)" if single_baseline else "")
    marks = []
    if any(t.isna().any().any() for t in tables.values()):
        marks.append("–: an algorithm has no finished trial there")
    if any(t.to_numpy().any() for t in failures.values()):
        marks.append("n✗: n trials failed (diverged), left out of the mean")
    if marks:
        caption += "\n" + "; ".join(marks)
    fig.supxlabel(caption, fontsize=9, color="dimgrey")
    return fig


def _annotate(ax, values: np.ndarray, failed: np.ndarray, norm: Normalize, baseline: float) -> None:
    """Write each cell's value in a colour readable on its background ('–' for a cell without a mean), and
    'n✗' under it when n of its trials failed."""
    for (i, j), value in np.ndenumerate(values):
        empty = np.isnan(value)
        colour = "grey" if empty else "white" if norm(value) < 0.55 else "black"
        if empty:
            ax.text(j, i, "–", ha="center", va="center", color=colour)
        else:
            ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=9, color=colour,
                    fontweight="bold" if value > baseline else "normal")
        if failed[i, j]:
            ax.text(j, i + 0.3, f"{failed[i, j]}✗", ha="center", va="center", fontsize=7, color=colour)

