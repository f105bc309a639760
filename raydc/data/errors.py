"""Errors raised when a dataset cannot be read, each a single actionable message."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from raydc.errors import DatasetCorrupt, DatasetUnavailable

__all__ = ["DatasetCorrupt", "DatasetUnavailable", "missing_files_error"]


def missing_files_error(
    name: str, files: Sequence[str], roots: Sequence[Path], failure: str | None = None
) -> DatasetUnavailable:
    """One message naming the dataset, the files it needs, where they were looked for and why fetching failed."""
    where = " or ".join(str(root) for root in roots)
    message = f"dataset {name!r} is not available: expected {', '.join(files)} under {where}"
    if failure is None:
        message += ("; on a machine with internet access any raydc command that uses it downloads it, or copy the "
                    "files into one of those directories (RAYDC_DATA_DIR names another)")
    else:
        message += f"; {failure}"
    return DatasetUnavailable(message)
