"""Studies: a YAML study file → Ray Tune trials (Optuna, ASHA, Ray Train for multi-worker trials) → Parquet.

The only part of raydc that knows about Ray. Validation (spec, plan, effects) imports no Ray, so a bad
study file is rejected before anything starts.
"""
