"""raydc against the BRB authors' released code, epoch by epoch: one trial of each, read from each one's own log.

The authors' side is the W&B offline run file of their train.py (W&B offline, the steps in RESULTS.md), raydc's the
trace CSV that `benchmarks/fidelity.py --trace` writes. Epochs are aligned by how many clustering epochs were trained
(the authors log their k-means start as epoch 0; raydc's trace row e follows epoch e). The losses differ in kind:
the authors log DEC's cross-entropy −Σ p log q, raydc its KL divergence, which has the same gradient (p is fixed);
for DCN the authors' cluster term is (1/k)·mean‖z − μ‖², raydc's eq 6's ½·mean‖z − μ‖² (k/2 times theirs).
Given several runs of each (the same seeds, in the same order), it prints ACC's mean and standard deviation over
them per epoch instead: the two codes draw different random streams from a seed, so their runs compare as groups.
Example:
    python benchmarks/side_by_side.py --authors out/wandb/offline-run-*/run-*.wandb \
        --raydc traces/dec_baseline_seed0.csv
    python benchmarks/side_by_side.py --authors s0.wandb s1.wandb --raydc traces/dec_baseline_seed{0,1}.csv
"""
from __future__ import annotations

import argparse
import json
import statistics
import struct
from pathlib import Path

BLOCK = 32768  # W&B's transaction log is LevelDB's log format: 32 KiB blocks of chunks
ALIGNED = ["acc", "nmi", "loss", "cluster"]


def wandb_records(path: Path) -> list:
    """The protobuf records of a W&B run file: a 7-byte header, then LevelDB-log chunks (crc32, length, type).
    wandb ships no reader for it (its Go core writes and syncs the file)."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    records, pending, at = [], b"", 7
    while at + 7 <= len(data):
        if BLOCK - at % BLOCK < 7:  # a block's tail too short for a chunk header is padding
            at += BLOCK - at % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[at:at + 7])
        if kind == 0 or at + 7 + length > len(data):  # preallocated space, or a chunk still being written
            break
        pending += data[at + 7:at + 7 + length]
        at += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_history(path: Path) -> list[dict]:
    """Every `run.log` call of the run, as a dict of its keys (nested keys joined by '/')."""
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
            for r in wandb_records(path) if r.WhichOneof("record_type") == "history"]


def authors_epochs(path: Path) -> dict[int, dict]:
    """The authors' clustering epochs by how many were trained: ACC, NMI, loss, cluster sizes, gradient norm."""
    names = {"acc": "Clustering metrics/ACC", "nmi": "Clustering metrics/NMI", "loss": "Clustering train/loss",
             "min_size": "Clustering metrics/min_size", "max_size": "Clustering metrics/max_size",
             "grad_l2": "Clustering train/l2_grad_norm", "cluster": "Clustering train/cluster_loss"}
    return {int(h["Clustering epoch"]): {k: h.get(v, float("nan")) for k, v in names.items()}
            for h in wandb_history(path) if "Clustering epoch" in h and "Clustering metrics/ACC" in h}


def raydc_epochs(path: Path) -> dict[int, dict]:
    import pandas as pd

    trace = pd.read_csv(path).rename(columns={"loss_cluster": "cluster"})  # traces before it lack the term: NaN
    return {int(row.epoch) + 1: {k: float(getattr(row, k, float("nan"))) for k in ALIGNED}
            for row in trace.itertuples()}


def parting(theirs: dict[int, dict], ours: dict[int, dict], points: float) -> tuple[int | None, int | None]:
    """The first trained epoch whose ACCs differ by more than `points`, and the first from which they always do."""
    common = sorted(set(theirs) & set(ours))
    apart = [e for e in common if abs(theirs[e]["acc"] - ours[e]["acc"]) * 100 > points]
    together = sorted(set(common) - set(apart))
    for_good = next((e for e in apart if not together or e > together[-1]), None)
    return (apart[0] if apart else None), for_good


def shown(epochs: set[int], every: int) -> list[int]:
    """The first five trained epochs, every n-th after them, and the last."""
    last = max(epochs)
    return [e for e in sorted(epochs) if e <= 5 or e % every == 0 or e == last]


def acc_over_runs(runs: list[dict[int, dict]], epoch: int) -> str:
    """ACC's mean ± standard deviation, in points, over the runs that reached the epoch, and how many did."""
    accs = [100 * run[epoch]["acc"] for run in runs if epoch in run]
    if not accs:
        return f"{'-':>17}"
    spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
    return f"{statistics.mean(accs):>6.2f} ± {spread:>5.2f} ({len(accs)})"


def print_groups(theirs: list[dict[int, dict]], ours: list[dict[int, dict]], every: int) -> None:
    print(f"{'epoch':>5} {'ACC authors':>19} {'ACC raydc':>19}")
    for epoch in shown(set().union(*theirs, *ours), every):
        print(f"{epoch:>5} {acc_over_runs(theirs, epoch):>19} {acc_over_runs(ours, epoch):>19}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authors", type=Path, nargs="+", required=True, help="the authors' run-*.wandb files")
    parser.add_argument("--raydc", type=Path, nargs="+", required=True,
                        help="trace CSVs of benchmarks/fidelity.py --trace, as many as --authors")
    parser.add_argument("--points", type=float, default=5.0, help="ACC difference (points) that counts as parted")
    parser.add_argument("--every", type=int, default=25, help="print every n-th epoch (plus the first five)")
    args = parser.parse_args()
    if len(args.authors) != len(args.raydc):
        parser.error(f"--authors has {len(args.authors)} runs and --raydc {len(args.raydc)}: give one of each per seed")
    if len(args.authors) > 1:
        print_groups([authors_epochs(p) for p in args.authors], [raydc_epochs(p) for p in args.raydc], args.every)
        return
    theirs, ours = authors_epochs(args.authors[0]), raydc_epochs(args.raydc[0])
    nan = {k: float("nan") for k in ALIGNED}
    print(f"{'epoch':>5} {'ACC authors':>11} {'raydc':>6} {'NMI authors':>11} {'raydc':>6} {'loss authors':>12} "
          f"{'raydc':>8} {'cluster authors':>15} {'raydc':>8} {'sizes authors':>13} {'grad l2':>8}")
    for epoch in shown(set(theirs) | set(ours), args.every):
        a, r = theirs.get(epoch, nan | {"grad_l2": float("nan")}), ours.get(epoch, nan)
        sizes = f"{a['min_size']}–{a['max_size']}" if isinstance(a.get("min_size"), int) else "-"
        print(f"{epoch:>5} {100 * a['acc']:>11.2f} {100 * r['acc']:>6.2f} {100 * a['nmi']:>11.2f} "
              f"{100 * r['nmi']:>6.2f} {a['loss']:>12.4f} {r['loss']:>8.4f} {a['cluster']:>15.4f} {r['cluster']:>8.4f} "
              f"{sizes:>13} {a['grad_l2']:>8.3f}")
    first, for_good = parting(theirs, ours, args.points)
    print(f"\nACC more than {args.points:g} points apart first after epoch {first}, and for good from epoch {for_good}")
    for name, side in (("authors", theirs), ("raydc", ours)):
        accs = [100 * side[e]["acc"] for e in sorted(side)]
        print(f"{name}: first {accs[0]:.2f}, best {max(accs):.2f}, last {accs[-1]:.2f} ACC over {len(accs)} epochs")


if __name__ == "__main__":
    main()
