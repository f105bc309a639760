"""raydc: hyperparameter and ablation studies of centroid-based deep clustering on Ray."""
__version__ = "0.1.0"
