"""The self-labeling stage (SCAN, with BRB's head warm-up of App. E.1 and ReSL's resets) on device-resident data.

A caller runs `warmup_epoch` `warmup_epochs` times with the deep-clustering labels, then for every epoch e:
`train_epoch()`, `strategy.end_epoch(classifier, e)`, and evaluates `probabilities()`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from raydc.compute.batches import epoch_batches
from raydc.data import Augmenter
from raydc.compute.optim import make_adam
from raydc.selflabel.loss import confidence_cross_entropy
from raydc.selflabel.resl import ReSLStrategy

PREDICT_CHUNK = 8192  # samples per forward pass when predicting the whole set


class Classifier(nn.Module):
    """The deep-clustering encoder with a linear cluster head on its standardised embedding.

    logits = head(norm(net.encode(x))): a clustering embedding can have norms in the hundreds, which would
    make a fresh head's logits saturate; per-dimension standardisation (BatchNorm without affine parameters)
    keeps the centroids' Voronoi cells linearly separable, so the head can learn the clustering labels.
    """

    def __init__(self, net: nn.Module, embedding_dim: int, n_clusters: int):
        super().__init__()
        self.net = net
        self.norm = nn.BatchNorm1d(embedding_dim, affine=False)
        self.head = nn.Linear(embedding_dim, n_clusters)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.norm(self.net.encode(x)))


class SelfLabeling:
    """Confidence-thresholded self-training of a Classifier on a z-transformed dataset x (n, C, H, W)."""

    def __init__(self, classifier: Classifier, x: Tensor, *, lr: float, weight_decay: float, batch_size: int,
                 threshold: float, balance: bool, warmup_epochs: int, strategy: ReSLStrategy,
                 weak_augmenter: Augmenter | None, strong_augmenter: Augmenter, generator: torch.Generator):
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"confidence threshold must be in [0, 1), got {threshold}")
        self.classifier, self.x = classifier, x
        self.batch_size, self.threshold, self.balance = batch_size, threshold, balance
        self.warmup_epochs, self.strategy = warmup_epochs, strategy
        self.weak_augmenter, self.strong_augmenter, self.generator = weak_augmenter, strong_augmenter, generator
        self.optimizer = make_adam(classifier.parameters(), lr, weight_decay)
        self.head_optimizer = make_adam(classifier.head.parameters(), lr, weight_decay)

    def warmup_epoch(self, cluster_labels: Tensor) -> float:
        """One epoch of training the head alone on weak views against hard clustering labels; the mean loss.

        The encoder is frozen and kept in eval mode, so its BatchNorm statistics do not drift while the head
        learns to read the features the clustering stage produced.
        """
        net, norm, head = self.classifier.net, self.classifier.norm, self.classifier.head
        net.eval()
        norm.train()  # its running statistics are learnt here, from the frozen embedding
        labels = cluster_labels.to(self.x.device)
        total = torch.zeros((), device=self.x.device)
        for index, batch, weak in epoch_batches(self.x, self.batch_size, self.generator, self.weak_augmenter):
            with torch.no_grad():
                features = net.encode(batch if weak is None else weak)
                features = norm(features)
            loss = F.cross_entropy(head(features), labels[index])
            self.head_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.head_optimizer.step()
            total += loss.detach() * len(batch)
        net.train()
        return float(total) / len(self.x)  # one host sync per epoch

    def warmup(self, cluster_labels: Tensor) -> list[float]:
        """All `warmup_epochs` epochs of the head's warm-up; the loss of each."""
        return [self.warmup_epoch(cluster_labels) for _ in range(self.warmup_epochs)]

    def train_epoch(self) -> dict[str, float]:
        """One self-labeling epoch: mean loss and the fraction of samples that were confident."""
        classifier = self.classifier
        self.strategy.start(classifier)
        classifier.train()  # SCAN predicts the weak view in train mode too
        total_loss = torch.zeros((), device=self.x.device)
        total_confident = torch.zeros((), device=self.x.device, dtype=torch.int64)
        for _, batch, weak in epoch_batches(self.x, self.batch_size, self.generator, self.weak_augmenter):
            with torch.no_grad():
                probs_weak = F.softmax(classifier(batch if weak is None else weak), dim=1)
            # No confident sample: no step at all, or Adam's L2 weight decay alone would shrink every weight
            # by about lr per step (sign descent on θ), collapsing the network while nothing is learnt.
            if not bool((probs_weak.amax(1) > self.threshold).any()):
                continue
            logits_strong = classifier(self.strong_augmenter(batch, self.generator))
            loss, n_confident = confidence_cross_entropy(logits_strong, probs_weak, self.threshold, self.balance)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.strategy.after_step(classifier)
            total_loss += loss.detach() * len(batch)
            total_confident += n_confident
        loss_sum, confident = torch.stack([total_loss, total_confident.to(total_loss.dtype)]).tolist()
        return {"loss": loss_sum / len(self.x), "confident_fraction": confident / len(self.x)}

    @torch.no_grad()
    def probabilities(self) -> Tensor:
        """Softmax cluster probabilities (n, k) of the strategy's evaluation network, in eval mode."""
        model = self.strategy.eval_model(self.classifier)
        was_training = model.training
        model.eval()
        probs = torch.cat([F.softmax(model(chunk), dim=1) for chunk in self.x.split(PREDICT_CHUNK)])
        model.train(was_training)
        return probs

    def state_dict(self) -> dict[str, Any]:
        return {
            "classifier": self.classifier.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "head_optimizer": self.head_optimizer.state_dict(),
            "strategy": self.strategy.state_dict(),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.classifier.load_state_dict(state["classifier"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.head_optimizer.load_state_dict(state["head_optimizer"])
        self.strategy.load_state_dict(state["strategy"])
        self.generator.set_state(state["generator"].cpu())  # checkpoints load onto the device; RNG states live on the host
