"""Checks for lessons 9-13: PCA lighting and the ten patches, grouped convolution, the
parameter and multiply-add counts, the §5 update, nearest neighbours and top-k error."""

from __future__ import annotations

from typing import Callable, Tuple

import numpy

import minialex
import minialex.functional as F
from minialex.data import compute_stats
from minialex.data.transforms import ten_crops as reference_ten_crops
from minialex.models import count_parameters, describe
from minialex.nn import Parameter
from minialex.optim import SGD
from minialex.train.evaluate import topk_hits
from .verdicts import _Wrong, _check, _call, _array, _compare, _rng


# -- lesson 9: PCA lighting ---------------------------------------------------------------------------

@_check
def check_lighting(lighting_shift: Callable) -> str:
    """lighting_shift(images, alpha) -> (n, 3): the RGB shift [p1 p2 p3][α1λ1, α2λ2, α3λ3]ᵀ of
    §4.1 for each row of alpha, from the PCA of the images' pixels on the [0, 1] scale (each
    eigenvector's sign chosen so that its components sum to a positive number) (lesson 9)."""
    rng = _rng(12)
    n, side = 24, 16                              # 6,144 pixels, colours that prefer brightness
    light = rng.uniform(0.2, 0.8, (n, side, side, 1))
    tint = rng.standard_normal((n, side, side, 3)) * numpy.array([0.12, 0.06, 0.03])
    images = (numpy.clip(light + tint, 0, 1) * 255).round().astype(numpy.uint8)
    alpha = rng.standard_normal((5, 3)) * 0.1
    want = compute_stats(images).lighting(alpha)
    got = _call("lighting_shift", lighting_shift, images.copy(), alpha.copy())
    # The covariance divided by M (pixels) or M - 1 differs by 1/M: allow that.
    _compare("the RGB shift", got, want, rtol=1e-3, atol=1e-6)
    return "five draws of alpha on a set of colour images"


@_check
def check_ten_crops(ten_crops: Callable) -> str:
    """ten_crops(image, size) -> (10, size, size, 3): the four corner patches (top-left,
    top-right, bottom-left, bottom-right), the centre, then their mirror images in the same order
    (§4.1; lesson 9); compared with ``minialex.data.transforms.ten_crops``."""
    rng = _rng(18)
    for base, size in ((12, 8), (11, 8), (9, 9)):
        image = rng.integers(0, 256, (base, base, 3), dtype=numpy.uint8)
        got = _call("ten_crops", ten_crops, image.copy(), size)
        _compare(f"the stack of patches of a {base}x{base} image, size {size}", got,
                 reference_ten_crops(image, size), rtol=0, atol=0)
    return "even and odd margins, and no margin"


# -- lesson 10: grouped convolution ------------------------------------------------------------------

@_check
def check_grouped_conv(grouped_conv: Callable) -> str:
    """grouped_conv(x, w, b, groups): F.conv2d with groups, built from one ungrouped F.conv2d per
    group (padding 1) (lesson 10, §3.2)."""
    rng = _rng(13)
    for groups, c, k in ((2, 4, 6), (4, 8, 8), (1, 3, 2)):
        x = rng.standard_normal((2, c, 5, 5))
        w = rng.standard_normal((k, c // groups, 3, 3))
        b = rng.standard_normal(k)
        want = F.conv2d(minialex.Tensor(x), minialex.Tensor(w), minialex.Tensor(b), padding=1,
                        groups=groups).numpy()
        got = _call("grouped_conv", grouped_conv, x.copy(), w.copy(), b.copy(), groups)
        _compare(f"the output with {groups} group(s)", got, want)
    return "1, 2 and 4 groups"


# -- lesson 11: parameter and multiply-add counts ---------------------------------------------------

def network_counts(preset: str, num_classes: int) -> Tuple[int, int]:
    """(parameters, multiply-adds per image) of an AlexNet preset, from its layer table.

    A layer's multiply-adds are its weights (parameters less biases) times its output positions
    (1 for a fully connected layer); both columns counted."""
    macs = 0
    for r in describe(preset, num_classes):
        if not r.params:
            continue
        biases = r.output[0] if r.layer == "fc8" else 2 * r.output[0]
        positions = r.output[1] * r.output[2] if len(r.output) == 3 else 1
        macs += (r.params - biases) * positions
    return count_parameters(preset, num_classes), macs


@_check
def check_counts(count: Callable) -> str:
    """count(preset, num_classes) -> (parameters, multiply-adds per image) for any AlexNet preset
    (``minialex.models.get_preset``): lesson 11, §3.5."""
    for preset, classes in (("paper", 1000), ("mini", 10), ("tiny", 7)):
        got = _call("count", count, preset, classes)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise _Wrong("wrong: count should return two numbers (parameters, multiply-adds)")
        params, macs = network_counts(preset, classes)
        _compare(f"the parameter count of {preset!r}", got[0], params, rtol=0, atol=0)
        _compare(f"the multiply-adds of {preset!r}", got[1], macs, rtol=0, atol=0)
    return "presets paper, mini and tiny"


# -- lesson 12: the §5 update -------------------------------------------------------------------------

@_check
def check_sgd_update(sgd_update: Callable) -> str:
    """sgd_update(weights, velocities, grads, lr, momentum, weight_decay) -> (weights, velocities),
    dicts by parameter name: v ← μ·v − λ·ε·w − ε·g, w ← w + v (§5), with no weight decay on
    parameters whose name ends in 'bias' (lesson 12). Compared with minialex.optim.SGD over five
    steps, the learning rate divided by 10 after the third."""
    rng = _rng(14)
    shapes = {"conv1.weight": (3, 2, 2, 2), "conv1.bias": (3,), "fc.weight": (4, 5), "fc.bias": (4,)}
    start = {n: rng.standard_normal(s) for n, s in shapes.items()}
    params = {n: Parameter(a.copy(), name=n) for n, a in start.items()}
    opt = SGD(list(params.items()), lr=0.1, momentum=0.9, weight_decay=0.05)
    weights = {n: a.copy() for n, a in start.items()}
    velocities = {n: numpy.zeros(s) for n, s in shapes.items()}
    for step in range(5):
        lr = 0.1 if step < 3 else 0.01
        opt.lr = lr
        grads = {n: rng.standard_normal(s) for n, s in shapes.items()}
        for n, p in params.items():
            p.grad = grads[n].copy()
        opt.step()
        got = _call("sgd_update", sgd_update, {n: a.copy() for n, a in weights.items()},
                    {n: a.copy() for n, a in velocities.items()},
                    {n: a.copy() for n, a in grads.items()}, lr, 0.9, 0.05)
        if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(
                isinstance(d, dict) for d in got):
            raise _Wrong("wrong: sgd_update should return two dicts (weights, velocities)")
        weights, velocities = got
        for n in shapes:
            if n not in weights or n not in velocities:
                raise _Wrong(f"wrong: the returned dicts have no entry {n!r}")
            _compare(f"the velocity of {n} after step {step + 1}", velocities[n], opt.velocity[n])
            _compare(f"{n} after step {step + 1}", weights[n], params[n].data)
    return "five steps of four parameters, biases undecayed, a learning-rate drop included"


# -- lesson 13: nearest neighbours ---------------------------------------------------------------------

@_check
def check_nearest(nearest: Callable) -> str:
    """nearest(queries, keys, k) -> (Q, k) indices into keys, nearest first in Euclidean distance
    (Figure 4's right half, §6.1; lesson 13)."""
    rng = _rng(15)
    for q, m, d, k in ((4, 30, 8, 5), (2, 12, 3, 1)):
        queries, keys = rng.standard_normal((q, d)), rng.standard_normal((m, d))
        dist = ((queries[:, None, :] - keys[None, :, :]) ** 2).sum(-1)
        want = numpy.argsort(dist, axis=1)[:, :k]
        got = _array("the neighbours", _call("nearest", nearest, queries.copy(), keys.copy(), k))
        if got.shape != want.shape:
            raise _Wrong(f"wrong: the neighbours have shape {got.shape}, expected shape "
                         f"{want.shape} (queries, k)")
        if (got != want).any():
            row, rank = numpy.argwhere(got != want)[0]
            raise _Wrong(f"wrong: neighbour {rank + 1} of query {row} (k = {k}) is not the "
                         f"{_ordinal(rank + 1)} nearest key")
    return "two sets of queries, k = 5 and 1"


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


@_check
def check_topk_error(topk_error: Callable) -> str:
    """topk_error(probs, labels, k) -> the fraction of rows whose label is not among the k
    highest probabilities (lesson 13; the paper's top-1 and top-5 errors, §6); compared with
    ``minialex.train.evaluate.topk_hits``."""
    rng = _rng(19)
    probs = rng.dirichlet(numpy.ones(10), size=200)
    labels = rng.integers(0, 10, 200)
    for k in (5, 1, 3):
        hits = topk_hits(probs, labels, k)[1]
        got = _call("topk_error", topk_error, probs.copy(), labels.copy(), k)
        _compare(f"the top-{k} error", got, 1.0 - hits.mean())
    return "k = 1, 3 and 5 on 200 rows of 10 classes"
