"""What every column of trials.parquet and epochs.parquet holds, with its unit: the `description` each Parquet field
carries in its metadata (raydc.tables.store), so pandas, DuckDB or pyarrow readers see it beside the data.

Units, the same in every table, printed line and figure raydc makes: ACC, NMI, ARI, cl_change and every share are
fractions in [0, 1]; MDL costs are bits; VI is nats; times are seconds; losses are the optimised objective's units.
"""
from __future__ import annotations

SCORES = {
    "acc": "clustering accuracy after the best one-to-one matching of clusters to classes (Hungarian), fraction [0, 1]",
    "nmi": "normalised mutual information of clusters and classes (arithmetic mean normaliser), fraction [0, 1]",
    "ari": "adjusted Rand index of clusters and classes, [-1, 1] (0 = chance)",
    "intra_cd": "mean cosine distance between samples of one class in the l2-normalised embedding (App. D.4), "
                "evaluation subsample, [0, 2]",
    "inter_cd": "mean cosine distance between samples of different classes in the l2-normalised embedding, "
                "evaluation subsample, [0, 2]",
    "silhouette": "silhouette of the predicted clusters in the embedding, evaluation subsample, [-1, 1], label-free",
    "calinski_harabasz": "Calinski–Harabasz index of the predicted clusters, evaluation subsample, unitless ratio "
                         "(higher = tighter, better separated), label-free",
    "davies_bouldin": "Davies–Bouldin index of the predicted clusters, evaluation subsample, unitless (lower = better "
                      "separated), label-free",
    "mdl_bits": "MDL cost of the clustered embedding on every sample (raydc.evaluation.mdl), bits (lower = better), label-free",
    "vi": "mean variation of information between this trial's clusters and those of the other seeds of its "
          "configuration trained beside it, nats (lower = more reproducible; null alone), label-free",
    "ratio_share": "share of samples whose nearest/second-nearest centroid distance ratio exceeds "
                   "eval.ratio_threshold (Fig 7), fraction [0, 1], label-free",
    "loss": "weighted total loss that was optimised, mean over the epoch's batches",
    "loss_cluster": "clustering loss (DEC/IDEC KL divergence, DCN k-means term), mean over batches",
    "loss_reconstruction": "autoencoder reconstruction loss (mean squared error per input value), mean over batches",
    "loss_contrastive": "SimCLR InfoNCE loss (resnet18 trials), mean over batches",
    "loss_selfdistill": "LFSS self-distillation loss (its eq. 9), mean over batches",
    "loss_instance": "LFSS instance loss (its eq. 4), mean over batches",
}
KMEANS = {f"kmeans_{m}": f"{SCORES[m].split(',')[0]} of a fresh k-means on the final embedding, "
                         f"{SCORES[m].rsplit(', ', 1)[1] if m != 'ari' else '[-1, 1]'}" for m in ("acc", "nmi", "ari")}

EPOCH = {
    "trial_id": "the trial's id: a hash of its config with the seed (raydc.config.identity.trial_id)",
    "phase": "pretrain, cluster, selflabel_warmup or selflabel",
    "epoch": "epoch within the phase, counted from 0",
    **SCORES,
    "cl_change": "cluster label change since the last evaluation, 1 − NMI, fraction [0, 1]",
    "confident_fraction": "self-labeling: share of samples above the confidence threshold, fraction [0, 1]",
    "nmi_match": "self-labeling: NMI of pseudo-labels and classes on the confident samples, fraction [0, 1]",
    "stability_mean": "LFSS: mean cosine similarity of each sample's representation in consecutive epochs, [-1, 1]",
    **{f"stability_d{d}": f"LFSS: {d}0th percentile of that stability, [-1, 1]" for d in range(1, 10)},
    "stability_bin_change": "LFSS: share of samples whose stability decile changed since the last epoch, "
                            "fraction [0, 1]",
    "reset_applied": "whether a BRB step (or its ablation) ran before this epoch",
    "reset_time_s": "wall time of that BRB step, seconds",
    "time_s": "wall time of this epoch, evaluation included, seconds",
    "elapsed_s": "wall time since the trial started (runs before a resume included), seconds",
}

TRIAL = {
    "trial_id": EPOCH["trial_id"],
    "status": "finished, failed (loss diverged), stopped (ASHA) or error (crashed on every retry)",
    "error": "why the trial failed or crashed (null when it finished)",
    **{name: f"final: {text}" for name, text in SCORES.items()},
    **KMEANS,
    "epochs_done": "clustering epochs completed",
    "wall_time_s": "wall time of the whole trial (a resumed trial's earlier runs included), seconds",
    "pretrain_time_s": "wall time of pretraining (0 when taken from the cache), seconds",
    "cluster_time_s": "wall time of the clustering stage, seconds",
    "selflabel_time_s": "wall time of the self-labeling stage, seconds",
    "reset_time_s": "wall time of all BRB steps, seconds",
    "ended_at": "when the trial was recorded, UTC",
    "pretrain_cached": "whether pretraining was taken from the shared cache",
    "cluster_cached": "whether the clustering stage was shared with a trial differing only in self-labeling",
    "resolved_device": "the device the trial ran on (`device` is the one asked for)",
    "node": "the Ray node id that ran the trial (null outside Ray or when the driver recorded it)",
    "version.raydc": "raydc version that ran the trial",
    "version.torch": "torch version that ran the trial",
    "version.numpy": "numpy version that ran the trial",
}

# Settings of the trial config (raydc.config), one column each in trials.parquet.
CONFIG = {
    "seed": "seed of every random stream of the trial",
    "device": "device asked for: auto, cpu, cuda or cuda:N",
    "checkpoint_every": "clustering epochs between checkpoints (0 = none)",
    "data.name": "dataset name (raydc.data)",
    "data.dir": "data directory (null = $RAYDC_DATA_DIR or the download cache)",
    "data.affine": "grayscale augmentation: torchvision (whole-pixel shifts) or smooth (fractional, bilinear)",
    "data.resize": "side in pixels grayscale images are resized to (null = native size)",
    "net.arch": "network: mlp autoencoder or resnet18",
    "net.hidden": "hidden layer widths, comma-separated (resnet18: the head after its 512 features)",
    "net.embedding_dim": "embedding dimension (null = number of clusters)",
    "net.projector_width": "SimCLR projector width (resnet18)",
    "net.projector_dim": "SimCLR projector output dimension (resnet18)",
    "net.batch_norm": "whether the MLP has BatchNorm1d after each hidden layer (the authors' released configs)",
    "pretrain.epochs": "pretraining epochs (0 = clustering from scratch)",
    "pretrain.lr": "pretraining learning rate (Adam)",
    "pretrain.batch_size": "pretraining batch size, samples",
    "pretrain.augment": "whether pretraining sees augmented samples",
    "pretrain.weight_decay": "pretraining weight decay",
    "train.algorithm": "clustering algorithm: dec, idec or dcn",
    "train.epochs": "clustering epochs",
    "train.lr": "clustering learning rate (Adam)",
    "train.batch_size": "clustering batch size, samples",
    "train.augment": "whether clustering sees augmented samples",
    "train.cluster_weight": "weight of the clustering loss against reconstruction (null = the algorithm's default)",
    "train.grad_clip": "gradient norm clip (null = none)",
    "train.cuda_graphs": "whether steps replay as CUDA graphs on a GPU",
    "train.precision": "arithmetic of the network: float32 or bf16",
    "train.compile": "whether the loss terms are compiled with torch.compile",
    "train.dcn_update": "DCN centre update: after each epoch or each step",
    "train.drop_last": "whether the last incomplete batch of an epoch is dropped",
    "train.init_kmeans_inits": "k-means++ seedings of the initial k-means, the best by inertia kept",
    "brb.mode": "BRB variant or ablation (brb, baseline, reset only, recluster only, ...)",
    "brb.alpha": "soft reset strength α: weights become α·old + (1 − α)·fresh, fraction [0, 1]",
    "brb.interval": "clustering epochs T between BRB steps",
    "brb.layers": "layers the soft reset touches",
    "brb.reset_embedding": "whether the embedding layer is reset too",
    "brb.block_alpha": "α of the first reset block (resnet18; null = brb.alpha)",
    "brb.block_alpha_step": "α added per later block (resnet18)",
    "brb.recluster": "reclustering method after a reset (kmeans, kmeans++, kmedoids, em, random)",
    "brb.recluster_inits": "starts of each reclustering k-means (by inertia) or EM (by likelihood), the best kept",
    "brb.em_covariance": "covariances of the em reclustering's Gaussians (full or diag)",
    "brb.kmedoids_init": "medoids the kmedoids reclustering starts from (heuristic: the most central points)",
    "brb.subsample": "samples the reclustering k-means runs on",
    "brb.reset_momentum": "whether Adam's moments are reset with the weights (null = the mode's default)",
    "brb.reset_init": "initialisation of the fresh weights mixed in",
    "brb.noise_beta": "noise scale of the shrink-and-perturb ablation",
    "contrastive.temperature": "SimCLR temperature",
    "contrastive.reset_projector": "whether BRB resets the SimCLR projector",
    "selflabel.epochs": "self-labeling epochs (0 = no self-labeling stage)",
    "selflabel.warmup_epochs": "self-labeling warm-up epochs of the head",
    "selflabel.lr": "self-labeling learning rate",
    "selflabel.weight_decay": "self-labeling weight decay",
    "selflabel.batch_size": "self-labeling batch size, samples",
    "selflabel.threshold": "confidence above which a pseudo-label is used, fraction [0, 1]",
    "selflabel.balance": "whether pseudo-labels are class-balanced",
    "resl.strategy": "ReSL reset strategy during self-labeling (none, shrink-perturb, hare-tortoise, ...)",
    "resl.alpha": "ReSL reset strength, fraction [0, 1]",
    "resl.interval": "self-labeling epochs between ReSL resets",
    "resl.momentum": "ReSL hare-and-tortoise EMA momentum",
    "resl.ema_update": "when the ReSL EMA updates: each step or epoch",
    "lfss.warmup_epochs": "LFSS epochs before sample stability is used",
    "lfss.unstable_ratio": "LFSS share of samples treated as unstable, fraction [0, 1]",
    "lfss.noise": "LFSS noise added to unstable samples",
    "lfss.weight": "LFSS weight of its losses",
    "lfss.target_momentum": "LFSS target network momentum",
    "lfss.temperature": "LFSS temperature",
    "lfss.predictor_hidden": "LFSS predictor hidden width",
    "eval.every": "clustering epochs between evaluations",
    "eval.subsample": "samples of the fixed evaluation subsample for the geometry metrics",
    "eval.ratio_threshold": "distance ratio threshold of ratio_share",
}


def description(table: str, column: str) -> str:
    """The one-line description of a column of trials.parquet ("trials") or epochs.parquet ("epochs")."""
    found = (EPOCH if table == "epochs" else {**CONFIG, **TRIAL}).get(column)
    if found is None:
        raise KeyError(f"{table}.parquet column {column!r} has no description in raydc.tables.columns")
    return found
