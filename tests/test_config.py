"""Configuration: paper defaults and one clear error per invalid field."""
import pytest

from raydc.config import ConfigError, flatten, make_config


def test_defaults_are_table5():
    c = make_config()
    assert (c.train.batch_size, c.train.lr, c.pretrain.epochs, c.train.epochs) == (256, 1e-3, 250, 400)
    assert (c.brb.alpha, c.brb.interval, c.brb.subsample, c.brb.reset_embedding, c.brb.reset_momentum) == (
        0.8, 20, 10_000, False, True)
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
    ({"train": {"lr": 0}}, "train.lr"),
    ({"pretrain": {"epochs": -1}}, "pretrain.epochs"),
    ({"train": {"epoch": 3}}, "train.epoch"),
    ({"bogus": 1}, "bogus"),
    ({"train": {"precision": "fp8"}}, "train.precision"),
    ({"train": {"algorithm": "lfss", "precision": "bf16"}}, "train.precision"),
])
def test_invalid_value_names_its_field(values, field):
    with pytest.raises(ConfigError) as err:
        make_config(values)
    assert err.value.field == field
    assert str(err.value).startswith(f"{field}: ")


def test_flatten_uses_dotted_keys():
    flat = flatten(make_config({"brb": {"alpha": 0.6}}))
    assert flat["brb.alpha"] == 0.6 and flat["brb.layers"] == "encoder" and flat["data.name"] == "digits"
