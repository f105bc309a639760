"""Scores of a clustering, during training and after: label metrics and embedding geometry (metrics.py, stacked
over a population by scoring.py) and MDL (mdl.py)."""
