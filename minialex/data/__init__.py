"""Data: where images come in (paper §2 and §4.1).

- ``open_dataset(spec, split)``: the built-in shapes, Fashion-MNIST, an ImageNet-layout folder,
  or a prepared HDF5 cache, all as (base_size, base_size, 3) uint8 images with labels.
- ``DataLoader(dataset, batch_size, input_size=...)``: random crops, flips and PCA lighting
  (training) or centre / ten crops (evaluation), mean subtracted, on the chosen device.
- ``prepare_cache(source, out)``: preprocess once into one HDF5 file (``python cli.py prepare``).
- ``DataStats``: the training mean and RGB PCA, on the [0, 1] pixel scale.

Files: errors.py, images.py (decode, RGB, resize), stats.py, dataset.py (the common interface),
builtin.py, fashion_mnist.py, folder.py, cache.py, prepare.py, sources.py (open_dataset),
transforms.py (crops, flips, lighting, normalisation), loader.py.
"""

from .dataset import Dataset, Subset
from .errors import DataError, DataFileNotFoundError
from .loader import DataLoader
from .prepare import PrepareReport, prepare_cache
from .sources import base_size_for, open_dataset
from .stats import DataStats, StatsAccumulator, compute_stats

__all__ = ["Dataset", "Subset", "DataError", "DataFileNotFoundError", "DataLoader",
           "PrepareReport", "prepare_cache", "base_size_for", "open_dataset", "DataStats",
           "StatsAccumulator", "compute_stats"]
