"""One evaluation of one trial or of a population's members at once: every metric of an EpochRecord computed on the
device from stacked (M, n, ...) tensors and brought to the host in two transfers, however many members there are
(scored member by member, a population paid about a dozen host round trips per member)."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from raydc.evaluation import metrics
from raydc.evaluation.mdl import stacked_mdl_costs

# Distance entries formed at a time (members × rows × subsample) by the geometry metrics: 256 MiB in float32.
DISTANCE_BLOCK = 1 << 26


def _rows(values: Tensor, index: Tensor) -> Tensor:
    """values[m, index[m]] for every row m of (M, n) or (M, n, d) values."""
    if values.ndim == 2:
        return values.gather(1, index)
    return values.gather(1, index.unsqueeze(2).expand(-1, -1, values.shape[2]))


def _group_size(device: torch.device, subsample: int) -> int:
    """Members whose geometry is computed as one batch: one on the CPU, where batched products ran slower than one
    member's (benchmarks/eval_time.py); on a GPU as many as DISTANCE_BLOCK holds, so an evaluation is a few launches."""
    return 1 if device.type == "cpu" else max(1, DISTANCE_BLOCK // subsample**2)


def _geometry(z: Tensor, labels: Tensor, classes: Tensor, eval_index: Tensor, n_classes: int, n_clusters: int,
              centers: Tensor | None, ratio_threshold: float) -> dict[str, Tensor]:
    """(M,) intra_cd, inter_cd, silhouette, calinski_harabasz, davies_bouldin and (with centers) ratio_share of a
    group of members, on the device."""
    members, subsample = eval_index.shape
    block = max(1, DISTANCE_BLOCK // (members * subsample))
    z_sub = _rows(z, eval_index)
    intra, inter = metrics.stacked_class_distances(F.normalize(z_sub, dim=2), _rows(classes, eval_index), n_classes,
                                                   block_size=block)
    labels_sub = _rows(labels, eval_index)
    geometry = {"intra_cd": intra, "inter_cd": inter,
                "silhouette": metrics.stacked_silhouettes(z_sub, labels_sub, n_clusters, block_size=block),
                "calinski_harabasz": metrics.stacked_calinski_harabasz(z_sub, labels_sub, n_clusters),
                "davies_bouldin": metrics.stacked_davies_bouldin(z_sub, labels_sub, n_clusters)}
    if centers is not None:
        geometry["ratio_share"] = metrics.stacked_ratio_shares(z, centers, ratio_threshold)
    return geometry


def class_indices(y: Tensor) -> tuple[Tensor, int]:
    """Each sample's class as an index in [0, number of classes), and that number: what epoch_scores takes, found
    once per trial (it is a sort and a host round trip)."""
    present, classes = torch.unique(y, return_inverse=True)
    return classes, len(present)


@torch.no_grad()
def epoch_scores(classes: Tensor, n_classes: int, z: Tensor, labels: Tensor, n_clusters: int, eval_index: Tensor,
                 *, prev_labels: Tensor | None = None, centers: Tensor | None = None,
                 ratio_threshold: float = 0.9, siblings: list[str] | None = None) -> list[dict[str, float]]:
    """Each member's acc, nmi, ari, intra_cd, inter_cd and silhouette (NaN for a collapsed clustering), the MDL cost
    of its clustered embedding (mdl_bits, on every sample), cl_change when prev_labels are given, ratio_share when
    centers are, and vi when siblings are.

    classes: (n,) class indices in [0, n_classes) (class_indices); z: (M, n, d) embeddings; labels and prev_labels:
    (M, n) clusters in [0, n_clusters); eval_index: (M, s) each member's fixed subsample for the geometry metrics;
    centers: (M, k, d); siblings: (M,) group of each member, members of one group being seeds of one configuration:
    a member's vi is its mean variation of information (nats) with the other members of its group (NaN if none).
    """
    z = z if z.dtype in (torch.float32, torch.float64) else z.float()
    members, subsample = eval_index.shape
    classes = classes.expand(members, -1)
    tables = [metrics.stacked_tables(classes, labels, n_classes, n_clusters).flatten(1)]
    if prev_labels is not None:
        tables.append(metrics.stacked_tables(prev_labels, labels, n_clusters, n_clusters).flatten(1))
    group = _group_size(z.device, subsample)
    parts = [_geometry(z[rows], labels[rows], classes[rows], eval_index[rows], n_classes, n_clusters,
                       None if centers is None else centers[rows], ratio_threshold)
             for rows in (slice(start, start + group) for start in range(0, members, group))]
    geometry = {name: torch.cat([part[name] for part in parts]) for name in parts[0]}
    geometry["mdl_bits"] = stacked_mdl_costs(z, labels, n_clusters)
    counts = torch.cat(tables, 1).cpu().numpy()
    values = torch.stack([value.double() for value in geometry.values()], 1).tolist()
    vi = _sibling_vi(labels, n_clusters, siblings) if siblings is not None else None
    label_cells = n_classes * n_clusters
    scores = []
    for row in range(members):
        acc, nmi, ari = metrics.table_scores(counts[row, :label_cells].reshape(n_classes, n_clusters))
        member = {"acc": acc, "nmi": nmi, "ari": ari, **dict(zip(geometry, values[row]))}
        if prev_labels is not None:
            member["cl_change"] = metrics.table_change(counts[row, label_cells:].reshape(n_clusters, n_clusters))
        if vi is not None:
            member["vi"] = vi[row]
        scores.append(member)
    return scores


def _sibling_vi(labels: Tensor, n_clusters: int, siblings: list[str]) -> list[float]:
    """Each member's mean variation of information with the other members of its sibling group (NaN if alone): the
    seeds' disagreement, which raydc select's vi averages over a configuration."""
    pairs = [(a, b) for a, b in itertools.combinations(range(len(siblings)), 2) if siblings[a] == siblings[b]]
    found: list[list[float]] = [[] for _ in siblings]
    if pairs:
        first, second = (torch.tensor(rows, device=labels.device) for rows in zip(*pairs))
        tables = metrics.stacked_tables(labels[first], labels[second], n_clusters, n_clusters).cpu().numpy()
        for (a, b), table in zip(pairs, tables):
            value = metrics.table_vi(table)
            found[a].append(value)
            found[b].append(value)
    return [sum(values) / len(values) if values else math.nan for values in found]
