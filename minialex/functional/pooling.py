"""Overlapping max pooling (paper §3.4): window z = 3, stride s = 2, so neighbouring windows share
a row or column of pixels.

Shapes: x (N, C, H, W) -> y (N, C, OH, OW), OH = (H + 2*padding - kh) // sh + 1 (floor).
AlexNet: 55 -> 27 -> 13 -> 6.

    y[n, c, oy, ox] = max_{i < kh, j < kw} xpad[n, c, oy*sh + i, ox*sw + j]

Padding counts as -infinity (it never wins). Ties go to the FIRST maximum in (i, j) row-major
order, on every backend, so gradients are deterministic. Because windows overlap, one pixel can
be the maximum of several windows; the backward pass adds the gradient from every one of them:

    dx[n, c, y, x] = sum over windows w whose maximum sits at (y, x) of dy[w]

The forward saves, for each output, the offset ``i*kw + j`` of its maximum inside its window.
"""

from __future__ import annotations

import numpy

from .. import kernels
from ..autograd import Function
from ..backend import get_array_module
from .utils import check_float, check_ndim, output_size, pair, shape_of


def check_pool_args(op, x, kernel_size, stride, padding):
    check_ndim(x, 4, op, "input", "(N, C, H, W)")
    check_float(x, op)
    kh, kw = pair(kernel_size, op, "kernel_size")
    sh, sw = pair(kernel_size if stride is None else stride, op, "stride")
    ph, pw = pair(padding, op, "padding")
    if kh < 1 or kw < 1 or sh < 1 or sw < 1:
        raise ValueError(f"{op}: kernel_size and stride must be >= 1, got {(kh, kw)} and {(sh, sw)}")
    if not (0 <= ph <= kh // 2 and 0 <= pw <= kw // 2):
        raise ValueError(f"{op}: padding {(ph, pw)} must be between 0 and half the kernel "
                         f"{(kh, kw)} (so that no window is all padding)")
    n, c, h, w = shape_of(x)
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(f"{op}: kernel {(kh, kw)} is larger than the padded input "
                         f"{(h + 2 * ph, w + 2 * pw)} (input shape {(n, c, h, w)}, padding {(ph, pw)})")
    return (kh, kw), (sh, sw), (ph, pw)


class MaxPool2d(Function):
    """Max pooling with saved argmax offsets; NumPy loops over the kh*kw offsets only."""

    name = "max_pool2d"

    def __init__(self, kernel_size, stride, padding):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        n, c, h, w = shape_of(x)
        oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
        self.x_shape = (n, c, h, w)
        xpad = x
        if ph or pw:
            xpad = numpy.full((n, c, h + 2 * ph, w + 2 * pw), -numpy.inf, dtype=x.dtype)
            xpad[:, :, ph:ph + h, pw:pw + w] = x
        y = xpad[:, :, 0:sh * oh:sh, 0:sw * ow:sw][:, :, :oh, :ow].copy()   # offset (0, 0)
        argmax = numpy.zeros(y.shape, dtype=numpy.int32)
        for i in range(kh):
            for j in range(kw):
                v = xpad[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw][:, :, :oh, :ow]
                # strict: the first maximum wins; a NaN wins over any number, so that a blow-up
                # stays visible downstream (as in PyTorch), and the first NaN keeps its place
                better = numpy.greater(v, y) | (numpy.isnan(v) & ~numpy.isnan(y))
                numpy.copyto(y, v, where=better)
                numpy.copyto(argmax, i * kw + j, where=better)
        self.argmax = argmax
        return y

    def backward(self, gy):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        n, c, h, w = self.x_shape
        oh, ow = gy.shape[2], gy.shape[3]
        gxpad = numpy.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=gy.dtype)
        for i in range(kh):
            for j in range(kw):   # overlapping windows: += collects every window's share
                gxpad[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += numpy.where(
                    self.argmax == i * kw + j, gy, 0)
        return gxpad[:, :, ph:ph + h, pw:pw + w].copy() if (ph or pw) else gxpad

    def forward_gpu(self, x):
        """One thread per output (kernels/pooling.cu), argmax kept as on the CPU."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        self.x_shape = n, c, h, w = shape_of(x)
        oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
        y, self.argmax = kernels.max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow)
        return y

    def backward_gpu(self, gy):
        """A gather: one thread per input pixel sums the windows it won (no atomics)."""
        return kernels.max_pool_backward(gy, self.argmax, *self.x_shape, *self.kernel_size,
                                         *self.stride, *self.padding)


def max_pool2d(x, kernel_size=3, stride=2, padding=0):
    """Max pooling of (N, C, H, W); defaults are the paper's overlapping 3x3 stride-2 (§3.4).

    ``stride=None`` means stride = kernel_size (non-overlapping, the ablation in §3.4).
    """
    k, s, p = check_pool_args("max_pool2d", x, kernel_size, stride, padding)
    return MaxPool2d(k, s, p)(x)


class MaxPool2dNaive(Function):
    """Max pooling by loops over every output value; the tests' oracle for ``max_pool2d``."""

    name = "max_pool2d_naive"

    def __init__(self, kernel_size, stride, padding):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        xp = get_array_module(x)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        n_count, c_count, h, w = shape_of(x)
        oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
        y = xp.zeros((n_count, c_count, oh, ow), dtype=x.dtype)
        self.winner = {}   # (n, c, oy, ox) -> (row, col) of the maximum in x
        for n in range(n_count):
            for c in range(c_count):
                for oy in range(oh):
                    for ox in range(ow):
                        best, where = None, None
                        for i in range(kh):
                            for j in range(kw):
                                r, s = oy * sh + i - ph, ox * sw + j - pw
                                if not (0 <= r < h and 0 <= s < w):
                                    continue
                                v = x[n, c, r, s]
                                nan_first = v != v and not best != best   # a NaN beats numbers
                                if best is None or v > best or nan_first:
                                    best, where = v, (r, s)
                        y[n, c, oy, ox] = best
                        self.winner[n, c, oy, ox] = where
        self.x_shape = (n_count, c_count, h, w)
        return y

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = xp.zeros(self.x_shape, dtype=gy.dtype)
        for (n, c, oy, ox), (r, s) in self.winner.items():
            gx[n, c, r, s] += gy[n, c, oy, ox]       # a pixel may win several windows: add
        return gx


def max_pool2d_naive(x, kernel_size=3, stride=2, padding=0):
    """``max_pool2d`` by loops (same arguments and result)."""
    k, s, p = check_pool_args("max_pool2d_naive", x, kernel_size, stride, padding)
    return MaxPool2dNaive(k, s, p)(x)
