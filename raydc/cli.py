"""The `raydc` command."""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from raydc.config import ConfigError, make_config, set_dotted
from raydc.data import DatasetUnavailable

EXIT_INVALID = 2
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE, as a shell reports a pipeline's writer that lost its reader


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    """--set a.b=value pairs; values are parsed as YAML so numbers, booleans and lists work."""
    out = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(pair, "expected dotted.key=value")
        try:
            out.append((key.strip(), yaml.safe_load(value)))
        except yaml.YAMLError as exc:
            raise ConfigError(key.strip(), f"cannot read {value!r} as a value: {exc}") from None
    return out


def load_trial_config(path: str | None, overrides: list[str]):
    values: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(path, f"cannot read the trial config: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(path, "a trial config must be a mapping")
        values = loaded
    for key, value in parse_overrides(overrides):
        set_dotted(values, key, value)
    return make_config(values)


def _fmt(value: float, spec: str = ".4f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def print_epoch(record) -> None:
    if record.phase in ("pretrain", "selflabel_warmup"):
        print(f"{record.phase:9s} {record.epoch:4d}  loss {_fmt(record.loss)}", flush=True)
        return
    mark = "  reset" if record.reset_applied else ""
    confident = "" if math.isnan(record.confident_fraction) else f"  confident {record.confident_fraction:.3f}"
    print(f"{record.phase:9s} {record.epoch:4d}  loss {_fmt(record.loss)}  acc {_fmt(record.acc)}  "
          f"nmi {_fmt(record.nmi)}  ari {_fmt(record.ari)}  cl {_fmt(record.cl_change)}{confident}  "
          f"{record.time_s:.2f}s{mark}", flush=True)


def cmd_train(args: argparse.Namespace) -> int:
    from raydc.data import load_dataset
    from raydc.config.identity import trial_id
    from raydc.tables.store import ResultStore, epoch_row, trial_row
    from raydc.engine.cluster_epochs import is_checkpoint_epoch
    from raydc.engine.train import fit

    config = load_trial_config(args.config, args.set)
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError("--out", f"{args.out} is a file; give a directory for the results")
    dataset = load_dataset(config.data.name, data_dir=config.data.dir)  # a missing dataset fails before --out exists
    store = ResultStore(args.out)
    tid = trial_id(config)
    epochs: list[dict[str, Any]] = []

    def report(record) -> None:
        epochs.append(epoch_row(tid, record))
        print_epoch(record)
        # Stored before each checkpoint: a resumed run reports only the epochs after it, so none may wait for the end.
        if record.phase in ("cluster", "selflabel") and is_checkpoint_epoch(config, record.epoch, last=False):
            store.append(epochs=epochs)
            epochs.clear()

    record = fit(config, report, checkpoint_dir=Path(args.out) / "checkpoints" / tid, dataset=dataset)
    store.save_assignments(tid, record)
    store.save_model(tid, record)
    store.append([trial_row(tid, record)], epochs)
    print(f"trial {tid} {record.status}" + (f": {record.error}" if record.error else "")
          + f"  acc {_fmt(record.final.get('acc'))}  wall {record.wall_time_s:.1f}s")
    print(f"results: {Path(args.out).resolve()}/trials.parquet, epochs.parquet")
    return 0 if record.status == "finished" else 1


def cmd_select(args: argparse.Namespace) -> int:
    from raydc.report.selection import selection_markdown
    from raydc.selection.select import DEFAULT_SELECTION, SCORES_FILE, SELECTION_FILE, run_selection, write_tables

    try:
        extra = tuple(c for c in args.criteria or () if c not in DEFAULT_SELECTION)  # rows added to the standard ones
        scores, _, selection = run_selection(args.dir, DEFAULT_SELECTION + extra)
    except (FileNotFoundError, ValueError) as exc:
        print(f"raydc: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if scores.empty:
        print(f"raydc: error: {args.dir}: no finished trials", file=sys.stderr)
        return EXIT_INVALID
    write_tables(args.dir, scores, selection)
    print(selection_markdown(selection), end="")
    print(f"results: {Path(args.dir).resolve()}/{SCORES_FILE}, {SELECTION_FILE}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from raydc.selection.export import export_selected

    try:
        cards = export_selected(args.dir, args.criterion, args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"raydc: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    for card in cards:
        print(f"{card['data.name']}: {args.criterion} selects {card['config_id']} ({len(card['trials'])} seeds): "
              f"{card['configuration']['config']}")
    print(f"models and model_card.json in {Path(args.out).resolve()}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from raydc.selection.export import read_samples
    from raydc.engine.model import ClusteringModel

    try:
        model = ClusteringModel.load(args.model)
        clusters = model.predict(read_samples(args.data))
    except (FileNotFoundError, ValueError) as exc:
        print(f"raydc: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"sample": range(len(clusters)), "cluster": clusters}).to_parquet(args.out, index=False)
    print(f"{len(clusters)} samples in {len(set(clusters.tolist()))} clusters: {Path(args.out).resolve()}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from raydc.report import MissingDimension, render_report

    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError("--out", f"{args.out} is a file; give a directory for the figures and tables")
    try:
        report = render_report(args.dir, args.out)
    except (FileNotFoundError, MissingDimension) as exc:
        print(f"raydc: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"report: {len(report.written)} files in {report.out_dir.resolve()}, {len(report.skipped)} skipped")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from raydc.study.spec import load_study
    from raydc.study.summary import describe_plan

    if args.study is None and not (args.resume and args.out):
        raise ConfigError("study", "give a study file, or --resume --out DIR to continue the study stored there")
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError("--out", f"{out} is a file; give a directory for the study")
    if args.resume and not (out is not None and (out / "study.yaml").exists()):
        raise ConfigError("--resume", f"{out} holds no study to resume" if out else "needs --out DIR")
    study = load_study(args.study or out / "study.yaml", datasets=args.dataset)
    out = out or Path("runs") / study.spec.name
    if args.dry_run:
        from raydc.study.paths import StudyPaths

        StudyPaths.at(out, study.spec.pretrain_cache).check_holds(study.spec.name)  # as the run itself refuses
        print(describe_plan(study, out))
        return 0
    from raydc.study.interrupt import Interrupted
    from raydc.study.runner import run_study

    try:
        summary = run_study(study, out, address=args.address)
    except Interrupted as stop:
        print(f"\nraydc: interrupted by {stop}; finished trials are recorded and interrupted ones keep their last "
              f"checkpoint.\nresume with: raydc run --resume --out {out}", file=sys.stderr, flush=True)
        return stop.exit_code
    return 1 if summary.counts.get("error") else 0


def cmd_slurm(args: argparse.Namespace) -> int:
    from raydc.study.slurm import SlurmJob, submit
    from raydc.study.spec import load_study

    study = load_study(args.study)  # a bad study fails here, not hours later in the queue
    out = Path(args.out or Path("runs") / study.spec.name).resolve()
    job = SlurmJob(Path(args.study).resolve(), out, args.nodes, args.cpus_per_node, args.gpus_per_node, args.time,
                   args.partition, args.account)
    job.check()
    if out.exists() and not out.is_dir():
        raise ConfigError("--out", f"{out} is a file; give a directory on a file system every node mounts")
    script = job.write()
    print(f"sbatch script: {script}")
    if args.submit:
        job_id = submit(script)
        print(f"submitted job {job_id}; its log: {out}/slurm-{job_id}.log; the study's tables: {out}")
    else:
        print(f"submit it with: sbatch {script}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from raydc.study.summary import describe_directory

    print(describe_directory(Path(args.dir)))
    return 0 if Path(args.dir, "trials.parquet").exists() else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raydc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="run one trial and write its Parquet tables")
    train.add_argument("config", nargs="?", help="trial config YAML (defaults: the BRB paper's Table 5)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a dotted field")
    train.add_argument("--out", default="runs/train", help="results directory")
    train.set_defaults(func=cmd_train)
    select = sub.add_parser("select", help="pick configurations without labels (MDL, VI, ...) and report the regret")
    select.add_argument("dir", help="study directory (trials.parquet, assignments/)")
    select.add_argument("--criteria", nargs="+", metavar="NAME",
                        help="criteria to add to the standard ones (agreement, the default, then mdl, vi, "
                             "reconstruction, silhouette, ch, db, cross_ch, mdl+vi, agreement+vi): a rank average "
                             "such as vi+ch")
    select.set_defaults(func=cmd_select)
    report = sub.add_parser("report", help="render a study's figures (PNG) and tables (Markdown, HTML)")
    report.add_argument("dir", help="study directory")
    report.add_argument("--out", help="figure directory (default: DIR/report)")
    report.set_defaults(func=cmd_report)
    run = sub.add_parser("run", help="run a study (YAML) on Ray and write its Parquet tables")
    run.add_argument("study", nargs="?", help="study file (optional with --resume: DIR/study.yaml)")
    run.add_argument("--out", help="study directory (default: runs/<study name>); trials already done there are skipped")
    run.add_argument("--address", help="Ray cluster to join, e.g. auto (default: start Ray on this machine)")
    run.add_argument("--dataset", action="append", metavar="NAME", help="run on this dataset instead (repeatable)")
    run.add_argument("--dry-run", action="store_true", help="validate and show the planned trials; start nothing")
    run.add_argument("--resume", action="store_true", help="continue the study in --out (after a crash or kill)")
    run.set_defaults(func=cmd_run)
    slurm = sub.add_parser("slurm", help="write (and --submit) an sbatch script running a study on N SLURM nodes")
    slurm.add_argument("study", help="study file")
    slurm.add_argument("--out", help="study directory on a file system every node mounts (default: runs/<name>)")
    slurm.add_argument("--nodes", type=int, default=1, help="nodes of the allocation (Ray head on the first)")
    slurm.add_argument("--cpus-per-node", type=int, default=1, help="CPUs Ray may use on each node")
    slurm.add_argument("--gpus-per-node", type=int, default=0, help="GPUs of each node")
    slurm.add_argument("--time", default="01:00:00", help="wall-time limit, e.g. 24:00:00 or 1-12:00:00")
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--account", help="SLURM account")
    slurm.add_argument("--submit", action="store_true", help="sbatch the script now")
    slurm.set_defaults(func=cmd_slurm)
    status = sub.add_parser("status", help="summarise a study directory")
    status.add_argument("dir", help="study directory")
    status.set_defaults(func=cmd_status)
    export = sub.add_parser("export", help="copy the models a label-free criterion selects, with a model card")
    export.add_argument("dir", help="study directory")
    export.add_argument("--criterion", required=True, help="a criterion of raydc select, e.g. vi or mdl+vi")
    export.add_argument("--out", required=True, help="directory for models/<trial_id>.pt and model_card.json")
    export.set_defaults(func=cmd_export)
    predict = sub.add_parser("predict", help="cluster raw samples with a kept model")
    predict.add_argument("model", help="a model file: <study dir>/models/<trial_id>.pt or one raydc export wrote")
    predict.add_argument("data", help="samples as .npy, .npz, .csv or .parquet, as the dataset's files hold them")
    predict.add_argument("--out", default="labels.parquet", help="Parquet file of (sample, cluster)")
    predict.set_defaults(func=cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except (ConfigError, DatasetUnavailable) as exc:
        print(f"raydc: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except BrokenPipeError:  # the reader went away (`raydc run --dry-run | head`): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's exit flush must not fail again
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
