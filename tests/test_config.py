"""Configuration: paper defaults and one clear error per invalid field."""
from pathlib import Path

import pytest
import torch

from raydc.config import ConfigError, flatten, make_config


def test_defaults_are_table5():
    c = make_config()
    assert (c.train.batch_size, c.train.lr, c.pretrain.epochs, c.train.epochs) == (256, 1e-3, 250, 400)
    assert (c.brb.alpha, c.brb.interval, c.brb.subsample, c.brb.reset_embedding, c.resets_center_momentum) == (
        0.8, 20, 10_000, False, True)
    assert (c.data.resize, c.data.affine, c.train.drop_last, c.brb.reset_init) == (28, "torchvision", True, "kaiming")
    assert c.net.hidden == [1024, 512, 256] and c.train.augment and not c.pretrain.augment
    weights = {a: make_config({"train": {"algorithm": a}}).train.effective_cluster_weight for a in ("dec", "idec", "dcn")}
    assert weights == {"dec": 1.0, "idec": 0.1, "dcn": 0.025}


@pytest.mark.parametrize("values,field", [
    ({"brb": {"alpha": 1.5}}, "brb.alpha"),
    ({"brb": {"alpha": -0.1}}, "brb.alpha"),
    ({"brb": {"interval": 0}}, "brb.interval"),
    ({"data": {"name": "imagenet"}}, "data.name"),
    ({"train": {"algorithm": "kmeans"}}, "train.algorithm"),
    ({"brb": {"mode": "sometimes"}}, "brb.mode"),
    ({"brb": {"layers": ["encoder", "head"]}}, "brb.layers"),
    ({"brb": {"recluster": "dbscan"}}, "brb.recluster"),
    ({"brb": {"recluster_inits": 0}}, "brb.recluster_inits"),
    ({"brb": {"em_covariance": "spherical"}}, "brb.em_covariance"),
    ({"brb": {"kmedoids_init": "random"}}, "brb.kmedoids_init"),
    ({"train": {"init_kmeans_inits": 0}}, "train.init_kmeans_inits"),
    ({"train": {"lr": 0}}, "train.lr"),
    ({"pretrain": {"epochs": -1}}, "pretrain.epochs"),
    ({"train": {"epoch": 3}}, "train.epoch"),
    ({"bogus": 1}, "bogus"),
    ({"train": {"precision": "fp8"}}, "train.precision"),
    ({"train": {"algorithm": "lfss", "precision": "bf16"}}, "train.precision"),
    ({"train": {"lr": float("inf")}}, "train.lr"),
    ({"pretrain": {"lr": float("inf")}}, "pretrain.lr"),
    ({"train": {"cluster_weight": float("inf")}}, "train.cluster_weight"),
    ({"brb": {"noise_beta": float("inf")}}, "brb.noise_beta"),
    ({"train": {"grad_clip": float("inf")}}, "train.grad_clip"),
    ({"lfss": {"noise": float("nan")}}, "lfss.noise"),
    ({"brb": {"layers": ["encoder", "encoder"]}}, "brb.layers"),
    ({"brb": {"layers": []}}, "brb.layers"),
    ({"brb": {"mode": "perturb_only", "layers": []}}, "brb.layers"),
    ({"device": "tpu"}, "device"),
    ({"device": "gpu0"}, "device"),
    ({"device": "cuda:x"}, "device"),
    ({"device": "meta"}, "device"),
    ({"train": {"epochs": True}}, "train.epochs"),
    ({"seed": False}, "seed"),
    ({"net": {"embedding_dim": True}}, "net.embedding_dim"),
    ({"net": {"hidden": [True, 8]}}, "net.hidden"),
    ({"data": {"affine": "nearest"}}, "data.affine"),
    ({"seed": 2**64 - 10}, "seed"),
])
def test_invalid_value_names_its_field(values, field):
    with pytest.raises(ConfigError) as err:
        make_config(values)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


def test_flatten_uses_dotted_keys():
    flat = flatten(make_config({"brb": {"alpha": 0.6}}))
    assert flat["brb.alpha"] == 0.6 and flat["brb.layers"] == "encoder" and flat["data.name"] == "digits"


def test_lax_coercions_other_than_bool_to_int_still_apply():
    c = make_config({"train": {"lr": 1, "epochs": "5", "augment": True}, "brb": {"alpha": 1}, "net": {"hidden": [8]}})
    assert (c.train.lr, c.train.epochs, c.train.augment, c.brb.alpha) == (1.0, 5, True, 1.0)
    assert isinstance(c.train.lr, float) and isinstance(c.train.epochs, int)


def test_empty_layers_allowed_when_no_weights_are_reset():
    for mode in ("baseline", "recluster", "embedding_noise"):
        assert make_config({"brb": {"mode": mode, "layers": []}}).brb.layers == []


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_device_names_torch_parses_are_accepted(device):
    assert make_config({"device": device}).device == device


def test_cuda_without_cuda_fails_before_loading_data(monkeypatch):
    import raydc.engine.train as train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train, "load_dataset", lambda *a, **k: pytest.fail("dataset loaded"))
    with pytest.raises(ConfigError) as err:
        train.fit({"device": "cuda"})
    assert err.value.field == "device" and "no CUDA device" in str(err.value)
    assert train.resolve_device("auto") == torch.device("cpu")


def test_subsample_below_cluster_count_is_rejected_before_compute(digits):
    from raydc.engine.trial import Trial

    with pytest.raises(ConfigError) as err:  # digits has 10 clusters
        Trial(make_config({"brb": {"subsample": 9}}), digits, torch.device("cpu"))
    assert err.value.field == "brb.subsample" and str(err.value).startswith("brb.subsample: ")
    make_config({"brb": {"subsample": 10}}).check_dataset(digits.n_clusters)
    make_config({"brb": {"mode": "baseline", "subsample": 1}}).check_dataset(digits.n_clusters)


def test_the_affine_style_reaches_every_augmenter():
    from raydc.data import load_dataset
    from raydc.engine.trial import Trial

    config = make_config({"data": {"affine": "smooth"}, "selflabel": {"epochs": 1}})
    trial = Trial(config, load_dataset("digits"), torch.device("cpu"))
    assert trial.state.augmenter.style == "smooth" and trial.state.self_labeling().strong_augmenter.base.style == "smooth"
    assert make_config({}).data.affine == "torchvision"  # RandomAffine, as the authors' pipeline


def _merged(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


# What trials ran with before data.affine, data.resize, train.drop_last, brb.reset_init, brb.recluster_inits,
# brb.em_covariance and brb.kmedoids_init existed.
FORMER = {"data": {"affine": "smooth", "resize": None}, "train": {"drop_last": False},
          "brb": {"reset_init": "linear", "recluster_inits": 1, "em_covariance": "diag", "kmedoids_init": "kmeans++"}}
NEW_DEFAULTS = [{"data": {"affine": "torchvision"}}, {"data": {"resize": 28}}, {"train": {"drop_last": True}},
                {"brb": {"reset_init": "kaiming"}}, {"brb": {"recluster_inits": 10}}]


def test_settings_added_later_keep_recorded_ids_and_key_what_they_change():
    from raydc.config.identity import pretrain_key
    from raydc.engine.pretrain import cluster_cache_path
    from raydc.config.identity import trial_id

    def former(*parts):
        return make_config(_merged(FORMER, *parts))

    # Trials recorded before these settings existed keep their ids.
    assert trial_id(former()) == "44136fa355b3678a"
    assert trial_id(former({"data": {"name": "optdigits"}, "brb": {"alpha": 0.6}, "seed": 2})) == "2558fbe8a1c4e0b4"
    shared = {"selflabel": {"epochs": 1}}
    for new in NEW_DEFAULTS:  # each of today's defaults changes what a digits BRB trial computes
        assert trial_id(former(new)) != trial_id(former()), new
        assert cluster_cache_path(former(new, shared), Path(".")) != cluster_cache_path(former(shared), Path("."))
    assert trial_id(make_config({})) not in {trial_id(former(new)) for new in NEW_DEFAULTS}
    # So do their pretraining caches; BatchNorm, added later still, is named only where it is on.
    assert pretrain_key(former()) == "02cd970fa683554dfa2f"
    assert pretrain_key(former({"net": {"batch_norm": True}})) != pretrain_key(former())
    assert trial_id(former({"net": {"batch_norm": True}})) != trial_id(former())
    # The initial k-means's seedings keep their former default (4): named only where they differ from it.
    more_seedings = {"train": {"init_kmeans_inits": 10}}
    assert trial_id(former(more_seedings)) != trial_id(former())
    assert pretrain_key(former(more_seedings)) == pretrain_key(former())
    # Pretraining sees the resized images always, the affine style only when it augments.
    assert pretrain_key(former({"data": {"resize": 28}})) != pretrain_key(former())
    assert pretrain_key(former({"data": {"affine": "torchvision"}})) == pretrain_key(former())
    augmented = {"pretrain": {"augment": True}}
    assert pretrain_key(former({"data": {"affine": "torchvision"}}, augmented)) != pretrain_key(former(augmented))

    # A setting changes nothing where it does not act.
    def same_everywhere(base: dict, setting: dict) -> None:
        a, b = former(base), former(base, setting)
        assert trial_id(a) == trial_id(b), (base, setting)
        assert pretrain_key(a) == pretrain_key(b), (base, setting)
        assert cluster_cache_path(a, Path(".")) == cluster_cache_path(b, Path(".")), (base, setting)

    colour = {"data": {"name": "cifar10"}, "net": {"arch": "resnet18"}, **augmented, **shared}
    same_everywhere(colour, {"data": {"affine": "torchvision", "resize": 28}})  # SimCLR's pipeline and sizes
    same_everywhere({"data": {"name": "mnist-test"}, **shared}, {"data": {"resize": 28}})  # already 28 × 28
    same_everywhere({"brb": {"mode": "baseline"}, **shared}, {"brb": {"reset_init": "kaiming"}})  # draws no φ
    same_everywhere({"train": {"algorithm": "lfss"}, "brb": {"mode": "baseline"}, **shared},
                    {"train": {"drop_last": True}})  # LFSS measures every sample each epoch
    # BRB zeroed the centroid moments before and does now; reclustering alone did and no longer does.
    same_everywhere({"brb": {"reset_momentum": True}}, {"brb": {"reset_momentum": None}})
    # Reclustering k-means seeded once before: the number of seedings is named only where k-means reclusters.
    same_everywhere({"brb": {"mode": "reset", "recluster_inits": 10}, **shared}, {"brb": {"recluster_inits": 1}})
    same_everywhere({"brb": {"recluster": "kmedoids", "recluster_inits": 10}, **shared},
                    {"brb": {"recluster_inits": 1}})
    # EM reclustered from one start with diagonal covariances before; each of today's settings names itself there
    # and nowhere else.
    em = {"brb": {"recluster": "em"}}
    assert trial_id(former(em)) == "c33bd02b48beb359"
    usps_dcn = {"data": {"name": "usps"}, "train": {"algorithm": "dcn"}, "seed": 3}
    assert trial_id(former(em, usps_dcn)) == "2ddf6b4aef3f72c1"
    for new in ({"brb": {"em_covariance": "full"}}, {"brb": {"recluster_inits": 10}}):
        assert trial_id(former(em, new)) != trial_id(former(em)), new
    assert trial_id(make_config(em)) != trial_id(former(em))
    same_everywhere(shared, {"brb": {"em_covariance": "full"}})  # k-means has no covariances
    same_everywhere({"brb": {"mode": "reset", "recluster": "em"}, **shared}, {"brb": {"em_covariance": "full"}})
    # k-medoids started from k-means++ seeds before; its heuristic start names itself where k-medoids reclusters.
    kmedoids = {"brb": {"recluster": "kmedoids"}}
    assert trial_id(former(kmedoids)) == "ddd4db58874b4f74"
    assert trial_id(former(kmedoids, {"brb": {"kmedoids_init": "heuristic"}})) != trial_id(former(kmedoids))
    same_everywhere(em, {"brb": {"kmedoids_init": "heuristic"}})
    recluster = {"brb": {"mode": "recluster"}}
    assert not former(recluster).resets_center_momentum
    assert former(recluster, {"brb": {"reset_momentum": True}}).resets_center_momentum
    assert trial_id(former(recluster)) != trial_id(former(recluster, {"brb": {"reset_momentum": True}}))
