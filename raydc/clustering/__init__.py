"""Deep-clustering objectives and models (DEC, IDEC, DCN; LFSS) and device (re)clustering."""
from raydc.clustering.algorithms import CentroidModel

__all__ = ["CentroidModel"]
