"""Compiling minialex's CUDA sources once per GPU, and the launchers the ops call.

Each launcher allocates its outputs, checks the layouts and sizes, and starts one kernel of the
``.cu`` file named in ``KERNELS``. Kernels are templates on the element type, so float32 inputs
are computed in float32 and float64 inputs in float64. Each source is compiled once per GPU with
``cupy.RawModule`` (NVRTC; CuPy also caches the binary on disk) and the functions are kept in
``_functions``. Matrix products are not here: conv2d and linear call CuPy's ``@`` (cuBLAS) on
2-D operands. Nothing here runs without CuPy, except under ``host.emulate()``.
"""

from __future__ import annotations

import os
import re
from typing import Dict, Tuple

import numpy

from ..backend import cupy

KERNELS = {
    "conv.cu": ("im2col", "col2im", "im2col_t", "col2im_t"),
    "pooling.cu": ("max_pool_forward", "max_pool_backward"),
    "lrn.cu": ("lrn_forward", "lrn_backward"),
    "layout.cu": ("knp_to_nchw", "nchw_to_knp"),
    "elementwise.cu": ("relu_backward", "sgd_update"),
    "loss.cu": ("cross_entropy_forward", "cross_entropy_backward"),
}
C_TYPES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}
THREADS = 256
CE_THREADS = 256      # loss.cu's block size (its shared arrays are this long)

_modules: Dict[Tuple[str, int], object] = {}
_functions: Dict[Tuple[str, str, int], object] = {}


_INCLUDE = re.compile(r'^#include "([\w.]+)"[ \t]*$', re.MULTILINE)


def source(filename: str) -> str:
    """The CUDA source text of one kernel file (also what lessons print), with the headers it
    includes from this folder (``#include "windows.cuh"``) written in, so NVRTC and the host
    compiler get one self-contained text."""
    with open(os.path.join(os.path.dirname(__file__), filename), encoding="utf-8") as f:
        text = f.read()
    return _INCLUDE.sub(lambda m: source(m.group(1)), text)


def get_function(name: str, dtype):
    """The compiled kernel ``name<float>`` or ``name<double>`` on the current GPU (cached)."""
    dtype = numpy.dtype(dtype)
    if dtype not in C_TYPES:
        raise TypeError(f"minialex.kernels.{name}: no kernel for dtype {dtype} (float32 or float64)")
    device_id = cupy.cuda.Device().id
    key = (name, C_TYPES[dtype], device_id)
    fn = _functions.get(key)
    if fn is None:
        filename = next(f for f, names in KERNELS.items() if name in names)
        module = _modules.get((filename, device_id))
        if module is None:
            expressions = [f"{n}<{t}>" for n in KERNELS[filename] for t in C_TYPES.values()]
            module = cupy.RawModule(code=source(filename), options=("-std=c++14",),
                                    name_expressions=expressions)
            _modules[(filename, device_id)] = module
        fn = _functions[key] = module.get_function(f"{name}<{C_TYPES[dtype]}>")
    return fn


def launch(name: str, dtype, total: int, args) -> None:
    """Run kernel ``name`` with one thread per element of a ``total``-element grid-stride loop."""
    if total == 0:
        return
    blocks = min((total + THREADS - 1) // THREADS, 65535 * 8)
    get_function(name, dtype)((blocks,), (THREADS,), tuple(args))


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Positions a window of ``kernel`` visits along an axis of ``size`` (floor convention).

    OH = (H + 2*padding - kernel) // stride + 1. AlexNet's sizes: conv1 on 227 gives 55 (§3.5);
    pooling 3/2 then gives 55 -> 27 -> 13 -> 6 (§3.4). The one statement of this formula: the
    ops (``minialex.functional.utils.output_size``), the GPU conv and the models use it.
    """
    return (size + 2 * padding - kernel) // stride + 1


def _ints(*values):
    return tuple(numpy.int32(v) for v in values)


def _check_int32(op: str, **counts) -> None:
    """The kernels index rows and (image, channel) planes with 32-bit ints."""
    for what, value in counts.items():
        if value >= 2 ** 31:
            raise ValueError(f"minialex.kernels.{op}: {what} = {value} does not fit the kernels' "
                             "32-bit indices; use a smaller batch")


def relu_backward(y, gy):
    """dx = dy where y > 0, else 0: one pass; see elementwise.cu."""
    y, gy = cupy.ascontiguousarray(y), cupy.ascontiguousarray(gy)
    if y.shape != gy.shape or y.dtype != gy.dtype:
        raise ValueError(f"minialex.kernels.relu_backward: y {tuple(y.shape)} {y.dtype} and dy "
                         f"{tuple(gy.shape)} {gy.dtype} differ")
    gx = cupy.empty_like(y)
    launch("relu_backward", y.dtype, y.size, (y, gy, gx, numpy.int64(y.size)))
    return gx


# --------------------------------------------------------------------------------------------
# Launchers: allocate the outputs, check layouts, call the kernel
# --------------------------------------------------------------------------------------------

def im2col(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """(N, C, H, W) -> cols (N*OH*OW, C*kh*kw); see conv.cu."""
    x = cupy.ascontiguousarray(x)
    n, c, h, w = x.shape
    _check_int32("im2col", rows=n * oh * ow)
    cols = cupy.empty((n * oh * ow, c * kh * kw), dtype=x.dtype)
    launch("im2col", x.dtype, cols.size,
           (x, cols, numpy.int64(cols.size)) + _ints(c, h, w, kh, kw, sh, sw, ph, pw, oh, ow))
    return cols


def col2im(cols, n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    """cols (N*OH*OW, C*kh*kw) -> (N, C, H, W), summing overlaps; see conv.cu."""
    cols = cupy.ascontiguousarray(cols)
    _check_int32("col2im", rows=n * oh * ow, planes=n * c)
    x = cupy.empty((n, c, h, w), dtype=cols.dtype)
    launch("col2im", cols.dtype, x.size,
           (cols, x, numpy.int64(x.size)) + _ints(c, h, w, kh, kw, sh, sw, ph, pw, oh, ow))
    return x


def max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """(N, C, H, W) -> (y, argmax int32), both (N, C, OH, OW); see pooling.cu."""
    x = cupy.ascontiguousarray(x)
    n, c, h, w = x.shape
    _check_int32("max_pool_forward", planes=n * c)
    y = cupy.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = cupy.empty((n, c, oh, ow), dtype=numpy.int32)
    launch("max_pool_forward", x.dtype, y.size,
           (x, y, argmax, numpy.int64(y.size)) + _ints(h, w, kh, kw, sh, sw, ph, pw, oh, ow))
    return y, argmax


def max_pool_backward(gy, argmax, n, c, h, w, kh, kw, sh, sw, ph, pw):
    """dy (N, C, OH, OW) and argmax -> dx (N, C, H, W); see pooling.cu."""
    gy = cupy.ascontiguousarray(gy)
    oh, ow = gy.shape[2], gy.shape[3]
    gx = cupy.empty((n, c, h, w), dtype=gy.dtype)
    launch("max_pool_backward", gy.dtype, gx.size,
           (gy, cupy.ascontiguousarray(argmax), gx, numpy.int64(gx.size))
           + _ints(h, w, kh, kw, sh, sw, ph, pw, oh, ow))
    return gx


def lrn_forward(x, size, alpha, beta, k):
    """x (N, C, H, W) -> (y, scale), both (N, C, H, W); see lrn.cu."""
    x = cupy.ascontiguousarray(x)
    n, c, h, w = x.shape
    _check_int32("lrn_forward", planes=n * c)
    t = x.dtype.type
    y, scale = cupy.empty_like(x), cupy.empty_like(x)
    launch("lrn_forward", x.dtype, x.size,
           (x, y, scale, numpy.int64(x.size)) + _ints(c, h * w, size // 2) + (t(alpha), t(beta), t(k)))
    return y, scale


def lrn_backward(gy, x, y, scale, size, alpha, beta):
    """dy and the saved x, y, scale -> dx (N, C, H, W); see lrn.cu."""
    gy = cupy.ascontiguousarray(gy)
    n, c, h, w = x.shape
    t = x.dtype.type
    gx = cupy.empty_like(x)
    launch("lrn_backward", x.dtype, x.size,
           (gy, x, y, scale, gx, numpy.int64(x.size)) + _ints(c, h * w, size // 2)
           + (t(beta), t(2 * alpha * beta)))
    return gx


# --------------------------------------------------------------------------------------------
# The transposed column layout of the GPU conv2d (conv_gpu.py)
# --------------------------------------------------------------------------------------------

def im2col_t(x, c_offset, cg, kh, kw, sh, sw, ph, pw, oh, ow, rows=None):
    """Channels [c_offset, c_offset + cg) of x (N, C, H, W) -> colsT (cg*kh*kw, N*OH*OW),
    the transpose of ``im2col``'s matrix; see conv.cu. With ``rows`` > cg*kh*kw the matrix has
    that many rows, the extra ones zero (the GEMMs' padding, conv_gpu.py)."""
    x = cupy.ascontiguousarray(x)
    n, c_total, h, w = x.shape
    ckk, np_ = cg * kh * kw, n * oh * ow
    rows = ckk if rows is None else int(rows)
    if rows < ckk:
        raise ValueError(f"minialex.kernels.im2col_t: rows={rows} < {ckk} = channels*kh*kw")
    _check_int32("im2col_t", columns=np_, planes=n * c_total)
    cols = cupy.empty((rows, np_), dtype=x.dtype)
    cols[ckk:] = 0
    if cols.size == 0:
        return cols
    grid = (min((np_ + THREADS - 1) // THREADS, 4096), min(ckk, 65535))
    get_function("im2col_t", x.dtype)(grid, (THREADS,), (x, cols) + _ints(
        c_total, c_offset, ckk, np_, h, w, kh, kw, sh, sw, ph, pw, oh, ow))
    return cols


def col2im_t(cols, out, c_offset, cg, kh, kw, sh, sw, ph, pw, oh, ow):
    """colsT (cg*kh*kw, N*OH*OW) -> channels [c_offset, c_offset + cg) of ``out`` (N, C, H, W),
    summing overlaps; the adjoint of ``im2col_t``; see conv.cu."""
    cols = cupy.ascontiguousarray(cols)
    n, c_total, h, w = out.shape
    np_ = n * oh * ow
    if tuple(cols.shape) != (cg * kh * kw, np_) or not out.flags.c_contiguous:
        raise ValueError(f"minialex.kernels.col2im_t: colsT {tuple(cols.shape)} does not fit "
                         f"output {tuple(out.shape)} (need ({cg * kh * kw}, {np_}), C-contiguous)")
    _check_int32("col2im_t", columns=np_, planes=n * c_total)
    total = n * cg * h * w
    launch("col2im_t", cols.dtype, total, (cols, out, numpy.int64(total)) + _ints(
        c_total, c_offset, cg, np_, h, w, kh, kw, sh, sw, ph, pw, oh, ow))
    return out


def knp_to_nchw(src, bias, n, k, p, relu=False):
    """(K, N*P) -> (N, K, P) with bias[k] added, then max(0, .) if ``relu``: the GEMM's
    kernel-major rows back to NCHW, the conv's bias and ReLU in the same pass; see layout.cu."""
    src = cupy.ascontiguousarray(src)
    if tuple(src.shape) != (k, n * p) or tuple(bias.shape) != (k,):
        raise ValueError(f"minialex.kernels.knp_to_nchw: src {tuple(src.shape)} and bias "
                         f"{tuple(bias.shape)} do not fit (N, K, P) = {(n, k, p)}")
    _check_int32("knp_to_nchw", elements=n * k * p)
    y = cupy.empty((n, k, p), dtype=src.dtype)
    launch("knp_to_nchw", src.dtype, y.size, (src, cupy.ascontiguousarray(bias), y,
                                              numpy.int64(y.size)) + _ints(k, p, bool(relu)))
    return y


def nchw_to_knp(src, relu_output=None):
    """(N, K, P) -> (K, N*P): a gradient in NCHW to the kernel-major rows the GEMMs use. With
    ``relu_output`` (the layer's output y, (N, K, P)) entries where y <= 0 become 0: the ReLU's
    backward in the same pass; see layout.cu."""
    src = cupy.ascontiguousarray(src)
    n, k, p = src.shape
    mask = src
    if relu_output is not None:
        if tuple(relu_output.shape) != (n, k, p):
            raise ValueError(f"minialex.kernels.nchw_to_knp: relu_output {tuple(relu_output.shape)} "
                             f"does not fit the gradient {(n, k, p)}")
        mask = cupy.ascontiguousarray(relu_output)
    _check_int32("nchw_to_knp", elements=n * k * p)
    dst = cupy.empty((k, n * p), dtype=src.dtype)
    launch("nchw_to_knp", src.dtype, dst.size, (src, mask, dst, numpy.int64(dst.size))
           + _ints(k, p, relu_output is not None))
    return dst


def sgd_update(w, v, g, lr, momentum, decay):
    """In place, one pass: v <- momentum*v - decay*lr*w - lr*g ; w <- w + v  (paper §5);
    see elementwise.cu."""
    if not (w.flags.c_contiguous and v.flags.c_contiguous) or w.shape != v.shape:
        raise ValueError(f"minialex.kernels.sgd_update: weight {tuple(w.shape)} and momentum "
                         f"{tuple(v.shape)} must be C-contiguous arrays of one shape")
    if g.shape != w.shape or g.dtype != w.dtype or v.dtype != w.dtype:
        raise ValueError(f"minialex.kernels.sgd_update: gradient {tuple(g.shape)} {g.dtype} does "
                         f"not fit weight {tuple(w.shape)} {w.dtype} (momentum {v.dtype})")
    t = w.dtype.type
    launch("sgd_update", w.dtype, w.size, (w, v, cupy.ascontiguousarray(g), numpy.int64(w.size),
                                           t(lr), t(momentum), t(decay * lr)))


def cross_entropy_forward(x, labels):
    """logits x (N, C) and labels (N,) in [0, C) -> (loss_n, lse_n), both (N,): each row's
    -log softmax(x_n)[label_n] and its log-sum-exp; see loss.cu. Labels are not range-checked
    here (functional/loss.py does that); they are used as int32."""
    x = cupy.ascontiguousarray(x)
    n, c = x.shape
    if tuple(labels.shape) != (n,) or c == 0:
        raise ValueError(f"minialex.kernels.cross_entropy_forward: labels {tuple(labels.shape)} "
                         f"do not fit logits {(n, c)} (need ({n},) and at least one class)")
    _check_int32("cross_entropy_forward", rows=n, elements=n * c)
    labels = cupy.ascontiguousarray(labels, dtype=numpy.int32)
    loss, lse = cupy.empty((n,), dtype=x.dtype), cupy.empty((n,), dtype=x.dtype)
    if n:
        get_function("cross_entropy_forward", x.dtype)(
            (min(n, 65535),), (CE_THREADS,), (x, labels, loss, lse) + _ints(n, c))
    return loss, lse


def cross_entropy_backward(x, labels, lse, dloss):
    """dx (N, C) = (softmax(x) - onehot(labels)) * dloss / N from the saved logits, labels and
    lse (N,); ``dloss`` is the 0-d upstream gradient, left on the GPU; see loss.cu."""
    x = cupy.ascontiguousarray(x)
    n, c = x.shape
    labels = cupy.ascontiguousarray(labels, dtype=numpy.int32)
    dloss = cupy.ascontiguousarray(dloss, dtype=x.dtype).reshape(())
    dx = cupy.empty_like(x)
    launch("cross_entropy_backward", x.dtype, dx.size,
           (x, labels, cupy.ascontiguousarray(lse), dloss, dx, numpy.int64(dx.size))
           + _ints(c) + (x.dtype.type(1.0 / max(n, 1)),))
    return dx
