"""Data: where images come in (paper §2 and §4.1).

- ``open_dataset(spec, split)``: the built-in shapes, Fashion-MNIST, an ImageNet-layout folder,
  or a prepared HDF5 cache, all as (base_size, base_size, 3) uint8 images with labels.
- ``DataLoader(dataset, batch_size, input_size=...)``: random crops, flips and PCA lighting
  (training) or centre / ten crops (evaluation), mean subtracted, on the chosen device.
- ``DataStats``: the training mean and RGB PCA, on the [0, 1] pixel scale.

Files: errors.py, images.py (decode, RGB, resize), stats.py, dataset.py (the common interface),
builtin.py, fashion_mnist.py, folder.py, cache.py (reads what ``python cli.py prepare`` writes:
``minialex.tools.prepare``), sources.py (open_dataset),
transforms.py (crops, flips, lighting, normalisation), loader.py.
"""

from .dataset import Dataset, Subset
from .errors import DataError, DataFileNotFoundError
from .loader import DataLoader
from .sources import base_size_for, open_dataset
from .stats import DataStats, StatsAccumulator, compute_stats

__all__ = ["Dataset", "Subset", "DataError", "DataFileNotFoundError", "DataLoader",
           "base_size_for", "open_dataset", "DataStats",
           "StatsAccumulator", "compute_stats"]


def __getattr__(name):
    """``prepare_cache`` and ``PrepareReport`` moved to the tools: say where."""
    if name in ("prepare_cache", "PrepareReport"):
        raise ImportError(f"minialex.data.{name} moved to minialex.tools.prepare.{name}: "
                          "import it from there", name=name)
    raise AttributeError(f"module 'minialex.data' has no attribute {name!r}")
