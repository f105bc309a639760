"""Errors a trial can end with."""


class TrialDiverged(RuntimeError):
    """The loss or the centroids became NaN/inf: the trial is recorded as failed with this reason."""
