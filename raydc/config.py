"""Typed trial configuration; defaults are the BRB paper's Table 5 (grayscale, autoencoder)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Algorithm = Literal["dec", "idec", "dcn"]
BRBMode = Literal[
    "baseline", "recluster", "reset", "brb", "disentangled", "embedding_noise", "perturb_only", "scaled_gaussian"
]
ReclusterMethod = Literal["kmeans", "kmeans++", "kmedoids", "em", "random"]

# Cluster-loss weights of Table 5: DEC trains on the clustering loss alone.
DEFAULT_CLUSTER_WEIGHT = {"dec": 1.0, "idec": 0.1, "dcn": 0.025}
# Modes whose periodic step touches the network weights.
RESETTING_MODES = {"reset", "brb", "disentangled", "perturb_only", "scaled_gaussian"}
# Modes whose periodic step replaces the centroids.
RECLUSTERING_MODES = {"recluster", "brb", "disentangled", "embedding_noise", "perturb_only", "scaled_gaussian"}
MLP_LAYER_GROUPS = ("encoder", "decoder")
RESNET_LAYER_GROUPS = ("encoder", "block1", "block2", "block3", "block4", "projector", "batchnorm")


class ConfigError(ValueError):
    """One invalid configuration field, named by its dotted path."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Group):
    name: str = "digits"
    dir: str | None = None  # data directory; None = $RAYDC_DATA_DIR or the download cache

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from raydc.data import dataset_names

        if name not in dataset_names():
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")
        return name


class NetConfig(_Group):
    arch: Literal["mlp", "resnet18"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [1024, 512, 256])
    embedding_dim: int | None = Field(default=None, ge=1)  # None = number of clusters

    @field_validator("hidden")
    @classmethod
    def _positive(cls, hidden: list[int]) -> list[int]:
        if not hidden or any(h <= 0 for h in hidden):
            raise ValueError("needs at least one positive layer width")
        return hidden


class PretrainConfig(_Group):
    epochs: int = Field(default=250, ge=0)  # 0 = train from scratch (Scenario 2)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=256, ge=1)
    augment: bool = False


class TrainConfig(_Group):
    algorithm: Algorithm = "dec"
    epochs: int = Field(default=400, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=256, ge=1)
    augment: bool = True
    cluster_weight: float | None = Field(default=None, gt=0)  # None = the algorithm's Table 5 weight
    grad_clip: float | None = Field(default=None, gt=0)

    @property
    def effective_cluster_weight(self) -> float:
        return DEFAULT_CLUSTER_WEIGHT[self.algorithm] if self.cluster_weight is None else self.cluster_weight


class BRBConfig(_Group):
    mode: BRBMode = "brb"
    alpha: float = Field(default=0.8, ge=0.0, le=1.0)
    interval: int = Field(default=20, gt=0)
    layers: list[str] = Field(default_factory=lambda: ["encoder"])
    reset_embedding: bool = False
    block_alpha_step: float = Field(default=0.0, ge=0.0, le=1.0)  # α grows by this per ResNet block below block 4
    recluster: ReclusterMethod = "kmeans"
    subsample: int = Field(default=10_000, ge=1)
    reset_momentum: bool = True
    noise_beta: float = Field(default=0.3, gt=0)  # eq 18


class EvalConfig(_Group):
    every: int = Field(default=1, ge=1)
    subsample: int = Field(default=2_000, ge=10)  # fixed subsample for intra/inter-CD and silhouette
    ratio_threshold: float = Field(default=0.9, gt=0, le=1)


class TrialConfig(_Group):
    seed: int = Field(default=0, ge=0)
    device: str = "auto"
    checkpoint_every: int = Field(default=0, ge=0)  # epochs between checkpoints; 0 = only at the end
    data: DataConfig = Field(default_factory=DataConfig)
    net: NetConfig = Field(default_factory=NetConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    brb: BRBConfig = Field(default_factory=BRBConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _consistent(self) -> "TrialConfig":
        groups = MLP_LAYER_GROUPS if self.net.arch == "mlp" else RESNET_LAYER_GROUPS
        for name in self.brb.layers:
            if name not in groups:
                raise ValueError(f"brb.layers: unknown layer group {name!r} for net.arch={self.net.arch}; "
                                 f"valid: {', '.join(groups)}")
        if self.net.arch == "resnet18":
            raise ValueError("net.arch: resnet18 trains only with the contrastive objective, "
                             "which this engine does not run yet; use mlp")
        return self


def _error_from(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if p != "__root__")
    msg = first["msg"].removeprefix("Value error, ")
    if not loc and ":" in msg:  # model-level checks name their field in the message
        loc, msg = (s.strip() for s in msg.split(":", 1))
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    return ConfigError(loc or "config", msg)


def make_config(values: dict[str, Any] | None = None) -> TrialConfig:
    """Build a validated TrialConfig; any problem raises one ConfigError naming the field."""
    try:
        return TrialConfig.model_validate(values or {})
    except ValidationError as exc:
        raise _error_from(exc) from None


def set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    """Set values['a']['b'] = value for key 'a.b', creating groups as needed."""
    *groups, leaf = key.split(".")
    node = values
    for g in groups:
        node = node.setdefault(g, {})
        if not isinstance(node, dict):
            raise ConfigError(key, f"{g} is not a group")
    node[leaf] = value


def flatten(config: TrialConfig) -> dict[str, Any]:
    """Config as flat dotted keys (brb.alpha, train.lr, ...), lists kept as JSON-like strings for tables."""
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = ",".join(map(str, node)) if isinstance(node, list) else node

    walk("", config.model_dump())
    return out
