"""BRB overhead at interval T: one BRB step against T clustering epochs, for DEC/IDEC/DCN.

A BRB step is soft reset + embed the whole dataset + k-means on a subsample of it (10,000 by default) + reassign every
sample to the new centroids + Adam momentum reset of the centroids; a clustering epoch has augmentation and per-epoch
evaluation on (see benchmarks/epoch_time.py, whose timing helpers this reuses, on the same synthetic MNIST-shaped
data). overhead = step / (T × epoch + step), the share of clustering wall time spent in BRB; the paper reports 1.1 %
at T = 20. The step is also split into its parts, timed separately on the same trial, with the tensor operations
(kernel launches on a GPU) of each part and of the whole step. Example:
    python benchmarks/brb_overhead.py --n 70000 --epochs 3 --interval 20 --subsample 10000
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from epoch_time import synthetic_mnist, time_trial, timing_parser
from profile_step import OperationCount

from raydc.clustering.kmeans import nearest, recluster
from raydc.config import make_config
from raydc.nets.resets import apply_plan, reset_momentum
from raydc.engine.cluster_epochs import sync_device
from raydc.engine.train import resolve_device
from raydc.engine.state import embed
from raydc.engine.trial import Trial


def step_parts(trial: Trial, subsample: int) -> dict[str, Callable[[dict], None]]:
    """The BRB step of Trial.periodic_step (mode brb) as separately timed parts that pass results in `state`."""
    held = trial.state
    brb, data, device, generator = trial.config.brb, held.data, held.device, held.generator

    def embed_all(state: dict) -> None:
        pick = torch.randperm(data.n, generator=generator, device=generator.device)[:subsample]
        state["z_all"] = embed(held.net, data.x)  # every sample, as the step does: the subsample is read from it
        state["z"] = state["z_all"][pick.to(device)]

    def cluster(state: dict) -> None:
        state["centers"], _ = recluster(state["z"], data.n_clusters, brb.recluster, generator,
                                        **brb.recluster_options)

    def momentum(state: dict) -> None:
        if held.model.learnable_centers:
            reset_momentum(trial.optimizer, [held.model.centers])

    return {"reset": lambda state: apply_plan(held.reset_plan, generator, "soft_reset", brb.reset_init),
            "embed": embed_all, "k-means": cluster,
            "reassign": lambda state: held.model.set_centers(state["centers"], nearest(state["z_all"],
                                                                                       state["centers"])),
            "momentum": momentum}


def measure_step(algorithm: str, args: argparse.Namespace, data, device: torch.device
                 ) -> tuple[dict[str, float], dict[str, int], int]:
    """(median seconds of each part, tensor operations of each part, operations of one whole periodic_step), on a
    trial after one clustering epoch. An operation is a kernel launch on a GPU (benchmarks/profile_step.py)."""
    config = make_config({"device": str(device), "pretrain": {"epochs": 0},
                          "train": {"algorithm": algorithm, "batch_size": args.batch_size},
                          "brb": {"mode": "brb", "interval": args.interval, "subsample": args.subsample}})
    trial = Trial(config, data, device)
    trial.init_clustering()
    trial.train_epoch()  # optimizer state exists, as at a real BRB step
    parts = step_parts(trial, args.subsample)
    seconds: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.epochs + 1):
        state: dict = {}
        for name, part in parts.items():
            sync_device(device)
            t0 = time.perf_counter()
            part(state)
            sync_device(device)
            seconds[name].append(time.perf_counter() - t0)
    operations, state = {}, {}
    for name, part in parts.items():
        with OperationCount() as counted:
            part(state)
        operations[name] = counted.total
    with OperationCount() as counted:
        trial.periodic_step()
    medians = {name: statistics.median(v[1:]) for name, v in seconds.items()}  # the first round warms up
    return medians, operations, counted.total


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
    names = ("reset", "embed", "k-means", "reassign", "momentum")
    print(f"{'algorithm':<9} {'s/epoch':>8} {'step s':>8} {'overhead':>9} {'step ops':>9}  seconds, then operations, of "
          + ", ".join(names))
    for algorithm in args.algorithms:
        epoch_s, step_s, _ = time_trial(algorithm, args, data)
        seconds, operations, step_ops = measure_step(algorithm, args, data, device)
        overhead = 100 * step_s / (args.interval * epoch_s + step_s)
        print(f"{algorithm:<9} {epoch_s:8.3f} {step_s:8.4f} {overhead:8.2f}% {step_ops:9d} "
              + "".join(f"{seconds[name]:9.4f}" for name in names) + "".join(f"{operations[name]:6d}" for name in names))


if __name__ == "__main__":
    main()
