"""The model-selection report: which configuration each label-free criterion picks, what it loses
against the label oracle, and scatter plots of every score against ACC across configurations."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from raydc.tables.results import for_dataset
from raydc.errors import MissingDimension
from raydc.report.style import figure, styled
from raydc.report.tables import html_table, markdown_table
from raydc.selection.select import CRITERIA, label_oracle, never_selected, preference

AXIS_LABELS = {"mdl": "MDL cost (bits)", "vi": "VI between seeds (nats)", "reconstruction": "reconstruction loss",
               "silhouette": "silhouette (predicted labels)", "ch": "Calinski–Harabasz (own embedding)",
               "db": "Davies–Bouldin (own embedding)", "agreement": "mean NMI with the other trials",
               "cross_ch": "rank of CH in the other embeddings (0 = best)"}
NAMED_POINTS = 12  # configurations named beside their points: the best by ACC and by the criterion
HEADER = ["dataset", "criterion", "selected configuration", "ACC", "oracle ACC", "regret (ACC)",
          "Spearman ρ", "configs scored"]


def _fraction(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.4f}"


def _rows(selection: pd.DataFrame) -> list[list[str]]:
    """One row per criterion, then the oracle's row, per dataset."""
    rows = []
    for dataset, group in selection.groupby("data.name", sort=False):
        for r in group.itertuples(index=False):
            picked = "(no scores)" if pd.isna(r.selected_config) else r.selected_config
            criterion = f"{r.criterion} (default)" if getattr(r, "default", False) is True else r.criterion
            rows.append([dataset, criterion, picked, _fraction(r.selected_acc),
                         _fraction(r.oracle_acc), _fraction(r.regret),
                         "–" if pd.isna(r.spearman) else f"{r.spearman:+.2f}", str(r.configs_scored)])
        best = group.iloc[0]
        rows.append([dataset, "oracle (labels)", best.oracle_config, _fraction(best.oracle_acc),
                     _fraction(best.oracle_acc), _fraction(0.0), "+1.00", ""])
    return rows


def selection_markdown(selection: pd.DataFrame) -> str:
    return markdown_table(HEADER, _rows(selection))


def selection_html(selection: pd.DataFrame) -> str:
    return html_table(HEADER, _rows(selection))


@styled
def plot_selection_scatter(configs: pd.DataFrame, selection: pd.DataFrame, dataset: str | None = None) -> Figure:
    """One panel per single criterion: criterion value against mean ACC, one point per configuration;
    the configuration the criterion selects ringed in red, the label oracle starred."""
    configs = for_dataset(configs, dataset)
    name = configs["data.name"].iloc[0]
    chosen = selection[selection["data.name"] == name].set_index("criterion")
    criteria = [c for c, spec in CRITERIA.items() if spec.column in configs and configs[spec.column].notna().any()]
    if not criteria:
        raise MissingDimension("no label-free scores (no assignments and no final losses)")
    fig = figure(0.8 + 3.0 * len(criteria), 3.4)
    axes = fig.subplots(1, len(criteria), squeeze=False, sharey=True)[0]
    oracle = label_oracle(configs)
    for ax, criterion in zip(axes, criteria):
        column = CRITERIA[criterion].column
        scored = configs[configs[column].notna()]
        excluded = never_selected(scored)
        if (~excluded).any():
            ax.scatter(scored.loc[~excluded, column], scored.loc[~excluded, "acc"], s=22,
                       color="tab:blue", alpha=0.75, label="configuration")
        if excluded.any():
            ax.scatter(scored.loc[excluded, column], scored.loc[excluded, "acc"], s=26, marker="x",
                       color="grey", label="degenerate or with failed seeds (never selected)")
        if pd.notna(oracle[column]):
            ax.scatter(oracle[column], oracle["acc"], marker="*", s=160, color="gold",
                       edgecolor="black", linewidth=0.6, zorder=3, label="oracle (best ACC)")
        picked = chosen["selected_config_id"].get(criterion) if criterion in chosen.index else None
        if pd.notna(picked):  # nothing selected reads as None or NaN, depending on the pandas version
            row = scored[scored["config_id"] == picked].iloc[0]
            ax.scatter(row[column], row["acc"], s=120, facecolor="none", edgecolor="tab:red",
                       linewidth=1.8, zorder=4, label="selected")
        _name_points(ax, scored[~excluded], column, preference(scored, criterion))
        direction = "lower" if CRITERIA[criterion].lower_is_better else "higher"
        ax.set_title(_panel_title(criterion, chosen.loc[criterion] if criterion in chosen.index else None))
        ax.set_xlabel(f"{AXIS_LABELS.get(criterion, criterion)}\n({direction} preferred)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean ACC")
    legend = {label: handle for ax in axes for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(legend.values(), legend.keys(), loc="outside lower center", ncols=len(legend), frameon=False)
    fig.suptitle(f"{name}: label-free scores against ACC ({len(configs)} configurations, mean over seeds)",
                 fontsize=10)
    return fig


def _name_points(ax, configs: pd.DataFrame, column: str, preferred: pd.Series) -> None:
    """Label the configurations a reader asks about: the best by ACC and the criterion's favourites."""
    named = set(configs.nlargest(NAMED_POINTS // 2, "acc").index)
    named |= set(preferred.reindex(configs.index).dropna().nsmallest(NAMED_POINTS // 2).index)
    for index in named:
        row = configs.loc[index]
        ax.annotate(row["config"], (row[column], row["acc"]), fontsize=5, alpha=0.8,
                    xytext=(3, 2), textcoords="offset points")


def _panel_title(criterion: str, chosen: pd.Series | None) -> str:
    """'mdl: ρ = +0.97, regret 0.000' (ACC) with whatever of the two is defined."""
    if chosen is None:
        return criterion
    parts = [f"ρ = {chosen['spearman']:+.2f}"] if pd.notna(chosen["spearman"]) else []
    parts += [f"regret {chosen['regret']:.3f}"] if pd.notna(chosen["regret"]) else []
    return f"{criterion}: {', '.join(parts)}" if parts else criterion


def preference_table(configs: pd.DataFrame, criteria: tuple[str, ...]) -> pd.DataFrame:
    """Configurations with mean ACC and each criterion's rank within its dataset (1 = preferred)."""
    table = configs[["data.name", "config", "seeds", "seeds_failed", "acc", "acc_std"]].copy()
    for _, group in configs.groupby("data.name"):
        for criterion in criteria:
            table.loc[group.index, f"rank {criterion}"] = preference(group, criterion).rank(method="min")
    return table.sort_values(["data.name", "acc"], ascending=[True, False]).reset_index(drop=True)
