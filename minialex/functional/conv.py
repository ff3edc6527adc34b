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
``unfold`` copies every kh x kw x C/groups receptive field into one column of a matrix, with the
batch folded into the columns: cols has shape (C/groups*kh*kw, N*OH*OW) (``im2col`` is its
transpose, the textbook layout). Then, per group,

    Y = W @ cols                (K/groups, N*OH*OW)       W = weight reshaped (K/groups, -1)
    dW = dY @ cols.T            dcols = W.T @ dY          dx = fold(dcols)

``fold`` (col2im) is the adjoint of ``unfold``: every input pixel receives the sum of the column
entries that copied it. ``Conv2d.forward_images`` and ``backward_images`` are these lines for
a few images at a time. How the CPU runs them fast is ``conv_cpu.py``'s business, as the GPU's is
``kernels/conv_gpu.py``'s: the batch in chunks small enough for the cache, shared among the
threads; a GEMM with few kernels in blocks of columns; and, for wide 3x3 and 5x5 convolutions
(the paper's conv2-conv5), Winograd's minimal filtering with 25/81 and 49/225 of the multiply-adds
(``winograd.py``).
On a GPU (``forward_gpu``/``backward_gpu``) the same arrangement runs on the whole batch in
``minialex/kernels/conv_gpu.py``: coalesced CUDA kernels and 2-D cuBLAS GEMMs, where TF32
applies (docs/performance.md), columns recomputed in the backward pass.

The naive path (``conv2d_naive``)
---------------------------------
Loops over images, kernels and output positions, one dot product each; its backward loops the
same way. Slow, but a student can check it against the formula above, and the tests use it as
the oracle for the fast path.
"""

from __future__ import annotations

import numpy

from .. import kernels
from ..autograd import Function, is_grad_enabled
from ..backend import get_array_module, is_cupy_array
from ..cpu import in_parallel
from ..kernels import conv_gpu
from . import conv_cpu
from .activation import relu_backward
from .unfold import _geometry, fold, unfold
from .utils import check_float, check_ndim, check_same_dtype, output_size, pair, shape_of


# --------------------------------------------------------------------------------------------
# im2col / col2im (the textbook layout; the ops compute in unfold's, see unfold.py)
# --------------------------------------------------------------------------------------------

def im2col(x, kernel_size, stride=1, padding=0):
    """Receptive fields as rows: (N, C, H, W) -> (N*OH*OW, C*kh*kw), the transpose of ``unfold``.

    Row ``(n*OH + oy)*OW + ox`` holds ``xpad[n, :, oy*sh : oy*sh+kh, ox*sw : ox*sw+kw]`` flattened
    in (c, i, j) order, the order of ``weight.reshape(K, -1)``. Zero padding is applied first.
    Works on NumPy and CuPy (a CUDA kernel).
    """
    check_ndim(x, 4, "im2col", "x", "(N, C, H, W)")
    if is_cupy_array(x):
        _, geometry, (oh, ow) = _geometry("im2col", x.shape, kernel_size, stride, padding)
        return kernels.im2col(x, *geometry, oh, ow)
    return numpy.ascontiguousarray(unfold(x, kernel_size, stride, padding).T)


def col2im(cols, x_shape, kernel_size, stride=1, padding=0):
    """The adjoint of ``im2col``: (N*OH*OW, C*kh*kw) -> (N, C, H, W), summing overlaps.

    NumPy: ``fold`` of the transposed columns. CuPy: a gather kernel, one thread per input pixel,
    no atomics, so the result is deterministic.
    """
    (n, c, h, w), geometry, (oh, ow) = _geometry("col2im", x_shape, kernel_size, stride, padding)
    if tuple(cols.shape) != (n * oh * ow, c * geometry[0] * geometry[1]):
        raise ValueError(f"col2im: cols has shape {shape_of(cols)} but input shape {(n, c, h, w)} "
                         f"with kernel {geometry[:2]} needs {(n * oh * ow, c * geometry[0] * geometry[1])}")
    if is_cupy_array(cols):
        return kernels.col2im(cols, n, c, h, w, *geometry, oh, ow)
    return numpy.ascontiguousarray(fold(cols.T, x_shape, kernel_size, stride, padding))


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
    """y = conv(x, weight) + bias via unfold and one 2-D GEMM per group (see module docstring);
    with ``relu``, y = max(0, conv(x, weight) + bias) as one op (``conv2d_relu``).

    ``forward_images`` and ``backward_images`` are the algorithm, for a few images at a time;
    ``conv_cpu`` decides how many images, on which thread, and when Winograd's minimal filtering
    takes the place of the GEMMs (the paper's conv2-conv5)."""

    name = "conv2d"

    def __init__(self, stride, padding, groups, relu=False):
        self.stride, self.padding, self.groups, self.relu = stride, padding, groups, relu
        self.columns = None                 # the forward's columns, where it keeps them
        if relu:
            self.name = "conv2d_relu"

    def forward(self, x, weight, bias=None):
        self.has_bias, self.winograd = bias is not None, None
        out_hw = self.out_hw(x, weight)
        y = numpy.empty((x.shape[0], weight.shape[0]) + out_hw, dtype=x.dtype)
        if conv_cpu.takes_winograd(x.shape, weight.shape, self.stride, self.padding, self.groups,
                                   out_hw):
            self.winograd = conv_cpu.winograd_forward(x, weight, bias, self.padding[0],
                                                      self.groups, self.relu, y)
        else:       # im2col + GEMM, a few images at a time, the chunks shared among the threads
            keep = self.backward_follows() and conv_cpu.keeps_columns(x.shape, weight.shape,
                                                                      out_hw, x.itemsize)
            columns = in_parallel(lambda part: self.forward_images(x[part], weight, bias, y[part],
                                                                   keep),
                                  conv_cpu.chunks(x.shape, weight.shape, out_hw, x.itemsize))
            self.columns = columns if keep else None    # each chunk's, for the backward
        self.save_for_backward(x, weight, y if self.relu else None)     # y: the ReLU's mask
        return y

    def forward_images(self, x, weight, bias, y, keep=False):
        """y = W @ unfold(x) + bias (then max(0, y)) for a few images: x (n, C, H, W) into y
        (n, K, OH, OW), one GEMM per group. Returns each group's columns if ``keep``, else None
        (so that each chunk's columns are freed, and their memory reused, before the next)."""
        k = weight.shape[0]
        rows = numpy.empty((k, y[0, 0].size * y.shape[0]), dtype=x.dtype)   # (K, OH*OW*n)
        columns = []
        for g, cols, wmat in self.groups_of(x, weight):
            group = slice(g * len(wmat), (g + 1) * len(wmat))               # its kernels' rows
            conv_cpu.matmul(wmat, cols, rows[group], len(wmat))             # Y = W @ cols
            if keep:
                columns.append(cols)
        # the GEMM's rows to NCHW, with the bias and the ReLU, while they are in the cache
        if bias is None:
            numpy.copyto(y, self.as_nchw(rows, y.shape))
        else:
            numpy.add(self.as_nchw(rows, y.shape), bias[:, None, None], out=y)
        if self.relu:
            numpy.maximum(y, 0, out=y)
        return columns if keep else None

    def backward_follows(self):
        """Whether a backward pass will come (a graph is being built): only then keep columns."""
        inputs = getattr(self, "inputs", None) or ()
        return is_grad_enabled() and any(t.requires_grad for t in inputs)

    def backward(self, gy):
        x, weight, y = self.saved
        need_gx = self.inputs is None or self.inputs[0].requires_grad
        gx = numpy.empty_like(x) if need_gx else None
        if self.winograd is not None:
            gw, gb = conv_cpu.winograd_backward(self.winograd, gy, x, y, self.padding[0],
                                                self.groups, gx)
        else:       # each chunk's (dW, db), summed in the batch's order: the same bits always
            parts = conv_cpu.chunks(x.shape, weight.shape, gy.shape[2:], x.itemsize)
            columns, self.columns = self.columns or [None] * len(parts), None
            gw, gb = conv_cpu.summed(in_parallel(
                lambda i: self.backward_images(gy[parts[i]], x[parts[i]], weight,
                                               None if y is None else y[parts[i]],
                                               None if gx is None else gx[parts[i]], columns[i]),
                range(len(parts))))
        return (gx, gw, gb) if self.has_bias else (gx, gw)

    def backward_images(self, gy, x, weight, y, gx, columns=None):
        """(dW, db) of a few images; their dx = fold(W.T @ dY) into ``gx`` unless it is None.

        Per group: dW = dY @ cols.T, dcols = W.T @ dY, with the forward's ``columns`` of these
        images (small convs, ``conv_cpu.keeps_columns``) or the columns unfolded again, and dcols
        written over them."""
        k, cg = weight.shape[0], weight.shape[1]
        dy_rows = numpy.empty((k, gy.size // k), dtype=gy.dtype)         # dY in the GEMM's layout
        if self.relu:                       # the ReLU's backward (dy where y > 0) on the way
            relu_backward(y, gy, out=self.as_nchw(dy_rows, gy.shape))
        else:
            numpy.copyto(self.as_nchw(dy_rows, gy.shape), gy)
        gw = numpy.empty_like(weight)
        for g, cols, wmat in self.groups_of(x, weight, columns):
            group = slice(g * len(wmat), (g + 1) * len(wmat))               # its kernels' rows
            dw = conv_cpu.matmul_bt(dy_rows[group], cols)                   # dY @ cols.T
            gw[group] = dw.reshape(weight[group].shape)
            if gx is not None:   # an input that needs no gradient (conv1 reads the image) skips it
                dcols = conv_cpu.matmul(wmat.T, dy_rows[group], cols, len(wmat))      # W.T @ dY
                gx[:, g * cg:(g + 1) * cg] = fold(dcols, x[:, :cg].shape, weight.shape[2:],
                                                  self.stride, self.padding, self.batch_last)
        return gw, dy_rows.sum(axis=1)

    #: The columns' order (see ``unfold``): batch last, at every stride. With stride 1 unfold's
    #: copies and fold's adds run over OW*N contiguous values instead of OW; at conv1's stride
    #: (2 in mini and tiny) the copies still write N contiguous values, and conv1's forward and
    #: backward took 19.5 ms instead of 23.3 (mini) and 4.3 instead of 5.1 (tiny), the same at
    #: the paper's stride 4 (2 threads, batch 128; 16 for paper).
    batch_last = True

    def as_nchw(self, rows, shape):
        """The GEMM's (K, OH*OW*images) rows, batch last, as an (images, K, OH, OW) view."""
        n, k, oh, ow = shape
        return rows.reshape(k, oh, ow, n).transpose(3, 0, 1, 2)

    def out_hw(self, x, weight):
        return tuple(output_size(x.shape[2 + a], weight.shape[2 + a], self.stride[a], self.padding[a])
                     for a in (0, 1))

    def groups_of(self, x, weight, columns=None):
        """(g, group g's columns (C/groups*kh*kw, images*OH*OW), its kernels (K/groups, C/groups*kh*kw)):
        the columns unfolded from ``x``, or taken from ``columns`` (the forward's) when given."""
        cg, kg = weight.shape[1], weight.shape[0] // self.groups
        for g in range(self.groups):
            cols = columns[g] if columns is not None else unfold(
                x[:, g * cg:(g + 1) * cg], weight.shape[2:], self.stride, self.padding,
                self.batch_last)
            yield g, cols, weight[g * kg:(g + 1) * kg].reshape(kg, -1)

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
