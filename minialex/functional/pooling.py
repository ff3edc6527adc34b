"""Overlapping max pooling (paper §3.4): window z = 3, stride s = 2, so neighbouring windows share
a row or column of pixels.

Shapes: x (N, C, H, W) -> y (N, C, OH, OW), OH = (H + 2*padding - kh) // sh + 1 (floor).
AlexNet: 55 -> 27 -> 13 -> 6.

    y[n, c, oy, ox] = max_{i < kh, j < kw} xpad[n, c, oy*sh + i, ox*sw + j]

Padding counts as -infinity (it never wins). Ties go to the FIRST maximum in (i, j) row-major
order, on every backend, so gradients are deterministic. Because windows overlap, one pixel can
be the maximum of several windows; the backward pass adds the gradient from every one of them:

    dx[n, c, y, x] = sum over windows w whose maximum sits at (y, x) of dy[w]

The forward takes the maximum in two steps, across kw columns and then down kh rows (a maximum
of maxima is the maximum), and keeps only the padded input and y; the backward finds each
window's winning offset ``i*kw + j`` again (one compare per offset), which costs less than
tracking it while taking the maximum. A NaN in a window wins it (its gradient goes to the
window's first NaN).
"""

from __future__ import annotations

import numpy

from .. import kernels
from ..autograd import Function
from ..backend import get_array_module
from ..cpu import batch_parts, in_parallel
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


def running_max(src, step, terms):
    """out[f] = max_{t < terms} src[f + t*step] for a 1-D ``src``, at every f where all the
    terms lie in it (the last (terms - 1)*step places, where they do not, keep src's values),
    in ``terms - 1`` passes of ``numpy.maximum`` over shifted slices. ``src`` for one term."""
    if terms == 1:
        return src
    n = src.size - (terms - 1) * step
    out = numpy.empty_like(src)
    out[n:] = src[n:]
    numpy.maximum(src[:n], src[step:step + n], out=out[:n])
    for t in range(2, terms):           # a NaN wins: maximum passes it on (as PyTorch does)
        numpy.maximum(out[:n], src[t * step:t * step + n], out=out[:n])
    return out


class MaxPool2d(Function):
    """Max pooling: the forward takes each window's maximum along rows and then down columns
    (``window_max``); the backward finds each window's first maximum again, one comparison per
    window offset (each offset a strided view of the input), and sends its gradient there."""

    name = "max_pool2d"

    def __init__(self, kernel_size, stride, padding):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        n, c, h, w = shape_of(x)
        xpad = x
        if ph or pw:                                       # padding is -inf: it never wins
            xpad = numpy.full((n, c, h + 2 * ph, w + 2 * pw), -numpy.inf, dtype=x.dtype)
            xpad[:, :, ph:ph + h, pw:pw + w] = x
        y = numpy.empty((n, c, output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)), x.dtype)

        def rows(p):                        # a share of the batch (threads: see in_parallel)
            y[p] = self.window_max(xpad[p], *y.shape[2:])

        in_parallel(rows, batch_parts(n, xpad[0].nbytes))
        self.save_for_backward(xpad, y)
        return y

    def window_max(self, xpad, oh, ow):
        """Every window's maximum, as two running maxima (``running_max``) along the flat memory
        of xpad (n, C, Hp, Wp), C-ordered, in which a step of one row is Wp places:

            across[f] = max_{j < kw} xpad.flat[f + j]          each pixel and kw - 1 to its right
            down[f]   = max_{i < kh} across[f + i*Wp]           and the kh - 1 rows below those

        At a window's corner f, down[f] is the window's maximum, and y keeps every sh-th row and
        sw-th column of down. Elsewhere, near a row's or a map's end, the terms run into the next
        row or map: those places are never kept. The same values as the maximum over the kh*kw
        strided ``views`` (a maximum is exact; ties and NaN go the same way), for fewer passes,
        each over long stretches of memory instead of one output row (2-27 values here)."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        across = running_max(xpad.reshape(-1), 1, kw)
        down = running_max(across, xpad.shape[3], kh)
        return down.reshape(xpad.shape)[:, :, 0:sh * oh:sh, 0:sw * ow:sw]

    def views(self, xpad, oh, ow):
        """The kh*kw strided views (N, C, OH, OW) of the padded input, one per window offset:
        views[i*kw + j][n, c, oy, ox] = xpad[n, c, oy*sh + i, ox*sw + j]."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return [xpad[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] for i in range(kh) for j in range(kw)]

    def backward(self, gy):
        xpad, y = self.saved
        (ph, pw), (hp, wp) = self.padding, xpad.shape[2:]
        gxpad = numpy.empty(xpad.shape, dtype=gy.dtype)
        in_parallel(lambda p: self.route(xpad[p], y[p], gy[p], gxpad[p]),
                    batch_parts(len(y), xpad[0].nbytes))
        return gxpad[:, :, ph:hp - ph, pw:wp - pw].copy() if (ph or pw) else gxpad

    def route(self, xpad, y, gy, gxpad):
        """gxpad = each window's gradient added at its winner, for one share of the batch."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        n, c, hp, wp = xpad.shape
        oh, ow = y.shape[2:]
        views = self.views(xpad, oh, ow)
        # won[w] = the offset of window w's first maximum in row-major order (ties: the first):
        # the number of offsets tried while the window was still open, counted as they go.
        won = numpy.zeros(y.shape, dtype=numpy.uint8 if kh * kw <= 256 else numpy.int32)
        open_ = numpy.ones(y.shape, dtype=bool)            # windows whose maximum is not found yet
        hit = numpy.empty(y.shape, dtype=bool)
        count = open_.view(numpy.uint8) if won.dtype == numpy.uint8 else open_   # no cast to add
        for k, v in enumerate(views):
            numpy.greater(open_, numpy.equal(v, y, out=hit), out=open_)    # open and not hit
            if k < len(views) - 1:
                won += count
        for k, v in enumerate(views if open_.any() else []):  # a NaN equals nothing: the window's
            hit = numpy.isnan(v) & open_                    # first NaN won
            won[hit], open_[hit] = k, False
        # Scatter: flat index in xpad of every window's winner, then one bincount adds the
        # gradients of all windows a pixel won (overlapping windows can share a winner). Offset
        # k = i*kw + j lies i*wp + j past the corner of window (n, c, oy, ox), which lies at
        # (n*C + c)*hp*wp + oy*sh*wp + ox*sw.
        past_corner = numpy.array([i * wp + j for i in range(kh) for j in range(kw)], numpy.int64)
        winners = numpy.take(past_corner, won)
        winners += (numpy.arange(n * c) * (hp * wp)).reshape(n, c, 1, 1)
        winners += numpy.arange(oh)[:, None] * (sh * wp) + numpy.arange(ow) * sw
        gxpad[...] = numpy.bincount(winners.ravel(), weights=gy.ravel(),
                                    minlength=xpad.size).reshape(xpad.shape)

    def forward_gpu(self, x):
        """One thread per output (kernels/pooling.cu), which also keeps each window's argmax."""
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
