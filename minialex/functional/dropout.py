"""Dropout (paper §4.2): during training each unit is kept with probability 1 - p and zeroed
otherwise, so the net cannot rely on any one unit; p = 0.5 on the outputs of fc6 and fc7.

Two forms with the same expected activation, chosen with ``mode=``:

    mode="paper" (default, §4.2 literally)   train: y = x * m          test: y = x * (1 - p)
    mode="inverted" (Caffe, PyTorch)         train: y = x * m / (1-p)  test: y = x

with m ~ Bernoulli(1 - p) drawn independently per element. The paper form is the default because
minialex follows the paper; the inverted form costs nothing at test time.

Randomness is explicit: pass ``generator=`` (a ``numpy.random.Generator`` for NumPy arrays, a
``cupy.random.Generator`` for CuPy arrays; a NumPy one also works on the GPU but draws on the host
and copies) or a fixed keep-mask ``mask=`` (1 = keep, 0 = drop, the input's shape) so that a
gradient check sees the same function on every evaluation.

Shapes: any; the output has the input's shape and dtype. Backward: dx = dy * (the same factor).
"""

from __future__ import annotations

import numpy

from ..autograd import Function, Tensor
from ..backend import cupy, is_cupy_array
from .utils import check_float, shape_of


MODES = ("paper", "inverted")


def draw_keep_mask(shape, p, generator, like):
    """A boolean keep-mask (True with probability 1 - p) on ``like``'s device, from ``generator``."""
    if generator is None:
        raise ValueError("dropout: training mode needs generator= (a seeded "
                         "numpy.random.Generator, or cupy.random.Generator on the GPU) or mask=; "
                         "minialex never draws from global random state")
    if isinstance(generator, numpy.random.Generator):
        keep = generator.random(shape, dtype=numpy.float32) >= p
        if is_cupy_array(like):      # drawn on the host: correct but slow; prefer a CuPy generator
            keep = cupy.asarray(keep)
        return keep
    if not is_cupy_array(like):
        raise TypeError(f"dropout: a {type(generator).__name__} cannot draw a mask for a NumPy array; "
                        "pass a numpy.random.Generator")
    return generator.random(shape, dtype=numpy.float32) >= p


class Dropout(Function):
    """Multiply by a fixed factor array f = m (paper) or m / (1-p) (inverted); dx = dy * f."""

    name = "dropout"

    def __init__(self, keep, scale):
        self.keep, self.scale = keep, scale

    def forward(self, x):
        factor = self.keep.astype(x.dtype)
        if self.scale != 1.0:
            factor *= x.dtype.type(self.scale)
        self.save_for_backward(factor)
        return x * factor

    def backward(self, gy):
        (factor,) = self.saved
        return gy * factor


def dropout(x, p=0.5, training=True, mode="paper", mask=None, generator=None):
    """Dropout of x with drop probability ``p`` (§4.2); see module docstring for the two modes."""
    if not isinstance(x, Tensor):
        x = Tensor(x)
    check_float(x, "dropout")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if mode not in MODES:
        raise ValueError(f"dropout: mode must be one of {MODES}, got {mode!r}")
    if not training:
        return x if mode == "inverted" else x * (1.0 - p)      # expected value of the training output
    if mask is not None:
        keep = mask.data if isinstance(mask, Tensor) else mask
        if shape_of(keep) != x.shape:
            raise ValueError(f"dropout: mask shape {shape_of(keep)} differs from input shape {x.shape}")
        keep = x.xp.asarray(keep)
    else:
        keep = draw_keep_mask(x.shape, p, generator, x.data)
    scale = 1.0 / (1.0 - p) if mode == "inverted" else 1.0
    return Dropout(keep, scale)(x)
