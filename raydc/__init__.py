"""raydc: hyperparameter and ablation studies of centroid-based deep clustering on Ray."""
__version__ = "0.1.0"

# The public face, imported on first use so `import raydc` stays light (torch loads only when needed).
_PUBLIC = {
    "fit": "raydc.engine.train",
    "fit_population": "raydc.engine.population",
    "make_config": "raydc.config",
    "load_model": "raydc.engine.model",
    "ClusteringModel": "raydc.engine.model",
    "ResultStore": "raydc.tables.store",
    "load_trials": "raydc.tables.results",
    "load_epochs": "raydc.tables.results",
}
__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'raydc' has no attribute {name!r}")
