"""Reading the HDF5 cache that ``prepare`` writes (see prepare.py for how it is written).

Layout (plain h5py can read it)::

    /                 attrs: format = "minialex-data-cache", format_version = 1, base_size,
                             source, complete (bool), created_by
    /classes          (C,) str   class ids, label k = classes[k]
    /class_names      (C,) str   readable names
    /train/images     (N, B, B, 3) uint8, one chunk per image     attrs: done, written, total
    /train/labels     (N,) int64
    /val/images, /val/labels      the same for the validation split
    /stats/mean, /stats/pca_eigenvalues, /stats/pca_eigenvectors   of the training split,
                                  [0, 1] pixel scale (stats.py)
    /skipped          (M,) str   "<file>\t<reason>" for every source file left out

Opening a file that is not HDF5, lacks the format attribute, or is still incomplete (an
interrupted ``prepare``) raises a one-line DataError naming the file.
"""

from __future__ import annotations

import os
import threading

import numpy

from .dataset import Dataset
from .errors import DataError, DataFileNotFoundError
from .images import resize_array
from .stats import DataStats

FORMAT = "minialex-data-cache"
FORMAT_VERSION = 1


def _strings(dataset) -> list:
    return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in dataset[()]]


def open_cache_file(path: str, mode: str = "r"):
    """Open ``path`` (an h5py.File) and check that ``prepare`` wrote it; DataError naming the file
    if not."""
    if mode == "r" and not os.path.isfile(path):
        raise DataFileNotFoundError(f"cache file {path} does not exist")
    try:
        import h5py      # here: `import minialex` stays light (h5py takes ~20 ms to load)
        f = h5py.File(path, mode)
    except OSError as e:
        raise DataError(f"{path} is not a readable HDF5 file: {str(e).splitlines()[0]}") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise DataError(f"{path} was not written by `minialex prepare` (no format attribute "
                        f"{FORMAT!r})")
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        f.close()
        raise DataError(f"{path}: cache format version {version}, this minialex reads {FORMAT_VERSION}")
    return f


class CacheDataset(Dataset):
    """One split of a prepared cache. ``base_size`` other than the stored one resizes on load."""

    def __init__(self, path: str, split: str = "train", *, base_size: int = None):
        path = os.path.abspath(os.path.expanduser(str(path)))
        f = open_cache_file(path)
        try:
            if not f.attrs.get("complete", False):
                progress = ", ".join(f"{s} {f[s].attrs['done']}/{f[s].attrs['total']}"
                                     for s in ("train", "val") if s in f)
                raise DataError(f"{path} is incomplete ({progress or 'nothing written'}): run "
                                f"`python cli.py prepare` again with the same arguments to resume")
            if split not in f:
                raise DataError(f"{path} has no {split!r} split")
            stored = int(f.attrs["base_size"])
            classes = _strings(f["classes"])
            names = _strings(f["class_names"]) if "class_names" in f else None
            stats = DataStats(f["stats/mean"][()], f["stats/pca_eigenvalues"][()],
                              f["stats/pca_eigenvectors"][()])
            self.labels = f[f"{split}/labels"][()].astype(numpy.int64)
            self.source = str(f.attrs.get("source", ""))
            skipped = [s.split("\t", 1) for s in _strings(f["skipped"])] if "skipped" in f else []
        except (KeyError, ValueError) as e:
            f.close()
            if isinstance(e, DataError):
                raise
            raise DataError(f"{path}: damaged cache ({e})") from None
        super().__init__(name=path, split=split, classes=classes,
                         base_size=stored if base_size is None else base_size, class_names=names)
        self.path = path
        self.stored_size = stored
        self._file = f
        self._images = f[f"{split}/images"]
        self._read_lock = threading.Lock()  # h5py serialises anyway; this makes it explicit
        self.stats = stats
        for item in skipped:
            self._skipped[item[0]] = item[1] if len(item) > 1 else ""

    def __len__(self) -> int:
        return len(self.labels)

    def _load(self, i: int) -> numpy.ndarray:
        with self._read_lock:
            image = self._images[i]
        return resize_array(image, self.base_size)

    def describe(self, i: int) -> str:
        return f"{self.path} {self.split} image {i}"

    def _compute_stats(self) -> DataStats:  # set in __init__ from /stats
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._file.close()
