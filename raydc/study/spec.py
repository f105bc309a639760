"""The study file (YAML): its schema, and every check that runs before a single trial starts.

name: brb-sensitivity
dataset: optdigits              # or `datasets: [usps, optdigits]`, or data.name in the space
base: {train: {epochs: 400}}    # nested overrides of the trial config (raydc.config)
search:
  kind: grid                    # grid | random | optuna
  space:                        # dotted trial-config field -> list | {uniform|loguniform|int: [low, high]}
    brb.alpha: [0.6, 0.7, 0.8, 0.9]
    train.lr: {loguniform: [1.0e-4, 5.0e-3]}
  seeds: [0, 1, 2]
  n: 20                         # random / optuna: number of sampled configurations
  seed: 0                       # sampler seed
metric: acc                     # a final metric of trials.parquet; label-free (no label read): silhouette,
                                # calinski_harabasz (ch), davies_bouldin (db), mdl_bits (mdl), vi, ratio_share, loss;
                                # vi trains each configuration's seeds together as one population (see the README)
mode: max                       # default: min for davies_bouldin, mdl_bits, vi and the losses, max otherwise
asha: {grace_period: 20, reduction_factor: 3}   # optional early stopping
resources: {cpu: 1, gpu: 0.25, workers: 1}     # per trial (per worker when workers > 1)
                                # population: 16 trains up to 16 trials that differ only in seed, brb.alpha,
                                # brb.interval and train.lr as one stacked model (grid/random, no asha)
checkpoint_every: 10            # epochs between trial checkpoints (a retried trial resumes there)
max_failures: 2                 # retries of a crashed trial
pretrain_cache: null            # shared pretraining directory; default <study dir>/pretrain_cache
keep_models: true               # each finished trial's network and centres in <study dir>/models (raydc.load_model)
tracking:                       # optional, live per-epoch metrics; `true` or {} = the tracker's defaults
  tensorboard: true             # event files in <study dir>/tensorboard/<trial id>   (pip install 'raydc[tensorboard]')
  mlflow: {}                    # tracking_uri (default sqlite:///<study dir>/mlflow.db), experiment (default: name)
  wandb: {mode: offline}        # mode, project (default: name), entity             (pip install 'raydc[wandb]')
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from raydc.config import ConfigError, TrialConfig, flatten, holds_int, make_config
from raydc.data import DatasetUnavailable, check_available, dataset_names
from raydc.engine.population import check_stackable
from raydc.engine.records import FINAL_METRICS, LABEL_FREE_METRICS, LOWER_IS_BETTER
from raydc.config.effects import affects, unused_reason
from raydc.study.plan import PlannedTrial, build_config, expand, grid_points, probe_points, random_points
from raydc.study.space import Dimension, parse_dimension
from raydc.study.tracking import TrackingSpec

# raydc select's names of the final metrics a study may also search by.
METRIC_ALIASES = {"ch": "calinski_harabasz", "db": "davies_bouldin", "mdl": "mdl_bits"}
# The metric that compares a configuration's seeds: each Tune trial then trains all of them as one population.
SEED_GROUP_METRIC = "vi"
# Trial-config fields a study sets elsewhere, and where.
MANAGED_FIELDS = {"seed": "search.seeds", "device": "resources.gpu", "checkpoint_every": "checkpoint_every"}


def _known_dataset(name: str) -> str:
    if name not in dataset_names():
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")
    return name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchSpec(_Strict):
    kind: Literal["grid", "random", "optuna"] = "grid"
    space: dict[str, Any] = Field(default_factory=dict)
    seeds: list[StrictInt] = Field(default_factory=lambda: [0])  # strict: `true` is no seed 1
    n: int | None = Field(default=None, ge=1)
    seed: StrictInt = Field(default=0, ge=0)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError("needs one or more distinct non-negative seeds")
        return seeds

    @model_validator(mode="after")
    def _samples(self) -> SearchSpec:
        if self.kind == "grid" and self.n is not None:
            raise ValueError("n: only random and optuna searches take a number of samples; "
                             "a grid runs every combination")
        if self.kind != "grid" and self.n is None:
            raise ValueError(f"n: a {self.kind} search needs the number of configurations to sample")
        return self


class AshaSpec(_Strict):
    grace_period: int = Field(default=10, ge=1)  # clustering epochs every trial runs before it can be stopped
    reduction_factor: float = Field(default=3.0, gt=1)


class ResourcesSpec(_Strict):
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)  # fractions below 1 let several trials share one GPU
    workers: int = Field(default=1, ge=1)  # > 1: data-parallel Ray Train workers, each with cpu and gpu
    population: int = Field(default=1, ge=1)  # > 1: up to this many stackable trials train as one model per Tune trial
    # at most this many Tune trials (a population counts once) at a time; default: what the resources allow, which
    # for data-parallel trials is what the cluster holds at start, so an autoscaling cluster needs it to grow
    concurrent: int | None = Field(default=None, ge=1)

    @property
    def device(self) -> str:
        return "cuda" if self.gpu > 0 else "cpu"

    @field_validator("gpu")
    @classmethod
    def _fraction_or_whole(cls, gpu: float) -> float:
        if gpu > 1 and gpu != int(gpu):
            raise ValueError("a trial takes a fraction of one GPU or a whole number of GPUs")
        return gpu


class StudySpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    dataset: str | None = None
    datasets: list[str] | None = None
    base: dict[str, Any] = Field(default_factory=dict)
    search: SearchSpec = Field(default_factory=SearchSpec)
    metric: str = "acc"
    mode: Literal["max", "min"] | None = None  # None: the metric's own direction
    asha: AshaSpec | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    checkpoint_every: int = Field(default=10, ge=1)
    keep_models: bool = True
    tracking: TrackingSpec | None = None
    max_failures: int = Field(default=2, ge=0)
    pretrain_cache: str | None = None

    @property
    def seed_groups(self) -> bool:
        """Whether each Tune trial trains one configuration's seeds together (metric vi)."""
        return self.metric == SEED_GROUP_METRIC

    @field_validator("tracking")
    @classmethod
    def _installed(cls, tracking: TrackingSpec | None) -> TrackingSpec | None:
        for name, command in tracking.missing_extras() if tracking is not None else []:
            raise ValueError(f"{name}: the study asks for {name} but it is not installed here; {command}")
        return tracking

    @model_validator(mode="after")
    def _direction(self) -> StudySpec:
        if self.mode is None:
            self.mode = "min" if self.metric in LOWER_IS_BETTER else "max"
        return self

    @model_validator(mode="after")
    def _seeds(self) -> StudySpec:
        seeds = self.search.seeds
        if self.seed_groups:
            if len(seeds) < 2:
                raise ValueError("search.seeds: metric vi compares the seeds of each configuration; give two or more")
            if self.resources.population > 1:
                raise ValueError("resources.population: with metric vi each trial trains one configuration's seeds "
                                 "as a population already; remove resources.population")
            if self.resources.workers > 1:
                raise ValueError("resources.workers: with metric vi a configuration's seeds train as one population "
                                 "on one device; set resources.workers to 1")
        elif self.search.kind == "optuna" and len(seeds) != 1:
            raise ValueError("search.seeds: an optuna search evaluates each suggested configuration once; give one "
                             "seed (or search by metric vi, which trains every seed of each suggestion)")
        return self

    @model_validator(mode="after")
    def _population(self) -> StudySpec:
        if self.resources.population == 1:
            return self
        if self.search.kind == "optuna":
            raise ValueError("resources.population: optuna suggests one trial at a time; use a grid or random search")
        if self.asha is not None:
            raise ValueError("resources.population: a population's members end together; remove asha")
        if self.resources.workers > 1:
            raise ValueError("resources.population: a population runs on one device; set resources.workers to 1")
        return self

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        metric = METRIC_ALIASES.get(metric, metric)
        if metric not in FINAL_METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(FINAL_METRICS)} (label-free: "
                             f"{', '.join(LABEL_FREE_METRICS)}; ch, db and mdl as in raydc select)")
        return metric

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, name: str | None) -> str | None:
        return None if name is None else _known_dataset(name)

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and (not names or len(set(names)) != len(names)):
            raise ValueError("needs one or more distinct dataset names")
        return None if names is None else [_known_dataset(name) for name in names]


@dataclass(frozen=True)
class Study:
    """A validated study: its spec, the base values every trial shares, its dimensions and (grid/random) trials."""

    spec: StudySpec
    base: dict[str, Any]
    dimensions: list[Dimension]
    trials: list[PlannedTrial]
    max_epochs: int  # the longest trial's clustering epochs (ASHA's horizon)

    @property
    def planned_count(self) -> int:
        if self.spec.search.kind == "optuna":  # n configurations, each with every seed when they train together
            return self.spec.search.n * (len(self.spec.search.seeds) if self.spec.seed_groups else 1)
        return len(self.trials)

    def dataset_field(self) -> tuple[str, list[str]]:
        """Where the study names its datasets, and which they are."""
        for dim in self.dimensions:
            if dim.key == "data.name":
                return ("datasets" if self.spec.datasets else dim.field), list(dim.values)
        field = "dataset" if self.spec.dataset else "base.data.name"
        return field, [self.base["data"]["name"]]


def _spec_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "missing":
        msg = "required"
    if ": " in msg and " " not in msg.split(": ", 1)[0]:  # a model check naming its own field
        sub, msg = msg.split(": ", 1)
        loc = f"{loc}.{sub}" if loc else sub
    return ConfigError(loc or "study", msg)


def _base_values(spec: StudySpec) -> dict[str, Any]:
    base = copy.deepcopy(spec.base)
    for key, where in MANAGED_FIELDS.items():
        if key in base:
            raise ConfigError(f"base.{key}", f"set by the study's {where}")
    if not isinstance(base.get("data", {}), dict):
        raise ConfigError("base.data", "must be a mapping")
    sources = [s for s, given in (("dataset", spec.dataset), ("datasets", spec.datasets),
                                  ("base.data.name", "name" in base.get("data", {})),
                                  ("search.space.data.name", "data.name" in spec.search.space)) if given]
    if not sources:
        raise ConfigError("dataset", "required (or datasets, or data.name in search.space)")
    if len(sources) > 1:
        raise ConfigError(sources[1], f"the dataset is already given by {sources[0]}; name it in one place")
    if spec.dataset:
        base.setdefault("data", {})["name"] = spec.dataset
    try:
        make_config(base)
    except ConfigError as exc:
        raise ConfigError(f"base.{exc.field}", str(exc).removeprefix(f"{exc.field}: ")) from None
    return base


def _takes_whole_numbers(key: str) -> bool:
    """Whether a dotted trial-config field holds integers (config.holds_int)."""
    model: Any = TrialConfig
    *groups, leaf = key.split(".")
    for group in groups:
        model = model.model_fields[group].annotation
    return holds_int(model.model_fields[leaf].annotation)


def _dimensions(spec: StudySpec) -> list[Dimension]:
    space = dict(spec.search.space)
    if spec.datasets:
        space["data.name"] = list(spec.datasets)
    fields = flatten(TrialConfig())
    dims = []
    for key, raw in space.items():
        field = f"search.space.{key}"
        if key in MANAGED_FIELDS:
            raise ConfigError(field, f"set by the study's {MANAGED_FIELDS[key]}")
        if key not in fields:
            raise ConfigError(field, "unknown trial-config field (use dotted names such as brb.alpha)")
        dim = parse_dimension(key, raw)
        if spec.search.kind == "grid" and dim.kind != "choice":
            raise ConfigError(field, "a grid search needs a list of values; ranges need kind random or optuna")
        # Probing a range checks only its integer ends; trials would then draw fractions and fail one by one.
        if dim.kind in ("uniform", "loguniform") and _takes_whole_numbers(key):
            low, high = math.ceil(dim.low), math.floor(dim.high)
            raise ConfigError(field, f"takes whole numbers but {dim.kind} draws fractions; "
                                     f"use {{int: [{low}, {high}]}}")
        if spec.search.kind == "optuna" and dim.kind == "choice" and any(
                v is not None and not isinstance(v, (bool, int, float, str)) for v in dim.values):
            raise ConfigError(field, "optuna chooses among plain values (numbers, strings, booleans), not lists")
        dims.append(dim)
    return dims


def _check_effects(dims: list[Dimension], configs: list[TrialConfig]) -> None:
    for dim in dims:
        if not any(affects(dim.key, config) for config in configs):
            raise ConfigError(dim.field, unused_reason(dim.key))


def _check_asha(spec: StudySpec, longest: int) -> None:
    if spec.asha is not None and spec.asha.grace_period >= longest:
        raise ConfigError("asha.grace_period", f"must be below the trials' training epochs ({longest}) "
                                               "or no trial could be stopped early")


def _check_seed_groups(configs: list[TrialConfig]) -> None:
    """metric vi trains a configuration's seeds as one population: every configuration must be one that can."""
    for config in configs:
        try:
            check_stackable([config])
        except ConfigError as exc:
            raise ConfigError("metric", f"vi trains each configuration's seeds as one population: {exc}") from None


def check_datasets(study: Study) -> None:
    """Every dataset must load offline now; nothing is downloaded."""
    field, names = study.dataset_field()
    for name in names:
        try:
            check_available(name, data_dir=study.base.get("data", {}).get("dir"))
        except DatasetUnavailable as exc:
            raise ConfigError(field, str(exc)) from None


def parse_study(raw: Any, datasets: list[str] | None = None) -> Study:
    """Validate a study (as loaded from YAML) and plan its trials; `datasets` replaces the file's dataset(s)."""
    if not isinstance(raw, dict):
        raise ConfigError("study", "a study file must be a mapping")
    if datasets:
        raw = {k: v for k, v in raw.items() if k not in ("dataset", "datasets")}
        raw.update({"dataset": datasets[0]} if len(datasets) == 1 else {"datasets": list(datasets)})
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as exc:
        raise _spec_error(exc) from None
    base = _base_values(spec)
    dims = _dimensions(spec)
    search = spec.search
    if search.kind == "grid":
        points = grid_points(dims)
        checked = points
    else:  # a sampled space must be valid at its extremes, not only where this draw landed
        points = random_points(dims, search.n, search.seed) if search.kind == "random" else []
        checked = probe_points(dims) + points
    configs = [build_config(base, point, search.seeds[0]) for point in checked]
    _check_effects(dims, configs)
    if spec.seed_groups:
        _check_seed_groups(configs)
    longest = max(c.training_epochs for c in configs)
    _check_asha(spec, longest)
    trials = [] if search.kind == "optuna" else expand(base, points, search.seeds)
    return Study(spec, base, dims, trials, longest)


def load_study(path: str | Path, datasets: list[str] | None = None, check_data: bool = True) -> Study:
    """Read, validate and plan a study file; any problem raises one ConfigError naming the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the study file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {exc}") from None
    study = parse_study(raw, datasets)
    if check_data:
        check_datasets(study)
    return study


def dump_spec(spec: StudySpec) -> str:
    """The resolved study, defaults filled in, as YAML."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
