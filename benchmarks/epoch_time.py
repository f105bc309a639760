"""Seconds per clustering epoch and BRB overhead on synthetic MNIST-shaped data (70,000 × 1×28×28).

Times whole clustering epochs (augmentation and per-epoch evaluation on) for DEC/IDEC/DCN and one BRB
step (soft reset + embed a 10,000 subsample + k-means + momentum reset); the BRB overhead at interval
T is step / (T × epoch). The paths take turns epoch by epoch, so drift of a shared machine hits them alike.
--compile adds the paths with train.compile (the first, untimed epoch compiles). Example:
    python benchmarks/epoch_time.py --n 70000 --epochs 3 --interval 20 [--compile]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from raydc.config import make_config
from raydc.data.dataset import standardize
from raydc.engine.records import EpochRecord
from raydc.engine.cluster_epochs import sync_device
from raydc.engine.trial import Trial


def synthetic_mnist(n: int, k: int = 10, seed: int = 0):
    """Class-dependent blobs in pixel space: cheap, reproducible, MNIST-shaped."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=gen)
    prototypes = torch.rand(k, 1, 28, 28, generator=gen)
    images = (prototypes[labels] + 0.3 * torch.rand(n, 1, 28, 28, generator=gen)).clamp(0, 1)
    return standardize("synthetic-mnist", images, labels, k)


def timed_trial(algorithm: str, args: argparse.Namespace, data, cuda_graphs: bool = True,
                precision: str = "float32", compiled: bool = False) -> Trial:
    """A trial of `algorithm` with BRB at the benchmark's settings, initial clustering done."""
    device = benchmark_device(args)
    config = make_config({"device": str(device), "pretrain": {"epochs": 0},
                          "train": {"algorithm": algorithm, "epochs": args.epochs, "batch_size": args.batch_size,
                                    "cuda_graphs": cuda_graphs, "precision": precision, "compile": compiled},
                          "brb": {"mode": "brb", "interval": args.interval, "subsample": args.subsample},
                          "eval": {"subsample": args.eval_subsample}})
    trial = Trial(config, data.to(device), device)
    trial.init_clustering()
    return trial


def benchmark_device(args: argparse.Namespace) -> torch.device:
    return torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))


def time_epoch(trial: Trial, epoch: int) -> tuple[float, float, float]:
    """Seconds of (a clustering epoch with its evaluation, a BRB step, the evaluation alone)."""
    device = trial.state.device
    sync_device(device)
    t0 = time.perf_counter()
    trial.train_epoch()
    sync_device(device)
    t_eval = time.perf_counter()
    trial.evaluate(EpochRecord(phase="cluster", epoch=epoch))
    sync_device(device)
    t_step = time.perf_counter()
    trial.periodic_step()
    sync_device(device)
    return t_step - t0, time.perf_counter() - t_step, t_step - t_eval


def time_trials(trials: list[Trial], epochs: int) -> list[tuple[float, float, float]]:
    """Median (epoch, BRB step, evaluation) seconds of each trial, the trials taking turns epoch by epoch so that a
    machine's drift hits every path alike; the first epoch of each warms up kernels, compilation and graph capture."""
    times: list[list[tuple[float, float, float]]] = [[] for _ in trials]
    for epoch in range(epochs + 1):
        for trial, measured in zip(trials, times):
            result = time_epoch(trial, epoch)
            if epoch:
                measured.append(result)
    return [tuple(statistics.median(column) for column in zip(*measured)) for measured in times]


def time_trial(algorithm: str, args: argparse.Namespace, data, cuda_graphs: bool = True,
               precision: str = "float32", compiled: bool = False) -> tuple[float, float, float]:
    """Median seconds of (a clustering epoch with its evaluation, a BRB step, the evaluation alone) of one path."""
    return time_trials([timed_trial(algorithm, args, data, cuda_graphs, precision, compiled)], args.epochs)[0]


def timing_parser(doc: str) -> argparse.ArgumentParser:
    """Options shared by the epoch-time benchmarks: data size, batch, BRB interval and subsample, device."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=70_000)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (and BRB steps) per algorithm")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--interval", type=int, default=20)
    parser.add_argument("--subsample", type=int, default=10_000)
    parser.add_argument("--eval-subsample", type=int, default=2_000)
    parser.add_argument("--algorithms", nargs="+", default=["dec", "idec", "dcn"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also time the paths with train.compile")
    return parser


def main() -> None:
    args = timing_parser(__doc__).parse_args()
    data = synthetic_mnist(args.n).to(benchmark_device(args))  # one copy on the device, shared by every path's trial
    name = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu"
    print(f"device {name}, torch {torch.__version__}, n {args.n}, batch {args.batch_size}, augmentation on, "
          f"evaluation every epoch")
    # (name, CUDA graphs, precision, compiled); graphs and precision only matter on a GPU
    paths = [("eager", False, "float32", False), ("graphs", True, "float32", False), ("g+tf32", True, "tf32", False),
             ("g+bf16", True, "bf16", False)]
    compiled = [("g+comp", True, "float32", True), ("g+tf32+comp", True, "tf32", True),
                ("g+bf16+comp", True, "bf16", True)]
    if name == "cpu":
        paths, compiled = paths[:1], [("compiled", False, "float32", True)]
    paths += compiled if args.compile else []
    print(f"{'algorithm':<10} {'path':<11} {'s/epoch':>9} {'eval s':>8} {'BRB step s':>11} {'overhead @T':>12} "
          f"{'speed-up':>9}")
    for algorithm in args.algorithms:
        trials = [timed_trial(algorithm, args, data, graphs, precision, compile_step)
                  for _, graphs, precision, compile_step in paths]
        baseline = None
        for (path, *_), (epoch_s, step_s, eval_s) in zip(paths, time_trials(trials, args.epochs)):
            baseline = baseline or epoch_s
            overhead = 100 * step_s / (args.interval * epoch_s + step_s)
            print(f"{algorithm + '+brb':<10} {path:<11} {epoch_s:9.3f} {eval_s:8.3f} {step_s:11.4f} "
                  f"{overhead:11.2f}% {baseline / epoch_s:8.2f}x")
        del trials  # free the device before the next algorithm's trials


if __name__ == "__main__":
    main()
