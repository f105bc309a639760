"""Dataset names, their metadata, and loading any of them by name."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from raydc.data.dataset import Dataset, standardize
from raydc.data.files import find_files, load_files
from raydc.data.locations import search_roots
from raydc.data.torchvision_sets import check_torchvision, load_torchvision

Source = Literal["sklearn", "files", "torchvision"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    n_samples: int
    n_clusters: int
    image_shape: tuple[int, int, int]  # (C, H, W)
    color: bool
    source: Source
    raw_range: tuple[float, float]  # the pixel values as the dataset's files hold them, mapped to [0, 1] on loading
    equalized: bool  # histograms equalised per channel on loading (GTSRB)


def _info(name: str, n_samples: int, n_clusters: int, image_shape: tuple[int, int, int], source: Source,
          raw_range: tuple[float, float] = (0.0, 255.0)) -> DatasetInfo:
    return DatasetInfo(name, n_samples, n_clusters, image_shape, image_shape[0] == 3, source, raw_range,
                       name == "gtsrb")


# Sizes follow Table 3 of the BRB paper; `digits` (the OPTDIGITS test split) and `mnist-test` need no download.
_INFOS = {
    info.name: info
    for info in (
        _info("digits", 1797, 10, (1, 8, 8), "sklearn", (0.0, 16.0)),
        _info("optdigits", 5620, 10, (1, 8, 8), "files", (0.0, 16.0)),
        _info("usps", 9298, 10, (1, 16, 16), "files", (-1.0, 1.0)),
        _info("mnist-test", 10000, 10, (1, 28, 28), "files"),
        _info("mnist", 70000, 10, (1, 28, 28), "torchvision"),
        _info("fmnist", 70000, 10, (1, 28, 28), "torchvision"),
        _info("kmnist", 70000, 10, (1, 28, 28), "torchvision"),
        _info("gtsrb", 7860, 5, (3, 32, 32), "torchvision"),
        _info("cifar10", 60000, 10, (3, 32, 32), "torchvision"),
        _info("cifar100-20", 60000, 20, (3, 32, 32), "torchvision"),
    )
}


def dataset_names() -> list[str]:
    return list(_INFOS)


def dataset_info(name: str) -> DatasetInfo:
    """Metadata of a dataset, without touching any file."""
    if name not in _INFOS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(_INFOS)}")
    return _INFOS[name]


def check_available(name: str, data_dir: str | os.PathLike | None = None) -> None:
    """Raise DatasetUnavailable (or DatasetCorrupt) unless the dataset loads offline now; never downloads."""
    info = dataset_info(name)
    roots = search_roots(data_dir)
    if info.source == "files":
        find_files(name, roots)
    elif info.source == "torchvision":
        check_torchvision(name, roots)


def _load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits  # deferred: importing scikit-learn is slow and rarely needed

    digits = load_digits()
    images = torch.from_numpy(digits.data.astype(np.float32) / 16).reshape(-1, 1, 8, 8)
    return images, torch.from_numpy(digits.target).long()


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    download: bool = True,
) -> Dataset:
    """Load, scale to [0, 1] and z-transform per channel; files are looked up in data_dir, then the user cache."""
    info = dataset_info(name)
    roots = search_roots(data_dir)
    if info.source == "sklearn":
        images, labels = _load_digits()
    elif info.source == "files":
        images, labels = load_files(name, roots, download)
    else:
        images, labels = load_torchvision(name, roots, download, (info.n_samples, *info.image_shape))
    return standardize(name, images, labels, info.n_clusters).to(device)
