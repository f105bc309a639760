"""A trained trial kept as a file and used as a scikit-learn-style estimator on raw samples.

<dir>/models/<trial_id>.pt   written when a trial finishes (a study's `keep_models: false` skips it); a dict of
                             tensors and plain values, loadable with torch.load(..., weights_only=True):
    format       MODEL_FORMAT
    config       the trial's flat dotted config (as in trials.parquet)
    net          the evaluation network's state_dict (encoder and decoder / projector)
    centers      (k, d) float32 cluster centres of the clustering stage; a sample's cluster is its nearest centre
    head         self-labeling trials only: the cluster head's state (norm.*, head.*) over the network's embedding;
                 a sample's cluster is the head's most probable one, as the trial's own predictions
    preprocess   what turns raw samples into the network's input: image_shape (C, H, W) as the dataset holds it,
                 raw_low / raw_high (raw pixel values mapped to [0, 1]), equalize (per-channel histogram
                 equalisation of uint8 images), mean / std (per-channel z-transform), resize (side or None)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from raydc.files.checkpoint import atomic_save, load
from raydc.errors import InvalidInput

MODEL_FORMAT = 1
PREDICT_CHUNK = 8192  # samples per forward pass of a self-labeling head
MODELS_DIR = "models"


def model_path(root: Path | str, tid: str) -> Path:
    return Path(root) / MODELS_DIR / f"{tid}.pt"


def _tensors(module: torch.nn.Module, skip: str = "") -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() if v.dtype == torch.long else v.detach().float().cpu().clone()
            for k, v in module.state_dict().items() if not (skip and k.startswith(skip))}


def model_state(config: Any, flat_config: dict[str, Any], net: torch.nn.Module, centers: torch.Tensor,
                mean: torch.Tensor, std: torch.Tensor, classifier: torch.nn.Module | None = None) -> dict[str, Any]:
    """What a finished trial's model file holds (see the module's docstring); classifier: a self-labeling trial's
    evaluation Classifier (its net is `net`)."""
    from raydc.data import dataset_info

    info = dataset_info(config.data.name)
    head = {"head": _tensors(classifier, skip="net.")} if classifier is not None else {}
    return {"format": MODEL_FORMAT, "config": dict(flat_config), "net": _tensors(net), **head,
            "centers": centers.detach().float().cpu().clone(),
            "preprocess": {"image_shape": list(info.image_shape), "raw_low": info.raw_range[0],
                           "raw_high": info.raw_range[1], "equalize": info.equalized,
                           "mean": mean.detach().float().cpu(), "std": std.detach().float().cpu(),
                           "resize": config.resize_side}}


def save_model(state: dict[str, Any], path: Path) -> None:
    atomic_save(state, path)


class ClusteringModel:
    """A trial's trained network and centres: `transform(X)` embeds raw samples, `predict(X)` gives their clusters.

    X holds samples as the dataset's files do (digits: values 0–16 as ``load_digits().data``; MNIST-like sets: uint8
    0–255; USPS: −1–1), shaped (n, C·H·W), (n, H, W) for one channel, (n, C, H, W) or (n, H, W, C); the model scales,
    normalises and resizes them as in training.
    """

    def __init__(self, state: dict[str, Any], trial_id: str | None = None, device: str | torch.device = "cpu"):
        from raydc.config import make_config, unflatten
        from raydc.nets import build_network

        if state.get("format") != MODEL_FORMAT:
            raise ValueError(f"model format {state.get('format')!r}; this raydc reads format {MODEL_FORMAT}")
        self.trial_id = trial_id
        self.config: dict[str, Any] = dict(state["config"])
        self._trial_config = make_config(unflatten(self.config))
        self._pre = state["preprocess"]
        self.device = torch.device(device)
        centers = state["centers"].float()
        self.n_clusters, embedding_dim = centers.shape
        net = self._trial_config.net
        self.net = build_network(net.arch, self._input_shape(), net.hidden, embedding_dim,
                                 projector_width=net.projector_width, projector_dim=net.projector_dim,
                                 batch_norm=net.batch_norm)
        self.net.load_state_dict(state["net"])
        self.net.to(self.device).eval()
        self._classifier = None
        if "head" in state:  # a self-labeling trial: its head's predictions are its clusters
            from raydc.selflabel import Classifier

            self._classifier = Classifier(self.net, embedding_dim, self.n_clusters)
            self._classifier.load_state_dict({**{f"net.{k}": v for k, v in state["net"].items()}, **state["head"]})
            self._classifier.to(self.device).eval()
        self._centers = centers.to(self.device)
        self.cluster_centers_ = centers.numpy()

    @classmethod
    def load(cls, path: Path | str, device: str | torch.device = "cpu") -> ClusteringModel:
        path = Path(path)
        return cls(load(path, "cpu"), trial_id=path.stem, device=device)

    def _input_shape(self) -> tuple[int, int, int]:
        channels, height, width = self._pre["image_shape"]
        side = self._pre["resize"]
        return (channels, side, side) if side else (channels, height, width)

    # --- raw samples → network input ----------------------------------------------------------------------------

    def _images(self, X: Any) -> torch.Tensor:
        """Validated raw samples as a float (n, C, H, W) tensor of raw values."""
        c, h, w = self._pre["image_shape"]
        name = self.config.get("data.name", "the training data")
        try:
            array = np.asarray(X)
        except Exception as error:  # noqa: BLE001 - anything array-like may fail its own way
            raise InvalidInput(f"X: expected an array of numbers, got {type(X).__name__} ({error})") from None
        if array.dtype.kind not in "uif":
            raise InvalidInput(f"X: expected numbers (int, uint or float), got dtype {array.dtype}")
        accepted = {(c * h * w,): "flat", (c, h, w): "chw", (h, w, c): "hwc"}
        if c == 1:
            accepted[(h, w)] = "chw"
        layout = accepted.get(array.shape[1:]) if array.ndim >= 2 else None
        if layout is None:
            shapes = ", ".join(f"(n, {', '.join(map(str, s))})" for s in accepted)
            raise InvalidInput(f"X: expected shape {shapes} as {name}'s images; got {array.shape}")
        if len(array) == 0:
            raise InvalidInput("X: no samples")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            rows = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))
            raise InvalidInput(f"X: {len(rows)} samples hold NaN or infinite values (the first: sample {rows[0]})")
        low, high = self._pre["raw_low"], self._pre["raw_high"]
        seen_low, seen_high = float(array.min()), float(array.max())
        if seen_low < low - 1e-6 or seen_high > high + 1e-6:
            raise InvalidInput(f"X: values must lie in [{low:g}, {high:g}] as the raw pixels of {name}; got "
                               f"[{seen_low:g}, {seen_high:g}]")
        images = torch.from_numpy(np.ascontiguousarray(array))
        images = images.permute(0, 3, 1, 2) if layout == "hwc" else images.reshape(len(array), c, h, w)
        return images

    def preprocess(self, X: Any) -> torch.Tensor:
        """The network's input for raw samples X: scaled to [0, 1], z-transformed per channel, resized."""
        images = self._images(X)
        low, high = self._pre["raw_low"], self._pre["raw_high"]
        if self._pre["equalize"]:
            from raydc.data.torchvision_sets import equalize_histograms

            images = equalize_histograms(images.round().to(torch.uint8))
        x = (images.to(torch.float32) - low) / (high - low)
        mean, std = self._pre["mean"].view(1, -1, 1, 1), self._pre["std"].view(1, -1, 1, 1)
        x = (x - mean) / std
        side = self._pre["resize"]
        if side and x.shape[-2:] != (side, side):
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=False)
        return x.to(self.device)

    # --- estimator face ----------------------------------------------------------------------------------------

    def transform(self, X: Any) -> np.ndarray:
        """The (n, d) float32 embedding of raw samples X."""
        return self._embed(X).cpu().numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The cluster (0..k-1, int64) of every raw sample: its nearest centre in the embedding, or for a
        self-labeling trial its head's most probable cluster."""
        from raydc.clustering.kmeans import nearest

        if self._classifier is not None:
            x = self.preprocess(X)
            with torch.no_grad():
                logits = torch.cat([self._classifier(chunk) for chunk in x.split(PREDICT_CHUNK)])
            return logits.argmax(1).cpu().numpy().astype(np.int64)
        return nearest(self._embed(X), self._centers).cpu().numpy().astype(np.int64)

    def _embed(self, X: Any) -> torch.Tensor:
        from raydc.engine.state import embed

        # a self-labeling head trains (and its trial is scored) on a float32 embedding
        precision = "float32" if self._classifier is not None else self._trial_config.train.precision
        return embed(self.net, self.preprocess(X), precision)

    def __repr__(self) -> str:
        return (f"ClusteringModel(trial_id={self.trial_id!r}, algorithm={self.config.get('train.algorithm')!r}, "
                f"data={self.config.get('data.name')!r}, n_clusters={self.n_clusters})")


def load_model(study_dir: Path | str, trial_id: str, device: str | torch.device = "cpu") -> ClusteringModel:
    """The kept model of one trial of a study (or of a `raydc train --out DIR` run)."""
    path = model_path(study_dir, trial_id)
    if not path.exists():
        kept = sorted(p.stem for p in path.parent.glob("*.pt")) if path.parent.exists() else []
        hint = f"kept: {', '.join(kept[:10])}{' …' if len(kept) > 10 else ''}" if kept else \
            f"no models kept in {path.parent} (a study with keep_models: false, or recorded before models were kept)"
        raise FileNotFoundError(f"no model of trial {trial_id!r} in {study_dir}; {hint}")
    return ClusteringModel.load(path, device)


def models_size(root: Path | str) -> tuple[int, int]:
    """(number of kept models, their bytes)."""
    files = list((Path(root) / MODELS_DIR).glob("*.pt"))
    return len(files), sum(f.stat().st_size for f in files)


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
