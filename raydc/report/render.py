"""Render every figure (PNG) and table (Markdown and HTML) of a study into one folder, with an index.md
that shows them in order; a figure whose dimensions the study lacks is skipped with its reason."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from raydc.tables.results import load_epochs, load_trials
from raydc.report.ablations import ablation_html, ablation_markdown, ablation_summary, plot_relative_change
from raydc.report.dynamics import plot_dynamics
from raydc.report.selection import plot_selection_scatter, selection_html, selection_markdown
from raydc.report.selflabeling import plot_selflabeling, plot_stability
from raydc.report.sensitivity import GRIDS, plot_sensitivity
from raydc.errors import MissingDimension
from raydc.report.style import save
from raydc.report.sweeps import plot_sweeps, sweep_markdown
from raydc.report.variants import pretrained
from raydc.selection.select import DEFAULT_SELECTION, run_selection

# Table 13, 14 and 15 of the BRB paper.
TABLE_METRICS = ("acc", "nmi", "ari")


@dataclass
class Report:
    out_dir: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def render_report(study_dir: Path | str, out_dir: Path | str | None = None,
                  criteria: tuple[str, ...] = DEFAULT_SELECTION, log: Callable[[str], None] = print) -> Report:
    """Write the figures and tables of ``study_dir`` to ``out_dir`` (default: <study_dir>/report)."""
    study_dir = Path(study_dir)
    report = Report(Path(out_dir) if out_dir else study_dir / "report")
    report.out_dir.mkdir(parents=True, exist_ok=True)
    trials = load_trials(study_dir)
    if trials.empty:
        raise MissingDimension(f"{study_dir}: no finished trials")
    every_trial = load_trials(study_dir, finished_only=False)  # the heatmaps count failed trials
    epochs = load_epochs(study_dir, trials)
    selflabel_epochs = load_epochs(study_dir, trials, phase="selflabel")
    datasets = sorted(trials["data.name"].unique())

    def skip(name: str, reason: MissingDimension) -> None:
        report.skipped.append((name, str(reason)))
        log(f"skipped {name}: {reason}")

    def attempt(name: str, make: Callable[[], object]) -> None:
        try:
            made = make()
        except MissingDimension as reason:
            skip(name, reason)
            return
        path = report.out_dir / name
        if name.endswith(".png"):
            save(made, path)
        else:
            path.write_text(made)
        report.written.append(path)
        log(f"wrote {path}")

    for grid in GRIDS:
        for dataset in datasets:
            attempt(f"sensitivity_{grid.name}_{dataset}.png", lambda: plot_sensitivity(every_trial, grid, dataset))
    try:
        summaries = {metric: ablation_summary(trials, metric) for metric in TABLE_METRICS}
    except MissingDimension as reason:
        skip("ablation tables and bars", reason)
    else:
        for metric, summary in summaries.items():
            attempt(f"ablation_{metric}.md", lambda: ablation_markdown(summary))
            attempt(f"ablation_{metric}.html", lambda: ablation_html(summary))
        attempt("ablation_relative_acc.png", lambda: plot_relative_change(summaries["acc"], "acc"))
    for dataset in datasets:
        for setting in sorted(pretrained(trials[trials["data.name"] == dataset]).unique()):
            name = f"dynamics_{dataset}_{'pretrained' if setting else 'scratch'}.png"
            attempt(name, lambda: plot_dynamics(epochs, dataset, bool(setting)))
    for dataset in datasets:
        attempt(f"lfss_sweeps_{dataset}.md", lambda: sweep_markdown(trials, dataset))
        attempt(f"lfss_sweeps_{dataset}.png", lambda: plot_sweeps(trials, dataset))
        attempt(f"lfss_stability_{dataset}.png", lambda: plot_stability(epochs, dataset))
        attempt(f"selflabel_dynamics_{dataset}.png", lambda: plot_selflabeling(selflabel_epochs, dataset))
    _, configs, selection = run_selection(study_dir, criteria)
    attempt("selection.md", lambda: selection_markdown(selection))
    attempt("selection.html", lambda: selection_html(selection))
    for dataset in datasets:
        attempt(f"selection_scatter_{dataset}.png", lambda: plot_selection_scatter(configs, selection, dataset))
    _write_index(report)
    return report


def _write_index(report: Report) -> None:
    """index.md: the Markdown tables inline and the figures as images, then what was skipped and why."""
    parts = ["# Study report\n"]
    for path in report.written:
        if path.suffix == ".png":
            parts.append(f"## {path.stem}\n\n![{path.stem}]({path.name})\n")
        elif path.suffix == ".md":
            parts.append(f"## {path.stem}\n\n{path.read_text()}")
    if report.skipped:
        parts.append("## Skipped\n\n" + "".join(f"- {name}: {reason}\n" for name, reason in report.skipped))
    index = report.out_dir / "index.md"
    index.write_text("\n".join(parts))
    report.written.append(index)
