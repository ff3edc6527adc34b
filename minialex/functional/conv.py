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
entries that copied it. On the CPU the batch goes through a few images at a time (``CHUNK_BYTES``
of columns), so that the columns, the GEMMs' outputs and the move to NCHW (with the bias and the
ReLU) stay in the cache; the backward unfolds each chunk again instead of keeping all columns,
and writes dcols over them. Chunks go to the threads (``in_parallel``) when the conv is large
enough (``SPLIT_MACS``); a GEMM with few kernels takes its columns in blocks (``GEMM_BLOCK``).
Wide 3x3 convolutions (the paper's conv3-conv5) take Winograd's F(2x2, 3x3) instead, with 4/9
of the multiply-adds (``winograd.py``, ``WINOGRAD``).
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
from ..autograd import Function
from ..backend import get_array_module, is_cupy_array
from ..cpu import batch_parts, equal_slices, in_parallel
from ..kernels import conv_gpu
from . import winograd
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

#: The CPU conv works through the batch a few images at a time, so that each chunk's unfolded
#: columns (about this many bytes) stay in the cache while the GEMMs and the layout change read them.
CHUNK_BYTES = 4 << 20

#: A convolution whose columns fit one chunk is shared among the threads only when its GEMMs
#: have at least this many multiply-adds (N*OH*OW*weight.size, about 0.2 ms on one core). Waking
#: a thread and passing the GIL back and forth cost tens of microseconds each here, so tiny's
#: conv2-conv5 (1-4 million) ran slower on two threads than on one, and the tiny step took 18%
#: less time once they stopped splitting. No conv of mini, fashion or paper at their batches
#: (64 and up; paper 16) is under the line.
SPLIT_MACS = 8 << 20

#: The CPU computes 3x3 stride-1 convolutions by Winograd's F(2x2, 3x3) (winograd.py) when each
#: group has at least WINOGRAD_MIN_CHANNELS input and output channels, the output maps are at
#: least WINOGRAD_MIN_SIZE on a side and the batch makes WINOGRAD_MIN_TILES 2x2 output tiles:
#: the paper's conv3-conv5 (13x13 maps: 49 tiles an image, 192-384 channels a group) took 73,
#: 68 and 53 ms instead of 103, 88 and 62 (forward + backward in the training step, batch 16,
#: 2 threads). Its transforms are passes over memory that only many channels repay: mini's
#: conv3 (64 in, 96 out, 5x5 maps) took 17 ms instead of 10, and with those channels even
#: 11x11 maps were slower. Its 16 GEMMs need enough tiles: the paper's conv3 forward at batch 8
#: took as long as im2col's, at batch 2 1.5 times as long.
WINOGRAD, WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_SIZE, WINOGRAD_MIN_TILES = True, 128, 6, 384
#: Winograd takes the batch a few images at a time, at most about this many tiles each, so that
#: its arrays stay nearer the cores: the paper's step at batch 128 took 0.91 of im2col's time so
#: (0.96 with the whole batch at once), and 0.34 GB more memory at its peak instead of 0.67.
WINOGRAD_TILES = 2048

#: OpenBLAS packs a GEMM's whole columns operand before it multiplies. With few kernels per
#: group (tiny's 3-6) the product itself is so short that this packing, which outgrows the L2
#: cache, is most of the time, so such GEMMs take GEMM_BLOCK columns at a time: tiny's conv1
#: (6 kernels, 7,200 columns a chunk) then took 0.08 ms instead of 0.14 forward and 0.09 instead
#: of 0.21 for the weights' gradient (one core). From BLOCKED_BELOW kernels (mini's 24 and up,
#: the paper's) blocks were no faster and are not used.
GEMM_BLOCK, BLOCKED_BELOW = 2048, 16


def winograd_tiles(out_hw):
    """2x2 output tiles per image: ceil(OH / 2) * ceil(OW / 2)."""
    return ((out_hw[0] + 1) // 2) * ((out_hw[1] + 1) // 2)


def winograd_batch(kernel_hw, stride, kernels, channels, out_hw):
    """The smallest batch from which a conv (``kernels`` and ``channels`` per group, output
    maps ``out_hw``) takes winograd.py on the CPU, or None if it never does (``WINOGRAD``)."""
    if not (WINOGRAD and tuple(kernel_hw) == (3, 3) and tuple(stride) == (1, 1)
            and min(kernels, channels) >= WINOGRAD_MIN_CHANNELS and min(out_hw) >= WINOGRAD_MIN_SIZE):
        return None
    return -(-WINOGRAD_MIN_TILES // winograd_tiles(out_hw))


def column_blocks(kernels, width):
    """The slices of a GEMM's ``width`` columns that one call takes (see ``GEMM_BLOCK``)."""
    step = GEMM_BLOCK if kernels < BLOCKED_BELOW else width
    return [slice(start, start + step) for start in range(0, width, step)]


class Conv2d(Function):
    """y = conv(x, weight) + bias via unfold and one 2-D GEMM per group (see module docstring);
    with ``relu``, y = max(0, conv(x, weight) + bias) as one op (``conv2d_relu``)."""

    name = "conv2d"

    def __init__(self, stride, padding, groups, relu=False):
        self.stride, self.padding, self.groups, self.relu = stride, padding, groups, relu
        if relu:
            self.name = "conv2d_relu"

    def forward(self, x, weight, bias=None):
        self.has_bias = bias is not None
        self.winograd = None
        n, k = x.shape[0], weight.shape[0]
        y = numpy.empty((n, k) + self.out_hw(x, weight), dtype=x.dtype)
        if self.takes_winograd(x, weight):          # a few images at a time (WINOGRAD_TILES)
            u = winograd.kernels(weight)
            self.winograd = u, [(part, winograd.forward(x[part], u, bias, self.padding[0],
                                                        self.groups, self.relu, y[part]))
                                for part in self.winograd_parts(x, weight)]
            self.save_for_backward(x, weight, y if self.relu else None)
            return y

        def chunk(part):
            out = numpy.empty((k, (part.stop - part.start) * y[0, 0].size), dtype=x.dtype)
            for g, cols, wmat in self.groups_of(x[part], weight):
                kg = wmat.shape[0]
                for b in column_blocks(kg, cols.shape[1]):                     # the GEMM
                    numpy.matmul(wmat, cols[:, b], out=out[g * kg:(g + 1) * kg, b])
            # the GEMM's rows to NCHW, with the bias and the ReLU, while the chunk is in cache
            out = self.as_nchw(out, y[part].shape)
            if bias is None:
                numpy.copyto(y[part], out)
            else:
                numpy.add(out, bias[:, None, None], out=y[part])
            if self.relu:
                numpy.maximum(y[part], 0, out=y[part])

        in_parallel(chunk, self.chunks(x, weight))
        self.save_for_backward(x, weight, y if self.relu else None)     # y: the ReLU's mask
        return y

    def backward(self, gy):
        x, weight, y = self.saved
        need_gx = self.inputs is None or self.inputs[0].requires_grad
        if self.winograd is not None:
            u, parts = self.winograd
            gx = numpy.empty_like(x) if need_gx else None
            du = gb = None
            for part, v in parts:                   # in the batch's order: deterministic sums
                du_part, gb_part = winograd.backward(
                    gy[part], x[part], u, None if y is None else y[part], v, self.padding[0],
                    self.groups, None if gx is None else gx[part])
                du, gb = (du_part, gb_part) if du is None else (du + du_part, gb + gb_part)
            gw = winograd.kernel_gradient(du)
            return (gx, gw, gb) if self.has_bias else (gx, gw)
        k = gy.shape[1]
        gx = numpy.empty_like(x) if need_gx else None

        def chunk(part):
            """(dW, db) of the images in ``part``; their dx goes straight into gx."""
            g_part = gy[part]
            g_rows = numpy.empty((k, g_part.size // k), dtype=gy.dtype)    # the GEMM's layout
            into_rows = self.as_nchw(g_rows, g_part.shape)
            if self.relu:                   # the ReLU's backward (dy where y > 0) on the way
                relu_backward(y[part], g_part, out=into_rows)
            else:
                numpy.copyto(into_rows, g_part)
            gw = numpy.empty_like(weight)
            for g, cols, wmat in self.groups_of(x[part], weight):      # columns unfolded again
                kg, cg = wmat.shape[0], weight.shape[1]
                g_group = g_rows[g * kg:(g + 1) * kg]
                blocks = column_blocks(kg, cols.shape[1])
                # (cols @ g.T).T rather than g @ cols.T: the same product, faster in OpenBLAS
                gw_t = cols[:, blocks[0]] @ g_group[:, blocks[0]].T
                for b in blocks[1:]:
                    gw_t += cols[:, b] @ g_group[:, b].T
                gw[g * kg:(g + 1) * kg] = gw_t.T.reshape(kg, *weight.shape[1:])
                # An input that needs no gradient (AlexNet's conv1 reads the image) skips fold.
                if need_gx:         # dcols = W.T @ g, into the columns' memory (still in cache)
                    for b in blocks:
                        numpy.matmul(wmat.T, g_group[:, b], out=cols[:, b])
                    gx[part, g * cg:(g + 1) * cg] = fold(cols, x[part, :cg].shape,
                                                         weight.shape[2:], self.stride,
                                                         self.padding, self.batch_last)
            return gw, g_rows.sum(axis=1)

        parts = in_parallel(chunk, self.chunks(x, weight))
        gw, gb = parts[0]
        for part_gw, part_gb in parts[1:]:       # in the batch's order: deterministic sums
            gw += part_gw
            gb += part_gb
        return (gx, gw, gb) if self.has_bias else (gx, gw)

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

    def takes_winograd(self, x, weight):
        """3x3 kernels at stride 1, wide enough for winograd.py to pay (``WINOGRAD``)."""
        batch = winograd_batch(weight.shape[2:], self.stride, weight.shape[0] // self.groups,
                               weight.shape[1], self.out_hw(x, weight))
        return self.padding[0] == self.padding[1] and batch is not None and x.shape[0] >= batch

    def winograd_parts(self, x, weight):
        """Equal slices of the batch with at most about WINOGRAD_TILES 2x2 output tiles each."""
        n, tiles = x.shape[0], winograd_tiles(self.out_hw(x, weight))
        return equal_slices(n, min(n, -(-n * tiles // WINOGRAD_TILES)))

    def out_hw(self, x, weight):
        return tuple(output_size(x.shape[2 + a], weight.shape[2 + a], self.stride[a], self.padding[a])
                     for a in (0, 1))

    def chunks(self, x, weight):
        """Slices of the batch whose unfolded columns take about ``CHUNK_BYTES`` each; a small
        conv (under ``SPLIT_MACS``) is one slice."""
        oh, ow = self.out_hw(x, weight)
        return batch_parts(x.shape[0], weight[0].size * oh * ow * x.itemsize, CHUNK_BYTES,
                           small=x.shape[0] * oh * ow * weight.size < SPLIT_MACS)

    def groups_of(self, x, weight):
        """(g, group g's columns (C/groups*kh*kw, images*OH*OW), its kernels (K/groups, C/groups*kh*kw))."""
        cg, kg = weight.shape[1], weight.shape[0] // self.groups
        for g in range(self.groups):
            cols = unfold(x[:, g * cg:(g + 1) * cg], weight.shape[2:], self.stride, self.padding,
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
