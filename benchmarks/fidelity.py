"""Fidelity against the BRB paper's Table 13 (scenario 2: no pretraining, OPTDIGITS by default).

Runs DEC/IDEC/DCN with and without BRB over several seeds and prints mean ± std of ACC/NMI/ARI
beside the paper's values; "k-means ACC" is a fresh k-means on the final embedding (ClustPy's `labels_`), "empty"
the mean number of clusters the algorithm's final assignment leaves without a sample.
Example:
    python benchmarks/fidelity.py --epochs 400 --seeds 0 1 2 --jobs 6
    python benchmarks/fidelity.py --epochs 400 --seeds 0 1 2 3 4 --population --jobs 2   # a population per variant
    python benchmarks/fidelity.py --epochs 400 --seeds 0 --algorithms dec --modes baseline --trace traces/
"""
from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import signal
import statistics
import sys
import time

# Table 13/14/15 (OPTDIGITS, no pretraining): ACC, NMI, ARI in percent; ARI only where the paper lists it.
PAPER = {
    ("dec", "baseline"): {"acc": 62.01, "nmi": 70.25}, ("dec", "brb"): {"acc": 81.52, "nmi": 87.79},
    ("idec", "baseline"): {"acc": 69.68, "nmi": 76.89}, ("idec", "brb"): {"acc": 80.60, "nmi": 85.85},
    ("dcn", "baseline"): {"acc": 87.10, "nmi": 87.08}, ("dcn", "brb"): {"acc": 88.54, "nmi": 86.36},
}


def trial_config(algorithm: str, mode: str, seed: int, args: argparse.Namespace) -> dict:
    return {"seed": seed, "device": args.device,
            "data": {"name": args.dataset, "affine": args.affine, "resize": args.resize},
            "net": {"batch_norm": args.batch_norm},
            "pretrain": {"epochs": args.pretrain_epochs},
            "train": {"algorithm": algorithm, "epochs": args.epochs, "precision": args.precision,
                      "dcn_update": args.dcn_update, "compile": args.compile, "cluster_weight": args.cluster_weight},
            "brb": {"mode": mode, "alpha": 0.8, "interval": 20}, "eval": {"every": 1 if args.trace else args.epochs}}


def outcome(record, n_clusters: int) -> dict:
    """The final scores of a finished trial, and how many clusters its final assignment leaves empty."""
    if record.status != "finished":
        return {}
    return {**record.final, "empty": n_clusters - len(set(record.labels.tolist()))}


def write_trace(epochs: list, path: str) -> None:
    """A trial's clustering epochs, one row each: what a side-by-side run of another implementation is read against."""
    import pandas as pd

    columns = ["epoch", "loss", "loss_cluster", "loss_reconstruction", "acc", "nmi", "ari", "cl_change",
               "reset_applied"]
    rows = [{c: getattr(e, c) for c in columns} for e in epochs if e.phase == "cluster"]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)


def run_group(job: tuple[str, str, list[int], argparse.Namespace]) -> list[tuple[str, str, int, dict, float]]:
    """One variant's seeds: one trial each (fit), or all of them as one stacked model (fit_population)."""
    algorithm, mode, seeds, args = job
    import torch

    torch.set_num_threads(max(1, args.threads))
    from raydc.data import load_dataset
    from raydc.engine.population import fit_population
    from raydc.engine.train import fit

    data = load_dataset(args.dataset)
    configs = [trial_config(algorithm, mode, seed, args) for seed in seeds]
    epochs: list[list] = [[] for _ in seeds]  # each trial's clustering epochs, as reported
    started = time.perf_counter()
    if args.population:
        records = fit_population(configs, lambda member, e: epochs[member].append(e), dataset=data)
    else:
        records = [fit(configs[0], epochs[0].append, dataset=data)]
    secs = (time.perf_counter() - started) / len(records)  # a population's wall time, shared by its members
    if args.trace:
        for seed, reported in zip(seeds, epochs):
            write_trace(reported, f"{args.trace}/{algorithm}_{mode}_seed{seed}.csv")
    return [(algorithm, mode, seed, outcome(r, data.n_clusters), secs) for seed, r in zip(seeds, records)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="optdigits")
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--pretrain-epochs", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algorithms", nargs="+", default=["dec", "idec", "dcn"])
    parser.add_argument("--jobs", type=int, default=1, help="trials run in parallel processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="float32", choices=["float32", "tf32", "bf16"], help="train.precision")
    parser.add_argument("--dcn-update", default="epoch", choices=["epoch", "step"], help="train.dcn_update")
    parser.add_argument("--cluster-weight", type=float, default=None,
                        help="train.cluster_weight (unset: Table 5's); DCN at 2/k of it has the authors' code's "
                             "loss scale")
    parser.add_argument("--compile", action="store_true", help="train.compile: the fused step's fidelity")
    parser.add_argument("--affine", default="torchvision", choices=["torchvision", "smooth"], help="data.affine")
    parser.add_argument("--resize", type=lambda v: None if v == "none" else int(v), default=28,
                        help="data.resize (none = native size)")
    parser.add_argument("--batch-norm", action="store_true", help="net.batch_norm: the authors' released configs")
    parser.add_argument("--modes", nargs="+", default=["baseline", "brb"], help="brb.mode values to run")
    parser.add_argument("--population", action="store_true",
                        help="train each variant's seeds as one population (one job per variant)")
    parser.add_argument("--trace", metavar="DIR",
                        help="score every epoch and write each trial's epochs to DIR/<algorithm>_<mode>_seed<S>.csv")
    args = parser.parse_args()
    variants = list(itertools.product(args.algorithms, args.modes))
    jobs = ([(a, m, args.seeds, args) for a, m in variants] if args.population
            else [(a, m, [s], args) for (a, m), s in itertools.product(variants, args.seeds)])
    started = time.perf_counter()
    results = []
    # SIGTERM as Ctrl-C: leaving the pool's block then terminates its workers instead of orphaning them
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            for group in pool.imap_unordered(run_group, jobs):
                for algorithm, mode, seed, final, secs in group:
                    results.append((algorithm, mode, seed, final, secs))  # printed as they finish: a cut run keeps them
                    print(f"{algorithm}+{mode} seed {seed}: acc {final.get('acc', float('nan')):.4f} "
                          f"k-means acc {final.get('kmeans_acc', float('nan')):.4f} empty clusters "
                          f"{final.get('empty')} ({secs:.0f}s)", flush=True)
    except KeyboardInterrupt:
        done = sorted(f"{a}+{m} seed {s}" for a, m, s, _, _ in results)
        sys.exit(f"interrupted: its trials stopped; finished: {', '.join(done) or 'none'} (printed above). "
                 "Rerun the command with the variants and --seeds not finished to go on.")
    wall = time.perf_counter() - started
    import torch

    device = torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    print(f"\n{args.dataset}, pretrain {args.pretrain_epochs} epochs, {args.epochs} clustering epochs, "
          f"α 0.8, T 20, lr 1e-3, DCN update {args.dcn_update}, cluster weight {args.cluster_weight or 'Table 5'}, "
          f"compiled {args.compile}, affine {args.affine}, "
          f"resize {args.resize}, batch norm {args.batch_norm}, population {args.population}, "
          f"seeds {args.seeds}, device {device}, wall {wall:.0f}s")
    print(f"{'variant':<12} {'ACC':>14} {'paper':>7} {'NMI':>14} {'paper':>7} {'ARI':>14} {'k-means ACC':>14} "
          f"{'empty':>6} {'failed':>6} {'s/trial':>8}")
    for algorithm, mode in itertools.product(args.algorithms, args.modes):
        rows = [r for a, m, _, r, _ in results if (a, m) == (algorithm, mode)]
        ok = [r for r in rows if r]
        secs = statistics.mean(t for a, m, _, _, t in results if (a, m) == (algorithm, mode))

        def cell(metric: str) -> str:
            vals = [100 * r[metric] for r in ok]
            if not vals:
                return "-"
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            return f"{statistics.mean(vals):6.2f} ± {sd:5.2f}"

        paper = PAPER.get((algorithm, mode), {}) if args.pretrain_epochs == 0 and args.dataset == "optdigits" else {}
        name = algorithm.upper() + ("+BRB" if mode == "brb" else "")
        print(f"{name:<12} {cell('acc'):>14} {paper.get('acc', float('nan')):7.2f} {cell('nmi'):>14} "
              f"{paper.get('nmi', float('nan')):7.2f} {cell('ari'):>14} {cell('kmeans_acc'):>14} "
              f"{statistics.mean(r['empty'] for r in ok) if ok else float('nan'):6.1f} {len(rows) - len(ok):>6} "
              f"{secs:8.1f}")


if __name__ == "__main__":
    main()
