"""What a trial reports: one EpochRecord per epoch and a TrialRecord at the end."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

NAN = math.nan


@dataclass
class EpochRecord:
    phase: str                      # "pretrain", "cluster", "selflabel_warmup" or "selflabel"
    epoch: int                      # 0-based within the phase
    loss: float = NAN               # weighted total that was optimised
    loss_cluster: float = NAN
    loss_reconstruction: float = NAN
    loss_contrastive: float = NAN   # SimCLR InfoNCE (resnet18 trials)
    loss_selfdistill: float = NAN   # LFSS eq 9
    loss_instance: float = NAN      # LFSS eq 4
    acc: float = NAN                # Hungarian clustering accuracy, [0, 1]
    nmi: float = NAN
    ari: float = NAN
    intra_cd: float = NAN           # App. D.4 on a fixed subsample, l2-normalised embedding
    inter_cd: float = NAN
    cl_change: float = NAN          # 1 − NMI(S_t, S_t−1), fraction [0, 1]
    silhouette: float = NAN         # on predicted labels, fixed subsample
    calinski_harabasz: float = NAN  # on predicted labels, fixed subsample (higher = tighter, better separated)
    davies_bouldin: float = NAN     # on predicted labels, fixed subsample (lower = better separated)
    mdl_bits: float = NAN           # MDL cost of the clustered embedding, every sample (raydc.evaluation.mdl; lower = better)
    vi: float = NAN                 # population: mean variation of information (nats) with the other seeds of
                                    # this configuration trained beside it (lower = more reproducible)
    ratio_share: float = NAN        # share of samples with d1/d2 > threshold (Fig 7)
    confident_fraction: float = NAN  # self-labeling: share of samples above the confidence threshold
    nmi_match: float = NAN          # self-labeling: NMI of pseudo-labels and classes on the confident set
    stability_mean: float = NAN     # LFSS: cosine of each sample's representation in consecutive epochs
    stability_d1: float = NAN       # deciles of that stability
    stability_d2: float = NAN
    stability_d3: float = NAN
    stability_d4: float = NAN
    stability_d5: float = NAN
    stability_d6: float = NAN
    stability_d7: float = NAN
    stability_d8: float = NAN
    stability_d9: float = NAN
    stability_bin_change: float = NAN  # share of samples whose stability decile changed since the last epoch
    reset_applied: bool = False     # a BRB step (or its ablation) ran before this epoch
    reset_time_s: float = 0.0
    time_s: float = 0.0             # wall time of this epoch including evaluation
    elapsed_s: float = 0.0          # wall time since the trial started (runs before a resume included)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EPOCH_FIELDS = tuple(EpochRecord.__dataclass_fields__)
FINAL_METRICS = ("acc", "nmi", "ari", "intra_cd", "inter_cd", "silhouette", "ratio_share", "loss", "loss_reconstruction",
                 "calinski_harabasz", "davies_bouldin", "mdl_bits", "vi")
# Final metrics that read no label: what a study may search by without labels (raydc.study.spec).
LABEL_FREE_METRICS = ("silhouette", "calinski_harabasz", "davies_bouldin", "mdl_bits", "vi", "ratio_share", "loss",
                      "loss_reconstruction")
# Label-free metrics a smaller value of which is better: a study's default mode for them is min.
LOWER_IS_BETTER = ("davies_bouldin", "mdl_bits", "vi", "loss", "loss_reconstruction", "intra_cd")
# Labels of a fresh k-means on the final embedding, as ClustPy's `labels_` report them (vs the algorithm's own).
KMEANS_METRICS = ("kmeans_acc", "kmeans_nmi", "kmeans_ari")


@dataclass
class TrialRecord:
    config: dict[str, Any]          # flat dotted config
    status: str                     # "finished" or "failed"
    error: str | None = None
    final: dict[str, float] = field(default_factory=dict)
    epochs_done: int = 0
    wall_time_s: float = 0.0        # the whole trial, runs before a resume included (see clock.py)
    ended_at: float | None = None   # when the trial ended, seconds since the epoch (UTC)
    pretrain_time_s: float = 0.0
    cluster_time_s: float = 0.0
    selflabel_time_s: float = 0.0
    reset_time_s: float = 0.0
    pretrain_cached: bool = False
    cluster_cached: bool = False            # the clustering stage came from a trial that differs only in self-labeling
    device: str = "cpu"
    node: str | None = None                # the Ray node that ran (and recorded) the trial; None outside Ray
    labels: np.ndarray | None = None       # final cluster assignment of every sample
    embedding: np.ndarray | None = None    # final embedding, for label-free model selection
    model: dict[str, Any] | None = None    # the trained network and centres (raydc.engine.model); None after self-labeling
    versions: dict[str, str] = field(default_factory=dict)
