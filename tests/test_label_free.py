"""Labels feed evaluation columns only: what a label-free search or selection reads is the same whatever the labels."""
import dataclasses

import numpy as np
import pytest
import torch
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score

import raydc
from raydc.evaluation.metrics import stacked_calinski_harabasz, stacked_davies_bouldin
from raydc.engine.records import FINAL_METRICS, LABEL_FREE_METRICS
from raydc.selection.select import run_selection
from raydc.config.identity import trial_id
from raydc.tables.store import ResultStore, epoch_row, trial_row
from raydc.study.spec import parse_study

LABEL_COLUMNS = {"acc", "nmi", "ari", "intra_cd", "inter_cd", "nmi_match", "kmeans_acc", "kmeans_nmi", "kmeans_ari"}


def test_stacked_indices_match_scikit_learn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 400, 6)).astype(np.float32)
    labels = rng.integers(0, 5, (3, 400))
    labels[1] %= 2  # clusters 2..4 empty in this member
    ch = stacked_calinski_harabasz(torch.from_numpy(x), torch.from_numpy(labels), 5)
    db = stacked_davies_bouldin(torch.from_numpy(x), torch.from_numpy(labels), 5)
    for m in range(3):
        assert ch[m].item() == pytest.approx(calinski_harabasz_score(x[m], labels[m]), rel=1e-5)
        assert db[m].item() == pytest.approx(davies_bouldin_score(x[m], labels[m]), rel=1e-5)
    labels[2] = 0
    assert torch.isnan(stacked_calinski_harabasz(torch.from_numpy(x), torch.from_numpy(labels), 5)[2])


def test_a_study_may_search_by_a_label_free_metric_named_as_in_select():
    base = {"name": "s", "dataset": "digits", "search": {"kind": "optuna", "n": 2, "space": {"train.lr": [1e-3, 1e-2]}}}
    assert parse_study({**base, "metric": "ch", "mode": "max"}).spec.metric == "calinski_harabasz"
    assert parse_study({**base, "metric": "davies_bouldin", "mode": "min"}).spec.metric == "davies_bouldin"
    assert set(LABEL_FREE_METRICS) <= set(FINAL_METRICS)


def test_permuted_labels_change_label_columns_only(tmp_path, digits):
    """Two studies of the same trials, one on labels permuted at random: every label-free column of every epoch,
    the assignments, and every label-free score and pick of raydc select are identical."""
    permuted = dataclasses.replace(digits, y=digits.y[torch.randperm(digits.n, generator=torch.Generator().manual_seed(1))])
    studies = {}
    for name, data in (("true", digits), ("permuted", permuted)):
        store = ResultStore(tmp_path / name)
        for lr in (1e-3, 1e-2):
            for seed in (0, 1):
                config = raydc.make_config({"seed": seed, "net": {"hidden": [64, 32]}, "pretrain": {"epochs": 5},
                                            "train": {"epochs": 3, "lr": lr}})
                tid, epochs = trial_id(config), []
                record = raydc.fit(config, lambda r, tid=tid: epochs.append(epoch_row(tid, r)), dataset=data)
                store.save_assignments(tid, record)
                store.append([trial_row(tid, record)], epochs)
        studies[name] = store
    true, shuffled = (studies[n].epochs().to_pandas() for n in ("true", "permuted"))
    free = [c for c in true.columns if c not in LABEL_COLUMNS and not c.endswith("time_s") and c != "elapsed_s"]
    assert true[free].equals(shuffled[free])
    assert not true["acc"].equals(shuffled["acc"])  # the labels did change what label columns say
    for tid in true["trial_id"].unique():
        assert np.array_equal(studies["true"].load_assignments(tid)["labels"],
                              studies["permuted"].load_assignments(tid)["labels"])
    scores = {n: run_selection(studies[n].root) for n in studies}
    label_free = ["mdl_bits", "vi", "silhouette", "calinski_harabasz", "davies_bouldin", "agreement", "cross_ch"]
    assert scores["true"][0][label_free].equals(scores["permuted"][0][label_free])
    picks = {n: scores[n][2].set_index("criterion")["selected_config_id"] for n in scores}
    assert picks["true"].equals(picks["permuted"])


def test_a_population_scores_each_member_against_the_other_seeds_of_its_configuration(digits, tmp_path):
    """vi: each member's mean variation of information with the other seeds of its configuration, at every
    evaluation; mdl_bits: raydc.evaluation.mdl's cost of the clustered embedding, as raydc select computes it."""
    from raydc.engine.population import fit_population
    from raydc.evaluation.metrics import variation_of_information
    from raydc.evaluation.mdl import mdl_cost

    small = {"data": {"resize": None}, "net": {"hidden": [64, 32]}, "pretrain": {"epochs": 3},
             "train": {"epochs": 3}, "eval": {"subsample": 300}}
    configs = [raydc.make_config({**small, "seed": seed}) for seed in (0, 1, 2)]
    configs.append(raydc.make_config({**small, "seed": 0, "train": {"epochs": 3, "lr": 1e-2}}))
    finals = {}
    results = fit_population(configs, lambda i, r: finals.__setitem__(i, r) if r.phase == "cluster" else None,
                             dataset=digits, pretrain_cache=tmp_path)
    labels = [r.labels for r in results]
    for row in range(3):
        others = [variation_of_information(labels[row], labels[o]) for o in range(3) if o != row]
        assert finals[row].vi == pytest.approx(np.mean(others), rel=1e-9)
        assert results[row].final["vi"] == finals[row].vi
    assert np.isnan(finals[3].vi)  # no other seed of its configuration in the population
    for row, result in enumerate(results):
        assert result.final["mdl_bits"] == pytest.approx(mdl_cost(result.embedding, result.labels), rel=1e-6)
