"""Softmax and the multinomial logistic regression objective the paper maximises (§3.5, §5).

    log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m),   m = max_j x_j  (log-sum-exp: no overflow)
    softmax(x)_i     = exp(log_softmax(x)_i)
    cross_entropy(logits, labels) = -(1/N) sum_n log_softmax(logits[n])[labels[n]]

Shapes: logits (N, classes), labels (N,) integers in [0, classes). The loss is a 0-d tensor, the
mean over the batch (§5: the gradient is averaged over the batch of 128).

Gradients: d log_softmax: dx = dy - softmax(x) * sum_i dy_i;  d softmax: dx = y * (dy - sum_i dy_i y_i);
d cross_entropy: dlogits = (softmax(logits) - onehot(labels)) / N * dloss.

On a GPU, cross_entropy runs as two fused kernels (kernels/loss.cu): one block per row computes
the log-sum-exp lse_n and loss_n = lse_n - x[n, label_n], and the backward forms
(exp(x - lse_n) - onehot) * dloss / N in one pass; the NumPy code below is its readable twin.
"""

from __future__ import annotations

import numpy

from .. import kernels
from ..autograd import Function, Tensor
from ..backend import get_array_module, is_cupy_array
from .utils import check_float, check_ndim, shape_of

#: cross_entropy on CuPy arrays uses the fused kernels of kernels/loss.cu; False runs the NumPy
#: formulas below on CuPy instead (``python benchmarks/gpu_step.py --compare loss-apart``).
FUSED_ON_GPU = True


def log_softmax_array(x, axis=1):
    """log softmax of a raw NumPy/CuPy array along ``axis`` (no graph): the one place it is
    written, for the ops below and for code that scores logits without autograd."""
    xp = get_array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    name = "log_softmax"

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        y = log_softmax_array(x, self.axis)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        xp = get_array_module(gy)
        (y,) = self.saved
        return gy - xp.exp(y) * gy.sum(axis=self.axis, keepdims=True)


class Softmax(Function):
    name = "softmax"

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        xp = get_array_module(x)
        y = xp.exp(log_softmax_array(x, self.axis))
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved
        return y * (gy - (gy * y).sum(axis=self.axis, keepdims=True))


def log_softmax(x, axis=1):
    """log of the softmax along ``axis`` (default 1: classes of an (N, classes) batch)."""
    check_float(x, "log_softmax")
    return LogSoftmax(axis)(x)


def softmax(x, axis=1):
    """exp(x_i) / sum_j exp(x_j) along ``axis``, computed through log_softmax (stable)."""
    check_float(x, "softmax")
    return Softmax(axis)(x)


class CrossEntropy(Function):
    """Mean negative log-likelihood of the labels under softmax(logits); labels are constants."""

    name = "cross_entropy"

    def __init__(self, labels):
        self.labels = labels

    def forward(self, logits):
        xp = get_array_module(logits)
        logp = log_softmax_array(logits, 1)
        rows = xp.arange(logits.shape[0])
        self.save_for_backward(logp)
        return xp.asarray(-logp[rows, self.labels].mean(), dtype=logits.dtype)

    def backward(self, gy):
        xp = get_array_module(gy)
        (logp,) = self.saved
        n = logp.shape[0]
        g = xp.exp(logp)
        g[xp.arange(n), self.labels] -= 1
        return g * (gy / logp.dtype.type(n))

    def forward_gpu(self, logits):
        self.fused = FUSED_ON_GPU
        if not self.fused:
            return self.forward(logits)
        xp = get_array_module(logits)
        self.labels = xp.ascontiguousarray(self.labels, dtype=xp.int32)   # cast once, not twice
        loss_rows, lse = kernels.cross_entropy_forward(logits, self.labels)
        self.save_for_backward(logits, lse)       # (N, C) and (N,): no log-probabilities kept
        return xp.asarray(loss_rows.mean(), dtype=logits.dtype)

    def backward_gpu(self, gy):
        if not self.fused:
            return self.backward(gy)
        logits, lse = self.saved
        return kernels.cross_entropy_backward(logits, self.labels, lse, gy)


def cross_entropy(logits, labels, check_labels: bool = True):
    """Mean cross-entropy of logits (N, classes) against integer labels (N,); a 0-d Tensor.

    ``labels`` may be a NumPy/CuPy array, a list, or a Tensor; they are not differentiated. Labels
    outside [0, classes) raise ValueError. Host labels are checked before they are copied to the
    GPU, for free; labels already on the GPU cost one device synchronisation to check, so a
    training loop whose labels were validated when the dataset was read passes
    ``check_labels=False`` to keep the step free of host syncs.
    """
    if not isinstance(logits, Tensor):
        logits = Tensor(logits)
    check_ndim(logits, 2, "cross_entropy", "logits", "(N, classes)")
    check_float(logits, "cross_entropy", "logits")
    labels = labels.data if isinstance(labels, Tensor) else labels
    if is_cupy_array(labels) and not is_cupy_array(logits.data):
        raise ValueError("cross_entropy: labels are on the GPU but logits are on the CPU")
    on_host = not is_cupy_array(labels)
    labels = numpy.asarray(labels) if on_host else labels
    n, classes = logits.shape
    if labels.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy: labels must be integers, got dtype {labels.dtype}")
    if shape_of(labels) != (n,):
        raise ValueError(f"cross_entropy: labels must have shape ({n},) for logits shape "
                         f"{logits.shape}, got {shape_of(labels)}")
    if n and (check_labels or on_host) and bool(((labels < 0) | (labels >= classes)).any()):
        lo, hi = int(labels.min()), int(labels.max())
        raise ValueError(f"cross_entropy: labels must be in [0, {classes}) for logits shape "
                         f"{logits.shape}, got values from {lo} to {hi} (labels shape {(n,)})")
    if on_host and is_cupy_array(logits.data):
        labels = logits.device.put(labels)   # labels are tiny: copied to the logits' GPU
    return CrossEntropy(labels)(logits)
