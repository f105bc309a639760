"""Datasets of the BRB paper as z-transformed tensors, and batched on-device augmentations."""
from raydc.data.augment import Augmenter, StrongAugmenter, cutout, make_augmenter, make_strong_augmenter
from raydc.data.dataset import Dataset, resized
from raydc.data.errors import DatasetCorrupt, DatasetUnavailable
from raydc.data.locations import default_data_dir
from raydc.data.registry import DatasetInfo, check_available, dataset_info, dataset_names, load_dataset

__all__ = [
    "Augmenter",
    "Dataset",
    "DatasetCorrupt",
    "DatasetInfo",
    "DatasetUnavailable",
    "StrongAugmenter",
    "check_available",
    "cutout",
    "dataset_info",
    "dataset_names",
    "default_data_dir",
    "load_dataset",
    "make_augmenter",
    "make_strong_augmenter",
    "resized",
]
