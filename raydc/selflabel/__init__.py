"""Self-labeling stage: SCAN's confidence-based self-training with ReSL's reset strategies."""
from raydc.selflabel.loss import confidence_cross_entropy, nmi_match
from raydc.selflabel.resl import (
    STRATEGIES,
    HareTortoise,
    NoReset,
    ReSLStrategy,
    ShrinkPerturb,
    make_strategy,
    resets_after,
)
from raydc.selflabel.stage import Classifier, SelfLabeling

__all__ = [
    "STRATEGIES",
    "Classifier",
    "HareTortoise",
    "NoReset",
    "ReSLStrategy",
    "SelfLabeling",
    "ShrinkPerturb",
    "confidence_cross_entropy",
    "make_strategy",
    "nmi_match",
    "resets_after",
]
