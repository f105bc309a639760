"""raydc vs ClustPy IDEC: seconds per clustering epoch on the same data, device and architecture, in one run.

Both train IDEC (reconstruction + 0.1 × DEC loss, Adam) on a D-1024-512-256-10 ReLU autoencoder with batch 256
over the whole dataset (OPTDIGITS by default, from $RAYDC_DATA_DIR). Rows alternate epoch by epoch so that load
from other processes hits them alike; figures are medians. "train" is the optimisation loop only (what ClustPy's
clustering epoch does); "+eval" adds raydc's per-epoch evaluation (embedding, ACC/NMI/ARI, geometry metrics),
which ClustPy does not do. ClustPy is not a dependency of raydc; install it just for this benchmark:
    pip install clustpy==0.0.3
--precision bf16 runs raydc's network under bfloat16 autocast (ClustPy stays float32): on CPUs with bf16 matrix units.
Example:
    python benchmarks/vs_clustpy.py --dataset optdigits --epochs 7 --threads 2 [--precision bf16]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TQDM_DISABLE", "1")  # ClustPy prints a progress bar per fit call
# Idle OpenMP workers sleep instead of spinning: with more busy processes than cores, spinning 2-thread GEMMs ran
# ~10x slower than 1 thread here. Set before torch loads its OpenMP runtime; applies to both rows alike.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from raydc.config import make_config
from raydc.data import load_dataset
from raydc.compute.precision import PRECISIONS
from raydc.engine.records import EpochRecord
from raydc.engine.cluster_epochs import sync_device
from raydc.engine.trial import Trial


def raydc_trial(data, device: torch.device, augment: bool, args: argparse.Namespace) -> Trial:
    # ClustPy's input exactly: the native images, and every batch of the epoch (its loader keeps the short one)
    config = make_config({"device": str(device), "seed": args.seed, "pretrain": {"epochs": 0},
                          "data": {"name": args.dataset, "resize": None},
                          "net": {"hidden": [1024, 512, 256], "embedding_dim": 10},
                          "train": {"algorithm": "idec", "batch_size": args.batch_size, "augment": augment,
                                    "epochs": args.epochs + 1, "lr": 1e-3, "drop_last": False,
                                    "precision": args.precision},
                          "brb": {"mode": "baseline"}})
    trial = Trial(config, data, device)
    trial.init_clustering()
    return trial


def clustpy_epoch_fn(x_flat: torch.Tensor, n_clusters: int, device: torch.device, args: argparse.Namespace):
    """One ClustPy IDEC clustering epoch as IDEC.fit runs it (its default dataloader and training loop)."""
    try:
        from clustpy.deep._data_utils import get_dataloader
        from clustpy.deep._utils import mean_squared_error
        from clustpy.deep.dec import _DEC_Module
        from clustpy.deep.neural_networks import FeedforwardAutoencoder
    except ImportError:
        return None
    import numpy as np

    X = x_flat.cpu().numpy()
    net = FeedforwardAutoencoder([X.shape[1], 1024, 512, 256, 10], activation_fn=torch.nn.ReLU,
                                 random_state=args.seed).to(device)
    loader = get_dataloader(X, args.batch_size, shuffle=True)
    with torch.no_grad():
        z = net.encode(torch.from_numpy(X).to(device)).cpu().numpy()
    rng = np.random.default_rng(args.seed)
    centers = z[rng.choice(len(z), n_clusters, replace=False)]  # the initialisation does not change the epoch cost
    module = _DEC_Module(centers, alpha=1.0).to(device)
    optimizer = torch.optim.Adam(list(net.parameters()) + list(module.parameters()), lr=1e-3)

    def epoch() -> None:
        module.fit(net, loader, 1, device, optimizer, mean_squared_error, clustering_loss_weight=0.1, ssl_loss_weight=1.0)

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="optdigits")
    parser.add_argument("--epochs", type=int, default=7, help="timed epochs per row (after one warm-up epoch)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="float32", choices=PRECISIONS,
                        help="raydc's train.precision (ClustPy runs float32)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    data = load_dataset(args.dataset).to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device {name}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, torch {torch.__version__}, "
          f"{args.dataset} {data.n} x {data.dim}, D-1024-512-256-10, batch {args.batch_size}, {args.epochs} timed "
          f"epochs, medians, raydc in {args.precision}")

    plain, augmented = raydc_trial(data, device, False, args), raydc_trial(data, device, True, args)

    def raydc_epoch(trial: Trial, times: dict[str, list[float]], key: str) -> None:
        sync_device(device)
        t0 = time.perf_counter()
        trial.train_epoch()
        sync_device(device)
        t1 = time.perf_counter()
        trial.evaluate(EpochRecord(phase="cluster", epoch=0))
        sync_device(device)
        times[key].append(t1 - t0)
        times[key + "+eval"].append(time.perf_counter() - t0)

    clustpy_epoch = clustpy_epoch_fn(data.flat(), data.n_clusters, device, args)
    times: dict[str, list[float]] = {k: [] for k in ("plain", "plain+eval", "aug", "aug+eval", "clustpy")}
    for i in range(args.epochs + 1):  # epoch 0 warms up
        raydc_epoch(plain, times, "plain")
        raydc_epoch(augmented, times, "aug")
        if clustpy_epoch is not None:
            sync_device(device)
            t0 = time.perf_counter()
            clustpy_epoch()
            sync_device(device)
            times["clustpy"].append(time.perf_counter() - t0)
        if i == 0:
            for v in times.values():
                v.clear()
    med = {k: statistics.median(v) for k, v in times.items() if v}
    ref = med.get("clustpy")
    print(f"{'row':<36} {'s/epoch':>8} {'vs ClustPy':>11}")
    rows = [("ClustPy 0.0.3 IDEC, no augmentation", "clustpy"),
            ("raydc IDEC, no augmentation, train", "plain"), ("raydc IDEC, no augmentation, +eval", "plain+eval"),
            ("raydc IDEC, augmentation, train", "aug"), ("raydc IDEC, augmentation, +eval", "aug+eval")]
    for label, key in rows:
        if key in med:
            ratio = f"{med[key] / ref:10.2f}x" if ref else f"{'-':>11}"
            print(f"{label:<36} {med[key]:8.3f} {ratio}")
    if ref is None:
        print("ClustPy not installed: `pip install clustpy==0.0.3` to add its row (raydc rows shown alone)")


if __name__ == "__main__":
    main()
