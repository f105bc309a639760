"""Trial-epochs per second with 1, 2, 4, 8, 16 trials packed on one device as separate processes.

Each trial is its own process running raydc.train.fit (IDEC+BRB by default, augmentation and per-epoch
evaluation on, no pretraining) on synthetic MNIST-shaped data from benchmarks/epoch_time.py, the way
fractional-GPU Ray Tune trials share a GPU. All trials finish a warm-up epoch, wait at a barrier, then run the
timed epochs; throughput = trials × timed epochs / wall time of the timed window. On a GPU, concurrent processes
time-slice unless the CUDA MPS daemon runs (nvidia-cuda-mps-control -d), which lets their kernels overlap.
Several same-shaped trials trained as one stacked model (population mode) are not measured here. Examples:
    python benchmarks/throughput.py --device cuda --n 70000 --epochs 10 --packs 1 2 4 8 16
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


def worker(rank: int, args: argparse.Namespace, barrier, results) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: packed CPU trials must not spin
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from epoch_time import synthetic_mnist

    from raydc.train import fit

    torch.set_num_threads(args.threads)
    data = synthetic_mnist(args.n)
    marks: dict[int, float] = {}

    def report(record) -> None:
        if record.phase != "cluster":
            return
        if record.epoch == args.warmup - 1:
            barrier.wait()  # every trial is warm; the timed window starts together
        marks[record.epoch] = time.monotonic()

    config = {"seed": rank, "device": args.device, "pretrain": {"epochs": 0},
              "train": {"algorithm": args.algorithm, "epochs": args.warmup + args.epochs, "batch_size": args.batch_size},
              "brb": {"mode": "brb", "interval": args.interval, "subsample": args.subsample},
              "eval": {"every": 1}}
    record = fit(config, report, dataset=data)
    if record.status != "finished":
        raise RuntimeError(record.error)
    start = marks[args.warmup - 1]
    per_epoch = [marks[e] - marks[e - 1] for e in range(args.warmup, args.warmup + args.epochs)]
    results.put((rank, start, marks[args.warmup + args.epochs - 1], statistics.median(per_epoch)))


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
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--n", type=int, default=70_000)
    parser.add_argument("--epochs", type=int, default=10, help="timed clustering epochs per trial")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--algorithm", default="idec", choices=["dec", "idec", "dcn"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--interval", type=int, default=20)
    parser.add_argument("--subsample", type=int, default=10_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per trial process")
    args = parser.parse_args()
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({os.cpu_count()} cores)"
    print(f"device {name}, torch {torch.__version__}, {args.algorithm}+brb T={args.interval}, n {args.n}, "
          f"batch {args.batch_size}, {args.epochs} timed epochs per trial, augmentation and evaluation on")
    print(f"{'trials':>6} {'trial-epochs/s':>15} {'s/epoch per trial':>18} {'vs 1 trial':>11}")
    base = None
    for size in args.packs:
        rate, epoch_s = run_pack(size, args)
        base = base or rate
        print(f"{size:6d} {rate:15.3f} {epoch_s:18.3f} {rate / base:10.2f}x", flush=True)


if __name__ == "__main__":
    main()
