"""Figures and tables of a study, as importable functions shared by the notebooks and `raydc report`."""
from raydc.report.ablations import ablation_html, ablation_markdown, ablation_summary, plot_relative_change
from raydc.report.dynamics import dynamics_curves, final_values, plot_dynamics
from raydc.report.render import render_report
from raydc.report.selection import plot_selection_scatter, preference_table, selection_html, selection_markdown
from raydc.report.selflabeling import best_configurations, plot_selflabeling, plot_stability
from raydc.report.sensitivity import GRIDS, Grid, grid_means, plot_sensitivity
from raydc.errors import MissingDimension
from raydc.report.sweeps import plot_sweeps, sweep_markdown, sweep_summary, swept_columns

__all__ = ["GRIDS", "Grid", "MissingDimension", "ablation_html", "ablation_markdown", "ablation_summary",
           "best_configurations", "dynamics_curves", "final_values", "grid_means", "plot_dynamics",
           "plot_relative_change", "plot_selection_scatter", "plot_selflabeling", "plot_stability", "plot_sweeps",
           "preference_table", "render_report", "selection_html", "selection_markdown", "plot_sensitivity", "sweep_markdown",
           "sweep_summary", "swept_columns"]
