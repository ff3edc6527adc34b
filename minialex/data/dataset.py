"""What every dataset offers, whatever its source (folder, Fashion-MNIST, built-in, cache).

A dataset is a list of preprocessed images, all (base_size, base_size, 3) uint8 RGB — the
paper's 256×256 store (§2), or smaller for small presets — with integer labels into ``classes``.

    len(ds), ds.load(i) -> (image uint8 (B, B, 3), label int), ds.labels (N,) int64,
    ds.load_many(indices) -> uint8 (n, B, B, C) or None (C = 1 for grey data),
    ds.classes (stable list of str), ds.num_classes, ds.base_size, ds.split ('train' or 'val'),
    ds.stats (DataStats of the *training* split, also on a 'val' dataset), ds.skipped

``ds.load(i)`` raises ``DataError`` naming the file when image i cannot be read; the loader
catches it, drops that image from its batch and records it in ``ds.skipped``. A dataset that
holds its images in memory (Fashion-MNIST, the built-in set) also gives many at once with
``ds.load_many``, so that the loader cuts a whole batch's crops in one step instead of image by
image; it gives grey images as one channel (C = 1), which stands for R = G = B.
"""

from __future__ import annotations

import threading
from typing import List, Optional, Sequence, Tuple

import numpy

from .errors import DataError
from .stats import DataStats

SPLITS = ("train", "val", "test")   # val: what training watches; test: reported at the end


class Dataset:
    """Base class: subclasses set ``labels`` and implement ``__len__``, ``_load``, ``describe``
    and ``_compute_stats``."""

    labels: numpy.ndarray

    def __init__(self, name: str, split: str, classes: Sequence[str], base_size: int,
                 class_names: Optional[Sequence[str]] = None):
        if split not in SPLITS:
            raise ValueError(f"dataset {name}: split must be one of {', '.join(SPLITS)}, got {split!r}")
        if int(base_size) < 1:
            raise ValueError(f"dataset {name}: base_size must be positive, got {base_size}")
        self.name = name
        self.split = split
        self.classes: List[str] = list(classes)
        # Human-readable names (e.g. ImageNet's 'tench' for 'n01440764'); same as classes if none.
        self.class_names: List[str] = list(class_names) if class_names is not None else list(self.classes)
        self.base_size = int(base_size)
        self._stats: Optional[DataStats] = None
        self._stats_lock = threading.Lock()
        self._skipped: dict = {}

    # -- the interface -------------------------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, i: int) -> numpy.ndarray:
        """The (base_size, base_size, 3) uint8 image i; DataError if unreadable."""
        raise NotImplementedError

    def _load_many(self, indices: numpy.ndarray) -> Optional[numpy.ndarray]:
        """Images ``indices`` (n, base_size, base_size, C) uint8, C = 1 (grey) or 3, when the
        dataset holds them in memory; None (the default) when it reads them one at a time."""
        return None

    def describe(self, i: int) -> str:
        """Where image i comes from (a path, a file and index, ...), for messages."""
        raise NotImplementedError

    def _compute_stats(self) -> DataStats:
        raise NotImplementedError

    # -- shared behaviour ----------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def load(self, i: int) -> Tuple[numpy.ndarray, int]:
        """(image (base_size, base_size, 3) uint8, label). Raises DataError if unreadable."""
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"{self.name} {self.split}: index {i} out of range for {len(self)} images")
        image = self._load(i)
        b = self.base_size
        if image.shape != (b, b, 3) or image.dtype != numpy.uint8:
            raise DataError(f"{self.describe(i)}: expected a ({b}, {b}, 3) uint8 image, "
                            f"got {image.shape} {image.dtype}")
        return image, int(self.labels[i])

    def load_many(self, indices) -> Optional[numpy.ndarray]:
        """Images ``indices`` as one uint8 array (n, base_size, base_size, C), C = 3, or 1 for
        grey images (R = G = B), when the dataset holds them in memory; otherwise None (then
        ``load`` them one by one). Nothing here can be unreadable."""
        indices = numpy.asarray(indices, dtype=numpy.int64)
        if len(indices) and not (0 <= indices.min() and indices.max() < len(self)):
            raise IndexError(f"{self.name} {self.split}: indices {indices.min()}..{indices.max()} "
                             f"out of range for {len(self)} images")
        images = self._load_many(indices)
        b = self.base_size
        if images is not None and (images.shape[:3] != (len(indices), b, b) or images.ndim != 4
                                   or images.shape[3] not in (1, 3) or images.dtype != numpy.uint8):
            raise DataError(f"{self.name} {self.split}: expected ({len(indices)}, {b}, {b}, 1 or 3) "
                            f"uint8 images, got {images.shape} {images.dtype}")
        return images

    @property
    def stats(self) -> DataStats:
        """Mean and RGB PCA of the *training* split, [0, 1] pixel scale (see stats.py)."""
        with self._stats_lock:
            if self._stats is None:
                self._stats = self._compute_stats()
            return self._stats

    @stats.setter
    def stats(self, value: DataStats) -> None:
        self._stats = value

    def record_skip(self, i: int, reason: str) -> None:
        """Remember that image i could not be used (thread-safe: one dict store)."""
        self._skipped[self.describe(i)] = reason

    @property
    def skipped(self) -> List[Tuple[str, str]]:
        """(what, reason) for every file skipped so far: at scan time and while loading."""
        return sorted(self._skipped.items())

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}, split={self.split!r}, images={len(self)}, "
                f"classes={self.num_classes}, base_size={self.base_size})")


class Subset(Dataset):
    """Images ``indices`` of ``parent`` (same classes, base size and training statistics)."""

    def __init__(self, parent: Dataset, indices: Sequence[int]):
        super().__init__(parent.name, parent.split, parent.classes, parent.base_size,
                         parent.class_names)
        self.parent = parent
        self.indices = numpy.asarray(indices, dtype=numpy.int64)
        self.labels = numpy.asarray(parent.labels)[self.indices]
        self._skipped = parent._skipped  # one record for both views

    def __len__(self) -> int:
        return len(self.indices)

    def _load(self, i: int) -> numpy.ndarray:
        return self.parent._load(int(self.indices[i]))

    def _load_many(self, indices: numpy.ndarray) -> Optional[numpy.ndarray]:
        return self.parent._load_many(self.indices[indices])

    def describe(self, i: int) -> str:
        return self.parent.describe(int(self.indices[i]))

    def _compute_stats(self) -> DataStats:
        return self.parent.stats


def balanced_indices(labels, limit: int) -> numpy.ndarray:
    """``limit`` indices (sorted) taking the classes in turn: the first image of every class, then
    the second of every class, and so on, so a subset has every class about equally often
    whatever the order of the labels (class-sorted folders, or the built-in set's i mod 10)."""
    labels = numpy.asarray(labels)
    limit = min(int(limit), len(labels))
    order = numpy.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    rank = numpy.empty(len(labels), dtype=numpy.int64)   # position of each image in its class
    rank[order] = numpy.arange(len(labels)) - numpy.searchsorted(sorted_labels, sorted_labels)
    return numpy.sort(numpy.lexsort((labels, rank))[:limit])   # by rank, then by class


def spread_indices(count: int, limit: int) -> numpy.ndarray:
    """``limit`` indices spread evenly over range(count): a subset that keeps every class of a
    class-sorted folder (the first ``limit`` files would keep only the first classes)."""
    limit = min(int(limit), count)
    return (numpy.arange(limit, dtype=numpy.int64) * count) // max(limit, 1)
