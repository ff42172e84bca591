"""Data sets in the formats users have on disk, the embedded default, and DSA."""

from ddz.data.base import ImageDataset
from ddz.data.catalog import check_data_reachable, check_dataset_name, dataset_names, load_dataset

__all__ = ["ImageDataset", "check_data_reachable", "check_dataset_name", "dataset_names", "load_dataset"]
