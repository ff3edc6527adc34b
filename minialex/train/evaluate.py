"""Measuring a net as it trains: top-1/top-5 error (§6), the 10-patch test (§4.1), class
probabilities. What §6.1 looks at in a trained net (the last hidden layer's nearest neighbours,
conv1's colour) and the jobs on a checkpoint file are in ``minialex.tools.inference``.

Top-k error: the fraction of images whose true label is not among the k classes with the highest
scores. With ``ten_crop`` the loader gives 10 patches per image (four corners, centre, and their
horizontal reflections) and the *softmax outputs* of the ten are averaged before ranking, as in
§4.1 ("averaging the predictions made by the network's softmax layer on the ten patches").
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import numpy

from ..autograd import Tensor, no_grad
from ..backend import as_numpy
from ..functional.loss import log_softmax_array


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
    probs = numpy.exp(log_softmax_array(logits.astype(numpy.float64)))
    if crops is not None:
        probs = probs.reshape(n, crops, -1).mean(axis=1)
    return probs


def topk_indices(scores: numpy.ndarray, k: int) -> numpy.ndarray:
    """(N, min(k, C)) indices of each row's k highest scores, highest first (ties: lower index)."""
    return numpy.argsort(-scores, axis=1, kind="stable")[:, :min(k, scores.shape[1])]


def topk_hits(probs: numpy.ndarray, labels: numpy.ndarray, k: int = 5) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Boolean (N,) arrays: true label ranked first; true label among the top k."""
    hit = topk_indices(probs, k) == numpy.asarray(labels)[:, None]
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
