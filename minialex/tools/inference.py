"""Jobs on a trained checkpoint, as the CLI runs them: load it with what inference needs (the
training set's mean and class names), evaluate it on a dataset split, predict image files, read
conv1's kernels, and find the nearest training images in feature space (§6.1, Figure 4).

The measurements a training run makes too (top-k error, softmax outputs) are in
``minialex.train.evaluate``; what §6.1 looks at in a trained net (the last hidden layer's
features and their nearest neighbours, conv1's colour) is at the end of this file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy

from ..checkpoint import CheckpointError, load, read_extra, read_meta, read_state
from ..data import DataError, DataLoader, base_size_for
from ..data.dataset import Dataset, Subset, spread_indices
from ..data.images import is_image_name, load_image
from ..data.stats import DataStats
from ..models import upgrade_state
from ..autograd import Tensor
from ..backend import as_numpy
from ..train.evaluate import class_probabilities, evaluate, topk_indices
from ..train.setup import open_data


@dataclasses.dataclass
class TrainedModel:
    """A model loaded from a checkpoint written by ``train``, with what inference needs."""

    model: object
    path: str
    classes: List[str]
    class_names: List[str]
    stats: object            # minialex.data.stats.DataStats of the training set
    data_spec: Optional[str]
    base_size: int
    meta: Dict


def _strings(array) -> List[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in numpy.asarray(array).tolist()]


def load_trained(path: str, devices=None) -> TrainedModel:
    """Rebuild the model stored in ``path`` (see ``minialex.load``) and read its data facts."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "best.h5" if os.path.exists(os.path.join(path, "best.h5"))
                            else "last.h5")
    meta = read_meta(path)
    model = load(path, devices=devices)
    extra = read_extra(path)
    data = extra.get("data")
    if data is None:
        raise CheckpointError(f"{path}: no /data group (class names, mean): it was not written "
                              "by 'train', so images cannot be preprocessed as in training")
    stats = DataStats(numpy.asarray(data["mean"], dtype=numpy.float64),
                      numpy.asarray(data["pca_eigenvalues"], dtype=numpy.float64),
                      numpy.asarray(data["pca_eigenvectors"], dtype=numpy.float64))
    classes = _strings(data["classes"])
    names = _strings(data["class_names"]) if "class_names" in data else classes
    base = int(data.get("base_size") or base_size_for(model.input_size))
    meta = dict(meta)
    if "train" in extra:  # the run's options: the seed picks the built-in set's images
        meta["train_config"] = json.loads(extra["train"]["config"])
        meta["seed"] = meta["train_config"].get("seed", 0)
    return TrainedModel(model, path, classes, names, stats, data.get("spec"), base, meta)


def evaluate_checkpoint(path: str, data: Optional[str] = None, split: str = "val",
                        ten_crop: bool = False, batch_size: int = 128, workers: int = 0,
                        devices=None, limit: Optional[int] = None, progress: bool = True):
    """(TrainedModel, EvalResult) of a checkpoint on a dataset split (default: the data it was
    trained on), preprocessed with the *training* set's mean as in training."""
    tm = load_trained(path, devices)
    spec = data or tm.data_spec
    if not spec:
        raise DataError("give --data: the checkpoint does not say which data it was trained on")
    ds = open_data(spec, split, int(tm.meta.get("seed", 0) or 0), tm.base_size, limit)
    _check_same_classes(spec, ds, tm)
    loader = DataLoader(ds, batch_size, input_size=tm.model.input_size, train=False,
                        device=tm.model.devices[0], workers=workers, ten_crop=ten_crop,
                        stats=tm.stats)
    return tm, evaluate(tm.model, loader, progress=progress, desc=f"{spec} {split}")


def _check_same_classes(spec: str, ds, tm: TrainedModel) -> None:
    """Labels of another dataset would be read as the checkpoint's classes: refuse."""
    if list(ds.classes) != list(tm.classes):
        raise DataError(f"{spec} has {ds.num_classes} classes ({', '.join(ds.classes[:3])}, ...) "
                        f"but {tm.path} was trained on {len(tm.classes)} "
                        f"({', '.join(tm.classes[:3])}, ...)")


def _file_dataset(paths: Sequence[str], tm: TrainedModel):
    """The given image files as a dataset (label 0), preprocessed like the training data."""

    class ImageFiles(Dataset):
        def __init__(self):
            super().__init__("images", "val", tm.classes, tm.base_size, tm.class_names)
            self.labels = numpy.zeros(len(paths), dtype=numpy.int64)
            self.stats = tm.stats

        def __len__(self):
            return len(paths)

        def _load(self, i):
            return load_image(paths[i], tm.base_size)

        def describe(self, i):
            return paths[i]

        def _compute_stats(self):
            return tm.stats

    for p in paths:
        if os.path.isdir(p):
            raise FileNotFoundError(f"{p} is a folder: give image files (e.g. {p}/*.jpg)")
        if not os.path.isfile(p):
            raise FileNotFoundError(f"image {p} not found")
    return ImageFiles()


def _loader(ds, tm: TrainedModel, batch_size: int, ten_crop: bool = False):
    return DataLoader(ds, batch_size, input_size=tm.model.input_size, train=False,
                      device=tm.model.devices[0], ten_crop=ten_crop, stats=tm.stats)


def image_files(paths: Sequence[str]) -> List[Tuple[str, Optional[str]]]:
    """The files that ``paths`` names, in order, a folder standing for its image files (by
    extension, in name order, not recursive), each as (path, None), or as (path, reason) where
    there is none: missing, or a folder without images."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            found = sorted(e.path for e in os.scandir(p) if e.is_file() and is_image_name(e.name))
            files += [(f, None) for f in found] or [
                (p, f"folder {p} holds no image file (.jpg, .png, ...)")]
        elif os.path.isfile(p):
            files.append((p, None))
        else:
            files.append((p, f"image {p} not found"))
    return files


def predict_files(path: str, images: Sequence[str], k: int = 5, ten_crop: bool = False,
                  devices=None):
    """(TrainedModel, [(file, [(class name, probability)] * k)], [(file, reason)]): the top-k
    of each image file that can be read (a folder stands for its images), centre crop (or 10
    patches) after the training preprocessing, and each file that cannot be, with the reason, in
    the order given: one bad file never keeps the others from being predicted."""
    tm = load_trained(path, devices)
    readable, bad = [], []
    for f, reason in image_files(images):
        if reason is None:
            try:
                load_image(f, tm.base_size)   # decoded once here: a bad file is named, not fatal
            except DataError as e:
                reason = str(e)
        if reason is None:
            readable.append(f)
        else:
            bad.append((f, reason))
    if not readable:
        return tm, [], bad
    ds = _file_dataset(readable, tm)
    probs = numpy.concatenate([class_probabilities(tm.model, x)
                               for x, _ in _loader(ds, tm, 32, ten_crop)])
    return tm, list(zip(readable, top_classes(probs, tm.class_names, k))), bad


def conv1_kernels(path: str) -> Tuple[List[numpy.ndarray], bool]:
    """conv1's kernels of each column, [(K, 3, kh, kw), ...], read straight from the file, and
    whether the net was trained on grayscale data: R = G = B, so the training set's colour
    covariance has rank one (data/fashion_mnist.py) and only each kernel's channel sum matters."""
    state = upgrade_state(read_meta(path).get("model", ""), read_state(path))
    eig = read_extra(path).get("data", {}).get("pca_eigenvalues")
    grayscale = eig is not None and len(eig) == 3 and float(eig[1]) <= 1e-9 * float(eig[0])
    cols = [state[k] for k in ("column0.conv1.weight", "column1.conv1.weight") if k in state]
    if not cols:
        cols = [v for k, v in state.items() if k.endswith("conv1.weight")]
    if not cols:
        raise CheckpointError(f"{path}: no conv1 weights found")
    return cols, grayscale


def neighbours(path: str, queries: Sequence[str] = (), data: Optional[str] = None, k: int = 6,
               search: int = 2000, num_queries: int = 5, batch_size: int = 128, devices=None,
               progress: bool = True):
    """Figure 4: for each query image (files, or else the first validation images of the data),
    the ``k`` training images nearest in the last hidden layer, and the query's top-5.

    Returns a dict with 'queries' (uint8 images), 'neighbours' (lists of uint8 images),
    'neighbour_labels', 'top5' (lists of (class, p)) and 'truth' (class names or None).
    """
    tm = load_trained(path, devices)
    spec = data or tm.data_spec
    if not spec:
        raise DataError("give --data: the checkpoint does not say which data it was trained on")
    seed = int(tm.meta.get("seed", 0) or 0)
    train_set = open_data(spec, "train", seed, tm.base_size, search)
    _check_same_classes(spec, train_set, tm)
    if queries:
        qset, truth = _file_dataset(list(queries), tm), [None] * len(queries)
    else:
        val = open_data(spec, "val", seed, tm.base_size)
        qset = Subset(val, _one_per_class(val.labels, num_queries))
        truth = [tm.class_names[int(l)] for l in qset.labels]
    q_feats, q_probs = [], []
    for x, _ in _loader(qset, tm, batch_size):
        q_feats.append(last_hidden_features(tm.model, x))
        q_probs.append(class_probabilities(tm.model, x))
    feats = []
    it = _loader(train_set, tm, batch_size)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, total=len(it) if hasattr(it, "__len__") else None,
                  desc="features of training images", unit="batch", leave=False, disable=None)
    for x, _ in it:
        feats.append(last_hidden_features(tm.model, x))
    idx = nearest(numpy.concatenate(q_feats), numpy.concatenate(feats), k)
    return {"queries": [qset.load(i)[0] for i in range(len(qset))],
            "neighbours": [[train_set.load(int(j))[0] for j in row] for row in idx],
            "neighbour_labels": [[tm.class_names[int(train_set.labels[j])] for j in row] for row in idx],
            "top5": top_classes(numpy.concatenate(q_probs), tm.class_names, 5),
            "truth": truth, "names": [qset.describe(i) for i in range(len(qset))]}


def _one_per_class(labels, count: int) -> numpy.ndarray:
    """Indices of ``count`` images of different classes (classes spread over the label range),
    the first image of each: queries that show the net telling classes apart."""
    labels = numpy.asarray(labels)
    classes = numpy.unique(labels)
    picked = classes[spread_indices(len(classes), count)] if count < len(classes) else classes
    idx = [int(numpy.flatnonzero(labels == c)[0]) for c in picked]
    if len(idx) < count:  # more queries than classes: fill with images spread over the split
        rest = [i for i in spread_indices(len(labels), count) if i not in idx]
        idx += rest[:count - len(idx)]
    return numpy.asarray(idx, dtype=numpy.int64)


def format_top5(name: str, preds: Sequence[Tuple[str, float]]) -> str:
    lines = [name]
    for rank, (cls, p) in enumerate(preds, 1):
        lines.append(f"  {rank}. {cls:<30} {100 * p:6.2f}%")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# What §6.1 looks at: the last hidden layer's neighbours (Figure 4, right), conv1's colour
# --------------------------------------------------------------------------------------------

def last_hidden_features(model, images) -> numpy.ndarray:
    """(N, 2*fc) host array: the last hidden layer's activity (fc7 after ReLU, both columns)
    for a batch (N, 3, S, S), in test mode: the vectors §6.1 compares."""
    data = images.data if isinstance(images, Tensor) else images
    return as_numpy(model.last_hidden(Tensor(data, device=model.devices[0])).data)


def nearest(query_features: numpy.ndarray, features: numpy.ndarray, k: int = 6) -> numpy.ndarray:
    """Indices (Q, k) of the rows of ``features`` nearest to each query in Euclidean distance."""
    q = query_features.astype(numpy.float64)
    f = features.astype(numpy.float64)
    d2 = (q * q).sum(1)[:, None] - 2 * q @ f.T + (f * f).sum(1)[None, :]
    k = min(k, f.shape[0])
    return numpy.argsort(d2, axis=1, kind="stable")[:, :k]


def colourfulness(kernels: numpy.ndarray) -> float:
    """Mean share of a kernel's energy that differs between R, G and B (0: grey kernels).

    Figure 3's observation (§6.1): one column's kernels come out largely colour-agnostic, the
    other's colour-specific."""
    k = numpy.asarray(kernels, dtype=numpy.float64)
    grey = k.mean(axis=1, keepdims=True)
    share = ((k - grey) ** 2).sum(axis=(1, 2, 3)) / numpy.maximum((k ** 2).sum(axis=(1, 2, 3)), 1e-30)
    return float(share.mean())


def top_classes(probs: numpy.ndarray, classes: List[str], k: int = 5) -> List[List[Tuple[str, float]]]:
    """For each row of ``probs``, the k most probable (class name, probability)."""
    return [[(classes[i], float(row[i])) for i in idx]
            for row, idx in zip(probs, topk_indices(numpy.asarray(probs), k))]
