"""Label-free model selection: score every finished trial without labels, pick a configuration per
dataset by each criterion, and measure what that pick loses against a label oracle.

Criteria (config-level value = mean over the configuration's seeds, lower preferred unless noted):
    mdl             MDL cost of the final clustered embedding, bits (raydc.evaluation.mdl)
    vi              mean pairwise variation of information (nats) between the seeds' final labels
    reconstruction  final reconstruction loss of the autoencoder
    silhouette      silhouette of the final embedding on predicted labels (higher preferred; the
                    BRB paper, App. H.11, shows it can prefer worse clusterings)
    ch              Calinski–Harabasz in the trial's own embedding (higher preferred); like every index in the
                    trial's own embedding it favours embeddings squeezed around their own partition
    db              Davies–Bouldin in the trial's own embedding; same bias as ch
    agreement       mean NMI with every other trial's partition of the dataset (higher preferred;
                    raydc.selection.consensus): misleads when most trials share one failure
    cross_ch        mean rank of the partition's Calinski–Harabasz in every other trial's embedding (ACE's
                    idea; raydc.selection.consensus): misleads when most embeddings are poor
    a+b[+c]         rank average: mean over the named criteria of each configuration's rank among the
                    configurations every named criterion scores

A configuration whose final clusterings are degenerate (on average fewer than two effective clusters,
exp H(labels) < 2, e.g. everything collapsed into one cluster) is never selected: a collapsed
clustering is perfectly reproducible (VI = 0) without describing anything.

Nor is a configuration with failed seeds (``seeds_failed``: trials whose loss diverged): its scores and ACC come
from the seeds that survived, which flatter it. The oracle is the best configuration without failed seeds
where there is one. Trials stopped early or crashed are neither scored nor counted as failed.

For each criterion: regret = oracle ACC − ACC of the selected configuration (mean over seeds), and
spearman = rank correlation, across the configurations the criterion scores, between its preference and
mean ACC (+1 = it orders them exactly as ACC does).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import spearmanr

from raydc.selection.consensus import agreement, cross_rank, own_indices, sample_index
from raydc.evaluation.mdl import mdl_cost
from raydc.evaluation.metrics import variation_of_information
from raydc.tables.results import configuration_labels, load_trials
from raydc.tables.store import ASSIGNMENTS_DIR, ResultStore, scores_schema, selection_schema, write_table

SCORES_FILE = "scores.parquet"
SELECTION_FILE = "selection.parquet"


@dataclass(frozen=True)
class Criterion:
    column: str
    lower_is_better: bool = True


CRITERIA = {
    "mdl": Criterion("mdl_bits"),
    "vi": Criterion("vi"),
    "reconstruction": Criterion("loss_reconstruction"),
    "silhouette": Criterion("silhouette", lower_is_better=False),
    "ch": Criterion("calinski_harabasz", lower_is_better=False),
    "db": Criterion("davies_bouldin"),
    "agreement": Criterion("agreement", lower_is_better=False),
    "cross_ch": Criterion("cross_ch"),
}
DEFAULT_CRITERION = "agreement"  # the one criterion every study is judged by first (benchmarks/RESULTS.md)
DEFAULT_SELECTION = (DEFAULT_CRITERION, "mdl", "vi", "reconstruction", "silhouette", "ch", "db", "cross_ch", "mdl+vi",
                     "agreement+vi")
SCORE_COLUMNS = [c.column for c in CRITERIA.values()]
LABEL_METRICS = ("acc", "nmi", "ari")
# Fewer effective clusters than this and a clustering says nothing about the data.
MIN_EFFECTIVE_CLUSTERS = 2.0


def effective_clusters(labels: np.ndarray) -> float:
    """exp of the entropy of the cluster sizes: k for k equal clusters, ≈ 1 when one cluster holds almost all."""
    shares = np.unique(labels, return_counts=True)[1] / len(labels)
    return float(np.exp(-(shares * np.log(shares)).sum()))


def vi_stability(labelings: list[np.ndarray]) -> float:
    """Mean pairwise variation of information (nats) between clusterings of the same samples; NaN if < 2."""
    pairs = list(itertools.combinations(labelings, 2))
    if not pairs:
        return float("nan")
    return float(np.mean([variation_of_information(a, b) for a, b in pairs]))


def trial_scores(study_dir: Path | str) -> pd.DataFrame:
    """One row per finished trial: ids, dataset, seed, label metrics and every label-free score."""
    trials = load_trials(study_dir)
    store = ResultStore(study_dir)
    labels: dict[str, np.ndarray] = {}
    sampled: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # trial → (embedding, labels) on the fixed subsample
    own: dict[str, dict[str, float]] = {}
    for tid in trials["trial_id"]:
        if (store.root / ASSIGNMENTS_DIR / f"{tid}.npz").exists():
            saved = store.load_assignments(tid)
            labels[tid] = saved["labels"]
            pick = sample_index(len(saved["labels"]))
            sampled[tid] = saved["embedding"][pick], saved["labels"][pick]
            own[tid] = {"mdl_bits": mdl_cost(saved["embedding"], saved["labels"]),
                        "effective_clusters": effective_clusters(saved["labels"]),
                        **own_indices(saved["embedding"], saved["labels"])}
    for column in ("mdl_bits", "effective_clusters", "calinski_harabasz", "davies_bouldin"):
        trials[column] = [own.get(tid, {}).get(column, np.nan) for tid in trials["trial_id"]]
    vi = {cid: vi_stability([labels[t] for t in group["trial_id"] if t in labels])
          for cid, group in trials.groupby("config_id")}
    trials["vi"] = trials["config_id"].map(vi).astype(float)
    trials["agreement"], trials["cross_ch"] = np.nan, np.nan
    for _, group in trials.groupby("data.name"):
        tids = [t for t in group["trial_id"] if t in sampled]
        if len(tids) < 2:
            continue
        embeddings, partitions = [sampled[t][0] for t in tids], [sampled[t][1] for t in tids]
        judges = np.array([own[t]["effective_clusters"] >= MIN_EFFECTIVE_CLUSTERS for t in tids])
        where = trials["trial_id"].isin(tids)
        order = trials.loc[where, "trial_id"].map({t: i for i, t in enumerate(tids)}).to_numpy()
        trials.loc[where, "agreement"] = agreement(partitions, judges)[order]
        trials.loc[where, "cross_ch"] = cross_rank(embeddings, partitions, judges)[order]
    trials["config"] = trials["config_id"].map(configuration_labels(trials)) if len(trials) else ""
    return trials[scores_schema().names]


def failed_seeds(study_dir: Path | str) -> pd.Series:
    """config_id → how many of the configuration's trials failed (diverged)."""
    trials = load_trials(study_dir, finished_only=False)
    return trials[trials["status"] == "failed"].groupby("config_id").size()


def configuration_scores(scores: pd.DataFrame, failed: pd.Series) -> pd.DataFrame:
    """One row per (dataset, configuration): seed count, mean and std ACC, mean label metrics and scores, and
    ``seeds_failed`` from ``failed`` (config_id → count, as failed_seeds gives)."""
    groups = scores.groupby(["data.name", "config_id", "config"], sort=False)
    means = groups[[*LABEL_METRICS, *SCORE_COLUMNS, "effective_clusters"]].mean()
    means["acc_std"] = groups["acc"].std()
    means["seeds"] = groups.size()
    configs = means.reset_index()
    configs["seeds_failed"] = configs["config_id"].map(failed).fillna(0).astype(int)
    return configs


def criterion_parts(name: str) -> list[str]:
    """The single criteria a (possibly combined) criterion name is made of; ValueError if one is unknown."""
    parts = name.split("+")
    unknown = [p for p in parts if p not in CRITERIA]
    if unknown:
        raise ValueError(f"unknown criterion {unknown[0]!r}; known: {', '.join(CRITERIA)} (combine with +)")
    return parts


def preference(configs: pd.DataFrame, name: str) -> pd.Series:
    """A criterion's value per configuration, oriented so that lower is preferred; NaN where unavailable
    or where the configuration is never selected (degenerate, or with failed seeds).

    'a+b' is the mean of the configurations' ranks (1 = most preferred) under a and b, ranked among the
    configurations that every part scores.
    """
    parts = criterion_parts(name)
    if len(parts) == 1:
        criterion = CRITERIA[name]
        values = configs[criterion.column].astype(float).where(~never_selected(configs))
        return values if criterion.lower_is_better else -values
    # A configuration one part cannot score would still push the others down that part's ranking.
    scored = pd.concat([preference(configs, p) for p in parts], axis=1).dropna()
    return scored.rank(method="average").mean(axis=1).reindex(configs.index)


def degenerate(configs: pd.DataFrame) -> pd.Series:
    """Configurations with fewer than MIN_EFFECTIVE_CLUSTERS effective clusters (unknown counts as fine)."""
    return configs["effective_clusters"] < MIN_EFFECTIVE_CLUSTERS


def never_selected(configs: pd.DataFrame) -> pd.Series:
    """Configurations no criterion may select: degenerate ones and those with failed seeds."""
    return degenerate(configs) | (configs["seeds_failed"] > 0)


def label_oracle(configs: pd.DataFrame) -> pd.Series:
    """The configuration with the best mean ACC among those without failed seeds (among all if every one has)."""
    complete = configs[configs["seeds_failed"] == 0]
    candidates = complete if len(complete) else configs
    return candidates.loc[candidates["acc"].idxmax()]


def _spearman(preferred: pd.Series, acc: pd.Series) -> float:
    if len(preferred) < 3 or preferred.nunique() < 2 or acc.nunique() < 2:
        return float("nan")
    return float(spearmanr(-preferred, acc).statistic)


def select(configs: pd.DataFrame, criteria: tuple[str, ...] = DEFAULT_SELECTION) -> pd.DataFrame:
    """One row per (dataset, criterion): the selected configuration, its ACC, the oracle's, regret, spearman."""
    for name in criteria:
        criterion_parts(name)
    rows = []
    for dataset, group in configs.groupby("data.name", sort=True):
        oracle = label_oracle(group)
        for name in criteria:
            preferred = preference(group, name).dropna()
            row = {"data.name": dataset, "criterion": name, "default": name == DEFAULT_CRITERION,
                   "configs_scored": len(preferred),
                   "oracle_config_id": oracle["config_id"], "oracle_config": oracle["config"],
                   "oracle_acc": oracle["acc"], "selected_config_id": None, "selected_config": None,
                   "selected_acc": np.nan, "regret": np.nan, "spearman": np.nan}
            if len(preferred):
                chosen = group.loc[preferred.idxmin()]
                row.update(selected_config_id=chosen["config_id"], selected_config=chosen["config"],
                           selected_acc=chosen["acc"], regret=oracle["acc"] - chosen["acc"],
                           spearman=_spearman(preferred, group.loc[preferred.index, "acc"]))
            rows.append(row)
    # Fixed columns even when there is nothing to select from, so callers and Parquet see one shape.
    return pd.DataFrame(rows, columns=selection_schema().names)


def write_tables(study_dir: Path | str, scores: pd.DataFrame, selection: pd.DataFrame) -> None:
    """scores.parquet and selection.parquet beside the study's tables, each written atomically with its
    fixed schema (raydc.tables.store), so an all-null column keeps its type."""
    root = Path(study_dir)
    write_table(pa.Table.from_pandas(scores, schema=scores_schema(), preserve_index=False), root / SCORES_FILE)
    write_table(pa.Table.from_pandas(selection, schema=selection_schema(), preserve_index=False),
                root / SELECTION_FILE)


def run_selection(study_dir: Path | str, criteria: tuple[str, ...] = DEFAULT_SELECTION
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Score trials, aggregate per configuration and select: returns (scores, configurations, selection)."""
    for name in criteria:
        criterion_parts(name)
    scores = trial_scores(study_dir)
    configs = configuration_scores(scores, failed_seeds(study_dir))
    return scores, configs, select(configs, criteria)
