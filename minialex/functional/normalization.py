"""Local response normalisation across channels (paper §3.3), in the paper's literal form.

For activity a at channel i of N, at one position (n, y, x), with window half-width h = size // 2:

    S_i = sum_{j = max(0, i-h)}^{min(N-1, i+h)} a_j^2
    b_i = a_i / (k + alpha * S_i) ** beta

AlexNet: size n = 5, k = 2, alpha = 1e-4, beta = 0.75, after the ReLU of conv1 and conv2 (§3.3).
In the two-column net each column normalises over its own channels only.

Conventions (docs/paper.md, §3.3): here ``alpha`` multiplies the sum itself, as in the paper and Chainer.
PyTorch's ``LocalResponseNorm`` and Caffe's LRN divide their ``alpha`` by ``size`` first, so

    ours(alpha=a, k=k)  ==  torch.nn.LocalResponseNorm(size, alpha=a * size, beta, k=k)
    ours(alpha=a)       ==  Caffe LRN(local_size=size, alpha=a * size, k=...)  (Caffe's default k is 1,
                            PyTorch's default k is 1 as well; the paper's is 2)

``size`` must be odd so that the window is centred on channel i.

Gradient (with s_i = k + alpha * S_i and the window symmetric, so j in window(i) iff i in window(j)):

    da_j = g_j * s_j^-beta  -  2 * alpha * beta * a_j * sum_{i in window(j)} g_i * b_i / s_i
"""

from __future__ import annotations

import numpy

from .. import kernels
from ..autograd import Function
from ..backend import get_array_module
from ..cpu import batch_parts, in_parallel
from .utils import check_float, check_ndim


def check_lrn_args(op, x, size, alpha, beta, k):
    check_ndim(x, 4, op, "input", "(N, C, H, W)")
    check_float(x, op)
    size = int(size)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"{op}: size must be a positive odd number (a window centred on channel i; "
                         f"the paper uses 5), got {size}")
    if k <= 0 or alpha < 0:
        raise ValueError(f"{op}: need k > 0 and alpha >= 0 (the denominator must stay positive), "
                         f"got k={k}, alpha={alpha}")
    return size, float(alpha), float(beta), float(k)


def window_sum(a, size):
    """sum_{j in window(i)} a_j along the channel axis (axis 1), zeros beyond the edges.

    One shifted add per offset d in [-h, h]: ``size`` adds, no loop over pixels.
    """
    xp = get_array_module(a)
    h, c = size // 2, a.shape[1]
    out = a.copy()
    for d in range(1, h + 1):
        if d >= c:
            break
        out[:, d:] += a[:, :-d]      # channel i receives a_{i-d}
        out[:, :-d] += a[:, d:]      # channel i receives a_{i+d}
    return xp.ascontiguousarray(out)


class LocalResponseNorm(Function):
    """b = a / (k + alpha * window_sum(a^2)) ** beta; saves a, b, the denominator s and s^-beta.
    On the CPU the formulas run on slices of the batch, shared among threads (``in_parallel``)."""

    name = "local_response_norm"

    def __init__(self, size, alpha, beta, k):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        t = x.dtype.type
        y, scale, s_beta = numpy.empty_like(x), numpy.empty_like(x), numpy.empty_like(x)

        def rows(p):                        # written in place: one temporary, not five
            numpy.multiply(window_sum(numpy.square(x[p]), self.size), t(self.alpha), out=scale[p])
            scale[p] += t(self.k)                                   # s = k + alpha * S
            numpy.power(scale[p], t(-self.beta), out=s_beta[p])     # s^-beta
            numpy.multiply(x[p], s_beta[p], out=y[p])               # b = a * s^-beta

        in_parallel(rows, batch_parts(x.shape[0], x[0].nbytes))
        self.save_for_backward(x, y, scale, s_beta)
        return y

    def backward(self, gy):
        x, y, scale, s_beta = self.saved
        t = x.dtype.type
        gx = numpy.empty_like(x)

        def rows(p):                        # in place, as the forward
            ratio = numpy.multiply(gy[p], y[p])
            ratio /= scale[p]                                       # g_i * b_i / s_i
            inner = window_sum(ratio, self.size)
            inner *= numpy.multiply(x[p], t(2 * self.alpha * self.beta), out=ratio)
            numpy.multiply(gy[p], s_beta[p], out=gx[p])             # g_j * s_j^-beta
            gx[p] -= inner                                          # - 2 alpha beta a_j * sum

        in_parallel(rows, batch_parts(x.shape[0], x[0].nbytes))
        return gx

    def forward_gpu(self, x):            # the same formulas, one thread per value (lrn.cu)
        y, scale = kernels.lrn_forward(x, self.size, self.alpha, self.beta, self.k)
        self.save_for_backward(x, y, scale)
        return y

    def backward_gpu(self, gy):
        return kernels.lrn_backward(gy, *self.saved, self.size, self.alpha, self.beta)


def local_response_norm(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """Paper-literal LRN over channels of x (N, C, H, W) -> same shape (§3.3); see module docstring
    for the formula and for the mapping to PyTorch/Caffe (their alpha = ours * size)."""
    args = check_lrn_args("local_response_norm", x, size, alpha, beta, k)
    return LocalResponseNorm(*args)(x)


class LocalResponseNormNaive(Function):
    """LRN by a loop over channels, straight from the formula; the backward applies the chain
    rule term by term (db_i/da_j for every j in i's window), independently of the fast path."""

    name = "local_response_norm_naive"

    def __init__(self, size, alpha, beta, k):
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def _window(self, i, channels):
        h = self.size // 2
        return range(max(0, i - h), min(channels - 1, i + h) + 1)

    def forward(self, x):
        xp = get_array_module(x)
        channels = x.shape[1]
        y = xp.empty_like(x)
        scale = xp.empty_like(x)
        for i in range(channels):
            total = xp.zeros_like(x[:, i])
            for j in self._window(i, channels):
                total += x[:, j] ** 2
            scale[:, i] = self.k + self.alpha * total
            y[:, i] = x[:, i] / scale[:, i] ** self.beta
        self.save_for_backward(x, scale)
        return y

    def backward(self, gy):
        xp = get_array_module(gy)
        x, scale = self.saved
        channels = x.shape[1]
        gx = xp.zeros_like(x)
        for i in range(channels):
            for j in self._window(i, channels):
                # b_i = a_i * s_i^-beta with s_i = k + alpha * sum a_j^2:
                # db_i/da_j = [i == j] s_i^-beta - 2 alpha beta a_i a_j s_i^(-beta-1)
                d = -2 * self.alpha * self.beta * x[:, i] * x[:, j] * scale[:, i] ** (-self.beta - 1)
                if i == j:
                    d = d + scale[:, i] ** (-self.beta)
                gx[:, j] += gy[:, i] * d
        return gx


def local_response_norm_naive(x, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """``local_response_norm`` by loops over channels (same arguments and result)."""
    args = check_lrn_args("local_response_norm_naive", x, size, alpha, beta, k)
    return LocalResponseNormNaive(*args)(x)
