"""Crash drills: make one trial process die abruptly, to watch a study retry and resume it.

Write "<phase> <epoch>" (e.g. "cluster 3") into <study dir>/crash-once; the first trial that finishes
that epoch deletes the file and exits its process at once, as a killed or preempted worker would.
"""
from __future__ import annotations

import os
from pathlib import Path

from raydc.engine.records import EpochRecord

MARKER = "crash-once"


def crash_if_requested(study_dir: Path, record: EpochRecord) -> None:
    marker = study_dir / MARKER
    try:
        if not marker.exists() or marker.read_text().split() != [record.phase, str(record.epoch)]:
            return
        marker.unlink()  # only one process wins the unlink, so exactly one crashes
    except FileNotFoundError:
        return
    os._exit(70)
