"""Trial-epochs per second: trials packed on one device as separate processes, and population mode.

Packed: each trial is its own process running raydc.engine.train.fit (IDEC+BRB by default, augmentation and per-epoch
evaluation on, no pretraining) on synthetic MNIST-shaped data from benchmarks/epoch_time.py (or a named dataset),
the way fractional-GPU Ray Tune trials share a GPU. All trials finish a warm-up epoch, wait at a barrier, then run
the timed epochs; throughput = trials × timed epochs / wall time of the timed window. On a GPU, concurrent processes
time-slice unless the CUDA MPS daemon runs (nvidia-cuda-mps-control -d), which lets their kernels overlap.
Population (--population): one process runs raydc.engine.population.fit_population over that many members (seeds, α and
lr varying, as in a sensitivity grid) as one stacked model; same settings, same timed window.
--grid fig8 gives the trials the BRB paper's Fig 8 settings (α 0.6-0.9, T 5-40, lr 1e-4 to 5e-3, in that order of
cycling), and --algorithm several algorithms, each run apart (a population holds one algorithm), then the rate of the
whole grid with equal trials per algorithm. Every row also gives the BRB step's seconds (mean over the steps in the
run) and the amortized rate, epochs plus each trial's share of steps (step / T), whether or not a step fell in the
timed window. Examples:
    python benchmarks/throughput.py --device cuda --n 70000 --epochs 10 --packs 1 2 4 8 16 --population 1 4 16
    python benchmarks/throughput.py --device cuda --n 70000 --warmup 2 --epochs 4 --packs --population 64 \
        --grid fig8 --algorithm dec idec dcn --precision tf32
    python benchmarks/throughput.py --device cpu --n 2000 --epochs 2 --packs 1 2 4   # smoke check
"""
from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import queue
import statistics
import sys
import time

ALPHAS = (0.6, 0.7, 0.8, 0.9)
LRS = (1e-3, 5e-4)
FIG8_INTERVALS = (5, 10, 20, 40)  # the BRB paper's Fig 8 grid: ALPHAS × these × FIG8_LRS × 5 seeds × DEC/IDEC/DCN
FIG8_LRS = (5e-3, 1e-3, 5e-4, 1e-4)


def grid_point(rank: int, args: argparse.Namespace) -> tuple[int, float, int, float]:
    """(seed, α, T, lr) of trial `rank`: Fig 8's 64 settings in turn (then the next seed), or seed, α and lr varying
    at --interval."""
    if args.grid == "fig8":
        cell = rank % 64
        return rank // 64, ALPHAS[cell % 4], FIG8_INTERVALS[cell // 4 % 4], FIG8_LRS[cell // 16]
    return rank, ALPHAS[rank % len(ALPHAS)], args.interval, LRS[rank % len(LRS)]


def trial_config(rank: int, args: argparse.Namespace) -> dict:
    """Trial `rank` of the measured grid: its own seed, α, T and learning rate, everything else shared."""
    seed, alpha, interval, lr = grid_point(rank, args)
    return {"seed": seed, "device": args.device, "pretrain": {"epochs": 0}, "net": {"hidden": args.hidden},
            "train": {"algorithm": args.algorithm, "epochs": args.warmup + args.epochs, "batch_size": args.batch_size,
                      "lr": lr, "cuda_graphs": not args.eager, "precision": args.precision,
                      "compile": args.compile, "dcn_update": args.dcn_update},
            "brb": {"mode": "brb", "interval": interval, "subsample": args.subsample, "alpha": alpha},
            "eval": {"every": 1}}


def amortized_rate(args: argparse.Namespace, size: int, epoch_s: float, step_s: float | None,
                   packed: bool) -> float | None:
    """Trial-epochs/s of `size` trials when each also takes its BRB step (step_s) every T epochs; None when no step
    was measured. A population's epoch (epoch_s) runs its members' steps one after another; packed trials each run
    their own epochs (epoch_s each, beside the others) and steps."""
    if step_s is None:
        return None
    intervals = [grid_point(rank, args)[2] for rank in range(size)]
    if packed:
        return sum(1 / (epoch_s + step_s / t) for t in intervals)
    return size / (epoch_s + step_s * sum(1 / t for t in intervals))


def load_data(args: argparse.Namespace):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from epoch_time import synthetic_mnist

    from raydc.data import load_dataset

    return synthetic_mnist(args.n) if args.dataset == "synthetic" else load_dataset(args.dataset)


def worker(rank: int, args: argparse.Namespace, barrier, results) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: packed CPU trials must not spin
    import torch

    from raydc.engine.train import fit

    torch.set_num_threads(args.threads)
    data = load_data(args)
    marks: dict[int, float] = {}
    steps: list[float] = []

    def report(record) -> None:
        if record.phase != "cluster":
            return
        if record.reset_applied:
            steps.append(record.reset_time_s)
        if record.epoch == args.warmup - 1:
            barrier.wait()  # every trial is warm; the timed window starts together
        marks[record.epoch] = time.monotonic()

    record = fit(trial_config(rank, args), report, dataset=data)
    if record.status != "finished":
        raise RuntimeError(record.error)
    start = marks[args.warmup - 1]
    per_epoch = [marks[e] - marks[e - 1] for e in range(args.warmup, args.warmup + args.epochs)]
    results.put((rank, start, marks[args.warmup + args.epochs - 1], statistics.median(per_epoch), steps))


def population_worker(size: int, args: argparse.Namespace, results) -> None:
    """All `size` trials as one stacked model; every member's epochs end together, so member 0 times them."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from raydc.engine.population import fit_population

    torch.set_num_threads(args.population_threads)
    data = load_data(args)
    marks: dict[int, float] = {}
    steps: list[float] = []

    def report(member: int, record) -> None:
        if record.phase != "cluster":
            return
        if record.reset_applied:
            steps.append(record.reset_time_s)
        if member == 0:
            marks[record.epoch] = time.monotonic()

    records = fit_population([trial_config(rank, args) for rank in range(size)], report, dataset=data)
    failed = [r.error for r in records if r.status != "finished"]
    if failed:
        raise RuntimeError(f"{len(failed)} members failed: {failed[0]}")
    per_epoch = [marks[e] - marks[e - 1] for e in range(args.warmup, args.warmup + args.epochs)]
    results.put((marks[args.warmup - 1], marks[args.warmup + args.epochs - 1], statistics.median(per_epoch),
                 steps, peak_memory_gib(args.device)))


def peak_memory_gib(device: str) -> float:
    """Peak memory of this process so far: the device's allocations on a GPU, the resident set on the CPU."""
    import resource

    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def run_population(size: int, args: argparse.Namespace) -> tuple[float, float, list[float], float]:
    """(trial-epochs/s, s per population epoch, seconds of each BRB step, peak memory in GiB) of a population of
    `size` in a fresh process."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=population_worker, args=(size, args, results))
    proc.start()
    while True:
        try:
            start, end, epoch_s, steps, peak_gib = results.get(timeout=5)
            break
        except queue.Empty:
            if proc.exitcode not in (None, 0):
                raise RuntimeError("the population process failed; see its traceback above") from None
    proc.join()
    return size * args.epochs / (end - start), epoch_s, steps, peak_gib


def run_pack(size: int, args: argparse.Namespace) -> tuple[float, float, list[float]]:
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
    wall = max(end for _, _, end, *_ in rows) - min(start for _, start, *_ in rows)
    return size * args.epochs / wall, statistics.median(row[3] for row in rows), [s for row in rows for s in row[4]]


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
    parser.add_argument("--algorithm", nargs="+", default=["idec"], choices=["dec", "idec", "dcn"],
                        help="each measured apart; several: the grid's rate over all of them too")
    parser.add_argument("--grid", default="seeds", choices=["seeds", "fig8"],
                        help="trial settings: seeds, α and lr varying at --interval, or the Fig 8 grid's α, T and lr")
    parser.add_argument("--dcn-update", default="epoch", choices=["epoch", "step"], help="train.dcn_update")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--interval", type=int, default=20, help="BRB's T (--grid seeds)")
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
    grid = f"T={args.interval}" if args.grid == "seeds" else "the Fig 8 grid"
    print(f"device {name}, torch {torch.__version__}, BRB at {grid}, {data_name}, hidden {args.hidden}, batch "
          f"{args.batch_size}, {'eager' if args.eager or on_cpu else 'CUDA graphs'}, {args.precision}"
          f"{', compiled' * args.compile}, {args.epochs} timed epochs per trial after {args.warmup}, augmentation "
          f"and evaluation on; {args.threads} thread(s) per packed trial, {args.population_threads} for the population")
    print(f"{'mode':>10} {'algorithm':>9} {'trials':>6} {'trial-epochs/s':>15} {'s/epoch':>8} {'vs first row':>12} "
          f"{'BRB step s':>10} {'amortized':>9} {'peak GiB':>9}")
    base = None
    amortized: dict[tuple[str, int], list[float]] = {}
    runs = [("packed", size, run_pack) for size in args.packs]
    runs += [("population", size, run_population) for size in args.population]
    for (mode, size, run), algorithm in itertools.product(runs, args.algorithm):
        case = argparse.Namespace(**{**vars(args), "algorithm": algorithm})
        rate, epoch_s, steps, *peak = run(size, case)
        base = base or rate
        step_s = statistics.mean(steps) if steps else None
        with_steps = amortized_rate(case, size, epoch_s, step_s, packed=mode == "packed")
        amortized.setdefault((mode, size), []).append(with_steps)
        print(f"{mode:>10} {algorithm:>9} {size:6d} {rate:15.3f} {epoch_s:8.3f} {rate / base:11.2f}x "
              f"{_optional(step_s, 10, 4)} {_optional(with_steps, 9, 3)} {_optional(peak[0] if peak else None, 9, 2)}",
              flush=True)
    if len(args.algorithm) > 1:
        for (mode, size), rates in amortized.items():  # equal trials per algorithm: harmonic mean of the rates
            grid_rate = len(rates) / sum(1 / r for r in rates) if None not in rates else None
            print(f"{mode:>10} {'grid':>9} {size:6d} {'':>15} {'':>8} {'':>12} {'':>10} {_optional(grid_rate, 9, 3)}")


def _optional(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{digits}f}"


if __name__ == "__main__":
    main()
