"""The look shared by every figure: paper-sized fonts, constrained layout, one colour per variant."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, TypeVar

import matplotlib as mpl
from matplotlib.figure import Figure

PAPER_RC = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 9, "figure.titlesize": 12, "axes.spines.top": False, "axes.spines.right": False,
    "savefig.dpi": 150, "figure.dpi": 100,
}
# Fixed colours so a variant looks the same in every figure (the BRB paper's blue baseline, orange recluster).
MODE_COLOURS = {"baseline": "tab:blue", "recluster": "tab:orange", "reset": "tab:green", "brb": "tab:red",
                "disentangled": "tab:purple", "embedding_noise": "tab:brown", "perturb_only": "tab:pink",
                "scaled_gaussian": "tab:olive"}
HEATMAP_CMAP = "viridis"

Plot = TypeVar("Plot", bound=Callable[..., Figure])


def styled(plot: Plot) -> Plot:
    """Build the figure under the paper rc settings (font sizes are fixed when text is created)."""
    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(PAPER_RC):
            return plot(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with constrained layout (no global state, no overlapping labels)."""
    return Figure(figsize=(width, height), layout="constrained")


def save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=PAPER_RC["savefig.dpi"])
    return path
