"""Self-labeling dynamics (ReSL's Fig 3/4) and LFSS sample stability against the epoch, mean ± std over seeds.

Self-labeling: ACC, NMI of the confident pseudo-labels, confident share and CL Change per self-labeling
epoch, one line per ReSL strategy; a strategy run with several configurations is drawn at its best one by
final ACC. Stability: LFSS's per-sample representation stability (mean, deciles, bin change) per clustering
epoch, one line per LFSS configuration.
"""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from raydc.tables.results import configuration_columns, for_dataset, format_value, varying_columns
from raydc.errors import MissingDimension
from raydc.report.style import figure, styled

# (column, axis label), every value in the tables' own unit (raydc.tables.columns).
SELFLABEL_PANELS = (("acc", "ACC"), ("nmi_match", "NMI match, confident set"),
                    ("confident_fraction", "confident samples (fraction)"), ("cl_change", "CL Change"))
STRATEGY_ORDER = ("none", "sp", "sp_star", "ht")
STRATEGY_NAMES = {"none": "no reset", "sp": "ReSL-SP", "sp_star": "ReSL-SP*", "ht": "ReSL-HT"}
STRATEGY_COLOURS = {"none": "tab:blue", "sp": "tab:red", "sp_star": "tab:purple", "ht": "tab:green"}
# The settings that define each strategy's resets, always shown in its legend entry.
STRATEGY_SETTINGS = {"none": (), "sp": ("resl.alpha", "resl.interval"), "sp_star": ("resl.alpha", "resl.interval"),
                     "ht": ("resl.momentum", "resl.interval")}
SYMBOLS = {"resl.alpha": "α", "resl.interval": "R", "resl.momentum": "μ", "lfss.warmup_epochs": "η",
           "lfss.unstable_ratio": "δ", "lfss.noise": "σ", "lfss.weight": "λ"}
DECILES = (("stability_d1", "d1", ":"), ("stability_d5", "d5 (median)", "-"), ("stability_d9", "d9", "--"))
# More LFSS configurations than this make the stability panels unreadable; the best ones by final ACC stay.
MAX_STABILITY_LINES = 6


def _rows(frame: pd.DataFrame, dataset: str | None, what: str) -> pd.DataFrame:
    """Rows of one dataset; MissingDimension when the study has none of ``what`` there."""
    if frame.empty or (dataset is not None and dataset not in set(frame["data.name"])):
        raise MissingDimension(f"the study has no {what}" + (f" on {dataset}" if dataset else ""))
    return for_dataset(frame, dataset)


def _describe(row: pd.Series, columns: list[str]) -> str:
    return " ".join(f"{SYMBOLS.get(c, c)}={format_value(row[c])}" for c in columns)


def final_acc(epochs: pd.DataFrame) -> pd.Series:
    """config_id → mean over its trials of each trial's last evaluated ACC."""
    evaluated = epochs.dropna(subset=["acc"]).sort_values("epoch")
    return evaluated.groupby("trial_id").last().groupby("config_id")["acc"].mean()


def curves(epochs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, std and count of ``metric`` per (configuration, epoch) over the epochs that recorded it."""
    return epochs.dropna(subset=[metric]).groupby(["config_id", "epoch"])[metric].agg(["mean", "std", "count"]) \
        .reset_index()


def reset_epochs(epochs: pd.DataFrame) -> list[int]:
    """Epochs at which at least half of the trials applied a reset."""
    share = epochs.groupby("epoch")["reset_applied"].mean()
    return sorted(share.index[share >= 0.5])


def best_configurations(epochs: pd.DataFrame) -> pd.DataFrame:
    """One row per ReSL strategy: its configuration with the best final ACC, that ACC, and how many it has."""
    scores = final_acc(epochs)
    firsts = epochs.drop_duplicates("config_id").set_index("config_id")
    rows = []
    for strategy in sorted(firsts["resl.strategy"].unique(), key=_strategy_rank):
        ids = firsts.index[firsts["resl.strategy"] == strategy]
        ranked = scores.reindex(ids).fillna(-1.0).sort_values(ascending=False, kind="stable")
        rows.append({"strategy": strategy, "config_id": ranked.index[0], "final_acc": ranked.iloc[0],
                     "configurations": len(ids), "label": _strategy_label(firsts, strategy, ranked.index[0])})
    return pd.DataFrame(rows)


def _strategy_rank(strategy: str) -> tuple[int, str]:
    return (STRATEGY_ORDER.index(strategy), "") if strategy in STRATEGY_ORDER else (len(STRATEGY_ORDER), strategy)


def _strategy_label(firsts: pd.DataFrame, strategy: str, config_id: str) -> str:
    """'ReSL-SP α=0.9 R=20', plus any other setting that varies among the strategy's configurations."""
    same = firsts[firsts["resl.strategy"] == strategy]
    shown = list(STRATEGY_SETTINGS.get(strategy, ()))
    others = varying_columns(same, [c for c in configuration_columns()
                                    if c not in shown and c not in ("data.name", "resl.strategy")])
    return " ".join(filter(None, [STRATEGY_NAMES.get(strategy, strategy),
                                  _describe(firsts.loc[config_id], shown + others)]))


def _band(ax, curve: pd.DataFrame, colour: str, **line) -> None:
    """A mean line with a ± std band."""
    std = curve["std"].fillna(0)
    ax.plot(curve["epoch"], curve["mean"], color=colour, linewidth=1.4, **line)
    ax.fill_between(curve["epoch"], curve["mean"] - std, curve["mean"] + std, color=colour, alpha=0.18, linewidth=0)


def _seeds_text(epochs: pd.DataFrame) -> str:
    seeds = epochs.groupby("config_id")["trial_id"].nunique()
    return f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}–{seeds.max()}"


@styled
def plot_selflabeling(epochs: pd.DataFrame, dataset: str | None = None) -> Figure:
    """ReSL Fig 3/4: one panel per metric against the self-labeling epoch, one line per strategy (its best
    configuration by final ACC), each strategy's resets as dotted lines in its colour.

    ``epochs``: load_epochs(study, phase="selflabel")."""
    epochs = _rows(epochs[epochs["phase"] == "selflabel"], dataset, "self-labeling epochs (selflabel.epochs > 0)")
    best = best_configurations(epochs)
    plotted = epochs[epochs["config_id"].isin(best["config_id"])]
    fig = figure(13.0, 3.7)
    axes = fig.subplots(1, len(SELFLABEL_PANELS), squeeze=False, sharex=True)[0]
    handles, any_resets = [], False
    for choice in best.itertuples(index=False):
        colour = STRATEGY_COLOURS.get(choice.strategy, "tab:gray")
        rows = plotted[plotted["config_id"] == choice.config_id]
        resets = reset_epochs(rows) if choice.strategy != "none" else []
        any_resets |= bool(resets)
        for ax, (metric, _) in zip(axes, SELFLABEL_PANELS):
            for epoch in resets:
                ax.axvline(epoch, color=colour, alpha=0.35, linewidth=0.7, linestyle=":")
            _band(ax, curves(rows, metric), colour)
        handles.append(Line2D([], [], color=colour, linewidth=2, label=choice.label))
    for ax, (_, label) in zip(axes, SELFLABEL_PANELS):
        ax.set_title(label)
        ax.set_xlabel("self-labeling epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if any_resets:
        handles.append(Line2D([], [], color="grey", linestyle=":", label="reset (strategy's colour)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
    several = best["configurations"].max() > 1
    rule = "; best configuration per strategy by final ACC" if several else ""
    fig.suptitle(f"{epochs['data.name'].iloc[0]}: self-labeling, mean ± std over {_seeds_text(plotted)} seeds{rule}")
    return fig


def lfss_labels(epochs: pd.DataFrame) -> pd.Series:
    """config_id → 'η=200 σ=0.001' from the settings that vary among the LFSS configurations, else 'LFSS'."""
    firsts = epochs.drop_duplicates("config_id").set_index("config_id")
    varying = [c for c in varying_columns(firsts) if c != "data.name"]
    return firsts.apply(lambda row: _describe(row, varying) or "LFSS", axis=1)


def _stability_configurations(epochs: pd.DataFrame) -> list[str]:
    """At most MAX_STABILITY_LINES configurations, the best by final ACC, in label order."""
    labels = lfss_labels(epochs)
    scores = final_acc(epochs).reindex(labels.index).fillna(-1.0)
    kept = scores.sort_values(ascending=False, kind="stable").index[:MAX_STABILITY_LINES]
    return sorted(kept, key=lambda c: labels[c])


@styled
def plot_stability(epochs: pd.DataFrame, dataset: str | None = None) -> Figure:
    """LFSS sample stability per clustering epoch: its mean (± std over seeds), the d1/d5/d9 deciles and the
    share of samples whose decile bin changed, one colour per configuration, the end of warm-up dotted.

    ``epochs``: load_epochs(study) (the clustering phase)."""
    lfss = epochs[(epochs["phase"] == "cluster") & (epochs["train.algorithm"] == "lfss")]
    lfss = _rows(lfss.dropna(subset=["stability_mean"]), dataset, "LFSS stability records")
    chosen = _stability_configurations(lfss)
    labels = lfss_labels(lfss)
    fig = figure(13.0, 3.8)
    ax_mean, ax_deciles, ax_change = fig.subplots(1, 3, sharex=True)
    handles = []
    for i, config_id in enumerate(chosen):
        colour = f"C{i}"
        rows = lfss[lfss["config_id"] == config_id]
        _band(ax_mean, curves(rows, "stability_mean"), colour)
        for column, _, style in DECILES:
            curve = curves(rows, column)
            ax_deciles.plot(curve["epoch"], curve["mean"], color=colour, linewidth=1.2, linestyle=style)
        _band(ax_change, curves(rows, "stability_bin_change"), colour)
        _mark_warmup((ax_mean, ax_deciles, ax_change), rows, colour)
        handles.append(Line2D([], [], color=colour, linewidth=2, label=labels[config_id]))
    handles.append(Line2D([], [], color="grey", linestyle=(0, (1, 3)), label="warm-up ends (η)"))
    ax_deciles.legend(handles=[Line2D([], [], color="black", linestyle=style, label=name)
                               for _, name, style in DECILES], loc="lower right", fontsize=8)
    titles = ("mean stability (cosine)", "stability deciles (mean over seeds)", "samples changing decile bin (fraction)")
    for ax, title in zip((ax_mean, ax_deciles, ax_change), titles):
        ax.set_title(title)
        ax.set_xlabel("clustering epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
    shown = "" if len(chosen) == labels.size else f"; {len(chosen)} of {labels.size} configurations, best by final ACC"
    fig.suptitle(f"{lfss['data.name'].iloc[0]}: LFSS sample stability, mean ± std over {_seeds_text(lfss)} seeds"
                 f"{shown}")
    return fig


def _mark_warmup(axes, rows: pd.DataFrame, colour: str) -> None:
    """A dotted line where the cluster-level loss starts, if that lies inside the recorded epochs."""
    warmup = rows["lfss.warmup_epochs"].iloc[0]
    if 0 < warmup <= rows["epoch"].max():
        for ax in axes:
            ax.axvline(warmup, color=colour, alpha=0.5, linewidth=0.9, linestyle=(0, (1, 3)))
