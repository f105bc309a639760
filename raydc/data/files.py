"""Small datasets read from their original files, verified by checksum and fetched over HTTP when missing."""
from __future__ import annotations

import gzip
import hashlib
import http.client
import shutil
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from raydc.files.atomic import atomic_path
from raydc.data.errors import DatasetCorrupt, missing_files_error
from raydc.data.locations import writable_dir

DOWNLOAD_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class RemoteFile:
    name: str  # path below data_dir/<dataset>/
    url: str
    sha256: str  # digest of the reference copy
    mirror_md5: str | None = None  # md5 torchvision publishes for the mirror's copy, which is compressed differently


_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/optdigits/"
_ESL = "https://hastie.su.domains/ElemStatLearn/datasets/"
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"

FILES: dict[str, tuple[RemoteFile, ...]] = {
    "optdigits": (
        RemoteFile("optdigits.tra", _UCI + "optdigits.tra",
                   "e1b683cc211604fe8fd8c4417e6a69f31380e0c61d4af22e93cc21e9257ffedd"),
        RemoteFile("optdigits.tes", _UCI + "optdigits.tes",
                   "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"),
    ),
    "usps": (
        RemoteFile("zip.train.gz", _ESL + "zip.train.gz",
                   "66ebf231ab51f2cf6ac1a892d0f98ccffee1079d7a5db638c1f11f366046ca16"),
        RemoteFile("zip.test.gz", _ESL + "zip.test.gz",
                   "8dacc3c6e136af6c3488de9e5113a7daf140c8c2f1f0b61c54ee02f03f1a962f"),
    ),
    "mnist-test": (
        RemoteFile("t10k-images-idx3-ubyte.gz", _MNIST + "t10k-images-idx3-ubyte.gz",
                   "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
                   mirror_md5="9fb629c4189551a2d022fa330f9573f3"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", _MNIST + "t10k-labels-idx1-ubyte.gz",
                   "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c",
                   mirror_md5="ec29112dd5afa0611ce80d1b7f02629c"),
    ),
}


def expected_paths(name: str) -> list[str]:
    return [f"{name}/{remote.name}" for remote in FILES[name]]


def open_url(url: str) -> BinaryIO:
    """The single network call; replaced in tests so they never leave the machine."""
    return urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)


def _digests(path: Path) -> tuple[str, str]:
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), md5.hexdigest()


def _is_published_copy(path: Path, remote: RemoteFile) -> tuple[bool, str]:
    sha256, md5 = _digests(path)
    return sha256 == remote.sha256 or md5 == remote.mirror_md5, sha256


def verify(name: str, directory: Path) -> None:
    """Raise DatasetCorrupt for the first file whose content is not the published one."""
    for remote in FILES[name]:
        path = directory / remote.name
        ok, actual = _is_published_copy(path, remote)
        if not ok:
            raise DatasetCorrupt(
                f"dataset {name!r}: file {path} has sha256 {actual}, expected {remote.sha256}; "
                "delete it to download it again, or replace it with the original"
            )


def locate(name: str, roots: list[Path]) -> Path | None:
    """The first `root/<name>` directory holding every file of the dataset."""
    for root in roots:
        directory = root / name
        if all((directory / remote.name).is_file() for remote in FILES[name]):
            return directory
    return None


def _download(remote: RemoteFile, target: Path) -> None:
    """Stream into a temporary file beside the target and move it into place only once its checksum matches."""
    with atomic_path(target) as temp:
        with open(temp, "wb") as sink, open_url(remote.url) as response:
            shutil.copyfileobj(response, sink)
        ok, actual = _is_published_copy(temp, remote)
        if not ok:
            raise ValueError(f"content has sha256 {actual}, expected {remote.sha256}")


def fetch(name: str, roots: list[Path]) -> Path:
    """Download the dataset's missing files into the first writable root."""
    directory = writable_dir(roots, name)
    if directory is None:
        raise missing_files_error(name, expected_paths(name), roots, "none of these directories is writable")
    for remote in FILES[name]:
        if (directory / remote.name).is_file():
            continue
        try:
            _download(remote, directory / remote.name)
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise missing_files_error(
                name, expected_paths(name), roots, f"download of {remote.url} into {directory} failed: {error}"
            ) from None
    return directory


def find_files(name: str, roots: list[Path]) -> Path:
    """The verified directory of a dataset present on disk, without downloading."""
    directory = locate(name, roots)
    if directory is None:
        raise missing_files_error(name, expected_paths(name), roots)
    verify(name, directory)
    return directory


def _read_optdigits(directory: Path) -> tuple[torch.Tensor, torch.Tensor]:
    rows = np.concatenate(
        [np.loadtxt(directory / split, delimiter=",", dtype=np.int64) for split in ("optdigits.tra", "optdigits.tes")]
    )
    images = torch.from_numpy(rows[:, :64].astype(np.float32) / 16).reshape(-1, 1, 8, 8)
    return images, torch.from_numpy(rows[:, 64])


def _read_usps(directory: Path) -> tuple[torch.Tensor, torch.Tensor]:
    splits = []
    for split in ("zip.train.gz", "zip.test.gz"):
        with gzip.open(directory / split, "rt") as text:
            splits.append(np.loadtxt(text, dtype=np.float32))
    rows = np.concatenate(splits)
    images = torch.from_numpy((rows[:, 1:] + 1) / 2).reshape(-1, 1, 16, 16)
    return images, torch.from_numpy(rows[:, 0].astype(np.int64))


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX array: big-endian int32 magic and dimensions, then uint8 values."""
    with gzip.open(path, "rb") as stream:
        raw = stream.read()
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DatasetCorrupt(f"file {path} is not an IDX file with magic number {magic} (found {found})")
    n_dims = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(n_dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * n_dims).reshape(dims)


def _read_mnist_test(directory: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = _read_idx(directory / "t10k-images-idx3-ubyte.gz", 2051)
    labels = _read_idx(directory / "t10k-labels-idx1-ubyte.gz", 2049)
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


READERS: dict[str, Callable[[Path], tuple[torch.Tensor, torch.Tensor]]] = {
    "optdigits": _read_optdigits,
    "usps": _read_usps,
    "mnist-test": _read_mnist_test,
}


def load_files(name: str, roots: list[Path], download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw images (uint8, or float in [0, 1]) and labels, downloading missing files if allowed."""
    directory = locate(name, roots)
    if directory is None and download:
        directory = fetch(name, roots)
    if directory is None:
        raise missing_files_error(name, expected_paths(name), roots)
    verify(name, directory)
    return READERS[name](directory)
