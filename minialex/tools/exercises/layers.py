"""Checks for lessons 6-8: the LRN backward, the overlapping pooling backward, dropout."""

from __future__ import annotations

from typing import Callable

import numpy

import minialex
import minialex.functional as F
from .verdicts import _check, _call, _compare, _rng, _autograd


# -- lesson 6: LRN ------------------------------------------------------------------------------

@_check
def check_lrn_backward(lrn_backward: Callable) -> str:
    """lrn_backward(a, g, size, alpha, beta, k) -> dL/da for L = sum(lrn(a) * g), the paper's LRN
    (§3.3). Checked with a large alpha, where forgetting the neighbours' term shows (lesson 6)."""
    rng = _rng(8)
    for shape, size, alpha in (((2, 7, 3, 3), 5, 0.5), ((1, 6, 2, 4), 3, 0.2),
                               ((2, 7, 2, 2), 5, 1e-4)):
        a = rng.standard_normal(shape) * (30 if alpha < 1e-3 else 1)
        g = rng.standard_normal(shape)
        _, (want,) = _autograd(lambda t: F.local_response_norm(t, size, alpha, 0.75, 2.0), [a], g)
        got = _call("lrn_backward", lrn_backward, a.copy(), g.copy(), size, alpha, 0.75, 2.0)
        _compare(f"the gradient of a (size {size}, alpha {alpha})", got, want)
    return "sizes 3 and 5, small and large alpha"


@_check
def check_lrn_pytorch(lrn_pytorch: Callable) -> str:
    """lrn_pytorch(x, size, alpha, beta, k): LRN in PyTorch's and Caffe's convention, where alpha
    is divided by the window size (lesson 6)."""
    rng = _rng(9)
    for size, alpha, k in ((5, 5e-4, 2.0), (3, 1e-3, 1.0)):
        x = numpy.maximum(rng.standard_normal((2, 8, 3, 3)) * 60, 0)
        want = F.local_response_norm(minialex.Tensor(x), size, alpha / size, 0.75, k).numpy()
        got = _call("lrn_pytorch", lrn_pytorch, x.copy(), size, alpha, 0.75, k)
        _compare(f"the output (size {size}, alpha {alpha}, k {k})", got, want)
    return "two windows and two k"


# -- lesson 7: pooling backward -------------------------------------------------------------------

@_check
def check_max_pool_backward(max_pool_backward: Callable) -> str:
    """max_pool_backward(x, gy, size, stride) -> dL/dx for L = sum(max_pool2d(x) * gy): every
    window's gradient added to its maximum, also where windows overlap (lesson 7, §3.4)."""
    rng = _rng(10)
    for shape, size, stride in (((2, 3, 9, 9), 3, 2), ((1, 2, 11, 7), 3, 2), ((1, 2, 8, 8), 2, 2)):
        x = rng.permutation(int(numpy.prod(shape))).reshape(shape) / 10.0   # no ties
        gy = rng.standard_normal(F.max_pool2d(minialex.Tensor(x), size, stride).shape)
        _, (want,) = _autograd(lambda t: F.max_pool2d(t, size, stride), [x], gy)
        got = _call("max_pool_backward", max_pool_backward, x.copy(), gy.copy(), size, stride)
        _compare(f"the gradient of x ({size}x{size}/{stride}, x {shape})", got, want)
    return "3x3/2 (overlapping) and 2x2/2, square and oblong maps"


# -- lesson 8: dropout ------------------------------------------------------------------------------

@_check
def check_dropout(dropout: Callable) -> str:
    """dropout(x, keep, p, training, mode): the paper's form (train y = keep·x, test y = (1 − p)·x)
    and the inverted form (train y = keep·x / (1 − p), test y = x) (lesson 8, §4.2)."""
    rng = _rng(11)
    for p in (0.5, 0.2):
        x = rng.standard_normal((4, 6))
        keep = (rng.random((4, 6)) >= p).astype(numpy.float64)
        for mode in ("paper", "inverted"):
            for training in (True, False):
                want = F.dropout(minialex.Tensor(x), p, training=training, mode=mode,
                                 mask=keep).numpy()
                got = _call("dropout", dropout, x.copy(), keep.copy(), p, training, mode)
                phase = "training" if training else "test"
                _compare(f"the {phase} output in mode {mode!r} with p = {p}", got, want)
    return "both forms, training and test, p = 0.5 and 0.2"
