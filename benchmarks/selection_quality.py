"""How well each label-free criterion of `raydc select` ranks the configurations of real studies, against labels.

Per dataset and criterion, over the configurations the criterion may select: Spearman ρ between its preference and
mean ACC and mean NMI, Kendall τ with mean ACC, regret (oracle ACC − ACC of its pick, in ACC points) and whether the
oracle is among its three preferred configurations; then each criterion's ρ with ACC averaged over datasets and its
worst regret. Reads finished studies (`raydc run studies/selection.yaml --out DIR` makes one), or runs that study
first with --run. Example:
    python benchmarks/selection_quality.py runs/selection
    python benchmarks/selection_quality.py runs/selection --run studies/selection.yaml
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr

from raydc.select import DEFAULT_CRITERION, DEFAULT_SELECTION, never_selected, preference, run_selection


def quality(configs: pd.DataFrame, criterion: str) -> dict[str, float]:
    """The figures of one criterion on one dataset's configurations."""
    preferred = preference(configs, criterion).dropna()
    eligible = configs[~never_selected(configs)]
    oracle = eligible["acc"].max() if len(eligible) else np.nan
    row = {"scored": len(preferred), "spearman_acc": np.nan, "spearman_nmi": np.nan, "kendall_acc": np.nan,
           "regret_pp": np.nan, "oracle_top3": False}
    if len(preferred) < 3:
        return row
    scored = configs.loc[preferred.index]
    row.update(spearman_acc=spearmanr(-preferred, scored["acc"]).statistic,
               spearman_nmi=spearmanr(-preferred, scored["nmi"]).statistic,
               kendall_acc=kendalltau(-preferred, scored["acc"]).statistic,
               regret_pp=100 * (oracle - scored.loc[preferred.idxmin(), "acc"]),
               oracle_top3=bool((scored.loc[preferred.nsmallest(3).index, "acc"] >= oracle - 1e-12).any()))
    return row


def table(study_dirs: list[Path], criteria: tuple[str, ...]) -> pd.DataFrame:
    rows = []
    for study in study_dirs:
        _, configs, _ = run_selection(study, criteria)
        for dataset, group in configs.groupby("data.name"):
            for criterion in criteria:
                rows.append({"study": study.name, "data.name": dataset, "criterion": criterion,
                             "configs": len(group), **quality(group, criterion)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="+", type=Path, help="finished study directories")
    parser.add_argument("--run", type=Path, help="run this study file into the (single) directory first")
    parser.add_argument("--criteria", nargs="+", default=list(DEFAULT_SELECTION))
    args = parser.parse_args()
    if args.run:
        command = [sys.executable, "-m", "raydc.cli", "run", str(args.run), "--out", str(args.studies[0])]
        if subprocess.run(command).returncode != 0:
            sys.exit("the study did not finish: figures would describe part of it")
    figures = table(args.studies, tuple(args.criteria))
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 500)
    print(figures.round(3).to_string(index=False))
    summary = figures.groupby("criterion", sort=False).agg(
        spearman_acc=("spearman_acc", "mean"), spearman_nmi=("spearman_nmi", "mean"),
        kendall_acc=("kendall_acc", "mean"), worst_regret_pp=("regret_pp", "max"),
        oracle_top3=("oracle_top3", "mean"))
    print(f"\nmean over {figures['data.name'].nunique()} dataset(s); default criterion: {DEFAULT_CRITERION}")
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
