"""Which trial settings can change a trial's outcome, given the rest of its configuration.

A search dimension that cannot affect any trial of a study is a mistake in the study file (it would
only multiply identical runs), so validation rejects it; within a grid, trials that differ only in a
setting their configuration ignores collapse into one.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from raydc.config import (CENTROID_RECLUSTERING_MODES, LEARNABLE_CENTROID_ALGORITHMS, PHI_MODES, RECLUSTERING_MODES,
                          RESETTING_MODES, SEEDED_RECLUSTER_METHODS, TrialConfig)


@dataclass(frozen=True)
class Rule:
    applies: Callable[[TrialConfig], bool]
    when: str  # the condition, worded for an error message


def _modes(modes: set[str]) -> str:
    return "brb.mode is one of " + ", ".join(sorted(modes))


_RESETS = Rule(lambda c: c.brb.mode in RESETTING_MODES, _modes(RESETTING_MODES))
_PRETRAINS = Rule(lambda c: c.pretrain.epochs > 0, "pretrain.epochs > 0")
_SELF_LABELS = Rule(lambda c: c.selflabel.epochs > 0, "selflabel.epochs > 0")
_RESNET = Rule(lambda c: c.net.arch == "resnet18", "net.arch is resnet18")
_LFSS = Rule(lambda c: c.train.algorithm == "lfss", "train.algorithm is lfss")
_CENTROIDS = Rule(lambda c: c.train.algorithm != "lfss", "train.algorithm is not lfss")  # a k-means start, whole batches
_SHRINK_PERTURB = Rule(lambda c: c.resl.strategy in ("sp", "sp_star"), "resl.strategy is sp or sp_star")
_HARE_TORTOISE = Rule(lambda c: c.resl.strategy == "ht", "resl.strategy is ht")


def _resets_block(c: TrialConfig) -> bool:
    return c.brb.mode in RESETTING_MODES and any(name.startswith("block") for name in c.brb.layers)


RULES: dict[str, Rule] = {
    "brb.alpha": _RESETS,
    "brb.layers": _RESETS,
    "brb.reset_embedding": _RESETS,
    "brb.block_alpha": Rule(_resets_block, f"{_modes(RESETTING_MODES)} and brb.layers holds a ResNet block"),
    "brb.block_alpha_step": Rule(_resets_block, f"{_modes(RESETTING_MODES)} and brb.layers holds a ResNet block"),
    "brb.interval": Rule(lambda c: c.brb.mode != "baseline", "brb.mode is not baseline"),
    "brb.recluster": Rule(lambda c: c.brb.mode in CENTROID_RECLUSTERING_MODES, _modes(CENTROID_RECLUSTERING_MODES)),
    "brb.recluster_inits": Rule(lambda c: c.recluster_method in SEEDED_RECLUSTER_METHODS,
                                f"{_modes(CENTROID_RECLUSTERING_MODES)} and brb.recluster is kmeans or em"),
    "brb.em_covariance": Rule(lambda c: c.recluster_method == "em",
                              f"{_modes(CENTROID_RECLUSTERING_MODES)} and brb.recluster is em"),
    "brb.kmedoids_init": Rule(lambda c: c.recluster_method == "kmedoids",
                              f"{_modes(CENTROID_RECLUSTERING_MODES)} and brb.recluster is kmedoids"),
    "brb.subsample": Rule(lambda c: c.brb.mode in RECLUSTERING_MODES, _modes(RECLUSTERING_MODES)),
    "brb.reset_momentum": Rule(lambda c: c.brb.mode in RECLUSTERING_MODES
                               and c.train.algorithm in LEARNABLE_CENTROID_ALGORITHMS,
                               f"{_modes(RECLUSTERING_MODES)} and train.algorithm is dec or idec"),
    "brb.reset_init": Rule(lambda c: c.brb.mode in PHI_MODES, _modes(PHI_MODES)),
    "data.resize": Rule(lambda c: c.affine_style is not None, "data.name is a grayscale dataset"),
    "train.drop_last": _CENTROIDS,
    "train.init_kmeans_inits": _CENTROIDS,
    "brb.noise_beta": Rule(lambda c: c.brb.mode == "embedding_noise", "brb.mode is embedding_noise"),
    "train.cluster_weight": Rule(lambda c: c.train.algorithm in ("idec", "dcn"),
                                 "train.algorithm is idec or dcn (DEC trains on the cluster loss alone)"),
    "pretrain.lr": _PRETRAINS,
    "pretrain.batch_size": _PRETRAINS,
    "pretrain.augment": _PRETRAINS,
    "pretrain.weight_decay": _PRETRAINS,
    "net.projector_width": _RESNET,
    "net.projector_dim": _RESNET,
    "contrastive.temperature": _RESNET,
    "contrastive.reset_projector": Rule(lambda c: c.net.arch == "resnet18" and c.brb.mode in RESETTING_MODES,
                                        f"net.arch is resnet18 and {_modes(RESETTING_MODES)}"),
    **{f"selflabel.{name}": _SELF_LABELS
       for name in ("warmup_epochs", "lr", "weight_decay", "batch_size", "threshold", "balance")},
    "resl.alpha": _SHRINK_PERTURB,
    "resl.interval": Rule(lambda c: c.resl.strategy != "none", "resl.strategy is not none"),
    "resl.momentum": _HARE_TORTOISE,
    "resl.ema_update": _HARE_TORTOISE,
    **{f"lfss.{name}": _LFSS for name in ("warmup_epochs", "unstable_ratio", "noise", "weight", "target_momentum",
                                          "temperature", "predictor_hidden")},
}


def affects(key: str, config: TrialConfig) -> bool:
    rule = RULES.get(key)
    return rule is None or rule.applies(config)


def unused_reason(key: str) -> str:
    return f"cannot affect any trial of this study: {key} is used only when {RULES[key].when}"
