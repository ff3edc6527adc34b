"""2-D convolution (paper §3.5): im2col + one matrix product per group, and a naive loop oracle.

Shapes (NCHW, weights laid out as PyTorch's so users can compare):

    x       (N, C, H, W)
    weight  (K, C/groups, kh, kw)
    bias    (K,)
    y       (N, K, OH, OW)      OH = (H + 2*ph - kh) // sh + 1, OW likewise

    y[n, k, oy, ox] = bias[k] + sum_{c, i, j} weight[k, c, i, j] *
                      xpad[n, g*C/groups + c, oy*sh + i, ox*sw + j]      g = k // (K/groups)

``groups=2`` is how one device computes the two-column net's conv2, conv4 and conv5, whose
kernels see only the 48 or 128 (or 192) channels of their own column (§3.2; Caffe's ``group: 2``).

The fast path (``conv2d``)
--------------------------
``im2col`` copies every kh x kw x C/groups receptive field into one row of a matrix, with the
batch folded into the rows: cols has shape (N*OH*OW, C/groups*kh*kw). Then, per group,

    Y = cols @ W.T              (N*OH*OW, K/groups)       W = weight reshaped (K/groups, -1)
    dW = dY.T @ cols            dcols = dY @ W            dx = col2im(dcols)

One 2-D GEMM per group: on CuPy, 2-D matmul is where TF32 applies (see ../shared/BASELINES.md, the project's baseline measurements), and the
batch in the rows keeps the product large. ``col2im`` is the adjoint of ``im2col``: every input
pixel receives the sum of the column entries that copied it.

On a GPU (``forward_gpu``/``backward_gpu``) the same products run in the transposed arrangement
of ``minialex/kernels/conv_gpu.py`` (columns as (C/groups*kh*kw, N*OH*OW), coalesced CUDA
kernels, columns recomputed in the backward pass).

The naive path (``conv2d_naive``)
---------------------------------
Loops over images, kernels and output positions, one dot product each; its backward loops the
same way. Slow, but a student can check it against the formula above, and the tests use it as
the oracle for the fast path.
"""

from __future__ import annotations

import numpy

from .. import kernels
from ..autograd import Function
from ..backend import get_array_module, is_cupy_array
from ..kernels import conv_gpu
from .utils import check_float, check_ndim, check_same_dtype, output_size, pair, shape_of


# --------------------------------------------------------------------------------------------
# im2col / col2im
# --------------------------------------------------------------------------------------------

def im2col(x, kernel_size, stride=1, padding=0):
    """Receptive fields as rows: (N, C, H, W) -> (N*OH*OW, C*kh*kw).

    Row ``(n*OH + oy)*OW + ox`` holds ``xpad[n, :, oy*sh : oy*sh+kh, ox*sw : ox*sw+kw]`` flattened
    in (c, i, j) order, the order of ``weight.reshape(K, -1)``. Zero padding is applied first.
    Works on NumPy (a strided view, then one copy) and CuPy (a CUDA kernel).
    """
    kh, kw = pair(kernel_size, "im2col", "kernel_size")
    sh, sw = pair(stride, "im2col", "stride")
    ph, pw = pair(padding, "im2col", "padding")
    check_ndim(x, 4, "im2col", "x", "(N, C, H, W)")
    n, c, h, w = shape_of(x)
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    if oh < 1 or ow < 1:
        raise ValueError(f"im2col: kernel {(kh, kw)} is larger than the padded input "
                         f"{(h + 2 * ph, w + 2 * pw)} (input shape {(n, c, h, w)}, padding {(ph, pw)})")
    if is_cupy_array(x):
        return kernels.im2col(x, kh, kw, sh, sw, ph, pw, oh, ow)
    xpad = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if (ph or pw) else x
    # windows[n, c, y, x, i, j] = xpad[n, c, y + i, x + j]: a view, no copy yet.
    windows = numpy.lib.stride_tricks.sliding_window_view(xpad, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::sh, ::sw][:, :, :oh, :ow]           # (N, C, OH, OW, kh, kw)
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)  # the one copy


def col2im(cols, x_shape, kernel_size, stride=1, padding=0):
    """The adjoint of ``im2col``: (N*OH*OW, C*kh*kw) -> (N, C, H, W), summing overlaps.

    dx[n, c, y, x] = sum of every column entry that ``im2col`` copied from xpad[n, c, y+ph, x+pw].
    NumPy: one strided add per kernel offset (i, j), kh*kw adds in all. CuPy: a gather kernel, one
    thread per input pixel, no atomics, so the result is deterministic.
    """
    kh, kw = pair(kernel_size, "col2im", "kernel_size")
    sh, sw = pair(stride, "col2im", "stride")
    ph, pw = pair(padding, "col2im", "padding")
    n, c, h, w = (int(s) for s in x_shape)
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    if tuple(cols.shape) != (n * oh * ow, c * kh * kw):
        raise ValueError(f"col2im: cols has shape {shape_of(cols)} but input shape {(n, c, h, w)} "
                         f"with kernel {(kh, kw)} needs {(n * oh * ow, c * kh * kw)}")
    if is_cupy_array(cols):
        return kernels.col2im(cols, n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow)
    # Work on the transpose, (C*kh*kw, N*OH*OW) = (C, kh, kw, N, OH, OW), so that each offset's
    # share below is one contiguous block (conv2d's backward hands over cols as a transposed
    # view of exactly that array, so this is free there; other callers pay one copy).
    parts = numpy.ascontiguousarray(cols.T).reshape(c, kh, kw, n, oh, ow)
    xpad = numpy.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)     # channels first
    for i in range(kh):          # overlapping windows: each offset adds its share
        for j in range(kw):
            xpad[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += parts[:, i, j]
    return numpy.ascontiguousarray(xpad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3))


# --------------------------------------------------------------------------------------------
# Argument checks shared by the fast and the naive op
# --------------------------------------------------------------------------------------------

def check_conv_args(op, x, weight, bias, stride, padding, groups):
    """Validate shapes; returns ((sh, sw), (ph, pw), groups). Errors name ``op`` and both shapes."""
    check_ndim(x, 4, op, "input", "(N, C, H, W)")
    check_ndim(weight, 4, op, "weight", "(K, C/groups, kh, kw)")
    check_float(x, op)
    check_same_dtype(op, input=x, weight=weight, bias=bias)
    sh, sw = pair(stride, op, "stride")
    ph, pw = pair(padding, op, "padding")
    if sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(f"{op}: stride must be >= 1 and padding >= 0, got stride {(sh, sw)}, "
                         f"padding {(ph, pw)}")
    groups = int(groups)
    n, c, h, w = shape_of(x)
    k, cg, kh, kw = shape_of(weight)
    if groups < 1 or c % groups or k % groups:
        raise ValueError(f"{op}: groups={groups} must divide both the input channels and the "
                         f"kernels (input shape {(n, c, h, w)}, weight shape {(k, cg, kh, kw)})")
    if cg != c // groups:
        raise ValueError(f"{op}: weight expects {cg} channels per group but the input gives "
                         f"{c // groups} ({c} channels / groups={groups}) (input shape "
                         f"{(n, c, h, w)}, weight shape {(k, cg, kh, kw)})")
    if bias is not None and shape_of(bias) != (k,):
        raise ValueError(f"{op}: bias must have shape ({k},) for weight shape "
                         f"{(k, cg, kh, kw)}, got {shape_of(bias)}")
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(f"{op}: kernel {(kh, kw)} is larger than the padded input "
                         f"{(h + 2 * ph, w + 2 * pw)} (input shape {(n, c, h, w)}, weight shape "
                         f"{(k, cg, kh, kw)}, padding {(ph, pw)})")
    return (sh, sw), (ph, pw), groups


# --------------------------------------------------------------------------------------------
# The fast op
# --------------------------------------------------------------------------------------------

class Conv2d(Function):
    """y = conv(x, weight) + bias via im2col and one 2-D GEMM per group (see module docstring);
    with ``relu``, y = max(0, conv(x, weight) + bias) as one op (``conv2d_relu``)."""

    name = "conv2d"

    def __init__(self, stride, padding, groups, relu=False):
        self.stride, self.padding, self.groups, self.relu = stride, padding, groups, relu
        if relu:
            self.name = "conv2d_relu"

    def forward(self, x, weight, bias=None):
        self.has_bias = bias is not None
        xp = get_array_module(x)
        n, c, h, w = shape_of(x)
        k, cg, kh, kw = shape_of(weight)
        g_count, kg = self.groups, k // self.groups
        oh = output_size(h, kh, self.stride[0], self.padding[0])
        ow = output_size(w, kw, self.stride[1], self.padding[1])
        y = xp.empty((n, k, oh, ow), dtype=x.dtype)
        cols = []
        for g in range(g_count):
            col = im2col(x[:, g * cg:(g + 1) * cg], (kh, kw), self.stride, self.padding)
            wmat = weight[g * kg:(g + 1) * kg].reshape(kg, cg * kh * kw)
            yg = col @ wmat.T                                   # the GEMM: (N*OH*OW, K/groups)
            if bias is not None:
                yg += bias[g * kg:(g + 1) * kg]
            # rows are (n, oy, ox): one copy puts this group's kernels into NCHW
            y[:, g * kg:(g + 1) * kg] = yg.reshape(n, oh, ow, kg).transpose(0, 3, 1, 2)
            cols.append(col)
        if self.relu:
            xp.maximum(y, 0, out=y)                 # in place: no second activation-sized array
        self.save_for_backward(weight, y if self.relu else None, *cols)
        self.x_shape = (n, c, h, w)
        return y

    def backward(self, gy):
        need_gx = self.inputs is None or self.inputs[0].requires_grad
        xp = get_array_module(gy)
        weight, y, *cols = self.saved
        if self.relu:                                   # the ReLU's backward: dy where y > 0
            gy = xp.where(y > 0, gy, gy.dtype.type(0))
        n, c, h, w = self.x_shape
        k, cg, kh, kw = shape_of(weight)
        kg = k // self.groups
        gy2 = gy.transpose(0, 2, 3, 1).reshape(-1, k)          # (N*OH*OW, K), rows as in cols
        # An input that needs no gradient (AlexNet's conv1 reads the image) skips col2im, the
        # costliest step of the backward on the CPU.
        gx = xp.empty((n, c, h, w), dtype=gy.dtype) if need_gx else None
        gw = xp.empty_like(weight)
        for g, col in enumerate(cols):
            gyg = xp.ascontiguousarray(gy2[:, g * kg:(g + 1) * kg])
            wmat = weight[g * kg:(g + 1) * kg].reshape(kg, cg * kh * kw)
            # (col.T @ gyg).T, not gyg.T @ col: the same product, but OpenBLAS is up to 10x
            # slower on the second form when the shared dimension N*OH*OW is long.
            gw[g * kg:(g + 1) * kg] = (col.T @ gyg).T.reshape(kg, cg, kh, kw)
            if need_gx:
                gcols = (wmat.T @ gyg.T).T  # = gyg @ wmat, as the transposed view col2im wants
                gx[:, g * cg:(g + 1) * cg] = col2im(gcols, (n, cg, h, w), (kh, kw),
                                                    self.stride, self.padding)
        gb = gy.sum(axis=(0, 2, 3)) if self.has_bias else None
        return (gx, gw, gb) if self.has_bias else (gx, gw)

    def forward_gpu(self, x, weight, bias=None):
        """The GPU arrangement: transposed columns, recomputed in the backward pass."""
        self.has_bias = bias is not None
        y = conv_gpu.conv2d_forward(x, weight, bias, self.stride, self.padding, self.groups,
                                    self.relu)
        self.save_for_backward(x, weight, y if self.relu else None)   # y: the ReLU's mask
        return y

    def backward_gpu(self, gy):
        x, weight, y = self.saved
        need_gx = self.inputs is None or self.inputs[0].requires_grad
        gx, gw, gb = conv_gpu.conv2d_backward(x, weight, gy, self.stride, self.padding,
                                              self.groups, need_gx, self.has_bias, y)
        return (gx, gw, gb) if self.has_bias else (gx, gw)


def conv2d(x, weight, bias=None, stride=1, padding=0, groups=1):
    """2-D convolution of a batch (§3.5). x (N, C, H, W), weight (K, C/groups, kh, kw), bias (K,).

    Returns a Tensor (N, K, OH, OW) with OH = (H + 2*padding - kh) // stride + 1. Raises
    ValueError naming ``conv2d`` and the shapes when channels, groups or sizes do not fit.
    """
    stride, padding, groups = check_conv_args("conv2d", x, weight, bias, stride, padding, groups)
    op = Conv2d(stride, padding, groups)
    return op(x, weight) if bias is None else op(x, weight, bias)


def conv2d_relu(x, weight, bias=None, stride=1, padding=0, groups=1):
    """``relu(conv2d(x, weight, bias, ...))`` as one op: y = max(0, conv(x, weight) + bias).

    Every AlexNet convolution is followed by a ReLU (§3.1), so the fast one-device forward
    (models/fused.py) asks for both at once. The result and the gradients are exactly those of
    the two ops in a row (tested); what changes is the work. On a GPU the ReLU rides in the pass
    that already moves the GEMM's output into NCHW, and its backward (dy where y > 0) in the pass
    that moves dy back, so the activation is not read and written a second time each way. On the
    CPU the maximum is taken in place. The saved output y serves as the ReLU's mask.
    """
    stride, padding, groups = check_conv_args("conv2d_relu", x, weight, bias, stride, padding, groups)
    op = Conv2d(stride, padding, groups, relu=True)
    return op(x, weight) if bias is None else op(x, weight, bias)


# --------------------------------------------------------------------------------------------
# The naive op: loops that read like the formula (lessons, and the tests' oracle)
# --------------------------------------------------------------------------------------------

class Conv2dNaive(Function):
    """Convolution by explicit loops over (image, kernel, output row, output column)."""

    name = "conv2d_naive"

    def __init__(self, stride, padding, groups):
        self.stride, self.padding, self.groups = stride, padding, groups

    def _windows(self, xpad, k_count, kh, kw, oh, ow):
        """Yield (n, k, oy, ox, window slice) for every output value."""
        (sh, sw), cg = self.stride, xpad.shape[1] // self.groups
        kg = k_count // self.groups
        for n in range(xpad.shape[0]):
            for k in range(k_count):
                g = k // kg                                     # the group (column) of kernel k
                for oy in range(oh):
                    for ox in range(ow):
                        yield n, k, oy, ox, (n, slice(g * cg, (g + 1) * cg),
                                             slice(oy * sh, oy * sh + kh), slice(ox * sw, ox * sw + kw))

    def forward(self, x, weight, bias=None):
        xp = get_array_module(x)
        (ph, pw), (sh, sw) = self.padding, self.stride
        k_count, _, kh, kw = shape_of(weight)
        xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        oh, ow = output_size(xpad.shape[2], kh, sh, 0), output_size(xpad.shape[3], kw, sw, 0)
        y = xp.zeros((x.shape[0], k_count, oh, ow), dtype=x.dtype)
        for n, k, oy, ox, window in self._windows(xpad, k_count, kh, kw, oh, ow):
            y[n, k, oy, ox] = xp.sum(xpad[window] * weight[k])
            if bias is not None:
                y[n, k, oy, ox] += bias[k]
        self.save_for_backward(xpad, weight)
        self.has_bias = bias is not None
        return y

    def backward(self, gy):
        xp = get_array_module(gy)
        xpad, weight = self.saved
        (ph, pw) = self.padding
        k_count, _, kh, kw = shape_of(weight)
        gxpad = xp.zeros_like(xpad)
        gw = xp.zeros_like(weight)
        for n, k, oy, ox, window in self._windows(xpad, k_count, kh, kw, gy.shape[2], gy.shape[3]):
            gxpad[window] += gy[n, k, oy, ox] * weight[k]       # y used xpad[window] * w[k]
            gw[k] += gy[n, k, oy, ox] * xpad[window]
        gx = gxpad[:, :, ph:gxpad.shape[2] - ph, pw:gxpad.shape[3] - pw]
        gx = xp.ascontiguousarray(gx)
        if not self.has_bias:
            return gx, gw
        return gx, gw, gy.sum(axis=(0, 2, 3))


def conv2d_naive(x, weight, bias=None, stride=1, padding=0, groups=1):
    """``conv2d`` computed by loops (same arguments, same result, much slower)."""
    stride, padding, groups = check_conv_args("conv2d_naive", x, weight, bias, stride, padding, groups)
    op = Conv2dNaive(stride, padding, groups)
    return op(x, weight) if bias is None else op(x, weight, bias)
