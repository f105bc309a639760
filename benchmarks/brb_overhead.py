"""BRB overhead at interval T: one BRB step against T clustering epochs, for DEC/IDEC/DCN.

A BRB step is soft reset + embed a subsample (10,000 by default) + k-means on it + reassign every sample to the new
centroids (an embedding of the whole dataset) + Adam momentum reset of the centroids; a clustering epoch has augmentation and per-epoch evaluation on (see benchmarks/epoch_time.py, whose
timing helpers this reuses, on the same synthetic MNIST-shaped data). overhead = step / (T × epoch + step), the
share of clustering wall time spent in BRB; the paper reports 1.1 % at T = 20. The step is also split into its
parts, timed separately on the same trial. Example:
    python benchmarks/brb_overhead.py --n 70000 --epochs 3 --interval 20 --subsample 10000
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from epoch_time import synthetic_mnist, time_trial, timing_parser

from raydc.clustering.kmeans import nearest, recluster
from raydc.config import make_config
from raydc.resets import apply_plan, reset_momentum
from raydc.train import resolve_device, sync_device
from raydc.trial import Trial, embed


def step_parts(algorithm: str, args: argparse.Namespace, data, device: torch.device) -> dict[str, float]:
    """Median seconds of each part of the BRB step, on a trial after one clustering epoch."""
    config = make_config({"device": str(device), "pretrain": {"epochs": 0},
                          "train": {"algorithm": algorithm, "batch_size": args.batch_size},
                          "brb": {"mode": "brb", "interval": args.interval, "subsample": args.subsample}})
    trial = Trial(config, data, device)
    trial.init_clustering()
    trial.train_epoch()  # optimizer state exists, as at a real BRB step
    parts: dict[str, list[float]] = {"reset": [], "embed": [], "kmeans": [], "reassign": [], "momentum": []}
    for _ in range(args.epochs + 1):
        t = [time.perf_counter()]
        apply_plan(trial.reset_plan, trial.generator, "soft_reset")
        sync_device(device)
        t.append(time.perf_counter())
        sub = data.x[torch.randperm(data.n, generator=trial.generator, device=trial.generator.device)
                     [: args.subsample].to(device)]
        z = embed(trial.net, sub)
        sync_device(device)
        t.append(time.perf_counter())
        centers, _ = recluster(z, data.n_clusters, config.brb.recluster, trial.generator)
        sync_device(device)
        t.append(time.perf_counter())
        trial.model.set_centers(centers, nearest(embed(trial.net, data.x), centers))  # every sample, as the step does
        sync_device(device)
        t.append(time.perf_counter())
        if trial.model.learnable_centers:
            reset_momentum(trial.optimizer, [trial.model.centers])
        sync_device(device)
        t.append(time.perf_counter())
        for (name, values), a, b in zip(parts.items(), t, t[1:]):
            values.append(b - a)
    return {name: statistics.median(v[1:]) for name, v in parts.items()}  # the first round warms up


def main() -> None:
    parser = timing_parser(__doc__)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = synthetic_mnist(args.n).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}, torch {torch.__version__}, n {args.n}, subsample {min(args.subsample, args.n)}, "
          f"T {args.interval}, batch {args.batch_size}, augmentation and evaluation on, medians of {args.epochs}")
    print(f"{'algorithm':<9} {'s/epoch':>8} {'step s':>8} {'overhead':>9} {'reset':>8} {'embed':>8} {'k-means':>8} "
          f"{'reassign':>9} {'momentum':>9}")
    for algorithm in args.algorithms:
        epoch_s, step_s, _ = time_trial(algorithm, args, data)
        parts = step_parts(algorithm, args, data, device)
        overhead = 100 * step_s / (args.interval * epoch_s + step_s)
        print(f"{algorithm:<9} {epoch_s:8.3f} {step_s:8.4f} {overhead:8.2f}% {parts['reset']:8.4f} "
              f"{parts['embed']:8.4f} {parts['kmeans']:8.4f} {parts['reassign']:9.4f} {parts['momentum']:9.5f}")


if __name__ == "__main__":
    main()
