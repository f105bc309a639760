"""Label-free model selection: VI stability, the MDL cost, and selection with regret on a study directory."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.cluster import KMeans

from raydc.cli import main
from raydc.config import flatten, make_config
from raydc.evaluation.mdl import description_length, mdl_cost
from raydc.report.selection import plot_selection_scatter
from raydc.selection.select import (DEFAULT_CRITERION, DEFAULT_SELECTION, SCORES_FILE, SELECTION_FILE, configuration_scores,
                          effective_clusters, preference, run_selection, select, trial_scores, vi_stability)
from raydc.config.identity import trial_id
from raydc.tables.store import ResultStore, scores_schema, selection_schema


def _mixture(n=1200, k=4, d=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    return rng.normal(0, 8, (k, d))[y] + rng.normal(size=(n, d)), y


# --- VI stability ---------------------------------------------------------------------------------------------

def test_vi_stability_of_identical_and_relabelled_clusterings_is_zero():
    labels = np.random.default_rng(0).integers(0, 6, 500)
    assert vi_stability([labels, labels.copy(), (labels + 3) % 6]) == pytest.approx(0.0, abs=1e-12)


def test_vi_stability_of_independent_uniform_clusterings_is_two_log_k():
    rng = np.random.default_rng(1)
    k = 8
    assert vi_stability([rng.integers(0, k, 200_000) for _ in range(3)]) == pytest.approx(2 * math.log(k), rel=0.01)


def test_vi_stability_needs_two_clusterings():
    assert math.isnan(vi_stability([np.zeros(10, int)]))


def test_effective_clusters():
    assert effective_clusters(np.repeat(np.arange(4), 25)) == pytest.approx(4.0)
    assert effective_clusters(np.r_[np.zeros(998, int), 1, 2]) < 1.1


# --- MDL --------------------------------------------------------------------------------------------------------

def test_mdl_prefers_the_true_partition_to_a_wrong_number_of_clusters():
    x, y = _mixture()
    true_cost = mdl_cost(x, y)
    for k in (2, 3, 5, 6):
        wrong = KMeans(k, n_init=4, random_state=0).fit_predict(x)
        assert true_cost < mdl_cost(x, wrong), k


def test_mdl_prefers_the_true_partition_to_a_shuffled_one():
    x, y = _mixture()
    assert mdl_cost(x, y) < mdl_cost(x, np.random.default_rng(2).permutation(y))


def test_mdl_is_unchanged_by_rescaling_and_shifting_the_embedding():
    x, y = _mixture()
    scales = np.array([1e-3, 1.0, 50.0, 7.0, 1e4])
    assert mdl_cost(x * 1000.0, y) == pytest.approx(mdl_cost(x, y), rel=1e-9)
    assert mdl_cost(x * scales - 3.0, y) == pytest.approx(mdl_cost(x, y), rel=1e-9)


def test_mdl_parts_follow_the_documented_formula():
    x, y = _mixture(n=400, k=3, d=2)
    parts = description_length(x, y)
    n, k, d = 400, 3, 2
    sizes = np.bincount(y)
    assert parts.clusters == pytest.approx(math.log2(n))
    assert parts.parameters == pytest.approx(0.5 * math.log2(n) * (2 * k * d + k - 1))
    assert parts.assignments == pytest.approx(-(sizes * np.log2(sizes / n)).sum())
    z = (x - x.mean(0)) / x.std(0)
    var = np.stack([z[y == c].var(0) for c in range(k)])
    expected = sum(sizes[c] * (0.5 * np.log2(2 * math.pi * math.e * var[c]) - math.log2(0.01)).sum() for c in range(k))
    assert parts.data == pytest.approx(expected)
    assert parts.total == pytest.approx(parts.clusters + parts.parameters + parts.assignments + parts.data)


def test_mdl_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="n labels"):
        mdl_cost(np.zeros((5, 2)), np.zeros(4, int))


# --- selection on a study directory ----------------------------------------------------------------------------

SAMPLES, CLUSTERS = 600, 4
# dataset → alpha → (mean ACC written to the table, share of labels kept, silhouette, reconstruction loss)
DESIGN = {
    "digits": {0.8: (0.90, 1.0, 0.5, 0.30), 0.6: (0.70, 0.7, 0.9, 0.20), 0.9: (0.30, 0.0, 0.1, 0.10)},
    "optdigits": {0.8: (0.40, 0.0, 0.5, 0.30), 0.6: (0.60, 0.7, 0.9, 0.20), 0.9: (0.80, 1.0, 0.1, 0.10)},
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Three configurations (α) × three seeds per dataset whose label-free quality follows DESIGN."""
    root = tmp_path_factory.mktemp("selection")
    store = ResultStore(root)
    rng = np.random.default_rng(0)
    y = rng.integers(0, CLUSTERS, SAMPLES)
    centres = rng.normal(0, 6, (CLUSTERS, CLUSTERS))
    rows = []
    for dataset, configs in DESIGN.items():
        for alpha, (acc, kept, silhouette, reconstruction) in configs.items():
            for seed in range(3):
                config = make_config({"seed": seed, "data": {"name": dataset}, "brb": {"alpha": alpha}})
                tid = trial_id(config)
                keep = rng.random(SAMPLES) < kept
                labels = rng.permutation(CLUSTERS)[np.where(keep, y, rng.integers(0, CLUSTERS, SAMPLES))]
                embedding = centres[y] + rng.normal(size=(SAMPLES, CLUSTERS))
                rows.append({"trial_id": tid, "status": "finished", **flatten(config), "acc": acc + 0.01 * (seed - 1),
                             "silhouette": silhouette, "loss_reconstruction": reconstruction})
                folder = root / "assignments"
                folder.mkdir(exist_ok=True)
                np.savez_compressed(folder / f"{tid}.npz", labels=labels.astype(np.int32),
                                    embedding=(embedding * (seed + 1)).astype(np.float16))
    for seed in range(3):  # collapsed into one cluster: perfectly reproducible, but never worth selecting
        config = make_config({"seed": seed, "data": {"name": "digits"}, "brb": {"alpha": 0.5}})
        rows.append({"trial_id": trial_id(config), "status": "finished", **flatten(config), "acc": 0.1})
        np.savez_compressed(root / "assignments" / f"{trial_id(config)}.npz", labels=np.zeros(SAMPLES, np.int32),
                            embedding=rng.normal(size=(SAMPLES, CLUSTERS)).astype(np.float16))
    failed = make_config({"seed": 0, "data": {"name": "digits"}, "brb": {"alpha": 0.7}})
    rows.append({"trial_id": trial_id(failed), "status": "failed", **flatten(failed), "acc": 0.99})
    store.append(rows)
    return root


def _row(selection: pd.DataFrame, dataset: str, criterion: str) -> pd.Series:
    return selection[(selection["data.name"] == dataset) & (selection["criterion"] == criterion)].iloc[0]


def test_selection_picks_the_intended_configuration_with_the_right_regret(study):
    scores, configs, selection = run_selection(study, ("mdl", "vi", "mdl+vi", "silhouette", "reconstruction"))
    assert len(scores) == 21 and scores["trial_id"].is_unique  # the failed trial is left out
    assert configs.groupby("data.name").size().to_dict() == {"digits": 4, "optdigits": 3}
    assert configs.set_index("config").loc["α=0.5", "vi"] == 0.0  # collapsed, hence ignored
    for criterion in ("mdl", "vi", "mdl+vi"):
        row = _row(selection, "digits", criterion)
        assert row["selected_config"] == "α=0.8" and row["regret"] == pytest.approx(0.0)
        assert row["spearman"] == pytest.approx(1.0)
        assert _row(selection, "optdigits", criterion)["selected_config"] == "α=0.9"
    silhouette = _row(selection, "digits", "silhouette")
    assert silhouette["selected_config"] == "α=0.6"
    assert silhouette["selected_acc"] == pytest.approx(0.70) and silhouette["oracle_acc"] == pytest.approx(0.90)
    assert silhouette["regret"] == pytest.approx(0.20)
    assert silhouette["spearman"] == pytest.approx(0.5)
    assert _row(selection, "digits", "reconstruction")["regret"] == pytest.approx(0.60)
    assert _row(selection, "optdigits", "reconstruction")["regret"] == pytest.approx(0.0)


def test_vi_is_attached_to_every_seed_of_a_configuration(study):
    scores, _, _ = run_selection(study, ("vi",))
    per_config = scores.groupby("config_id")["vi"].agg(["min", "max"])
    assert (per_config["min"] == per_config["max"]).all()
    kept_all = scores[(scores["data.name"] == "digits") & (scores["config"] == "α=0.8")]
    assert kept_all["vi"].iloc[0] == pytest.approx(0.0, abs=1e-12)  # same partition, relabelled per seed


def test_select_command_writes_parquet_and_prints_the_table(study, capsys):
    assert main(["select", str(study), "--criteria", "mdl", "vi", "silhouette", "mdl+vi"]) == 0
    printed = capsys.readouterr().out
    assert "| digits | silhouette | α=0.6 | 0.7000 | 0.9000 | 0.2000 |" in printed
    selection = pq.read_table(study / SELECTION_FILE).to_pandas()
    assert set(selection["criterion"]) == set(DEFAULT_SELECTION) and len(selection) == 2 * len(DEFAULT_SELECTION)
    assert selection.loc[selection["default"], "criterion"].tolist() == [DEFAULT_CRITERION] * 2
    assert main(["select", str(study), "--criteria", "vi+ch"]) == 0  # adds rows to the standard ones
    assert "| digits | agreement (default) |" in capsys.readouterr().out
    assert set(pq.read_table(study / SELECTION_FILE).column("criterion").to_pylist()) == {*DEFAULT_SELECTION, "vi+ch"}
    assert len(pq.read_table(study / SCORES_FILE)) == 21
    assert not list(study.glob(".*.tmp"))


def test_select_command_rejects_an_unknown_criterion_and_a_missing_study(study, tmp_path, capsys):
    assert main(["select", str(study), "--criteria", "mdl+accuracy"]) == 2
    assert "unknown criterion 'accuracy'" in capsys.readouterr().err
    assert main(["select", str(tmp_path / "nowhere")]) == 2
    assert "no trials.parquet" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def _unscored_study(root, status="finished"):
    """Two seeds of one configuration without assignments or final losses: nothing a criterion can score."""
    rows = []
    for seed in (0, 1):
        config = make_config({"seed": seed, "data": {"name": "digits"}})
        rows.append({"trial_id": trial_id(config), "status": status, **flatten(config), "acc": 0.5})
    ResultStore(root).append(rows)
    return root


def test_select_command_rejects_a_study_without_finished_trials(tmp_path, capsys):
    study = _unscored_study(tmp_path, status="failed")
    assert main(["select", str(study)]) == 2
    assert "no finished trials" in capsys.readouterr().err
    assert not (study / SCORES_FILE).exists() and not (study / SELECTION_FILE).exists()


def test_select_on_nothing_returns_the_usual_columns(tmp_path):
    scores = trial_scores(_unscored_study(tmp_path, status="failed"))
    assert scores.empty and list(scores.columns) == scores_schema().names
    selection = select(configuration_scores(scores, pd.Series(dtype=int)))
    assert selection.empty and list(selection.columns) == selection_schema().names


def test_select_writes_the_declared_schemas(study, tmp_path):
    assert main(["select", str(study)]) == 0
    assert pq.read_schema(study / SCORES_FILE).remove_metadata() == scores_schema()
    assert pq.read_schema(study / SELECTION_FILE).remove_metadata() == selection_schema()
    unscored = _unscored_study(tmp_path)  # every selected_* field is null: still typed, not null-typed
    assert main(["select", str(unscored)]) == 0
    selection = pq.read_table(unscored / SELECTION_FILE)
    assert selection.schema.remove_metadata() == selection_schema()
    assert selection["selected_config"].null_count == len(selection) > 0


# --- selection rules on hand-made configuration rows --------------------------------------------------------------

def _configs(rows, failed: dict[str, int] | None = None) -> pd.DataFrame:
    """configuration_scores rows on one dataset from (name, ACC, MDL bits, VI, effective clusters) and
    name → failed seeds."""
    frame = pd.DataFrame(rows, columns=["config", "acc", "mdl_bits", "vi", "effective_clusters"])
    return frame.assign(**{"data.name": "digits", "config_id": frame["config"], "loss_reconstruction": np.nan,
                           "silhouette": np.nan, "seeds": 3,
                           "seeds_failed": frame["config"].map(failed or {}).fillna(0).astype(int)})


def test_scatter_draws_a_criterion_that_selected_nothing():
    """VI scores only the collapsed configuration, so it selects nothing: the figure still draws."""
    configs = _configs([("collapsed", 0.3, 100.0, 0.0, 1.0), ("fine", 0.7, 200.0, np.nan, 4.0)])
    selection = select(configs, ("mdl", "vi"))
    assert selection.set_index("criterion")["selected_config_id"].isna().to_dict() == {"mdl": False, "vi": True}
    figure = plot_selection_scatter(configs, selection)
    assert [ax.get_title() for ax in figure.axes] == ["mdl: regret 0.000", "vi"]


def test_rank_average_ranks_only_configurations_every_part_scores():
    """Single-seed configurations have no VI: adding them must not reorder the MDL ranks of the others."""
    scored = [("B", 0.5, 10.0, 3.0, 4.0), ("C", 0.6, 40.0, 1.0, 4.0), ("D", 0.4, 50.0, 2.0, 4.0)]
    alone = preference(_configs(scored), "mdl+vi")
    with_unscored = preference(_configs(scored + [("A1", 0.3, 20.0, np.nan, 4.0), ("A2", 0.3, 30.0, np.nan, 4.0)]),
                               "mdl+vi")
    assert alone.tolist() == [2.0, 1.5, 2.5]
    assert with_unscored.iloc[:3].tolist() == alone.tolist() and with_unscored.iloc[3:].isna().all()


def test_a_configuration_with_failed_seeds_is_neither_selected_nor_the_oracle():
    """Two of 'risky's three seeds diverged; the survivor's ACC and MDL look best."""
    configs = _configs([("risky", 0.9, 100.0, 0.5, 4.0), ("steady", 0.7, 200.0, 1.0, 4.0)], failed={"risky": 2})
    row = select(configs, ("mdl",)).iloc[0]
    assert (row["selected_config"], row["oracle_config"], row["regret"]) == ("steady", "steady", 0.0)
    everything_failed = select(configs.assign(seeds_failed=1), ("mdl",)).iloc[0]
    assert everything_failed["oracle_config"] == "risky" and pd.isna(everything_failed["selected_config"])


def test_selection_counts_each_configurations_failed_seeds(tmp_path):
    """α=0.6 kept one of three seeds (two diverged); α=0.8 lost one seed to early stopping, which is no failure."""
    rows = []
    for alpha, seed, status in [(0.6, 0, "finished"), (0.6, 1, "failed"), (0.6, 2, "failed"),
                                (0.8, 0, "finished"), (0.8, 1, "finished"), (0.8, 2, "stopped")]:
        config = make_config({"seed": seed, "data": {"name": "digits"}, "brb": {"alpha": alpha}})
        rows.append({"trial_id": trial_id(config), "status": status, **flatten(config), "acc": 0.9 - alpha / 4,
                     "loss_reconstruction": alpha})
    ResultStore(tmp_path).append(rows)
    _, configs, selection = run_selection(tmp_path, ("reconstruction",))
    assert configs.set_index("config")[["seeds", "seeds_failed"]].to_dict("index") == {
        "α=0.6": {"seeds": 1, "seeds_failed": 2}, "α=0.8": {"seeds": 2, "seeds_failed": 0}}
    assert selection.iloc[0][["selected_config", "oracle_config"]].tolist() == ["α=0.8", "α=0.8"]
