"""Deep-clustering objectives (DEC, IDEC, DCN) and device (re)clustering."""
from raydc.clustering.algorithms import CentroidModel

__all__ = ["CentroidModel"]
