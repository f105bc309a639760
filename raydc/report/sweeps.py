"""One-dimensional hyper-parameter sweeps (LFSS's Table 10 and Fig 7): mean ± std over seeds of ACC, NMI
and ARI against one LFSS setting, the other LFSS settings held at their most common values. A sweep whose
value spans several configurations (another setting such as brb.mode or train.lr varies too) is refused, since
its rows would be pooled as if they were seeds."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from raydc.tables.results import configuration_columns, for_dataset, format_value
from raydc.errors import MissingDimension
from raydc.report.style import figure, styled
from raydc.report.tables import markdown_table

SWEEP_COLUMNS = ("lfss.warmup_epochs", "lfss.unstable_ratio", "lfss.noise", "lfss.weight")
SYMBOLS = {"lfss.warmup_epochs": "η", "lfss.unstable_ratio": "δ", "lfss.noise": "σ", "lfss.weight": "λ"}
AXIS_LABELS = {"lfss.warmup_epochs": "warm-up epochs η", "lfss.unstable_ratio": "unstable ratio δ",
               "lfss.noise": "noise σ", "lfss.weight": "loss weight λ"}
# Fig 7 spans decades of σ and λ.
LOG_AXES = ("lfss.noise", "lfss.weight")
METRICS = {"acc": "ACC", "nmi": "NMI", "ari": "ARI"}
METRIC_COLOURS = {"acc": "tab:blue", "nmi": "tab:orange", "ari": "tab:green"}


def lfss_trials(trials: pd.DataFrame, dataset: str | None = None) -> pd.DataFrame:
    """The LFSS trials (train.algorithm == "lfss") of one dataset."""
    if dataset is not None and dataset not in set(trials["data.name"]):
        raise MissingDimension(f"the study has no trials on {dataset}")
    trials = for_dataset(trials, dataset)
    lfss = trials[trials["train.algorithm"] == "lfss"]
    if lfss.empty:
        raise MissingDimension("the study has no LFSS trials (train.algorithm: lfss)")
    return lfss


def most_common(values: pd.Series) -> object:
    """The value most trials use; ties go to the smallest value, so the choice never depends on row order."""
    counts = values.value_counts()
    return min(counts.index[counts == counts.max()])


def held_values(lfss: pd.DataFrame, column: str) -> dict[str, object]:
    """The other LFSS settings at their most common values: the point the sweep over ``column`` passes through."""
    return {other: most_common(lfss[other]) for other in SWEEP_COLUMNS if other != column}


def sweep_trials(lfss: pd.DataFrame, column: str) -> pd.DataFrame:
    """LFSS trials that differ from the held point in ``column`` alone."""
    at_point = pd.Series(True, index=lfss.index)
    for other, value in held_values(lfss, column).items():
        at_point &= lfss[other] == value
    return lfss[at_point]


def swept_columns(trials: pd.DataFrame, dataset: str | None = None) -> list[str]:
    """The LFSS settings that take two or more values with the others held; MissingDimension when none do."""
    lfss = lfss_trials(trials, dataset)
    swept = [c for c in SWEEP_COLUMNS if sweep_trials(lfss, c)[c].nunique() > 1]
    if not swept:
        fixed = ", ".join(f"{c}={format_value(lfss[c].iloc[0])}" for c in SWEEP_COLUMNS if lfss[c].nunique() == 1)
        raise MissingDimension("no LFSS setting takes two or more values with the others held"
                               + (f" ({fixed} fixed)" if fixed else ""))
    return swept


def sweep_summary(trials: pd.DataFrame, column: str, dataset: str | None = None) -> pd.DataFrame:
    """One row per value of ``column``: mean and std of ACC, NMI and ARI over seeds, and the seed count."""
    inside = sweep_trials(lfss_trials(trials, dataset), column)
    _one_configuration_per_value(inside, column)
    grouped = inside.groupby(column)
    summary = pd.concat({m: grouped[m].agg(["mean", "std"]) for m in METRICS}, axis=1)
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    return summary.assign(seeds=grouped.size()).sort_index()


def _one_configuration_per_value(inside: pd.DataFrame, column: str) -> None:
    """MissingDimension when one value of ``column`` spans several configurations: its rows would not be seeds."""
    others = [c for c in configuration_columns() if c in inside.columns and c != column]
    spread = inside[others].groupby(inside[column]).nunique(dropna=False)  # a missing value counts as one
    varied = [c for c in others if spread[c].max() > 1]
    if varied:
        values = ", ".join(sorted(set(map(format_value, inside[varied[0]]))))
        raise MissingDimension(f"the {SYMBOLS[column]} sweep is ambiguous: {varied[0]} also varies ({values}); "
                               "give a sweep that changes one setting at a time")


def _held_caption(lfss: pd.DataFrame, column: str) -> str:
    held = held_values(lfss, column)
    return ", ".join(f"{SYMBOLS[c]} = {format_value(v)}" for c, v in held.items())


def _seeds_text(summary: pd.DataFrame) -> str:
    low, high = summary["seeds"].min(), summary["seeds"].max()
    return f"{low}" if low == high else f"{low}–{high}"


def _table(summary: pd.DataFrame, column: str) -> str:
    """Table 10's layout: rows metric, columns value, 'mean±std', the best mean of each row in bold."""
    header = ["Metric", *(f"{SYMBOLS[column]} = {format_value(v)}" for v in summary.index)]
    rows = []
    for metric, name in METRICS.items():
        best = summary[f"{metric}_mean"].max()
        cells = []
        for mean, std in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"]):
            text = f"{mean:.4f}" + (f"±{std:.4f}" if pd.notna(std) else "")
            cells.append(f"**{text}**" if mean == best else text)
        rows.append([name, *cells])
    return markdown_table(header, rows)


def sweep_markdown(trials: pd.DataFrame, dataset: str | None = None) -> str:
    """One Table 10 per swept LFSS setting, each under a line naming the held settings and the seed count."""
    lfss = lfss_trials(trials, dataset)
    parts = []
    for column in swept_columns(trials, dataset):
        summary = sweep_summary(trials, column, dataset)
        parts.append(f"**{AXIS_LABELS[column]}** ({_held_caption(lfss, column)} held; mean ± std over "
                     f"{_seeds_text(summary)} seeds)\n\n{_table(summary, column)}")
    return "\n".join(parts)


def _x_axis(ax, column: str, values: list[float]) -> None:
    """Ticks at the swept values; log scale for σ and λ (symmetric-log when the sweep includes 0)."""
    if column in LOG_AXES:
        positive = [v for v in values if v > 0]
        if len(positive) < len(values):
            ax.set_xscale("symlog", linthresh=min(positive, default=1.0))
        else:
            ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(values, [format_value(v) for v in values])


@styled
def plot_sweeps(trials: pd.DataFrame, dataset: str | None = None) -> Figure:
    """Fig 7: one panel per swept LFSS setting, ACC/NMI/ARI against its value with ± std error bars."""
    swept = swept_columns(trials, dataset)
    lfss = lfss_trials(trials, dataset)
    fig = figure(0.6 + 3.4 * len(swept), 3.6)
    axes = fig.subplots(1, len(swept), squeeze=False, sharey=True)[0]
    summaries = []
    for ax, column in zip(axes, swept):
        summary = sweep_summary(trials, column, dataset)
        summaries.append(summary)
        values = [float(v) for v in summary.index]
        for metric, name in METRICS.items():
            ax.errorbar(values, summary[f"{metric}_mean"], yerr=summary[f"{metric}_std"].fillna(0), marker="o",
                        markersize=4, capsize=3, linewidth=1.4, color=METRIC_COLOURS[metric], label=name)
        _x_axis(ax, column, values)
        ax.set_xlabel(AXIS_LABELS[column])
        ax.set_title(f"held: {_held_caption(lfss, column)}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean over seeds")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(METRICS), frameon=False)
    fig.suptitle(f"LFSS sensitivity on {lfss['data.name'].iloc[0]}: one setting at a time, mean ± std over "
                 f"{_seeds_text(pd.concat(summaries))} seeds")
    return fig
