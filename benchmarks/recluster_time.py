"""Cost of BRB's reclustering: seconds per call of each method and tensor operations (kernel launches on a GPU) of
k-means++ seeding and of one Lloyd iteration, on a BRB-sized embedding (10,000 × 10, a mixture of 10 blobs).
Each method starts once (EM with full covariances, k-medoids from the most central points); then the variants a
trial can configure: EM with diagonal covariances (brb.em_covariance), k-medoids from k-means++ seeds
(brb.kmedoids_init) and the methods that keep the best of --inits starts (brb.recluster_inits).

A Lloyd iteration's operations are counted as the difference between 10 and 50 iterations run to the end,
so the count does not depend on when a run converges. Example:
    python benchmarks/recluster_time.py --device cpu --repeats 7
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_time import seconds
from profile_step import OperationCount

from raydc.clustering.kmeans import RECLUSTER_METHODS, _kmeans_plusplus_indices, kmeans, recluster
from raydc.config import SEEDED_RECLUSTER_METHODS
from raydc.engine.train import resolve_device


def embedding(n: int, d: int, k: int, device: torch.device) -> torch.Tensor:
    """k unit-variance blobs with centres three standard deviations apart on average."""
    gen = torch.Generator().manual_seed(0)
    centers = 3 * torch.randn(k, d, generator=gen)
    return (centers[torch.randint(0, k, (n,), generator=gen)] + torch.randn(n, d, generator=gen)).to(device)


def operations(call) -> int:
    with OperationCount() as counted:
        call()
    return counted.total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--inits", type=int, default=10, help="starts of the seeded methods' variants (default 10)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    x = embedding(args.n, args.dim, args.k, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}, torch {torch.__version__}, embedding {args.n} x {args.dim}, k {args.k}")

    def generator() -> torch.Generator:
        return torch.Generator(device=device).manual_seed(1)

    def lloyd(iterations: int) -> int:
        # a negative tolerance is never met: every one of the iterations runs
        return operations(lambda: kmeans(x, args.k, generator(), max_iter=iterations, tol=-1.0))

    seeding = operations(lambda: _kmeans_plusplus_indices(x, args.k, generator()))
    print(f"operations: k-means++ seeding {seeding}, one Lloyd iteration {(lloyd(50) - lloyd(10)) / 40:.1f}")
    print(f"{'method':<18} {'s/call':>10}")
    def timed(label: str, method: str, **options) -> None:
        per_call = seconds(lambda: recluster(x, args.k, method, generator(), **options), device, args.repeats)
        print(f"{label:<18} {per_call:10.6f}")

    for method in RECLUSTER_METHODS:
        timed(method, method)
    timed("em-diag", "em", em_covariance="diag")
    timed("kmedoids-kmeans++", "kmedoids", kmedoids_init="kmeans++")
    for method in SEEDED_RECLUSTER_METHODS:
        timed(f"{method}-x{args.inits}", method, n_init=args.inits)
    timed(f"em-diag-x{args.inits}", "em", n_init=args.inits, em_covariance="diag")


if __name__ == "__main__":
    main()
