"""Population mode: same-shaped MLP trials trained as one stacked model (see fit.py)."""
from raydc.engine.population.fit import VARYING_FIELDS, check_stackable, fit_population, stacking_key

__all__ = ["VARYING_FIELDS", "check_stackable", "fit_population", "stacking_key"]
