"""Study files: validation before anything starts (exit 2 naming the field), planning, and every shipped study."""
from pathlib import Path

import pytest
import yaml

from raydc.cli import EXIT_INVALID, main
from raydc.config import make_config
from raydc.config.identity import trial_id
from raydc.study.spec import parse_study

STUDIES = sorted((Path(__file__).resolve().parents[1] / "studies").glob("*.yaml"))
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OFFLINE_DATASETS = {"digits", "optdigits", "usps", "mnist-test"}
VALID = {"name": "tiny", "dataset": "digits",
         "search": {"kind": "grid", "space": {"train.algorithm": ["dec", "idec"]}, "seeds": [0]}}


def _with(**changes):
    study = yaml.safe_load(yaml.safe_dump(VALID))
    for dotted, value in changes.items():
        *groups, leaf = dotted.split("__")
        node = study
        for g in groups:
            node = node.setdefault(g, {})
        node[leaf] = value
    return study


BAD_STUDIES = [
    ("unknown top-level key", _with(epochs=3), "epochs: unknown field"),
    ("unknown search key", _with(search__spaces={}), "search.spaces: unknown field"),
    ("unknown resources key", _with(resources__gpus=1), "resources.gpus: unknown field"),
    ("unknown space field", _with(search__space={"brb.alfa": [0.8]}), "search.space.brb.alfa"),
    ("space names a group", _with(search__space={"brb": [0.8]}), "search.space.brb"),
    ("unknown base field", _with(base={"train": {"lrr": 0.1}}), "base.train.lrr: unknown field"),
    ("base value out of range", _with(base={"train": {"epochs": 0}}), "base.train.epochs"),
    ("space value out of range", _with(search__space={"brb.alpha": [0.5, 1.5]}), "search.space.brb.alpha"),
    ("space value of the wrong type", _with(search__space={"train.algorithm": ["dec", "kmeans"]}),
     "search.space.train.algorithm"),
    ("alpha without resets", _with(base={"brb": {"mode": "recluster"}}, search__space={"brb.alpha": [0.7, 0.8]}),
     "search.space.brb.alpha: cannot affect any trial"),
    ("interval of the baseline", _with(base={"brb": {"mode": "baseline"}}, search__space={"brb.interval": [5, 10]}),
     "search.space.brb.interval: cannot affect any trial"),
    ("cluster weight of DEC", _with(search__space={"train.algorithm": ["dec"], "train.cluster_weight": [0.1, 0.5]}),
     "search.space.train.cluster_weight: cannot affect any trial"),
    ("sampled alpha without resets",
     _with(base={"brb": {"mode": "embedding_noise"}},
           search={"kind": "optuna", "n": 4, "space": {"brb.alpha": {"uniform": [0.6, 0.9]}}}),
     "search.space.brb.alpha: cannot affect any trial"),
    ("range in a grid", _with(search__space={"train.lr": {"loguniform": [1e-4, 1e-2]}}), "search.space.train.lr"),
    ("inverted range", _with(search={"kind": "random", "n": 3, "space": {"brb.alpha": {"uniform": [0.9, 0.6]}}}),
     "search.space.brb.alpha"),
    ("infinite range bound", _with(search={"kind": "random", "n": 2,
                                           "space": {"train.lr": {"loguniform": [1e-4, float("inf")]}}}),
     "search.space.train.lr: loguniform needs finite bounds"),
    ("NaN range bound", _with(search={"kind": "optuna", "n": 2, "space": {"train.lr": {"uniform": [float("nan"), 1e-3]}}}),
     "search.space.train.lr: uniform needs finite bounds"),
    ("range beyond the config's bounds", _with(search={"kind": "random", "n": 3,
                                                       "space": {"brb.alpha": {"uniform": [0.5, 1.2]}}}),
     "search.space.brb.alpha"),
    ("fractions for whole numbers", _with(search={"kind": "optuna", "n": 2,
                                                  "space": {"pretrain.batch_size": {"loguniform": [64, 512]}}}),
     "search.space.pretrain.batch_size: takes whole numbers but loguniform draws fractions; use {int: [64, 512]}"),
    ("fractions for optional whole numbers", _with(search={"kind": "random", "n": 2,
                                                           "space": {"net.embedding_dim": {"uniform": [8, 16]}}}),
     "search.space.net.embedding_dim: takes whole numbers"),
    ("random without n", _with(search={"kind": "random", "space": {"brb.alpha": [0.7, 0.8]}}), "search.n"),
    ("grid with n", _with(search__n=5), "search.n"),
    ("optuna with two seeds", _with(search={"kind": "optuna", "n": 3, "seeds": [0, 1],
                                            "space": {"brb.alpha": {"uniform": [0.6, 0.9]}}}), "search.seeds"),
    ("repeated seeds", _with(search__seeds=[1, 1]), "search.seeds"),
    ("boolean seed", _with(search__seeds=[True]), "search.seeds.0"),
    ("boolean sampler seed", _with(search={"kind": "random", "n": 2, "seed": True,
                                           "space": {"brb.alpha": [0.7, 0.8]}}), "search.seed"),
    ("seed set in base", _with(base={"seed": 3}), "base.seed"),
    ("unknown metric", _with(metric="accuracy"), "metric"),
    ("bad mode", _with(mode="maximize"), "mode"),
    ("GPU count", _with(resources={"gpu": 1.5}), "resources.gpu"),
    ("no workers", _with(resources={"workers": 0}), "resources.workers"),
    ("ASHA that never stops", _with(asha={"grace_period": 400}), "asha.grace_period"),
    ("unknown dataset", _with(dataset="imagenet"), "dataset: unknown dataset"),
    ("two dataset sources", _with(datasets=["digits", "usps"]), "datasets"),
    ("no dataset", {k: v for k, v in VALID.items() if k != "dataset"}, "dataset: required"),
    ("bad name", _with(name="my study"), "name"),
    ("population of optuna trials", _with(search={"kind": "optuna", "n": 3, "space": {"brb.alpha": {"uniform": [0.6, 0.9]}}},
                                          resources={"population": 4}), "resources.population: optuna"),
    ("population with early stopping", _with(asha={"grace_period": 2}, resources={"population": 4}),
     "resources.population: a population's members end together"),
    ("population of data-parallel trials", _with(resources={"population": 4, "workers": 2}),
     "resources.population: a population runs on one device"),
    ("empty population", _with(resources={"population": 0}), "resources.population"),
    ("no trial at a time", _with(resources={"concurrent": 0}), "resources.concurrent"),
]


@pytest.mark.parametrize("study, field", [pytest.param(s, f, id=i) for i, s, f in BAD_STUDIES])
def test_bad_study_exits_2_naming_the_field(study, field, tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == EXIT_INVALID
    message = capsys.readouterr().err
    assert message.startswith("raydc: error: ") and field in message, message
    assert not out.exists()  # nothing started


def test_dataset_not_available_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RAYDC_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no user cache to fall back on
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_with(dataset="usps")))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == EXIT_INVALID
    assert "dataset: dataset 'usps' is not available" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_resume_needs_a_study_directory(tmp_path, capsys):
    assert main(["run", "--resume", "--out", str(tmp_path / "missing")]) == EXIT_INVALID
    assert "--resume" in capsys.readouterr().err
    assert main(["run"]) == EXIT_INVALID
    assert "study: give a study file" in capsys.readouterr().err


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(VALID))
    taken = tmp_path / "taken"
    taken.write_text("not a directory")
    assert main(["run", str(path), "--out", str(taken)]) == EXIT_INVALID
    assert "--out: " in capsys.readouterr().err and taken.read_text() == "not a directory"


def test_dataset_option_replaces_the_files_datasets():
    study = parse_study(_with(datasets=None, dataset="digits"), datasets=["usps", "optdigits"])
    assert study.dataset_field() == ("datasets", ["usps", "optdigits"])
    assert {t.values["data"]["name"] for t in study.trials} == {"usps", "optdigits"} and len(study.trials) == 4


@pytest.mark.parametrize("text, field", [("name: [unclosed", "not valid YAML"), ("- a list", "must be a mapping")])
def test_unreadable_study_file(text, field, tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    assert main(["run", str(path)]) == EXIT_INVALID
    assert field in capsys.readouterr().err


def test_grid_is_the_product_times_seeds_with_stable_ids():
    study = parse_study(_with(search={"space": {"train.algorithm": ["dec", "idec", "dcn"], "train.lr": [1e-3, 5e-4]},
                                      "seeds": [0, 1]}))
    assert len(study.trials) == 12 and len({t.trial_id for t in study.trials}) == 12
    for t in study.trials:
        assert t.trial_id == trial_id(make_config(t.values))
        assert make_config(t.values).train.lr == t.params["train.lr"] and t.values["seed"] == t.params["seed"]
    assert [t.params["seed"] for t in study.trials] == [0] * 6 + [1] * 6  # seed-major


def test_settings_a_trial_ignores_collapse_to_one_trial():
    study = parse_study(_with(search={"space": {"brb.mode": ["brb", "baseline"], "brb.alpha": [0.7, 0.9]}}))
    baseline = [t for t in study.trials if t.params["brb.mode"] == "baseline"]
    assert len(study.trials) == 3 and len(baseline) == 1
    assert baseline[0].params["brb.alpha"] == 0.8  # the base value: baseline trials never reset


def test_random_search_extends_incrementally():
    space = {"brb.alpha": {"uniform": [0.6, 0.95]}, "brb.interval": {"int": [5, 40]},
             "train.lr": {"loguniform": [1e-4, 5e-3]}}
    small = parse_study(_with(search={"kind": "random", "n": 3, "space": space, "seed": 7}))
    large = parse_study(_with(search={"kind": "random", "n": 5, "space": space, "seed": 7}))
    assert [t.trial_id for t in large.trials[:3]] == [t.trial_id for t in small.trials]
    for t in large.trials:
        assert 0.6 <= t.params["brb.alpha"] <= 0.95 and 5 <= t.params["brb.interval"] <= 40
        assert isinstance(t.params["brb.interval"], int) and 1e-4 <= t.params["train.lr"] <= 5e-3


def test_whole_number_fields_take_int_ranges():
    study = parse_study(_with(search={"kind": "optuna", "n": 2, "space": {"pretrain.batch_size": {"int": [64, 512]},
                                                                         "train.lr": {"loguniform": [1e-4, 1e-2]}}}))
    assert [(d.key, d.kind) for d in study.dimensions] == [("pretrain.batch_size", "int"), ("train.lr", "loguniform")]


def test_dry_run_prints_the_plan_and_starts_nothing(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(VALID))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "2 trials" in printed and "train.algorithm=idec seed=0" in printed and "first trial, resolved:" in printed
    assert not (tmp_path / "out").exists()


@pytest.fixture
def shared_data(monkeypatch):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the offline dataset copies are not at {SHARED_DATA}")
    monkeypatch.setenv("RAYDC_DATA_DIR", str(SHARED_DATA))


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_shipped_study_validates(path, shared_data, capsys):
    study = yaml.safe_load(path.read_text())
    datasets = study.get("datasets") or [study.get("dataset")]
    # CIFAR studies are checked on an offline set: the study file's validation does not depend on the data
    offline = [] if set(datasets) <= OFFLINE_DATASETS else ["--dataset", "usps"]
    assert main(["run", str(path), "--dry-run", *offline]) == 0, capsys.readouterr().err
    assert "first trial, resolved:" in capsys.readouterr().out


def test_paper_grids_have_the_papers_sizes(shared_data):
    def trials(name: str) -> int:
        return len(parse_study(yaml.safe_load((STUDIES[0].parent / f"{name}.yaml").read_text())).trials)

    datasets = len(parse_study(yaml.safe_load((STUDIES[0].parent / "brb_sensitivity.yaml").read_text()))
                   .dataset_field()[1])
    assert trials("brb_sensitivity") == 4 * 4 * 4 * 3 * 5 * datasets  # α × T × lr × algorithm × seeds (Fig 8/9)


def test_cluster_config_autoscales_gpu_workers_and_keeps_the_dashboard_private():
    text = (STUDIES[0].parents[1] / "cluster.yaml").read_text()
    cluster = yaml.safe_load(text)
    workers = cluster["available_node_types"]
    assert cluster["head_node_type"] in workers
    gpu = next(v for k, v in workers.items() if k != cluster["head_node_type"])
    assert gpu["min_workers"] == 0 < gpu["max_workers"]
    assert any("make install" in c or "pip install" in c for c in cluster["setup_commands"])
    assert any(local.endswith("data") for local in cluster["file_mounts"].values())
    start = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in text


def test_populations_group_stackable_trials_in_planned_order():
    from raydc.study.populations import decode, encode, group_trials
    from raydc.study.summary import describe_plan

    raw = _with(search__space={"train.algorithm": ["dec", "idec"], "brb.alpha": [0.6, 0.7, 0.8]},
                search__seeds=[0, 1], base={"train": {"epochs": 5}})
    study = parse_study(raw)
    planned = {t.trial_id: t.values for t in study.trials}
    groups = group_trials(planned, list(planned), 4)
    assert sorted(len(g) for g in groups) == [2, 2, 4, 4] and sorted(sum(groups, [])) == sorted(planned)
    for group in groups:  # members differ only in what a population varies
        assert len({planned[t]["train"]["algorithm"] for t in group}) == 1
        assert decode(encode("population-1", group)) == ("population-1", group)
    lfss = {**planned[groups[0][0]], "train": {"algorithm": "lfss", "epochs": 5}}
    alone = group_trials({**planned, "lfss": lfss}, ["lfss", *groups[0][:2]], 4)
    assert alone == [["lfss"], groups[0][:2]]  # population mode cannot run LFSS: it trains on its own
    assert group_trials(planned, list(planned), 1) == [[t] for t in planned]
    raw["resources"] = {"population": 4}
    plan = describe_plan(parse_study(raw), None)
    assert "per population of up to 4 trials" in plan and "as 4 populations (one stacked model each; sizes 4, 2)" in plan


def test_populations_resume_their_checkpoints_before_new_ones_form():
    from raydc.study.populations import plan_populations, population_id

    study = parse_study(_with(search__space={"brb.alpha": [0.6, 0.7, 0.8, 0.9]}, search__seeds=[0, 1],
                              base={"train": {"epochs": 5}}))
    planned = {t.trial_id: t.values for t in study.trials}
    a, b, c, d, e, f, g, h = planned
    saved = {"population-x": [c, d, a], "population-y": [f, g, h, b], "population-z": [e]}
    pending = [a, b, c, d, g, h]  # e and f are recorded
    plan = plan_populations(planned, pending, 3, saved)
    # x resumes whole, in its checkpoint's order; y with its pending members; z has none left
    assert plan == [("population-x", [c, d, a]), ("population-y", [g, h, b])]
    plan = plan_populations(planned, pending, 2, saved)  # checkpoints larger than the study now allows start over
    assert plan == [(population_id(group), group) for group in ([a, b], [c, d], [g, h])]
