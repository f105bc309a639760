"""Atomic save and weights-only load of a trial's full state."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from raydc.files.atomic import atomic_path


def atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as temp:
        torch.save(obj, temp)


def load(path: Path, device: torch.device | str = "cpu") -> Any:
    return torch.load(path, map_location=device, weights_only=True)
