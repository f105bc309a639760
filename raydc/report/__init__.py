"""Figures and tables of a study, as importable functions shared by the notebooks and `raydc report`."""
from raydc.report.ablations import ablation_html, ablation_markdown, ablation_summary, plot_relative_change
from raydc.report.dynamics import dynamics_curves, plot_dynamics
from raydc.report.render import render_report
from raydc.report.selection import plot_selection_scatter, preference_table, selection_html, selection_markdown
from raydc.report.sensitivity import GRIDS, Grid, grid_means, plot_sensitivity
from raydc.report.style import MissingDimension

__all__ = ["GRIDS", "Grid", "MissingDimension", "ablation_html", "ablation_markdown", "ablation_summary",
           "dynamics_curves", "grid_means", "plot_dynamics", "plot_relative_change", "plot_selection_scatter",
           "preference_table", "render_report", "selection_html", "selection_markdown", "plot_sensitivity"]
