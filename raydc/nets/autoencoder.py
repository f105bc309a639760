"""Feed-forward autoencoder D-1024-512-256-d (ReLU; BatchNorm on request) with layers addressable by name."""
from __future__ import annotations

import torch
from torch import nn


def mlp(widths: list[int], batch_norm: bool = False) -> nn.Sequential:
    """Linear layers with ReLU between them (BatchNorm1d before each ReLU with batch_norm) and none after the last
    (the embedding / output layer)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers += [nn.BatchNorm1d(b), nn.ReLU()] if batch_norm else [nn.ReLU()]
    return nn.Sequential(*layers)


class FeedForwardAE(nn.Module):
    def __init__(self, input_dim: int, hidden: list[int], embedding_dim: int, batch_norm: bool = False):
        super().__init__()
        self.encoder = mlp([input_dim, *hidden, embedding_dim], batch_norm)
        self.decoder = mlp([embedding_dim, *reversed(hidden), input_dim], batch_norm)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @property
    def embedding_layer(self) -> nn.Linear:
        return self.encoder[-1]

    def layer_groups(self, include_embedding: bool) -> dict[str, list[nn.Module]]:
        """Named selections a reset can target; the embedding layer joins 'encoder' only on request."""
        encoder = [m for m in self.encoder if isinstance(m, nn.Linear)]
        if not include_embedding:
            encoder = encoder[:-1]
        return {"encoder": encoder, "decoder": [m for m in self.decoder if isinstance(m, nn.Linear)]}
