"""Every error raydc raises on purpose, in one place; each names what is wrong and, where it can, what to do."""
from __future__ import annotations


class ConfigError(ValueError):
    """One invalid configuration field, named by its dotted path."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class TrialDiverged(RuntimeError):
    """The loss or the centroids became NaN/inf: the trial is recorded as failed with this reason."""


class DatasetUnavailable(Exception):
    """A dataset's files are missing here and could not be fetched."""


class DatasetCorrupt(DatasetUnavailable):
    """A dataset file is present but its content is not the published one."""


class InvalidInput(ValueError):
    """Samples a model cannot take; the message says what it expected."""


class MissingDimension(ValueError):
    """The study lacks what a figure or table needs (a grid dimension, a baseline, per-epoch metrics)."""
