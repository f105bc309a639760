"""Deep-clustering objectives and models (DEC, IDEC, DCN; LFSS), SimCLR's InfoNCE, and device (re)clustering."""
from raydc.clustering.algorithms import CentroidModel

__all__ = ["CentroidModel"]
