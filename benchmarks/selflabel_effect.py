"""What self-labeling, its ReSL strategies and LFSS do on a small grayscale set (autoencoder setting, CPU-sized).

For each seed: IDEC+BRB clustering (shared by every strategy through the clustering-stage cache), then
self-labeling with ReSL strategy none / sp / sp_star / ht; and an LFSS trial trained from scratch. Prints mean ±
std over seeds of ACC after clustering, after self-labeling, the final confident fraction and NMI match, and
LFSS's final k-means ACC beside k-means on the raw pixels. This checks that the stages learn, not the papers'
CIFAR numbers (those need ResNet-18 runs of 1000+ epochs on a GPU).
Example:
    python benchmarks/selflabel_effect.py --dataset optdigits --seeds 0 1 2 --jobs 2
"""
from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import statistics
import tempfile
import time

STRATEGIES = ("none", "sp", "sp_star", "ht")


def run_one(job: tuple[str, int, argparse.Namespace, str]) -> tuple[str, int, dict[str, float], float]:
    variant, seed, args, cache = job
    import torch

    torch.set_num_threads(max(1, args.threads))
    from raydc.engine.train import fit

    config = {"seed": seed, "device": args.device, "data": {"name": args.dataset}, "eval": {"every": 5}}
    if variant == "lfss":
        config.update(train={"algorithm": "lfss", "epochs": args.lfss_epochs},
                      lfss={"warmup_epochs": args.lfss_epochs // 5})
    else:
        config.update(pretrain={"epochs": args.pretrain_epochs}, train={"algorithm": "idec", "epochs": args.epochs},
                      brb={"interval": 10}, selflabel={"epochs": args.selflabel_epochs,
                                                       "warmup_epochs": args.warmup_epochs,
                                                       "threshold": args.threshold},
                      resl={"strategy": variant, "interval": 5})
    records = []
    started = time.perf_counter()
    result = fit(config, records.append, pretrain_cache=cache)
    cluster = [r for r in records if r.phase == "cluster"][-1]
    scores = {"cluster_acc": cluster.acc, **result.final}
    selflabel = [r for r in records if r.phase == "selflabel"]
    if selflabel:
        scores.update(confident=selflabel[-1].confident_fraction, nmi_match=selflabel[-1].nmi_match)
    return variant, seed, scores if result.status == "finished" else {}, time.perf_counter() - started


def _mean_std(values: list[float]) -> str:
    values = [100 * v for v in values if v == v]  # NaN (e.g. NMI match with nothing confident) is left out
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {spread:.2f}"


def raw_kmeans_acc(dataset: str, seeds: list[int]) -> list[float]:
    import torch

    from raydc.evaluation import metrics
    from raydc.clustering.kmeans import kmeans
    from raydc.data import load_dataset

    data = load_dataset(dataset)
    accs = []
    for seed in seeds:
        _, labels = kmeans(data.flat(), data.n_clusters, torch.Generator().manual_seed(seed), n_init=4)
        accs.append(metrics.label_scores(data.y, labels)[0])
    return accs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="optdigits")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-epochs", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=60, help="clustering epochs")
    parser.add_argument("--selflabel-epochs", type=int, default=30)
    parser.add_argument("--warmup-epochs", type=int, default=20, help="self-labeling head warm-up epochs")
    parser.add_argument("--threshold", type=float, default=0.99, help="self-labeling confidence threshold")
    parser.add_argument("--lfss-epochs", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="raydc-selflabel-")
    # One strategy per seed first, so the shared clustering stage is computed once and then replayed.
    order = [(s, seed) for seed in args.seeds for s in ("none",)] + [(v, seed) for v, seed in itertools.product(
        (*STRATEGIES[1:], "lfss"), args.seeds)]
    results: dict[str, list[dict[str, float]]] = {}
    started = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        first = pool.map(run_one, [(v, s, args, cache) for v, s in order[: len(args.seeds)]])
        rest = pool.map(run_one, [(v, s, args, cache) for v, s in order[len(args.seeds):]])
    for variant, seed, scores, secs in first + rest:
        results.setdefault(variant, []).append(scores)
        print(f"{variant} seed {seed}: {({k: round(v, 4) for k, v in scores.items()})} ({secs:.0f}s)", flush=True)
    print(f"\n{args.dataset}: IDEC+BRB ({args.pretrain_epochs} pretraining, {args.epochs} clustering epochs), then "
          f"{args.warmup_epochs} warm-up + {args.selflabel_epochs} self-labeling epochs (threshold "
          f"{args.threshold}); seeds {args.seeds}; {time.perf_counter() - started:.0f}s")
    print(f"{'variant':10s} {'ACC after clustering':>22s} {'ACC final':>16s} {'confident':>16s} {'NMI match':>16s}")
    for variant in STRATEGIES:
        rows = [r for r in results.get(variant, []) if r]
        print(f"{variant:10s} {_mean_std([r['cluster_acc'] for r in rows]):>22s} "
              f"{_mean_std([r['acc'] for r in rows]):>16s} {_mean_std([r['confident'] for r in rows]):>16s} "
              f"{_mean_std([r['nmi_match'] for r in rows]):>16s}")
    lfss = [r for r in results.get("lfss", []) if r]
    print(f"LFSS from scratch, {args.lfss_epochs} epochs: ACC {_mean_std([r['acc'] for r in lfss])}, "
          f"k-means ACC {_mean_std([r['kmeans_acc'] for r in lfss])}; "
          f"k-means on raw pixels {_mean_std(raw_kmeans_acc(args.dataset, args.seeds))}")


if __name__ == "__main__":
    main()
