"""Which trial settings can change a trial's outcome, given the rest of its configuration.

A search dimension that cannot affect any trial of a study is a mistake in the study file (it would
only multiply identical runs), so validation rejects it; within a grid, trials that differ only in a
setting their configuration ignores collapse into one.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from raydc.config import RECLUSTERING_MODES, RESETTING_MODES, TrialConfig

# Reclustering modes that compute new centroids with brb.recluster (disentangled uses label means).
CENTROID_RECLUSTERING_MODES = RECLUSTERING_MODES - {"disentangled"}
LEARNABLE_CENTROID_ALGORITHMS = ("dec", "idec")


@dataclass(frozen=True)
class Rule:
    applies: Callable[[TrialConfig], bool]
    when: str  # the condition, worded for an error message


def _modes(modes: set[str]) -> str:
    return "brb.mode is one of " + ", ".join(sorted(modes))


_RESETS = Rule(lambda c: c.brb.mode in RESETTING_MODES, _modes(RESETTING_MODES))
_PRETRAINS = Rule(lambda c: c.pretrain.epochs > 0, "pretrain.epochs > 0")

RULES: dict[str, Rule] = {
    "brb.alpha": _RESETS,
    "brb.layers": _RESETS,
    "brb.reset_embedding": _RESETS,
    "brb.block_alpha_step": Rule(lambda c: c.brb.mode in RESETTING_MODES
                                 and any(name.startswith("block") for name in c.brb.layers),
                                 f"{_modes(RESETTING_MODES)} and brb.layers holds a ResNet block"),
    "brb.interval": Rule(lambda c: c.brb.mode != "baseline", "brb.mode is not baseline"),
    "brb.recluster": Rule(lambda c: c.brb.mode in CENTROID_RECLUSTERING_MODES, _modes(CENTROID_RECLUSTERING_MODES)),
    "brb.subsample": Rule(lambda c: c.brb.mode in RECLUSTERING_MODES, _modes(RECLUSTERING_MODES)),
    "brb.reset_momentum": Rule(lambda c: c.brb.mode in RECLUSTERING_MODES
                               and c.train.algorithm in LEARNABLE_CENTROID_ALGORITHMS,
                               f"{_modes(RECLUSTERING_MODES)} and train.algorithm is dec or idec"),
    "brb.noise_beta": Rule(lambda c: c.brb.mode == "embedding_noise", "brb.mode is embedding_noise"),
    "train.cluster_weight": Rule(lambda c: c.train.algorithm != "dec",
                                 "train.algorithm is idec or dcn (DEC trains on the cluster loss alone)"),
    "pretrain.lr": _PRETRAINS,
    "pretrain.batch_size": _PRETRAINS,
    "pretrain.augment": _PRETRAINS,
}


def affects(key: str, config: TrialConfig) -> bool:
    rule = RULES.get(key)
    return rule is None or rule.applies(config)


def unused_reason(key: str) -> str:
    return f"cannot affect any trial of this study: {key} is used only when {RULES[key].when}"
