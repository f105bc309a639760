"""How well each label-free criterion of `raydc select` ranks the configurations of real studies, against labels.

Per dataset and criterion, over the configurations the criterion may select: Spearman ρ between its preference and
mean ACC and mean NMI, Kendall τ with mean ACC, regret (oracle ACC − ACC of its pick, in ACC points) and whether the
oracle is among its three preferred configurations; then each criterion's ρ with ACC averaged over datasets and its
worst regret. Reads finished studies (`raydc run studies/selection.yaml --out DIR` makes one), or runs that study
first with --run. With --cost it measures instead what searching by a label-free metric adds to each evaluation
(the metrics a study reports to TPE and ASHA: silhouette, Calinski–Harabasz and Davies–Bouldin on the subsample, MDL on
every sample, VI between a configuration's seeds), against the whole evaluation and a real clustering epoch of a
configuration's seeds trained as one population. Examples:
    python benchmarks/selection_quality.py runs/selection
    python benchmarks/selection_quality.py runs/selection --run studies/selection.yaml
    python benchmarks/selection_quality.py --cost --n 5620 70000 --seeds 3
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau, spearmanr

from raydc.selection.select import DEFAULT_CRITERION, DEFAULT_SELECTION, never_selected, preference, run_selection

sys.path.insert(0, str(Path(__file__).parent))
from eval_time import population, seconds  # noqa: E402  (a sibling benchmark: the same synthetic stacks)


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


def search_metric_cost(args: argparse.Namespace) -> None:
    """Seconds per evaluation of the label-free search metrics, of the whole evaluation, and of a clustering epoch."""
    import torch

    from raydc.evaluation import metrics
    from raydc.evaluation.mdl import stacked_mdl_costs
    from raydc.evaluation.scoring import _rows, _sibling_vi, epoch_scores

    device = torch.device("cpu")
    siblings = ["config"] * args.seeds
    print(f"cpu ({torch.get_num_threads()} threads), torch {torch.__version__}; {args.seeds} seeds of one "
          f"configuration, k=10, d=10, subsample {args.subsample}; seconds per evaluation (median of 5)")
    print(f"{'n':>7} {'silhouette+ch+db':>17} {'mdl':>8} {'vi':>8} {'label-free':>11} {'evaluation':>11} {'share':>6}")
    for n in args.n:
        p = population(args.seeds, argparse.Namespace(n=n, k=10, dim=10, subsample=args.subsample), device)
        z_sub, labels_sub = _rows(p["z"], p["index"]), _rows(p["labels"], p["index"])
        geometry = seconds(lambda: (metrics.stacked_silhouettes(z_sub, labels_sub, 10, block_size=1 << 26),
                                    metrics.stacked_calinski_harabasz(z_sub, labels_sub, 10),
                                    metrics.stacked_davies_bouldin(z_sub, labels_sub, 10)), device, 5)
        mdl = seconds(lambda: stacked_mdl_costs(p["z"], p["labels"], 10), device, 5)
        vi = seconds(lambda: _sibling_vi(p["labels"], 10, siblings), device, 5)
        whole = seconds(lambda: epoch_scores(p["classes"], p["n_classes"], p["z"], p["labels"], 10, p["index"],
                                             prev_labels=p["prev"], centers=p["centers"], siblings=siblings),
                        device, 5)
        free = geometry + mdl + vi
        print(f"{n:>7} {geometry:>17.4f} {mdl:>8.4f} {vi:>8.4f} {free:>11.4f} {whole:>11.4f} {free / whole:>6.0%}")
    epoch_time(args.seeds)


def epoch_time(seeds: int) -> None:
    """Median seconds of a clustering epoch (training and evaluation) of a configuration's seeds on digits."""
    import statistics

    from raydc.engine.population import fit_population

    times = []
    configs = [{"seed": seed, "data": {"name": "digits"}, "pretrain": {"epochs": 20}, "train": {"epochs": 10},
                "device": "cpu"} for seed in range(seeds)]
    fit_population(configs, lambda row, record: times.append(record.time_s) if record.phase == "cluster" and row == 0
                   else None)
    print(f"a clustering epoch of {seeds} seeds on digits (n=1797, evaluated every epoch): "
          f"{statistics.median(times):.4f} s (median of {len(times)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("studies", nargs="*", type=Path, help="finished study directories")
    parser.add_argument("--run", type=Path, help="run this study file into the (single) directory first")
    parser.add_argument("--criteria", nargs="+", default=list(DEFAULT_SELECTION))
    parser.add_argument("--cost", action="store_true", help="measure the label-free search metrics' cost instead")
    parser.add_argument("--n", type=int, nargs="+", default=[1797, 5620, 70000], help="--cost: dataset sizes")
    parser.add_argument("--seeds", type=int, default=3, help="--cost: seeds of the configuration")
    parser.add_argument("--subsample", type=int, default=1000, help="--cost: eval.subsample")
    args = parser.parse_args()
    if args.cost:
        search_metric_cost(args)
        return
    if not args.studies:
        parser.error("name one or more study directories (or --cost)")
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
