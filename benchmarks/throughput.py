"""Trial-epochs per second: trials packed on one device as separate processes, and population mode.

Packed: each trial is its own process running raydc.train.fit (IDEC+BRB by default, augmentation and per-epoch
evaluation on, no pretraining) on synthetic MNIST-shaped data from benchmarks/epoch_time.py (or a named dataset),
the way fractional-GPU Ray Tune trials share a GPU. All trials finish a warm-up epoch, wait at a barrier, then run
the timed epochs; throughput = trials × timed epochs / wall time of the timed window. On a GPU, concurrent processes
time-slice unless the CUDA MPS daemon runs (nvidia-cuda-mps-control -d), which lets their kernels overlap.
Population (--population): one process runs raydc.population.fit_population over that many members (seeds, α and
lr varying, as in a sensitivity grid) as one stacked model; same settings, same timed window. Examples:
    python benchmarks/throughput.py --device cuda --n 70000 --epochs 10 --packs 1 2 4 8 16 --population 1 4 16
    python benchmarks/throughput.py --device cpu --n 2000 --epochs 2 --packs 1 2 4   # smoke check
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import statistics
import sys
import time

ALPHAS = (0.6, 0.7, 0.8, 0.9)
LRS = (1e-3, 5e-4)


def trial_config(rank: int, args: argparse.Namespace) -> dict:
    """Trial `rank` of the measured grid: its own seed, α and learning rate, everything else shared."""
    return {"seed": rank, "device": args.device, "pretrain": {"epochs": 0}, "net": {"hidden": args.hidden},
            "train": {"algorithm": args.algorithm, "epochs": args.warmup + args.epochs, "batch_size": args.batch_size,
                      "lr": LRS[rank % len(LRS)], "cuda_graphs": not args.eager, "precision": args.precision,
                      "compile": args.compile,
                      "dcn_update": args.dcn_update},
            "brb": {"mode": "brb", "interval": args.interval, "subsample": args.subsample,
                    "alpha": ALPHAS[rank % len(ALPHAS)]},
            "eval": {"every": 1}}


def load_data(args: argparse.Namespace):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from epoch_time import synthetic_mnist

    from raydc.data import load_dataset

    return synthetic_mnist(args.n) if args.dataset == "synthetic" else load_dataset(args.dataset)


def worker(rank: int, args: argparse.Namespace, barrier, results) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: packed CPU trials must not spin
    import torch

    from raydc.train import fit

    torch.set_num_threads(args.threads)
    data = load_data(args)
    marks: dict[int, float] = {}

    def report(record) -> None:
        if record.phase != "cluster":
            return
        if record.epoch == args.warmup - 1:
            barrier.wait()  # every trial is warm; the timed window starts together
        marks[record.epoch] = time.monotonic()

    record = fit(trial_config(rank, args), report, dataset=data)
    if record.status != "finished":
        raise RuntimeError(record.error)
    start = marks[args.warmup - 1]
    per_epoch = [marks[e] - marks[e - 1] for e in range(args.warmup, args.warmup + args.epochs)]
    results.put((rank, start, marks[args.warmup + args.epochs - 1], statistics.median(per_epoch)))


def population_worker(size: int, args: argparse.Namespace, results) -> None:
    """All `size` trials as one stacked model; every member's epochs end together, so member 0 times them."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from raydc.population import fit_population

    torch.set_num_threads(args.population_threads)
    data = load_data(args)
    marks: dict[int, float] = {}

    def report(member: int, record) -> None:
        if member == 0 and record.phase == "cluster":
            marks[record.epoch] = time.monotonic()

    records = fit_population([trial_config(rank, args) for rank in range(size)], report, dataset=data)
    failed = [r.error for r in records if r.status != "finished"]
    if failed:
        raise RuntimeError(f"{len(failed)} members failed: {failed[0]}")
    per_epoch = [marks[e] - marks[e - 1] for e in range(args.warmup, args.warmup + args.epochs)]
    results.put((marks[args.warmup - 1], marks[args.warmup + args.epochs - 1], statistics.median(per_epoch),
                 peak_memory_gib(args.device)))


def peak_memory_gib(device: str) -> float:
    """Peak memory of this process so far: the device's allocations on a GPU, the resident set on the CPU."""
    import resource

    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def run_population(size: int, args: argparse.Namespace) -> tuple[float, float, float]:
    """(trial-epochs/s, s per population epoch, peak memory in GiB) of a population of `size` in a fresh process."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=population_worker, args=(size, args, results))
    proc.start()
    while True:
        try:
            start, end, epoch_s, peak_gib = results.get(timeout=5)
            break
        except queue.Empty:
            if proc.exitcode not in (None, 0):
                raise RuntimeError("the population process failed; see its traceback above") from None
    proc.join()
    return size * args.epochs / (end - start), epoch_s, peak_gib


def run_pack(size: int, args: argparse.Namespace) -> tuple[float, float]:
    ctx = mp.get_context("spawn")  # CUDA cannot be forked
    barrier, results = ctx.Barrier(size), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(rank, args, barrier, results)) for rank in range(size)]
    for p in procs:
        p.start()
    rows = []
    while len(rows) < size:
        try:
            rows.append(results.get(timeout=5))
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):  # a crashed trial would leave the rest at the barrier
                for p in procs:
                    p.terminate()
                raise RuntimeError("a trial process failed; see its traceback above") from None
    for p in procs:
        p.join()
    wall = max(end for _, _, end, _ in rows) - min(start for _, start, _, _ in rows)
    return size * args.epochs / wall, statistics.median(epoch for *_, epoch in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packs", type=int, nargs="*", default=[1, 2, 4, 8, 16],
                        help="trials packed as separate processes (none: skip)")
    parser.add_argument("--population", type=int, nargs="*", default=[],
                        help="members of one stacked model (population mode) to measure too")
    parser.add_argument("--dataset", default="synthetic", help="'synthetic' (MNIST-shaped, --n samples) or a name")
    parser.add_argument("--n", type=int, default=70_000)
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 512, 256], help="autoencoder hidden widths")
    parser.add_argument("--epochs", type=int, default=10, help="timed clustering epochs per trial")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--algorithm", default="idec", choices=["dec", "idec", "dcn"])
    parser.add_argument("--dcn-update", default="epoch", choices=["epoch", "step"], help="train.dcn_update")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--interval", type=int, default=20)
    parser.add_argument("--subsample", type=int, default=10_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--eager", action="store_true", help="no CUDA graphs (train.cuda_graphs false)")
    parser.add_argument("--precision", default="float32", choices=["float32", "tf32", "bf16"], help="train.precision")
    parser.add_argument("--compile", action="store_true", help="train.compile (compiled in the warm-up epochs)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per trial process")
    parser.add_argument("--population-threads", type=int, default=None,
                        help="torch CPU threads of the population process (default: all cores on cpu, else 1)")
    args = parser.parse_args()
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    on_cpu = not args.device.startswith("cuda")
    if args.population_threads is None:
        args.population_threads = os.cpu_count() if on_cpu else 1
    name = f"cpu ({os.cpu_count()} cores)" if on_cpu else torch.cuda.get_device_name()
    data_name = f"synthetic n={args.n}" if args.dataset == "synthetic" else args.dataset
    print(f"device {name}, torch {torch.__version__}, {args.algorithm}+brb T={args.interval}, {data_name}, hidden {args.hidden}, batch {args.batch_size}, "
          f"{'eager' if args.eager else 'CUDA graphs'}{', ' + args.precision}{', compiled' * args.compile}, {args.epochs} timed epochs per "
          f"trial, augmentation and evaluation on; {args.threads} thread(s) per packed trial, "
          f"{args.population_threads} for the population")
    print(f"{'mode':>10} {'trials':>6} {'trial-epochs/s':>15} {'s/epoch':>8} {'vs first row':>12} {'peak GiB':>9}")
    base = None
    runs = [("packed", size, run_pack) for size in args.packs]
    runs += [("population", size, run_population) for size in args.population]
    for mode, size, run in runs:
        rate, epoch_s, *peak = run(size, args)
        base = base or rate
        peak_text = f"{peak[0]:9.2f}" if peak else f"{'-':>9}"  # packed trials' memory is split across processes
        print(f"{mode:>10} {size:6d} {rate:15.3f} {epoch_s:8.3f} {rate / base:11.2f}x {peak_text}", flush=True)


if __name__ == "__main__":
    main()
