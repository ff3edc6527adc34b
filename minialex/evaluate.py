"""Testing a trained net: top-1/top-5 error (§6), the 10-patch test (§4.1), predictions, and the
last hidden layer's features for nearest neighbours (§6.1, Figure 4).

Top-k error: the fraction of images whose true label is not among the k classes with the highest
scores. With ``ten_crop`` the loader gives 10 patches per image (four corners, centre, and their
horizontal reflections) and the *softmax outputs* of the ten are averaged before ranking, as in
§4.1 ("averaging the predictions made by the network's softmax layer on the ten patches").
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy

from .autograd import Tensor, no_grad
from .backend import as_numpy
from .data.dataset import spread_indices


@dataclasses.dataclass
class EvalResult:
    """Mean cross-entropy and error rates (fractions, not percent) over ``images`` images."""

    loss: float
    top1_error: float
    top5_error: float
    images: int
    ten_crop: bool = False
    classes: int = 0         # the number of classes the net tells apart (0: not known)

    def table(self, title: str = "") -> str:
        crop = "10 patches, softmax averaged (§4.1)" if self.ten_crop else "centre crop"
        lines = [title] if title else []
        lines += [f"{'images':<14}{self.images:>10,}   ({crop})",
                  f"{'top-1 error':<14}{100 * self.top1_error:>9.2f}%   (accuracy {100 * (1 - self.top1_error):.2f}%)",
                  (f"{'top-5 error':<14}{100 * self.top5_error:>9.2f}%" if not 0 < self.classes <= 5
                   else f"{'top-5 error':<14}{'n/a':>10}   (only {self.classes} classes: five "
                        "guesses always hit)"),
                  f"{'loss':<14}{self.loss:>10.4f}"]
        if not math.isfinite(self.loss):
            lines.append("warning: the loss is not finite: the network's outputs hold NaN or inf, so "
                         "its weights are broken (a diverged run?) and the error rates mean nothing")
        return "\n".join(lines)


def _log_softmax(scores: numpy.ndarray) -> numpy.ndarray:
    scores = scores.astype(numpy.float64)
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - numpy.log(numpy.exp(shifted).sum(axis=1, keepdims=True))


def class_probabilities(model, images) -> numpy.ndarray:
    """Softmax outputs (N, classes) on the host for a batch (N, 3, S, S), or the mean of the ten
    patches' softmax outputs for a (N, 10, 3, S, S) batch. The model is put in eval mode."""
    model.eval()
    data = images.data if isinstance(images, Tensor) else images
    crops = None
    if data.ndim == 5:
        n, crops = data.shape[:2]
        data = data.reshape((n * crops,) + tuple(data.shape[2:]))
    with no_grad():
        logits = as_numpy(model(Tensor(data, device=model.devices[0])).data)
    probs = numpy.exp(_log_softmax(logits))
    if crops is not None:
        probs = probs.reshape(n, crops, -1).mean(axis=1)
    return probs


def topk_hits(probs: numpy.ndarray, labels: numpy.ndarray, k: int = 5) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Boolean (N,) arrays: true label ranked first; true label among the top k."""
    k = min(k, probs.shape[1])
    top = numpy.argsort(-probs, axis=1, kind="stable")[:, :k]
    hit = top == numpy.asarray(labels)[:, None]
    return hit[:, 0], hit.any(axis=1)


def evaluate(model, loader, limit_batches: Optional[int] = None, progress: bool = False,
             desc: str = "validation", reduce=None) -> EvalResult:
    """Run the model over ``loader`` (batches of images and labels) and measure the errors.
    ``reduce``: sums (loss, top-1 hits, top-5 hits, images) over data-parallel ranks."""
    total_loss, top1, top5, count, ten, classes = 0.0, 0, 0, 0, False, 0
    batches = len(loader) if hasattr(loader, "__len__") else None
    if limit_batches is not None and batches is not None:
        batches = min(batches, limit_batches)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=batches, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                   disable=None)   # off when stderr is not a terminal (a log file)
    try:
        for b, (images, labels) in enumerate(loader):
            if limit_batches is not None and b >= limit_batches:
                break
            ten = ten or images.ndim == 5
            labels = as_numpy(labels).astype(numpy.int64)
            probs = class_probabilities(model, images)
            classes = probs.shape[1]
            picked = probs[numpy.arange(len(labels)), labels]
            total_loss += float(-numpy.log(numpy.maximum(picked, 1e-30)).sum())
            h1, h5 = topk_hits(probs, labels)
            top1 += int(h1.sum())
            top5 += int(h5.sum())
            count += len(labels)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if reduce is not None:
        total_loss, top1, top5, count = reduce([total_loss, top1, top5, count])
        top1, top5, count = int(top1), int(top5), int(count)
    if count == 0:
        raise ValueError("evaluate: the loader gave no images")
    return EvalResult(total_loss / count, 1 - top1 / count, 1 - top5 / count, count, ten, classes)


# --------------------------------------------------------------------------------------------
# Features of the last hidden layer (Figure 4, right)
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


# --------------------------------------------------------------------------------------------
# Jobs on a checkpoint (what the CLI's evaluate, predict, filters and neighbors call)
# --------------------------------------------------------------------------------------------

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
    from .checkpoint import CheckpointError, load, read_extra, read_meta
    from .data import base_size_for
    from .data.stats import DataStats
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
        import json
        meta["train_config"] = json.loads(extra["train"]["config"])
        meta["seed"] = meta["train_config"].get("seed", 0)
    return TrainedModel(model, path, classes, names, stats, data.get("spec"), base, meta)


def evaluate_checkpoint(path: str, data: Optional[str] = None, split: str = "val",
                        ten_crop: bool = False, batch_size: int = 128, workers: int = 0,
                        devices=None, limit: Optional[int] = None, progress: bool = True):
    """(TrainedModel, EvalResult) of a checkpoint on a dataset split (default: the data it was
    trained on), preprocessed with the *training* set's mean as in training."""
    from .data import DataError, DataLoader
    from .run_setup import open_data
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
    from .data import DataError
    if list(ds.classes) != list(tm.classes):
        raise DataError(f"{spec} has {ds.num_classes} classes ({', '.join(ds.classes[:3])}, ...) "
                        f"but {tm.path} was trained on {len(tm.classes)} "
                        f"({', '.join(tm.classes[:3])}, ...)")


def _file_dataset(paths: Sequence[str], tm: TrainedModel):
    """The given image files as a dataset (label 0), preprocessed like the training data."""
    from .data.dataset import Dataset
    from .data.images import load_image

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
    from .data import DataLoader
    return DataLoader(ds, batch_size, input_size=tm.model.input_size, train=False,
                      device=tm.model.devices[0], ten_crop=ten_crop, stats=tm.stats)


def predict_files(path: str, images: Sequence[str], k: int = 5, ten_crop: bool = False,
                  devices=None):
    """(TrainedModel, [[(class name, probability)] * k per image]): the top-k of each file,
    centre crop (or 10 patches) after the training preprocessing."""
    tm = load_trained(path, devices)
    ds = _file_dataset(list(images), tm)
    for i in range(len(ds)):
        ds.load(i)  # a file that is not an image: one clear error now, not a skipped batch
    probs = numpy.concatenate([class_probabilities(tm.model, x)
                               for x, _ in _loader(ds, tm, 32, ten_crop)])
    return tm, top_classes(probs, tm.class_names, k)


def conv1_kernels(path: str) -> List[numpy.ndarray]:
    """conv1's kernels of each column, [(K, 3, kh, kw), ...], read straight from the file."""
    from .checkpoint import CheckpointError, read_state
    state = read_state(path)
    cols = [state[k] for k in ("column0.conv1.weight", "column1.conv1.weight") if k in state]
    if not cols:
        cols = [v for k, v in state.items() if k.endswith("conv1.weight")]
    if not cols:
        raise CheckpointError(f"{path}: no conv1 weights found")
    return cols


def colourfulness(kernels: numpy.ndarray) -> float:
    """Mean share of a kernel's energy that differs between R, G and B (0: grey kernels).

    Figure 3's observation (§6.1): one column's kernels come out largely colour-agnostic, the
    other's colour-specific."""
    k = numpy.asarray(kernels, dtype=numpy.float64)
    grey = k.mean(axis=1, keepdims=True)
    share = ((k - grey) ** 2).sum(axis=(1, 2, 3)) / numpy.maximum((k ** 2).sum(axis=(1, 2, 3)), 1e-30)
    return float(share.mean())


def neighbours(path: str, queries: Sequence[str] = (), data: Optional[str] = None, k: int = 6,
               search: int = 2000, num_queries: int = 5, batch_size: int = 128, devices=None,
               progress: bool = True):
    """Figure 4: for each query image (files, or else the first validation images of the data),
    the ``k`` training images nearest in the last hidden layer, and the query's top-5.

    Returns a dict with 'queries' (uint8 images), 'neighbours' (lists of uint8 images),
    'neighbour_labels', 'top5' (lists of (class, p)) and 'truth' (class names or None).
    """
    from .data import DataError
    from .run_setup import open_data
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
        from .data.dataset import Subset
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


def top_classes(probs: numpy.ndarray, classes: List[str], k: int = 5) -> List[List[Tuple[str, float]]]:
    """For each row of ``probs``, the k most probable (class name, probability)."""
    out = []
    for row in probs:
        idx = numpy.argsort(-row, kind="stable")[:min(k, len(row))]
        out.append([(classes[i], float(row[i])) for i in idx])
    return out
