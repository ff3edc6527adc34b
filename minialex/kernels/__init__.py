"""CUDA kernels for the GPU fast paths of ``minialex.functional`` (CuPy arrays only).

The sources sit beside this file, one per kind of op, each a twin of its NumPy code:

    conv.cu      im2col, col2im (gather, no atomics)            functional/conv.py
    pooling.cu   max_pool_forward (+ argmax), max_pool_backward  functional/pooling.py
    lrn.cu       lrn_forward, lrn_backward                       functional/normalization.py
    (inline)     relu_backward, an ElementwiseKernel             functional/activation.py

Kernels are templates on the element type, so float32 inputs are computed in float32 and float64
inputs in float64. Each source is compiled once per GPU with ``cupy.RawModule`` (NVRTC; CuPy also
caches the binary on disk) and the functions are kept in ``_functions``. Matrix products are not
here: conv2d and linear call CuPy's ``@`` (cuBLAS) on 2-D operands.

Nothing in this module runs without CuPy; it is imported only when an op sees a CuPy array.
"""

from __future__ import annotations

import os
from typing import Dict, Tuple

import numpy

from ..backend import cupy

KERNELS = {
    "conv.cu": ("im2col", "col2im"),
    "pooling.cu": ("max_pool_forward", "max_pool_backward"),
    "lrn.cu": ("lrn_forward", "lrn_backward"),
}
C_TYPES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}
THREADS = 256

_modules: Dict[Tuple[str, int], object] = {}
_functions: Dict[Tuple[str, str, int], object] = {}


def source(filename: str) -> str:
    """The CUDA source text of one kernel file (also what lessons print)."""
    with open(os.path.join(os.path.dirname(__file__), filename), encoding="utf-8") as f:
        return f.read()


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


def _ints(*values):
    return tuple(numpy.int32(v) for v in values)


def _check_int32(op: str, **counts) -> None:
    """The kernels index rows and (image, channel) planes with 32-bit ints."""
    for what, value in counts.items():
        if value >= 2 ** 31:
            raise ValueError(f"minialex.kernels.{op}: {what} = {value} does not fit the kernels' "
                             "32-bit indices; use a smaller batch")


_elementwise: Dict[str, object] = {}


def relu_backward(y, gy):
    """dx = dy where y > 0, else 0: one fused pass (CuPy caches it per dtype and device)."""
    kernel = _elementwise.get("relu_backward")
    if kernel is None:
        kernel = _elementwise["relu_backward"] = cupy.ElementwiseKernel(
            "T y, T gy", "T gx", "gx = y > (T)0 ? gy : (T)0", "minialex_relu_backward")
    return kernel(y, gy)


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
