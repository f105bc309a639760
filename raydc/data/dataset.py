"""The in-memory dataset: z-transformed images, evaluation labels and the transform's statistics."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F


@dataclass
class Dataset:
    name: str
    x: torch.Tensor  # float32 (n, C, H, W), z-transformed per channel by mean and std
    y: torch.Tensor  # int64 (n,), classes 0..k-1, for evaluation only
    n_clusters: int
    mean: torch.Tensor  # (C,) per-channel mean of the raw [0, 1] images
    std: torch.Tensor  # (C,) per-channel std of the raw [0, 1] images

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        channels, height, width = self.x.shape[1:]
        return channels, height, width

    @property
    def dim(self) -> int:
        return self.x[0].numel()

    def to(self, device: torch.device | str) -> Dataset:
        return replace(
            self, x=self.x.to(device), y=self.y.to(device), mean=self.mean.to(device), std=self.std.to(device)
        )

    def flat(self) -> torch.Tensor:
        """(n, C*H*W) view of the images."""
        return self.x.reshape(self.n, -1)


def standardize(name: str, images: torch.Tensor, labels: torch.Tensor, n_clusters: int) -> Dataset:
    """Scale images to [0, 1] (uint8 is divided by 255) and z-transform each channel over the whole set."""
    x = images.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
    if images.dtype == torch.uint8:
        x.div_(255)
    std, mean = torch.std_mean(x, dim=(0, 2, 3), correction=0)
    x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    return Dataset(name=name, x=x, y=labels.long(), n_clusters=n_clusters, mean=mean, std=std)


def resized(data: Dataset, side: int | None) -> Dataset:
    """The images resized to side × side by bilinear interpolation, as torchvision's Resize does to tensors; the
    same dataset when side is None or the images already have that size.

    Interpolation commutes with the z-transform (its weights sum to one), so this equals the authors' order:
    statistics of the native images, then Resize, then Normalize.
    """
    if side is None or data.image_shape[1:] == (side, side):
        return data
    x = F.interpolate(data.x, size=(side, side), mode="bilinear", align_corners=False, antialias=False)
    return replace(data, x=x)
