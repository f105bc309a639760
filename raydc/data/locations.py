"""Where dataset files are looked for and where downloads go."""
from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "RAYDC_DATA_DIR"


def user_cache_dir() -> Path:
    return Path.home() / ".cache" / "raydc"


def default_data_dir() -> Path:
    """$RAYDC_DATA_DIR if set, else ~/.cache/raydc."""
    configured = os.environ.get(DATA_DIR_ENV)
    return Path(configured).expanduser() if configured else user_cache_dir()


def search_roots(data_dir: str | os.PathLike | None) -> list[Path]:
    """The given (or default) directory, then the user cache, where earlier downloads may have landed."""
    primary = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    roots = [primary]
    if user_cache_dir().resolve() != primary.resolve():
        roots.append(user_cache_dir())
    return roots


def writable_dir(roots: list[Path], subdir: str) -> Path | None:
    """The first `root/subdir` that exists or can be created and accepts writes."""
    for root in roots:
        target = root / subdir
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(target, os.W_OK):
            return target
    return None
