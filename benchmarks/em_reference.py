"""raydc's EM reclustering against the call the BRB authors' code makes, scikit-learn's
GaussianMixture(covariance_type, n_init=10, reg_covar=1e-5), on the same embedding: ARI with the classes, ARI between
the two codes' clusterings of the same seed, and seconds per call (median over seeds).

The embedding stands in for an autoencoder's: the dataset's z-transformed images projected on their first --dim
principal components. raydc runs `recluster(x, k, "em", n_init=10, em_covariance=...)` as BRB's step does.
Example:
    RAYDC_DATA_DIR=../shared/data python benchmarks/em_reference.py --dataset usps --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from raydc.clustering.kmeans import recluster
from raydc.data import load_dataset


def timed(call):
    start = time.perf_counter()
    labels = call()
    return np.asarray(labels), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="usps")
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--inits", type=int, default=10)
    args = parser.parse_args()
    data = load_dataset(args.dataset)
    x = PCA(args.dim, random_state=0).fit_transform(data.x.flatten(1).numpy()).astype(np.float32)
    classes, k = data.y.numpy(), data.n_clusters
    print(f"{args.dataset}: {x.shape[0]} samples, PCA to {args.dim} dimensions, k {k}, {args.inits} starts, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'covariance':<10} {'code':<14} {'ARI per seed':<28} {'mean ARI':>8} {'agreement':>9} {'s/call':>8}")
    for covariance in ("full", "diag"):
        rows = {"raydc": [], "scikit-learn": []}
        for seed in args.seeds:
            generator = torch.Generator().manual_seed(seed)
            ours = timed(lambda: recluster(torch.from_numpy(x), k, "em", generator, n_init=args.inits,
                                           em_covariance=covariance)[1])
            mixture = GaussianMixture(k, covariance_type=covariance, n_init=args.inits, reg_covar=1e-5,
                                      random_state=seed)
            theirs = timed(lambda: mixture.fit(x).predict(x))
            agreement = adjusted_rand_score(theirs[0], ours[0])
            rows["raydc"].append((adjusted_rand_score(classes, ours[0]), agreement, ours[1]))
            rows["scikit-learn"].append((adjusted_rand_score(classes, theirs[0]), agreement, theirs[1]))
        for code, runs in rows.items():
            aris = [run[0] for run in runs]
            print(f"{covariance:<10} {code:<14} {' '.join(f'{a:.4f}' for a in aris):<28} "
                  f"{statistics.mean(aris):8.4f} {statistics.mean(run[1] for run in runs):9.4f} "
                  f"{statistics.median(run[2] for run in runs):8.3f}")


if __name__ == "__main__":
    main()
