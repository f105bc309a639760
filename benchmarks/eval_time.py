"""Seconds per evaluation of a population: its members scored one at a time (as each would be alone) against all at
once (`raydc.evaluation.scoring.epoch_scores` on the stacked tensors, as population mode does), in the same run.

An evaluation here is what follows the embedding of the whole dataset: label scores and label change against the last
evaluation over all n samples, class distances and silhouette on each member's subsample, centroid distance ratios.
The embeddings are synthetic, clustered around each member's own centroids. Example:
    python benchmarks/eval_time.py --device cuda --n 70000 --members 1 8 32 64
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from raydc.evaluation.scoring import class_indices, epoch_scores
from raydc.engine.cluster_epochs import sync_device
from raydc.engine.train import resolve_device


def population(members: int, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Stacked embeddings, labels, previous labels, subsamples and centroids of `members` members."""
    gen = torch.Generator(device=device).manual_seed(0)
    centers = torch.randn(members, args.k, args.dim, generator=gen, device=device) * 3
    y = torch.randint(0, args.k, (args.n,), generator=gen, device=device)
    z = centers[:, y] + torch.randn(members, args.n, args.dim, generator=gen, device=device)
    labels = torch.cdist(z, centers).argmin(2)
    prev = torch.where(torch.rand(members, args.n, generator=gen, device=device) < 0.05, (labels + 1) % args.k, labels)
    index = torch.stack([torch.randperm(args.n, generator=gen, device=device)[: args.subsample]
                         for _ in range(members)])
    classes, n_classes = class_indices(y)  # once, as each trial does
    return {"classes": classes, "n_classes": n_classes, "z": z, "labels": labels, "prev": prev, "index": index,
            "centers": centers}


def score(p: dict[str, Any], rows: slice, k: int) -> list[dict[str, float]]:
    return epoch_scores(p["classes"], p["n_classes"], p["z"][rows], p["labels"][rows], k, p["index"][rows],
                        prev_labels=p["prev"][rows], centers=p["centers"][rows])


def seconds(run, device: torch.device, repeats: int) -> float:
    """Median wall seconds of run() after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        sync_device(device)
        t0 = time.perf_counter()
        run()
        sync_device(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--n", type=int, default=70_000)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--subsample", type=int, default=2_000, help="eval.subsample")
    parser.add_argument("--k", type=int, default=10, help="clusters (and classes)")
    parser.add_argument("--dim", type=int, default=10, help="embedding dimension")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}, torch {torch.__version__}, n={args.n}, subsample={args.subsample}, k={args.k}, "
          f"d={args.dim}; seconds per evaluation (median of {args.repeats})")
    print(f"{'members':>8} {'one at a time':>14} {'all at once':>12} {'speed-up':>9} {'per member':>11}")
    for members in args.members:
        p = population(members, args, device)
        alone = seconds(lambda: [score(p, slice(m, m + 1), args.k) for m in range(members)], device, args.repeats)
        together = seconds(lambda: score(p, slice(None), args.k), device, args.repeats)
        print(f"{members:>8} {alone:>14.4f} {together:>12.4f} {alone / together:>8.2f}x {together / members:>11.5f}")


if __name__ == "__main__":
    main()
