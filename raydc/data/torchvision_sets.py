"""Larger datasets through torchvision's classes, converted once into a uint8 tensor cache."""
from __future__ import annotations

import http.client
import pickle
import socket
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from raydc.files.atomic import atomic_path, exclusive
from raydc.data.errors import DatasetCorrupt, missing_files_error
from raydc.data.files import DOWNLOAD_TIMEOUT_S
from raydc.data.locations import writable_dir

TORCHVISION_DIR = "torchvision"

# GTSRB classes 'Speed limit 50', 'Priority road', 'No entry', 'General caution', 'Ahead only' become labels 0..4.
GTSRB_CLASSES = (2, 12, 17, 18, 35)
GTSRB_SIZE = 32

# CIFAR-100 fine label -> one of the 20 superclasses of the CIFAR-100 release.
CIFAR100_COARSE = torch.tensor([
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
])

Images = tuple[torch.Tensor, torch.Tensor]  # uint8 (n, C, H, W), int64 (n,)


@dataclass(frozen=True)
class TorchvisionSource:
    class_name: str  # in torchvision.datasets, looked up at call time
    raw_files: tuple[str, ...]  # paths below <root>/torchvision that the class reads
    build: Callable[[Path, bool], Images]  # (torchvision root, download) -> images, labels


def equalize_histograms(images: torch.Tensor) -> torch.Tensor:
    """Histogram-equalise every channel of every uint8 image at once, with PIL's ImageOps.equalize mapping."""
    n, channels, height, width = images.shape
    pixels = images.reshape(n * channels, height * width).long()
    counts = torch.zeros(n * channels, 256, dtype=torch.long).scatter_add_(1, pixels, torch.ones_like(pixels))
    brightest_count = counts.gather(1, pixels.amax(dim=1, keepdim=True))
    step = (height * width - brightest_count) // 255
    darker = counts.cumsum(dim=1) - counts
    lut = ((darker + step // 2) // step.clamp(min=1)).clamp(max=255)
    # A channel with (almost) a single value has nothing to spread and stays unchanged.
    lut = torch.where(step > 0, lut, torch.arange(256))
    return lut.gather(1, pixels).to(torch.uint8).reshape(n, channels, height, width)


def _torchvision_class(class_name: str) -> type:
    from torchvision import datasets  # deferred: importing torchvision takes seconds and most runs never need it

    return getattr(datasets, class_name)


def _mnist_like(class_name: str) -> Callable[[Path, bool], Images]:
    def build(root: Path, download: bool) -> Images:
        cls = _torchvision_class(class_name)
        splits = [cls(root, train=train, download=download) for train in (True, False)]
        return torch.cat([s.data for s in splits]).unsqueeze(1), torch.cat([s.targets for s in splits])

    return build


def _cifar(class_name: str, relabel: torch.Tensor | None) -> Callable[[Path, bool], Images]:
    def build(root: Path, download: bool) -> Images:
        cls = _torchvision_class(class_name)
        splits = [cls(root, train=train, download=download) for train in (True, False)]
        images = torch.from_numpy(np.concatenate([s.data for s in splits])).permute(0, 3, 1, 2).contiguous()
        labels = torch.tensor([t for s in splits for t in s.targets], dtype=torch.long)
        return images, labels if relabel is None else relabel[labels]

    return build


def _build_gtsrb(root: Path, download: bool) -> Images:
    """The five-class subset of the training split (7,860 images, Table 3 of the BRB paper), resized and equalised."""
    _torchvision_class("GTSRB")(root, split="train", download=download)
    training = root / "gtsrb" / "GTSRB" / "Training"
    images, labels = [], []
    for label, gtsrb_class in enumerate(GTSRB_CLASSES):
        for path in sorted((training / f"{gtsrb_class:05d}").glob("*.ppm")):
            with Image.open(path) as image:
                resized = image.convert("RGB").resize((GTSRB_SIZE, GTSRB_SIZE), Image.Resampling.BILINEAR)
            images.append(np.asarray(resized))
            labels.append(label)
    stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return equalize_histograms(stacked), torch.tensor(labels, dtype=torch.long)


def _mnist_raw(folder: str) -> tuple[str, ...]:
    return tuple(
        f"{folder}/raw/{split}-{kind}"
        for split in ("train", "t10k")
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    )


SOURCES: dict[str, TorchvisionSource] = {
    "mnist": TorchvisionSource("MNIST", _mnist_raw("MNIST"), _mnist_like("MNIST")),
    "fmnist": TorchvisionSource("FashionMNIST", _mnist_raw("FashionMNIST"), _mnist_like("FashionMNIST")),
    "kmnist": TorchvisionSource("KMNIST", _mnist_raw("KMNIST"), _mnist_like("KMNIST")),
    "cifar10": TorchvisionSource(
        "CIFAR10",
        tuple(f"cifar-10-batches-py/{f}" for f in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                                   "data_batch_5", "test_batch", "batches.meta")),
        _cifar("CIFAR10", None),
    ),
    "cifar100-20": TorchvisionSource(
        "CIFAR100", ("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"),
        _cifar("CIFAR100", CIFAR100_COARSE),
    ),
    "gtsrb": TorchvisionSource(
        "GTSRB", tuple(f"gtsrb/GTSRB/Training/{c:05d}" for c in GTSRB_CLASSES), _build_gtsrb
    ),
}


def _expected(name: str) -> list[str]:
    return [f"{TORCHVISION_DIR}/{path}" for path in SOURCES[name].raw_files]


def _raw_root(name: str, roots: list[Path]) -> Path | None:
    for root in roots:
        if all((root / TORCHVISION_DIR / path).exists() for path in SOURCES[name].raw_files):
            return root / TORCHVISION_DIR
    return None


def _read_cache(path: Path, shape: tuple[int, ...]) -> Images | None:
    """The cached tensors, or None when absent, unreadable or not of the expected shape (then rebuilt)."""
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        return None
    if not isinstance(cached, dict):
        return None
    images, labels = cached.get("images"), cached.get("labels")
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or tuple(images.shape) != shape:
        return None
    if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != shape[:1]:
        return None
    return images, labels.long()


def _write_cache(roots: list[Path], name: str, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Save atomically where writable; a cache that cannot be written only costs a rebuild next time."""
    directory = writable_dir(roots, TORCHVISION_DIR)
    if directory is None:
        return
    with suppress(OSError, RuntimeError), atomic_path(directory / f"{name}.pt") as temp:
        torch.save({"images": images, "labels": labels}, temp)


def _find_cache(name: str, roots: list[Path], shape: tuple[int, ...]) -> Images | None:
    for root in roots:
        cached = _read_cache(root / TORCHVISION_DIR / f"{name}.pt", shape)
        if cached is not None:
            return cached
    return None


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """torchvision opens URLs without a timeout; bound them so an unreachable host fails instead of hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)




def _build(name: str, roots: list[Path], raw_root: Path, download: bool, shape: tuple[int, ...]) -> Images:
    """Read (or download, then read) the raw files with torchvision, check the result and cache it."""
    source = SOURCES[name]
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            images, labels = source.build(raw_root, download)
    except (OSError, RuntimeError, http.client.HTTPException, tarfile.TarError, zipfile.BadZipFile) as error:
        action = "download" if download else "read"
        reason = " ".join(str(error).split())
        raise missing_files_error(
            name, _expected(name), roots,
            f"torchvision.datasets.{source.class_name} could not {action} them in {raw_root}: {reason}",
        ) from None
    if tuple(images.shape) != shape or tuple(labels.shape) != shape[:1]:
        raise DatasetCorrupt(
            f"dataset {name!r}: torchvision files in {raw_root} gave images of shape {tuple(images.shape)}, "
            f"expected {shape}"
        )
    _write_cache(roots, name, images, labels)
    return images, labels


def check_torchvision(name: str, roots: list[Path]) -> None:
    """Raise DatasetUnavailable unless the cache or torchvision's raw files are on disk."""
    cached = any((root / TORCHVISION_DIR / f"{name}.pt").is_file() for root in roots)
    if not cached and _raw_root(name, roots) is None:
        raise missing_files_error(name, _expected(name), roots)


def load_torchvision(name: str, roots: list[Path], download: bool, shape: tuple[int, ...]) -> Images:
    """uint8 images and labels from the cache, else from torchvision's raw files (downloaded if allowed)."""
    cached = _find_cache(name, roots, shape)
    if cached is not None:
        return cached
    raw_root = _raw_root(name, roots)
    if raw_root is not None:
        return _build(name, roots, raw_root, False, shape)
    if not download:
        raise missing_files_error(name, _expected(name), roots)
    target = writable_dir(roots, TORCHVISION_DIR)
    if target is None:
        raise missing_files_error(name, _expected(name), roots, "none of these directories is writable")
    with exclusive(target / f".{name}.lock"):
        # Another process may have finished the download while this one waited.
        cached = _find_cache(name, roots, shape)
        return cached if cached is not None else _build(name, roots, target, True, shape)
