"""Typed trial configuration; defaults are the BRB paper's Table 5 (grayscale, autoencoder)."""
from __future__ import annotations

import copy
import functools
from typing import Any, Iterable, Literal, get_args, get_origin

from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from raydc.errors import ConfigError

Algorithm = Literal["dec", "idec", "dcn", "lfss"]
BRBMode = Literal[
    "baseline", "recluster", "reset", "brb", "disentangled", "embedding_noise", "perturb_only", "scaled_gaussian"
]
ReclusterMethod = Literal["kmeans", "kmeans++", "kmedoids", "em", "random"]
# Reclustering methods that start brb.recluster_inits times and keep the best (k-means by inertia, EM by likelihood).
SEEDED_RECLUSTER_METHODS = ("kmeans", "em")
EMCovariance = Literal["full", "diag"]
KMedoidsInit = Literal["heuristic", "kmeans++"]  # raydc.clustering.kmeans.KMEDOIDS_INITS
ReSLStrategy = Literal["none", "sp", "sp_star", "ht"]
Precision = Literal["float32", "tf32", "bf16"]
DCNUpdate = Literal["epoch", "step"]
AffineStyle = Literal["smooth", "torchvision"]  # raydc.data.augment.AFFINE_STYLES
ResetInit = Literal["kaiming", "linear"]
# Settings that change where or how fast a trial runs, not what it computes: outside trial ids and configurations.
EXECUTION_FIELDS = ("device", "checkpoint_every", "train.cuda_graphs", "train.compile")
# Settings added after trials were recorded, with what those trials ran with: ids and cache keys name a setting only
# where it acts and differs from this, so the ids recorded then still name what they computed.
FORMER_DEFAULTS = {"data.affine": "smooth", "data.resize": None, "train.drop_last": False, "brb.reset_init": "linear",
                   "brb.reset_momentum": True, "net.batch_norm": False, "brb.recluster_inits": 1,
                   "brb.em_covariance": "diag", "brb.kmedoids_init": "kmeans++"}
# BRB modes that draw fresh weights φ (the others leave weights alone or draw scaled Gaussians).
PHI_MODES = {"reset", "brb", "disentangled", "perturb_only"}
LEARNABLE_CENTROID_ALGORITHMS = ("dec", "idec")  # DCN moves its centroids by running means, LFSS by k-means

# Cluster-loss weights of Table 5: DEC trains on the clustering loss alone; LFSS weighs its terms with lfss.weight.
DEFAULT_CLUSTER_WEIGHT = {"dec": 1.0, "idec": 0.1, "dcn": 0.025, "lfss": 1.0}
# Contrastive setting (Table 7): clustering learning rates and cluster-loss weights per algorithm.
CONTRASTIVE_LR = {"dec": 1e-3, "idec": 3e-3, "dcn": 1e-2, "lfss": 1e-3}
CONTRASTIVE_CLUSTER_WEIGHT = {"idec": 1.0, "dcn": 1e-4}
# Modes whose periodic step touches the network weights.
RESETTING_MODES = {"reset", "brb", "disentangled", "perturb_only", "scaled_gaussian"}
# Modes whose periodic step replaces the centroids.
RECLUSTERING_MODES = {"recluster", "brb", "disentangled", "embedding_noise", "perturb_only", "scaled_gaussian"}
# Reclustering modes that compute new centroids with brb.recluster (disentangled uses label means).
CENTROID_RECLUSTERING_MODES = RECLUSTERING_MODES - {"disentangled"}
MLP_LAYER_GROUPS = ("encoder", "decoder")
RESNET_LAYER_GROUPS = ("encoder", "block1", "block2", "block3", "block4", "projector", "batchnorm")
# Device types a trial runs on; "auto" picks cuda when available.
DEVICE_TYPES = ("cpu", "cuda", "mps")


def holds_int(annotation: Any) -> bool:
    """Whether an annotation holds int (int, int | None, list[int]); bool is a separate type here."""
    return annotation is int or any(holds_int(arg) for arg in get_args(annotation))


class _Group(BaseModel):
    # inf or nan in a rate, weight or bound would only surface as a diverged trial
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_int(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads True as 1; a boolean in an integer field is a mistake, not a count
        items = value if isinstance(value, list) else [value]
        if any(isinstance(v, bool) for v in items) and holds_int(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"expected an integer, got {value!r}")
        return value


class DataConfig(_Group):
    name: str = "digits"
    dir: str | None = None  # data directory; None = $RAYDC_DATA_DIR or the download cache
    # grayscale augmentation (pretraining, clustering, self-labeling's strong view; colour sets use SimCLR's):
    # torchvision = RandomAffine's whole-pixel shifts and nearest sampling, as the authors' pipeline; smooth =
    # fractional shifts and bilinear sampling
    affine: AffineStyle = "torchvision"
    # Table 5: grayscale images are resized to resize × resize (bilinear) before augmentation, as the authors'
    # pipeline does for every grayscale set; None = native size. Colour sets keep their own sizes.
    resize: int | None = Field(default=28, ge=1)

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        from raydc.data import dataset_names

        if name not in dataset_names():
            raise ValueError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")
        return name


class NetConfig(_Group):
    arch: Literal["mlp", "resnet18"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [1024, 512, 256])  # resnet18: the head after the 512 features
    embedding_dim: int | None = Field(default=None, ge=1)  # None = number of clusters
    projector_width: int = Field(default=2048, ge=1)  # SimCLR projector (resnet18 only), depth 1
    projector_dim: int = Field(default=128, ge=1)
    # BatchNorm1d after each hidden Linear of the MLP (encoder and decoder), as the authors' released configs run it
    # (their runner's default); Table 5 lists none, so off by default. resnet18 has its own.
    batch_norm: bool = False

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
    weight_decay: float = Field(default=0.0, ge=0)


class ContrastiveConfig(_Group):
    """SimCLR's InfoNCE, the auxiliary task of resnet18 trials (pretraining and clustering)."""

    temperature: float = Field(default=0.5, gt=0)
    reset_projector: bool = True  # App. E: the projector is reset with each BRB weight reset


class TrainConfig(_Group):
    algorithm: Algorithm = "dec"
    epochs: int = Field(default=400, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    batch_size: int = Field(default=256, ge=1)
    augment: bool = True
    cluster_weight: float | None = Field(default=None, gt=0)  # None = the algorithm's Table 5 weight
    grad_clip: float | None = Field(default=None, gt=0)
    cuda_graphs: bool = True  # one GPU: pretraining and clustering steps replay as CUDA graphs
    precision: Precision = "float32"  # tf32 (CUDA matmuls) or bf16 (autocast) for the network; distances stay float32
    # One process: the clustering step's forward and backward fused by torch.compile (same arithmetic up to rounding;
    # the first steps pay a one-off compilation of tens of seconds).
    compile: bool = False
    # DCN's centroid updates. epoch: as the BRB authors' released code (centres fixed through an epoch of network
    # steps, then moved batch by batch at a fixed rate); step: eq 7 after every step, with counts that grow.
    dcn_update: DCNUpdate = "epoch"
    # Clustering epochs skip the last short batch, as the authors' loader (drop_last): DEC's targets from a handful
    # of samples would be noise. LFSS measures every sample each epoch and keeps it.
    drop_last: bool = True
    # k-means++ seedings of the k-means that gives the initial centroids, the best by inertia kept. The authors' code
    # takes 10 (scikit-learn's KMeans); 4 is kept so that the rows measured before this setting stay comparable (on
    # the untrained network's embedding the best of 4 and of 10 reach overlapping ACC ranges).
    init_kmeans_inits: int = Field(default=4, ge=1)

    @property
    def effective_cluster_weight(self) -> float:
        return DEFAULT_CLUSTER_WEIGHT[self.algorithm] if self.cluster_weight is None else self.cluster_weight


class BRBConfig(_Group):
    mode: BRBMode = "brb"
    alpha: float = Field(default=0.8, ge=0.0, le=1.0)
    interval: int = Field(default=20, gt=0)
    layers: list[str] = Field(default_factory=lambda: ["encoder"])
    reset_embedding: bool = False
    block_alpha: float | None = Field(default=None, ge=0.0, le=1.0)  # α of ResNet block 4; None = alpha
    block_alpha_step: float = Field(default=0.0, ge=0.0, le=1.0)  # α grows by this per ResNet block below block 4
    recluster: ReclusterMethod = "kmeans"
    # Starts per reclustering k-means or EM, the best kept: the authors' code reclusters with scikit-learn's
    # KMeans(n_init=10) and GaussianMixture(n_init=10); one seeding lands in a poor local optimum more often
    recluster_inits: int = Field(default=10, ge=1)
    # Covariances of the em reclustering: full, as the authors' GaussianMixture; diag costs O(d) per component
    # instead of O(d²) and a Cholesky factor, for wide embeddings
    em_covariance: EMCovariance = "full"
    # Medoids the kmedoids reclustering starts from: heuristic, the k most central points, as the authors'
    # scikit-learn-extra KMedoids; kmeans++ draws seeds, so its reclusterings differ from seed to seed
    kmedoids_init: KMedoidsInit = "heuristic"
    subsample: int = Field(default=10_000, ge=1)
    # Zero the centroids' Adam moments at each reclustering. None = as the authors: with weight resets, not when
    # reclustering alone (mode recluster).
    reset_momentum: bool | None = None
    # φ of a reset: kaiming = kaiming_uniform_ with its default gain (bound √(6/fan_in)), as the authors' code;
    # linear = nn.Linear's own initialisation (bound 1/√fan_in). Biases draw from ±1/√fan_in either way.
    reset_init: ResetInit = "kaiming"
    noise_beta: float = Field(default=0.3, gt=0)  # eq 18

    @property
    def recluster_options(self) -> dict[str, Any]:
        """The keyword arguments of raydc.clustering.kmeans.recluster that these settings choose."""
        return {"n_init": self.recluster_inits, "em_covariance": self.em_covariance,
                "kmedoids_init": self.kmedoids_init}

    @field_validator("layers")
    @classmethod
    def _distinct(cls, layers: list[str]) -> list[str]:
        duplicates = sorted({name for name in layers if layers.count(name) > 1})
        if duplicates:  # a group listed twice would be reset twice per step (α² retained)
            raise ValueError(f"{', '.join(duplicates)} listed more than once")
        return layers


class SelfLabelConfig(_Group):
    """Self-labeling after clustering (SCAN; BRB App. E.1): a head warm-up on the clustering labels, then
    confidence-thresholded cross-entropy on strongly augmented views."""

    epochs: int = Field(default=0, ge=0)  # 0 = no self-labeling stage
    warmup_epochs: int = Field(default=20, ge=0)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    batch_size: int = Field(default=1000, ge=1)
    threshold: float = Field(default=0.99, gt=0, lt=1)
    balance: bool = True


class ReSLConfig(_Group):
    """Resets during self-labeling; alpha is retention (θ ← αθ + (1−α)φ) as in BRB's eq 1."""

    strategy: ReSLStrategy = "none"
    alpha: float = Field(default=0.8, ge=0.0, le=1.0)
    interval: int = Field(default=20, gt=0)  # R, in self-labeling epochs
    momentum: float = Field(default=0.995, ge=0.0, lt=1.0)  # μ of the hare & tortoise EMA
    ema_update: Literal["step", "epoch"] = "step"


class LFSSConfig(_Group):
    """Learning from sample stability (train.algorithm: lfss), defaults of its section 5.2 and App. D."""

    warmup_epochs: int = Field(default=200, ge=0)  # η: epochs before the cluster-level loss starts
    unstable_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)  # δ
    noise: float = Field(default=0.001, ge=0.0)  # σ
    weight: float = Field(default=0.1, ge=0.0)  # λ
    target_momentum: float = Field(default=0.99, ge=0.0, le=1.0)
    temperature: float = Field(default=0.5, gt=0)
    predictor_hidden: int = Field(default=512, ge=1)


class EvalConfig(_Group):
    every: int = Field(default=1, ge=1)
    subsample: int = Field(default=2_000, ge=10)  # fixed subsample for intra/inter-CD and silhouette
    ratio_threshold: float = Field(default=0.9, gt=0, le=1)


class TrialConfig(_Group):
    seed: int = Field(default=0, ge=0, le=2**32 - 1)  # 32 bits: with its per-stage offsets it fits every generator
    device: str = "auto"
    checkpoint_every: int = Field(default=0, ge=0)  # epochs between checkpoints; 0 = only at the end
    data: DataConfig = Field(default_factory=DataConfig)
    net: NetConfig = Field(default_factory=NetConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    brb: BRBConfig = Field(default_factory=BRBConfig)
    contrastive: ContrastiveConfig = Field(default_factory=ContrastiveConfig)
    selflabel: SelfLabelConfig = Field(default_factory=SelfLabelConfig)
    resl: ReSLConfig = Field(default_factory=ReSLConfig)
    lfss: LFSSConfig = Field(default_factory=LFSSConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if device == "auto":
            return device
        import torch

        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError):
            parsed = None
        if parsed is None or parsed.type not in DEVICE_TYPES:
            raise ValueError(f"unknown device {device!r}; valid: auto, {', '.join(DEVICE_TYPES)}, cuda:N")
        return device

    def check_dataset(self, n_clusters: int) -> None:
        """Raise ConfigError for fields that do not fit a dataset with n_clusters clusters."""
        # k-means on the subsample needs at least one sample per centroid (disentangled only averages labels)
        if (self.brb.mode in RECLUSTERING_MODES and self.brb.mode != "disentangled"
                and self.brb.subsample < n_clusters):
            raise ConfigError("brb.subsample", f"{self.brb.subsample} samples cannot be reclustered into "
                                               f"{n_clusters} clusters; use at least {n_clusters}")

    @property
    def affine_style(self) -> str | None:
        """The style of this trial's affine augmentation; None on a colour dataset (SimCLR's pipeline instead)."""
        return None if self._colour else self.data.affine

    @property
    def resize_side(self) -> int | None:
        """The side images are resized to; None where they keep their size (colour sets, or already that size)."""
        from raydc.data import dataset_info

        side = None if self._colour else self.data.resize
        return None if side is not None and dataset_info(self.data.name).image_shape[1:] == (side, side) else side

    @property
    def resets_center_momentum(self) -> bool:
        """Whether each reclustering zeroes the centroids' Adam moments (only DEC and IDEC learn centroids)."""
        brb = self.brb
        wanted = brb.mode != "recluster" if brb.reset_momentum is None else brb.reset_momentum
        return wanted and self._recenters

    @property
    def recluster_method(self) -> str | None:
        """The method BRB's periodic step computes new centroids with; None where it takes none (baseline, reset,
        disentangled, which takes label means)."""
        return self.brb.recluster if self.brb.mode in CENTROID_RECLUSTERING_MODES else None

    @property
    def drops_last_batch(self) -> bool:
        return self.train.drop_last and self.train.algorithm != "lfss"

    def changed_defaults(self) -> dict[str, Any]:
        """The FORMER_DEFAULTS settings that act on this trial and differ from what trials ran with before they
        existed (dotted name → value): what ids and cache keys must name beyond the fields at their defaults."""
        acting = {"data.affine": self.affine_style, "data.resize": self.resize_side,
                  "train.drop_last": self.drops_last_batch,
                  "brb.reset_init": self.brb.reset_init if self.brb.mode in PHI_MODES else None,
                  "brb.reset_momentum": self.resets_center_momentum if self._recenters else None,
                  "net.batch_norm": self.net.batch_norm,
                  "brb.recluster_inits": (self.brb.recluster_inits
                                          if self.recluster_method in SEEDED_RECLUSTER_METHODS else None),
                  "brb.em_covariance": self.brb.em_covariance if self.recluster_method == "em" else None,
                  "brb.kmedoids_init": self.brb.kmedoids_init if self.recluster_method == "kmedoids" else None}
        return {name: value for name, value in acting.items()
                if value is not None and value != FORMER_DEFAULTS[name]}

    @property
    def _colour(self) -> bool:
        from raydc.data import dataset_info

        return dataset_info(self.data.name).image_shape[0] == 3

    @property
    def _recenters(self) -> bool:
        return self.brb.mode in RECLUSTERING_MODES and self.train.algorithm in LEARNABLE_CENTROID_ALGORITHMS

    @property
    def two_views(self) -> bool:
        """Contrastive objectives (SimCLR on resnet18, LFSS) learn from two augmented views of each sample."""
        return self.net.arch == "resnet18" or self.train.algorithm == "lfss"

    @property
    def training_epochs(self) -> int:
        """Epochs a trial reports progress over: clustering, then self-labeling."""
        return self.train.epochs + self.selflabel.epochs

    @model_validator(mode="before")
    @classmethod
    def _setting_defaults(cls, values: Any) -> Any:
        """Fields the user left out take the defaults of their setting (Table 7 for resnet18, LFSS's own)."""
        if not isinstance(values, dict):
            return values
        defaults = setting_defaults(_get(values, "net.arch", "mlp"), _get(values, "train.algorithm", "dec"))
        values = copy.deepcopy(values)
        for key, value in defaults.items():
            if _get(values, key, _MISSING) is _MISSING:
                set_dotted(values, key, value)
        return values

    @model_validator(mode="after")
    def _consistent(self) -> "TrialConfig":
        groups = MLP_LAYER_GROUPS if self.net.arch == "mlp" else RESNET_LAYER_GROUPS
        for name in self.brb.layers:
            if name not in groups:
                raise ValueError(f"brb.layers: unknown layer group {name!r} for net.arch={self.net.arch}; "
                                 f"valid: {', '.join(groups)}")
        if self.brb.mode in RESETTING_MODES and not self.brb.layers:
            raise ValueError(f"brb.layers: brb.mode {self.brb.mode!r} resets weights; name at least one layer group")
        if self.net.batch_norm and self.net.arch != "mlp":
            raise ValueError("net.batch_norm: adds BatchNorm to the MLP autoencoder; resnet18 has its own")
        if self.two_views and not self.train.augment:
            raise ValueError("train.augment: resnet18 and lfss trials learn from two augmented views; set it true")
        if self.train.algorithm == "lfss" and self.brb.mode in RECLUSTERING_MODES:
            raise ValueError(f"brb.mode: lfss runs k-means every epoch, so {self.brb.mode!r} has nothing to "
                             "recluster; use baseline or reset")
        if self.net.arch == "resnet18" and self.pretrain.epochs > 0 and not self.pretrain.augment:
            raise ValueError("pretrain.augment: SimCLR pretraining learns from two augmented views; set it true")
        if self.train.algorithm == "lfss" and self.train.precision == "bf16":
            raise ValueError("train.precision: lfss keeps its stability measure and EMA target in float32; "
                             "use float32 or tf32")
        if self.train.algorithm == "lfss" and self.train.compile:
            raise ValueError("train.compile: compiled steps cover dec, idec and dcn, not lfss; set it false")
        if self.resl.strategy != "none" and self.selflabel.epochs == 0:
            raise ValueError("resl.strategy: resets during self-labeling need selflabel.epochs > 0")
        return self


_MISSING = object()


def setting_defaults(arch: str, algorithm: str) -> dict[str, Any]:
    """Dotted defaults that differ from the grayscale autoencoder setting of Table 5."""
    defaults: dict[str, Any] = {}
    if arch == "resnet18":  # Table 7 and SCAN's self-labeling config
        defaults.update({
            "net.hidden": [512, 256], "net.embedding_dim": 128,
            "pretrain.epochs": 1000, "pretrain.lr": 3e-3, "pretrain.batch_size": 512, "pretrain.augment": True,
            "pretrain.weight_decay": 1e-4,
            "train.epochs": 1000, "train.batch_size": 512, "train.lr": CONTRASTIVE_LR.get(algorithm, 1e-3),
            "train.grad_clip": 500.0,
            "brb.alpha": 0.7, "brb.block_alpha": 0.9, "brb.interval": 10, "brb.layers": ["encoder", "block4"],
            "selflabel.epochs": 200,
        })
        if algorithm in CONTRASTIVE_CLUSTER_WEIGHT:
            defaults["train.cluster_weight"] = CONTRASTIVE_CLUSTER_WEIGHT[algorithm]
    if algorithm == "lfss":  # LFSS trains from scratch and reclusters by itself
        defaults.update({"brb.mode": "baseline", "pretrain.epochs": 0})
    return defaults


def _get(values: dict[str, Any], key: str, default: Any) -> Any:
    node: Any = values
    for part in key.split("."):
        if isinstance(node, BaseModel):
            node = node.model_dump()
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


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


def dotted_exclude(names: Iterable[str]) -> dict[str, Any]:
    """model_dump's `exclude` for dotted field names ("train.compile" → {"train": {"compile"}})."""
    exclude: dict[str, Any] = {}
    for name in names:
        group, _, leaf = name.rpartition(".")
        if group:
            exclude.setdefault(group, set()).add(leaf)
        else:
            exclude[leaf] = True
    return exclude


@functools.cache
def _list_fields(model: type[BaseModel] | None = None, prefix: str = "") -> frozenset[str]:
    """Dotted fields that hold a list (flatten joins them with commas)."""
    found: set[str] = set()
    for name, info in (model or TrialConfig).model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            found |= _list_fields(info.annotation, f"{prefix}{name}.")
        elif get_origin(info.annotation) is list:
            found.add(f"{prefix}{name}")
    return frozenset(found)


def unflatten(values: dict[str, Any]) -> dict[str, Any]:
    """flatten's inverse: dotted keys to groups, comma-joined lists split again (for make_config)."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        if key in _list_fields() and value is not None:
            value = value.split(",") if value else []
        set_dotted(nested, key, value)
    return nested


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
