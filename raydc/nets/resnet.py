"""ResNet-18 encoder (CIFAR stem) with an MLP head D-512-256-d and a SimCLR projector."""
from __future__ import annotations

import torch
from torch import nn

from raydc.nets.autoencoder import mlp


class ResNetEncoder(nn.Module):
    def __init__(self, in_channels: int, embedding_dim: int, head_hidden: tuple[int, ...] = (512, 256),
                 projector_width: int = 2048, projector_dim: int = 128):
        super().__init__()
        import torchvision  # here, not at the top: its import costs every trial process seconds, MLP trials included

        backbone = torchvision.models.resnet18(weights=None)
        # CIFAR stem: 3×3 stride-1 first convolution and no max-pool keep 32×32 inputs informative.
        backbone.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        backbone.maxpool = nn.Identity()
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.head = mlp([512, *head_hidden, embedding_dim])
        self.projector = nn.Sequential(nn.Linear(512, projector_width), nn.ReLU(), nn.Linear(projector_width, projector_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.features(x))

    def encode_and_project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding and projection from one backbone pass."""
        h = self.features(x)
        return self.head(h), self.projector(h)

    @property
    def embedding_layer(self) -> nn.Linear:
        return self.head[-1]

    def layer_groups(self, include_embedding: bool) -> dict[str, list[nn.Module]]:
        """Named selections: MLP head ('encoder'), ResNet blocks 1-4, projector, every BatchNorm."""
        head = [m for m in self.head if isinstance(m, nn.Linear)]
        if not include_embedding:
            head = head[:-1]
        groups: dict[str, list[nn.Module]] = {"encoder": head}
        for i in range(1, 5):
            block = getattr(self.backbone, f"layer{i}")
            groups[f"block{i}"] = [m for m in block.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
        groups["projector"] = [m for m in self.projector if isinstance(m, nn.Linear)]
        groups["batchnorm"] = [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]
        return groups
