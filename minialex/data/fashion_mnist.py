"""Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017) from its four IDX files.

Found by default in /usr/share/datasets/fashion-mnist (Debian's ``dataset-fashion-mnist``);
``open_dataset("fashion-mnist:DIR")`` reads another folder. Files: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each
gzipped (``.gz``) or not.

Three splits, so that nothing is chosen by looking at the test set:

- ``"train"``: 55,000 of the 60,000 training images;
- ``"val"``: the other 5,000 (one in twelve of each class, picked by a fixed shuffle that does not
  depend on the run's seed, so every run and every checkpoint holds out the same images): what
  the learning-rate schedule watches and what ``evaluate`` reports by default;
- ``"test"``: the 10,000 test images, reported once at the end of training.

How 28×28 grayscale becomes AlexNet's input: each image is scaled (bilinear) to
base_size × base_size and its one channel is copied into R, G and B, so it goes through exactly
the same path as colour data (``load_many`` gives the one plane, which the loader reads for each
channel: the same batches, one copy instead of three). The ``fashion`` preset, made for this
data, averages the three channels again before conv1 and gives conv1 one input channel
(``Preset.grey``); any other preset reads all three (equal) channels. The classes keep
Fashion-MNIST's official label order (0 = T-shirt/top ... 9 = Ankle boot), so labels match every
other use of the dataset.

Statistics: computed from the 55,000 training-split images at 28×28 (scaling preserves the mean and
changes the variance only slightly). With R = G = B the colour covariance is rank one: the first
eigenvector is (1, 1, 1)/√3 and the other two eigenvalues are zero, so PCA lighting becomes a
random change of brightness — which is what colour noise means for grayscale data.
"""

from __future__ import annotations

import gzip
import os
import threading
from typing import Dict, Optional, Tuple

import numpy
from PIL import Image

from .dataset import Dataset
from .errors import DataError, DataFileNotFoundError
from .stats import DataStats, StatsAccumulator

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
HELD_OUT = 12          # one in HELD_OUT training images of each class is the validation split
SHUFFLE_SEED = 2017    # fixed: the same validation images for every run
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # 0x00000803 (uint8, 3 dims), 0x00000801 (uint8, 1 dim)
#: A split's scaled images are kept after their first use when they take at most this many bytes
#: (one channel): at the fashion preset's 54x54 the 55,000 training images take 160 MB, and each
#: epoch after the first skips 55,000 bilinear resizes (about 4.5 ms of a 128-image batch's 9 ms
#: on the 2-core machine). At the default 256x256 they would take 3.6 GB, so they are scaled anew.
SCALED_CACHE_BYTES = 512 << 20

_arrays: Dict[Tuple[str, str], Tuple[numpy.ndarray, numpy.ndarray]] = {}
_lock = threading.Lock()


def _find(folder: str, name: str) -> str:
    for candidate in (name + ".gz", name):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    raise DataFileNotFoundError(f"Fashion-MNIST file {os.path.join(folder, name)}.gz not found")


def read_idx(path: str, magic: int) -> numpy.ndarray:
    """The uint8 array in an IDX file (gzipped or not), after checking its magic and its size."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(data) < 4:
        raise DataError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(f"{path}: wrong IDX magic number {found:#010x}, expected {magic:#010x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    expected = header + int(numpy.prod(shape))
    if len(data) != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes) but the file has "
                        f"{len(data)} bytes")
    return numpy.frombuffer(data, dtype=numpy.uint8, offset=header).reshape(shape)


def held_out(labels: numpy.ndarray) -> numpy.ndarray:
    """Sorted indices of the validation images among the training file's: the first
    ceil(n_c / HELD_OUT) images of each class c in a fixed shuffle (500 of each of the 10 classes)."""
    order = numpy.random.default_rng(SHUFFLE_SEED).permutation(len(labels))
    picked = [order[labels[order] == c][:-(-int((labels == c).sum()) // HELD_OUT)]
              for c in numpy.unique(labels)]
    return numpy.sort(numpy.concatenate(picked)) if picked else numpy.zeros(0, numpy.int64)


def read_split(folder: str, split: str) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of one split, read once per process."""
    if split == "test":
        return read_files(folder, "test")
    key = (os.path.abspath(folder), split)
    with _lock:
        if key in _arrays:
            return _arrays[key]
    images, labels = read_files(folder, "train")
    val = held_out(labels)
    keep = val if split == "val" else numpy.setdiff1d(numpy.arange(len(labels)), val)
    with _lock:
        _arrays[key] = (images[keep], labels[keep])
    return _arrays[key]


def read_files(folder: str, files: str) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(images, labels) of the 'train' (60,000) or 'test' (10,000) files, read once per process."""
    key = (os.path.abspath(folder), "files:" + files)
    with _lock:
        if key in _arrays:
            return _arrays[key]
    if not os.path.isdir(folder):
        raise DataFileNotFoundError(f"Fashion-MNIST folder {folder} does not exist "
                                    f"(Debian: apt install dataset-fashion-mnist)")
    image_path, label_path = (_find(folder, name) for name in FILES[files])
    images = read_idx(image_path, IMAGES_MAGIC)
    labels = read_idx(label_path, LABELS_MAGIC).astype(numpy.int64)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(f"{image_path}: expected (N, rows, cols) images and (N,) labels, got "
                        f"{images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{image_path} has {len(images)} images but {label_path} has "
                        f"{len(labels)} labels")
    if labels.size and labels.max() >= len(CLASSES):
        raise DataError(f"{label_path}: label {labels.max()} out of range for {len(CLASSES)} classes")
    with _lock:
        _arrays[key] = (images, labels)
    return images, labels


class FashionMNIST(Dataset):
    """Fashion-MNIST as 3-channel base_size images (see the module docstring)."""

    def __init__(self, split: str = "train", *, folder: str = DEFAULT_DIR, base_size: int = 256):
        super().__init__(name=f"fashion-mnist:{folder}", split=split, classes=CLASSES,
                         base_size=base_size)
        self.folder = folder
        self.images, self.labels = read_split(folder, split)
        # scaled[i] is image i at base_size, valid where have[i] (filled as images are first used)
        self.scaled = self.have = None
        if base_size != self.images.shape[-1] and \
                len(self.images) * base_size * base_size <= SCALED_CACHE_BYTES:
            self.scaled = numpy.empty((len(self.images), base_size, base_size), numpy.uint8)
            self.have = numpy.zeros(len(self.images), dtype=bool)

    def __len__(self) -> int:
        return len(self.images)

    def _load(self, i: int) -> numpy.ndarray:
        return numpy.repeat(self._grey(i)[:, :, None], 3, axis=2)

    def _load_many(self, indices: numpy.ndarray) -> Optional[numpy.ndarray]:
        """The grey images themselves, (n, B, B, 1): the loader reads the plane for R, G and B.
        None when they are scaled anew at every use (too many to keep at this base size)."""
        if self.scaled is None:
            return self.images[indices, :, :, None] if self.base_size == self.images.shape[-1] else None
        for i in indices[~self.have[indices]]:
            self._grey(int(i))
        return self.scaled[indices, :, :, None]

    def _grey(self, i: int) -> numpy.ndarray:
        """Image i at base_size (B, B), scaled once and kept where ``scaled`` is kept."""
        if self.scaled is None:
            return self._scale(self.images[i])
        if not self.have[i]:                  # worker threads may both scale an image: same bytes
            self.scaled[i] = self._scale(self.images[i])
            self.have[i] = True
        return self.scaled[i]

    def _scale(self, gray: numpy.ndarray) -> numpy.ndarray:
        """A 28x28 image at base_size x base_size (bilinear, Pillow's)."""
        if gray.shape == (self.base_size, self.base_size):
            return gray
        resized = Image.fromarray(gray).resize((self.base_size, self.base_size),
                                               Image.Resampling.BILINEAR)
        return numpy.asarray(resized)

    def describe(self, i: int) -> str:
        return f"{self.folder} {self.split} image {i}"

    def _compute_stats(self) -> DataStats:
        images, _ = read_split(self.folder, "train")     # the 55,000: not the validation images
        g = images.astype(numpy.float64)
        # R = G = B = g, so Σx = Σg·(1,1,1) and Σxxᵀ = Σg²·ones(3,3): no need to copy channels.
        acc = StatsAccumulator(count=g.size, total=numpy.full(3, g.sum()),
                               outer=numpy.full((3, 3), numpy.square(g).sum()))
        return acc.result()
