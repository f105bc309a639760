"""Ablation tables in the BRB paper's Table 13–15 layout and Fig 4/5-style bars of relative change.

A group is one algorithm with or without pretraining; its variants are the periodic-step modes
(baseline, BRB, recluster, reset, ...). relative = (mean − baseline mean) / baseline mean · 100.
AVERAGE is the mean of a variant's dataset means, given only for variants that have every dataset of their
group, so the averages compared within a group cover the same datasets.
Trials are never pooled across settings: where baselines differ (two learning rates, say) each setting is a group of
its own, compared with its own baseline; where a variant's trials differ in what its baseline does not (an α × T
grid beside the ablation) each setting is a row of its own.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from raydc.errors import MissingDimension
from raydc.report.style import MODE_COLOURS, figure, styled
from raydc.report.tables import html_table, markdown_table
from raydc.report.variants import algorithm_rank, mode_label, mode_rank, pretrained, pretraining_title, variant_name
from raydc.tables.results import configuration_columns, describe, varying_columns

AVERAGE = "AVERAGE"
CAPTION = ("AVERAGE: mean over datasets of the dataset means; – where a variant has no finished trial on a "
           "dataset of its group, since an average over fewer datasets is not comparable. A setting in "
           "parentheses is one of several in the study; each is its own row, never pooled.")
GROUP = ["pretrained", "train.algorithm", "setting"]  # a baseline and the variants compared with it
NOT_SETTINGS = {"data.name", "train.algorithm", "brb.mode", "pretrain.epochs", "seed"}
METRIC_NAMES = {"acc": "ACC", "nmi": "NMI", "ari": "ARI"}


def ablation_summary(trials: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """Long table: one row per (group, mode, dataset) with mean, std, trial count and relative change,
    plus an AVERAGE dataset row per variant that has every dataset of its group (mean of the dataset means,
    as in Table 13)."""
    modes = set(trials["brb.mode"])
    if "baseline" not in modes or len(modes) < 2:
        raise MissingDimension("an ablation needs baseline trials (brb.mode=baseline) and at least one other mode")
    frame = _at_baseline_settings(trials.assign(pretrained=pretrained(trials)))
    if (frame["brb.mode"] == "baseline").all():
        raise MissingDimension("no trial of another mode shares the settings of a baseline of its algorithm, "
                               "pretraining and dataset")
    keys = [*GROUP, "brb.mode", "detail"]
    summary = (frame.groupby([*keys, "data.name"])[metric].agg(["mean", "std", "count"]).reset_index()
               .rename(columns={"data.name": "dataset"}))
    covered = summary.groupby(keys)["dataset"].transform("nunique")
    in_group = summary.groupby(GROUP)["dataset"].transform("nunique")
    complete = summary[covered == in_group]
    average = complete.groupby(keys)["mean"].mean().reset_index().assign(dataset=AVERAGE, std=np.nan, count=0)
    summary = pd.concat([summary, average], ignore_index=True)
    base = summary[summary["brb.mode"] == "baseline"].set_index([*GROUP, "dataset"])["mean"]
    base_of_row = summary.set_index([*GROUP, "dataset"]).index.map(base)
    summary["relative"] = (summary["mean"].to_numpy() - base_of_row) / base_of_row * 100
    summary["variant"] = [variant_name(a, m, p) + "".join(f" ({part})" for part in (s, d) if part)
                          for p, a, s, m, d in zip(summary["pretrained"], summary["train.algorithm"],
                                                   summary["setting"], summary["brb.mode"], summary["detail"])]
    order = summary.apply(lambda r: (r["pretrained"], algorithm_rank(r["train.algorithm"]), r["setting"],
                                     mode_rank(r["brb.mode"]), r["detail"]), axis=1)
    return summary.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order")


def _at_baseline_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """Trials that share their baseline's settings, with labels: `setting` names what tells a baseline from the
    others of its algorithm, pretraining and dataset (a group of its own each); `detail` what tells a variant's
    trials apart where their baseline does not vary (an α × T grid: a row of its own each, never pooled)."""
    columns = [c for c in configuration_columns() if c in frame.columns and c not in NOT_SETTINGS]
    varying = varying_columns(frame, columns)
    is_baseline = frame["brb.mode"] == "baseline"
    grouping = varying_columns(frame[is_baseline], varying)
    details = [c for c in varying if c not in grouping]
    frame = frame.assign(setting=_labels(frame, grouping),
                         detail=_labels(frame, details).where(~is_baseline, ""))
    context = ["pretrained", "train.algorithm", "data.name", "setting"]
    return frame.merge(frame.loc[is_baseline, context].drop_duplicates(), on=context, how="inner")


def _labels(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    if not columns:
        return pd.Series("", index=frame.index)
    return frame.apply(lambda row: describe(row, columns), axis=1)


def _datasets(summary: pd.DataFrame) -> list[str]:
    return sorted(set(summary["dataset"]) - {AVERAGE}) + [AVERAGE]


def _cells(summary: pd.DataFrame, bold: tuple[str, str], relative: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table with cell text 'mean±std' (×100), best per group in ``bold`` markers."""
    datasets = _datasets(summary)
    best = summary.groupby([*GROUP, "dataset"])["mean"].transform("max")
    summary = summary.assign(best=np.isclose(summary["mean"], best))
    rows = []
    for variant, group in summary.groupby("variant", sort=False):
        by_dataset = group.set_index("dataset")
        row = [variant]
        for dataset in datasets:
            if dataset not in by_dataset.index:
                row.append("–")
                continue
            cell = by_dataset.loc[dataset]
            text = f"{cell['mean']:.4f}" + (f"±{cell['std']:.4f}" if pd.notna(cell["std"]) else "")
            if cell["best"]:
                text = f"{bold[0]}{text}{bold[1]}"
            if cell["brb.mode"] != "baseline" and pd.notna(cell["relative"]):
                text += relative.format(round(cell["relative"], 1) + 0.0)  # + 0.0 turns -0.0 into 0.0
            row.append(text)
        rows.append(row)
    return ["Variant", *(d.upper() for d in datasets)], rows


def ablation_markdown(summary: pd.DataFrame) -> str:
    """Table 13 as Markdown: mean±std, best of each group in bold, relative change (percent) in parentheses."""
    return markdown_table(*_cells(summary, ("**", "**"), " ({:+.1f}%)")) + f"\n{CAPTION}\n"


def ablation_html(summary: pd.DataFrame) -> str:
    """Table 13 as an HTML table: mean±std, best of each group in bold, relative change (percent) below."""
    table = html_table(*_cells(summary, ("<b>", "</b>"), "<br><small>{:+.1f}%</small>"))
    return table + f"<p><small>{CAPTION}</small></p>\n"


@styled
def plot_relative_change(summary: pd.DataFrame, metric: str = "acc") -> Figure:
    """Fig 4/5: bars of each variant's relative change against its baseline, per dataset; one panel per
    algorithm (columns) and pretraining setting (rows), shared y axis."""
    changes = summary[summary["brb.mode"] != "baseline"]
    settings = sorted(changes["pretrained"].unique())
    algorithms = sorted(changes["train.algorithm"].unique(), key=algorithm_rank)
    bars = sorted(set(zip(changes["brb.mode"], changes["setting"], changes["detail"])),
                  key=lambda bar: (mode_rank(bar[0]), *bar[1:]))  # one bar per mode, baseline setting and detail
    baselines = sorted({baseline for _, baseline, _ in bars})
    shade = {b: 1 - 0.5 * i / max(1, len(baselines) - 1) for i, b in enumerate(baselines)}  # lighter per setting
    datasets = _datasets(changes)
    fig = figure(0.6 + len(algorithms) * max(3.0, 0.3 * len(datasets) * len(bars) + 1.0), 1.2 + 2.6 * len(settings))
    axes = fig.subplots(len(settings), len(algorithms), squeeze=False, sharey=True)
    width = 0.8 / len(bars)
    for row, setting in enumerate(settings):
        for col, algorithm in enumerate(algorithms):
            ax = axes[row, col]
            group = changes[(changes["pretrained"] == setting) & (changes["train.algorithm"] == algorithm)]
            for i, (mode, baseline, detail) in enumerate(bars):
                of_bar = group[(group["brb.mode"] == mode) & (group["setting"] == baseline)
                               & (group["detail"] == detail)]
                values = of_bar.set_index("dataset")["relative"].reindex(datasets)
                ax.bar(np.arange(len(datasets)) + (i - (len(bars) - 1) / 2) * width, values, width,
                       color=MODE_COLOURS.get(mode, "tab:gray"), alpha=shade[baseline],
                       label=mode_label(mode) + "".join(f" ({part})" for part in (baseline, detail) if part))
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_xticks(range(len(datasets)), [d.upper() for d in datasets], rotation=30, ha="right")
            ax.set_title(f"{algorithm.upper()}, {pretraining_title(setting)}")
            ax.grid(axis="y", alpha=0.3)
        axes[row, 0].set_ylabel(f"Δ {METRIC_NAMES.get(metric, metric)} vs baseline (%)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(bars), 4), frameon=False)
    fig.suptitle(f"Relative change in mean {METRIC_NAMES.get(metric, metric)} against each group's baseline")
    return fig
