"""Where a clustering step's GPU time goes: kernels per step and the costliest kernels, for one trial or a population.

Profiles eager steps (CUDA graphs replay the same kernels, without the launch gaps) on synthetic MNIST-shaped data:
    python benchmarks/profile_step.py --algorithm idec --precision tf32
    python benchmarks/profile_step.py --population 16 --precision tf32
"""
from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from epoch_time import synthetic_mnist
from raydc.config import make_config
from raydc.precision import training_precision
from raydc.trial import Trial

STEPS = 20


def trial_steps(args: argparse.Namespace, data, device: torch.device):
    """A warm callable running one eager step of a trial (or a population) on a fixed batch."""
    configs = [make_config({"seed": s, "device": "cuda", "pretrain": {"epochs": 0},
                            "train": {"algorithm": args.algorithm, "cuda_graphs": False, "precision": args.precision}})
               for s in range(max(1, args.population))]
    trials = [Trial(c, data, device) for c in configs]
    for trial in trials:
        trial.init_clustering()
    index = torch.arange(256, device=device)
    x, x_aug = data.x[index], data.x[index].flip(-1)
    if not args.population:
        trial = trials[0]
        return lambda: trial._step(x, x_aug, index)
    from raydc.population.fit import _Step
    from raydc.population.stack import StackedAdam, StackedModels

    stack = StackedModels([t.model for t in trials])
    step = _Step(stack, StackedAdam(stack.params, [1e-3] * len(trials)), configs[0])
    m = len(trials)
    xs, xs_aug, indices = (t.expand(m, *t.shape).contiguous() for t in (x, x_aug, index))  # as the static buffers
    return lambda: step(xs, xs_aug, indices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithm", default="idec", choices=["dec", "idec", "dcn"])
    parser.add_argument("--population", type=int, default=0, help="members of a stacked population (0: one trial)")
    parser.add_argument("--precision", default="float32", choices=["float32", "tf32", "bf16"])
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    device = torch.device("cuda")
    data = synthetic_mnist(20_000).to(device)
    step = trial_steps(args, data, device)
    with training_precision(args.precision, "cuda"):
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(STEPS):
                step()
            torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total_us = sum(e.device_time for e in kernels)
    print(f"{args.algorithm} population={args.population} precision={args.precision}: {len(kernels) / STEPS:.0f} kernels and "
          f"{total_us / STEPS / 1000:.3f} ms of kernel time per step")
    print(prof.key_averages().table(sort_by="device_time_total", row_limit=args.top, max_name_column_width=60))


if __name__ == "__main__":
    main()
