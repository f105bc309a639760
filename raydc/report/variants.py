"""Names of the BRB paper's ablation variants (Table 13): algorithm, periodic step, pretraining."""
from __future__ import annotations

import pandas as pd

# Table 13's row order within a group; modes not listed follow in alphabetical order.
MODE_ORDER = ("baseline", "brb", "recluster", "reset")
ALGORITHM_ORDER = ("dec", "idec", "dcn")
MODE_NAMES = {"baseline": "", "brb": "+BRB", "recluster": "+Recluster", "reset": "+Reset"}


def mode_rank(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode), "") if mode in MODE_ORDER else (len(MODE_ORDER), mode)


def algorithm_rank(algorithm: str) -> tuple[int, str]:
    return (ALGORITHM_ORDER.index(algorithm), "") if algorithm in ALGORITHM_ORDER else (len(ALGORITHM_ORDER), algorithm)


def pretrained(trials: pd.DataFrame) -> pd.Series:
    return trials["pretrain.epochs"] > 0


def variant_name(algorithm: str, mode: str, with_pretraining: bool) -> str:
    """'DEC', 'IDEC+BRB', 'DCN+Reset+Pretrain', ... as in Table 13."""
    suffix = MODE_NAMES.get(mode, f"+{mode}")
    return f"{algorithm.upper()}{suffix}" + ("+Pretrain" if with_pretraining else "")


def mode_label(mode: str) -> str:
    """'baseline', 'BRB', 'Recluster', ...: a mode as a legend entry."""
    return MODE_NAMES.get(mode, f"+{mode}").lstrip("+") or "baseline"


def pretraining_title(with_pretraining: bool) -> str:
    return "with pretraining" if with_pretraining else "without pretraining"
