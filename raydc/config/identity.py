"""A trial's identity, in one place: the id of its rows, of its configuration (its seeds together), and the content
keys of the pretraining and clustering stages it shares with other trials.

Each names what the trial computes: execution settings (EXECUTION_FIELDS) are left out, and a setting added after
trials were recorded is named only where it acts and differs from what they ran with (FORMER_DEFAULTS,
TrialConfig.changed_defaults), so ids and cache keys written before it still name the same computation."""
from __future__ import annotations

import hashlib
import json

from raydc.config import EXECUTION_FIELDS, FORMER_DEFAULTS, TrialConfig, dotted_exclude, set_dotted


def trial_id(config: TrialConfig) -> str:
    """Stable id of a configuration (seed included): the same config always maps to the same rows.

    Fields at their default are left out, so adding a new setting never changes existing trials' ids; settings
    that change how a trial runs but not what it computes are left out too.
    """
    payload = config.model_dump(exclude=dotted_exclude((*EXECUTION_FIELDS, *FORMER_DEFAULTS)), exclude_defaults=True)
    payload = {key: value for key, value in payload.items() if value != {}}  # a group left with nothing to name
    for name, value in config.changed_defaults().items():  # by their own rule: named where they act
        set_dotted(payload, name, value)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def configuration_id(config: TrialConfig) -> str:
    """Id of a trial's configuration: its trial id with the seed and data directory at their defaults, so the seeds
    of one configuration share it."""
    fields = TrialConfig.model_fields
    same = config.model_copy(update={"seed": fields["seed"].default,
                                     "data": config.data.model_copy(update={"dir": None})})
    return trial_id(same)[:12]


def pretrain_key(config: TrialConfig) -> str:
    """Content address of a pretraining result: dataset, architecture, pretrain settings and seed."""
    net_added = {name.split(".", 1)[1] for name in FORMER_DEFAULTS if name.startswith("net.")}
    spec = {"data": config.data.name, "net": config.net.model_dump(exclude=net_added),
            "pretrain": config.pretrain.model_dump(), "seed": config.seed, "format": 1}
    if config.net.arch != "mlp":
        spec["contrastive"] = config.contrastive.temperature
    changed = config.changed_defaults()
    if config.pretrain.augment and "data.affine" in changed:
        spec["affine"] = changed["data.affine"]
    if "data.resize" in changed:
        spec["resize"] = changed["data.resize"]
    if "net.batch_norm" in changed:
        spec["batch_norm"] = changed["net.batch_norm"]
    return content_key(spec)


def cluster_stage_key(config: TrialConfig) -> str:
    """Content address of the end of a clustering stage: every setting upstream of self-labeling."""
    skip = dotted_exclude((*EXECUTION_FIELDS, *FORMER_DEFAULTS, "selflabel", "resl"))
    return content_key(config.model_dump(exclude=skip) | config.changed_defaults())


def content_key(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]
