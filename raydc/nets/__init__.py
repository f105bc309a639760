"""Networks: the feed-forward autoencoder and the ResNet-18 encoder."""
from torch import nn

from raydc.nets.autoencoder import FeedForwardAE
from raydc.nets.resnet import ResNetEncoder

__all__ = ["FeedForwardAE", "ResNetEncoder", "build_network", "has_batch_norm"]


def build_network(arch: str, image_shape: tuple[int, int, int], hidden: list[int], embedding_dim: int, *,
                  projector_width: int = 2048, projector_dim: int = 128, batch_norm: bool = False):
    if arch == "mlp":
        c, h, w = image_shape
        return FeedForwardAE(c * h * w, hidden, embedding_dim, batch_norm)
    if arch == "resnet18":
        return ResNetEncoder(image_shape[0], embedding_dim, tuple(hidden), projector_width, projector_dim)
    raise ValueError(f"net.arch: unknown architecture {arch!r}")


def has_batch_norm(net: nn.Module) -> bool:
    """Whether the network's output for a sample depends on the rest of its batch in training mode."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
