"""Where a clustering step's GPU time goes: kernels per step and the costliest kernels, for one trial or a population.

Profiles eager steps (CUDA graphs replay the same kernels, without the launch gaps) on synthetic MNIST-shaped data:
    python benchmarks/profile_step.py --algorithm idec --precision tf32
    python benchmarks/profile_step.py --population 16 --precision tf32 [--compile]
Without a GPU, --device cpu counts the tensor operations a step dispatches (views excluded): each is one kernel on a
GPU, so the count is the device-independent part of a step's cost:
    python benchmarks/profile_step.py --device cpu --algorithm dec idec dcn --population 0 4
and --fusion compares a step's forward + backward eager with what train.compile fuses it into (CPU inductor):
    python benchmarks/profile_step.py --device cpu --fusion --algorithm dec idec dcn --population 0 4
and --traffic counts the bytes a step reads and writes, eager and compiled, and the epoch time moving them takes at a
GPU's memory bandwidth (what bounds a large population, whose kernels are few but big):
    python benchmarks/profile_step.py --device cpu --traffic --population 0 16 64 --bandwidth 3.35 [--precision bf16]
"""
from __future__ import annotations

import argparse
import collections
import itertools

import torch
import torch.utils._pytree as pytree
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from epoch_time import synthetic_mnist
from raydc.config import make_config
from raydc.compute.fused import fuse
from raydc.compute.precision import PRECISIONS, network_precision
from raydc.engine.trial import Trial

STEPS = 20
GEMMS = {"mm", "addmm", "bmm", "baddbmm"}
# aliasing, allocation and profiler markers: no kernel runs
NO_KERNEL = {"_unsafe_view", "empty", "empty_like", "empty_strided",
             "_record_function_enter_new", "_record_function_exit"}
# Arguments a schema marks as written that these kernels only read: the fused Adam writes gradients only to unscale
# them (grad_scale) or to negate them (maximize), neither of which a step uses.
READ_ONLY = {"_fused_adam_": {"grads"}}


def _footprint(tensor: torch.Tensor) -> int:
    """Bytes a kernel touches for `tensor`: broadcast (stride 0) dimensions are read once."""
    elements = 1
    for size, stride in zip(tensor.shape, tensor.stride()):
        elements *= size if stride else 1
    return elements * tensor.element_size()


class OperationCount(TorchDispatchMode):
    """Counts the tensor operations dispatched inside the block and the bytes they move, by name; views and profiler
    markers launch no kernel. Bytes: every input read once, every output (out= buffers too) written once, arguments
    modified in place read and written: the memory traffic of eager kernels that find nothing in cache."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()
        self.bytes: collections.Counter[str] = collections.Counter()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if func.is_view or name in NO_KERNEL:
            return out
        moved, inputs = 0, set()
        for i, argument in enumerate(func._schema.arguments):
            value = args[i] if i < len(args) else kwargs.get(argument.name)
            modified = argument.alias_info is not None and argument.alias_info.is_write and not argument.is_out
            modified = modified and argument.name not in READ_ONLY.get(name, ())
            for tensor in pytree.tree_leaves(value):
                if isinstance(tensor, torch.Tensor):
                    moved += _footprint(tensor) * (2 if modified else 1)  # an out= buffer is only written
                    inputs.add(tensor.data_ptr())
        moved += sum(_footprint(t) for t in pytree.tree_leaves(out)
                     if isinstance(t, torch.Tensor) and t.data_ptr() not in inputs)  # in-place results alias inputs
        self.counts[name] += 1
        self.bytes[name] += moved
        return out


def ready_case(algorithm: str, population: int, data, device: torch.device, train: dict | None = None):
    """(trials, stacked model or None, batch): trials with pretraining skipped and their initial k-means done, and a
    fixed batch (x, augmented x, sample indices); for a population (population > 0) its stacked model and the batch
    repeated per member, laid out as its static buffers."""
    from raydc.engine.population.stack import StackedModels

    configs = [make_config({"seed": s, "device": str(device), "pretrain": {"epochs": 0},
                            "train": {"algorithm": algorithm, "cuda_graphs": False, **(train or {})}})
               for s in range(max(1, population))]
    trials = [Trial(c, data, device) for c in configs]
    for trial in trials:
        trial.init_clustering()
    index = torch.arange(256, device=device)
    batch = (data.x[index], data.x[index].flip(-1), index)
    if not population:
        return trials, None, batch
    return trials, StackedModels([t.state.model for t in trials]), tuple(t.expand(population, *t.shape).contiguous()
                                                                     for t in batch)


def trial_steps(args: argparse.Namespace, data, device: torch.device):
    """A warm callable running one eager step of a trial (or a population) on a fixed batch."""
    from raydc.engine.population.fit import _Step
    from raydc.engine.population.stack import StackedAdam

    trials, stack, batch = ready_case(args.algorithm, args.population, data, device,
                                      {"precision": args.precision, "dcn_update": args.dcn_update,
                                       "compile": args.compile})
    if stack is None:
        return lambda: trials[0]._step(*batch)
    step = _Step(stack, StackedAdam(stack.params, [1e-3] * len(trials)), trials[0].config, device.type)
    return lambda: step(*batch)


def count_operations(args: argparse.Namespace) -> None:
    """Operations per step of each algorithm and population size, on the CPU."""
    device = torch.device("cpu")
    data = synthetic_mnist(2_000)
    for algorithm, population in itertools.product(args.algorithm, args.population):
        step = trial_steps(argparse.Namespace(**{**vars(args), "algorithm": algorithm, "population": population}),
                           data, device)
        with network_precision(args.precision, "cpu"):
            for _ in range(3):
                step()
            with OperationCount() as counted:
                step()
        top = ", ".join(f"{name} {n}" for name, n in counted.counts.most_common(args.top))
        print(f"{algorithm} population={population}: {counted.total} operations per step ({top})")


def forward_case(algorithm: str, population: int, data):
    """(forward, run): a trial's model (or a population's vmapped forward) and a function running forward + backward
    of a given forward (eager, or compiled from it) on a fixed batch, on the CPU."""
    trials, stack, batch = ready_case(algorithm, population, data, torch.device("cpu"))
    if stack is None:
        return trials[0].model, lambda terms: terms(*batch)["loss"].backward()
    return stack.terms, lambda terms: stack.gradients(terms(*batch)["loss"].sum())


def fusion_headroom(args: argparse.Namespace) -> None:
    """Kernels of a step's forward + backward eager vs compiled as train.compile compiles it (inductor, on the CPU),
    for one trial or a population: what fusing the element-wise work would leave. GEMMs stay library calls either way
    and are counted apart."""
    import torch._inductor.metrics as inductor_metrics

    data = synthetic_mnist(2_000)
    for algorithm, population in itertools.product(args.algorithm, args.population):
        forward, forward_backward = forward_case(algorithm, population, data)
        with OperationCount() as counted:
            forward_backward(forward)
        gemms = sum(n for name, n in counted.counts.items() if name in GEMMS)
        inductor_metrics.reset()
        forward_backward(fuse(forward, "cpu"))
        print(f"{algorithm} population={population} forward + backward: {gemms} GEMMs, and "
              f"{counted.total - gemms} other operations eager vs "
              f"{inductor_metrics.generated_kernel_count} fused kernels compiled")


def memory_traffic(args: argparse.Namespace) -> None:
    """Bytes a step moves, eager by kind and with train.compile's forward + backward (inductor on the CPU, whose own
    count of each fused kernel's reads and writes), GEMM FLOPs, and the epoch time that moving those bytes alone
    would take at --bandwidth: a floor that no launch or kernel count enters."""
    import logging

    import torch._inductor.compile_fx as compile_fx
    import torch._inductor.metrics as inductor_metrics
    from torch.utils.flop_counter import FlopCounterMode

    from raydc.compute.batches import trained_count

    inductor_log = compile_fx.inductor_metrics_log  # inductor counts bytes only while this log takes INFO records
    inductor_log.setLevel(logging.INFO)
    inductor_log.addHandler(logging.NullHandler())
    torch._inductor.config.fx_graph_cache = False  # nor for a graph it loads from its cache: compile every time
    torch._functorch.config.enable_autograd_cache = False
    device, data = torch.device("cpu"), synthetic_mnist(2_000)
    steps = trained_count(args.n, 256, drop_last=True) // 256
    gb = 1e9
    for algorithm, population in itertools.product(args.algorithm, args.population):
        case = argparse.Namespace(**{**vars(args), "algorithm": algorithm, "population": population, "compile": False})
        step = trial_steps(case, data, device)
        forward, forward_backward = forward_case(algorithm, population, data)
        with network_precision(args.precision, "cpu"):  # bf16: autocast's casts and half-width GEMM operands
            for _ in range(2):
                step()
            with OperationCount() as moved, FlopCounterMode(display=False) as flops:
                step()
            inductor_metrics.reset()
            forward_backward(fuse(forward, "cpu"))
        gemm = sum(b for name, b in moved.bytes.items() if name in GEMMS)
        adam = moved.bytes["_fused_adam_"]
        compiled = inductor_metrics.num_bytes_accessed + adam  # the compiled step keeps the fused Adam kernel
        members = max(1, population)
        other = moved.total_bytes - gemm - adam
        print(f"{algorithm} population={population} {args.precision}: {moved.total_bytes / gb:.3f} GB per step eager "
              f"(GEMMs {gemm / gb:.3f}, Adam {adam / gb:.3f}, other {other / gb:.3f}), {compiled / gb:.3f} GB compiled; "
              f"{flops.get_total_flops() / gb:.1f} GFLOP of GEMMs")
        for label, total in (("eager", moved.total_bytes), ("compiled", compiled)):
            epoch = steps * total / (args.bandwidth * 1e12)
            print(f"  {label}: moving it takes {epoch:.3f} s per epoch of {steps} steps at {args.bandwidth} TB/s, "
                  f"at most {members / epoch:.1f} trial-epochs/s")
        print("  largest eager: " + ", ".join(f"{name} {b / gb:.3f}" for name, b in moved.bytes.most_common(args.top)))


def profile_kernels(args: argparse.Namespace) -> None:
    """Kernels and kernel time per step of the first algorithm and population size, on the GPU."""
    device = torch.device("cuda")
    args = argparse.Namespace(**{**vars(args), "algorithm": args.algorithm[0], "population": args.population[0]})
    data = synthetic_mnist(20_000).to(device)
    step = trial_steps(args, data, device)
    with network_precision(args.precision, "cuda"):
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(STEPS):
                step()
            torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    total_us = sum(e.device_time for e in kernels)
    print(f"{args.algorithm} population={args.population} precision={args.precision} compiled={args.compile}: "
          f"{len(kernels) / STEPS:.0f} "
          f"kernels and {total_us / STEPS / 1000:.3f} ms of kernel time per step")
    print(prof.key_averages().table(sort_by="device_time_total", row_limit=args.top, max_name_column_width=60))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithm", nargs="+", default=["idec"], choices=["dec", "idec", "dcn"])
    parser.add_argument("--population", type=int, nargs="+", default=[0],
                        help="members of a stacked population (0: one trial)")
    parser.add_argument("--precision", default="float32", choices=PRECISIONS)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--dcn-update", default="epoch", choices=["epoch", "step"], help="train.dcn_update")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--compile", action="store_true", help="on the GPU: profile the step with train.compile")
    parser.add_argument("--fusion", action="store_true",
                        help="with --device cpu: kernels of forward + backward eager vs train.compile")
    parser.add_argument("--traffic", action="store_true",
                        help="with --device cpu: bytes a step moves (eager by kind, compiled) and the epoch floor "
                             "they set")
    parser.add_argument("--bandwidth", type=float, default=3.35, help="--traffic: memory bandwidth in TB/s "
                        "(3.35: H100 SXM; 4.8: H200)")
    parser.add_argument("--n", type=int, default=70_000, help="--traffic: samples per epoch")
    args = parser.parse_args()
    if args.device == "cuda":
        profile_kernels(args)
    else:
        if args.traffic:
            memory_traffic(args)
        elif args.fusion:
            fusion_headroom(args)
        else:
            count_operations(args)


if __name__ == "__main__":
    main()
