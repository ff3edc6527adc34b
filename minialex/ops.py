"""The basic differentiable ops: arithmetic, matmul, shape changes, reductions, exp/log,
concat/split, indexing, dtype casts.

Each op is a ``Function`` subclass (forward and backward on raw arrays; see autograd.py) plus a
lowercase wrapper that users call. ``Tensor``'s operators (``a + b``, ``a @ b``, ``a[i]``,
``a.sum()``) call these wrappers. The docstrings give y = f(x) and dL/dx in terms of gy = dL/dy.

Broadcasting: NumPy broadcasts the inputs of a binary op; the backward undoes it with ``sum_to``,
summing the gradient over every axis along which an input was stretched.
"""

from __future__ import annotations

import builtins
from typing import Sequence, Tuple

import numpy

from .autograd import Function, Tensor, _as_array
from .backend import as_numpy, cupy, get_array_module


def _contiguous(a):
    """``a`` in C order, copied only if it is not. (``xp.ascontiguousarray`` would turn a 0-d
    array into shape (1,), which breaks ops on scalars such as ``x.sum()[()]``.)"""
    return get_array_module(a).asarray(a, order="C")


def sum_to(g, shape):
    """Sum ``g`` down to ``shape`` (undo NumPy broadcasting in a backward pass)."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    xp = get_array_module(g)
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape) if s == 1 and g.shape[i + lead] != 1)
    out = g.sum(axis=axes, keepdims=True)
    if lead:
        out = out.reshape(out.shape[lead:])
    return _contiguous(out.reshape(shape))


def _unbroadcast(g, like):
    """The part of gradient ``g`` that belongs to input ``like``: summed over the axes NumPy
    broadcast ``like`` along, and in ``like``'s dtype (an input mixed with a float64 constant
    gets a float32 gradient if it is float32)."""
    return _as_array(sum_to(g, like.shape).astype(like.dtype, copy=False))


class Add(Function):
    """y = a + b (NumPy broadcasting); dL/da = sum_to(gy), dL/db = sum_to(gy)."""

    def forward(self, a, b):
        self.save_for_backward(_Like(a), _Like(b))
        return a + b

    def backward(self, gy):
        a, b = self.saved
        return _unbroadcast(gy, a), _unbroadcast(gy, b)


class Sub(Function):
    """y = a - b; dL/da = sum_to(gy), dL/db = -sum_to(gy)."""

    def forward(self, a, b):
        self.save_for_backward(_Like(a), _Like(b))
        return a - b

    def backward(self, gy):
        a, b = self.saved
        return _unbroadcast(gy, a), _unbroadcast(-gy, b)


class Mul(Function):
    """y = a * b; dL/da = sum_to(gy * b), dL/db = sum_to(gy * a)."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, gy):
        a, b = self.saved
        return _unbroadcast(gy * b, a), _unbroadcast(gy * a, b)


class Div(Function):
    """y = a / b; dL/da = gy / b, dL/db = -gy * a / b**2 (each summed to its input's shape)."""

    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, gy):
        a, b = self.saved
        ga = gy / b
        gb = -gy * a / (b * b)
        return _unbroadcast(ga, a), _unbroadcast(gb, b)


class _Like:
    """Shape and dtype of an array, without keeping the array (Add and Sub need no values)."""

    def __init__(self, a):
        self.shape, self.dtype = tuple(a.shape), a.dtype


class Neg(Function):
    """y = -x; dL/dx = -gy."""

    def forward(self, a):
        return -a

    def backward(self, gy):
        return -gy


class Pow(Function):
    """y = x ** p for a constant number p; dL/dx = gy * p * x ** (p - 1)."""

    def __init__(self, exponent):
        if isinstance(exponent, Tensor) or not numpy.isscalar(exponent):
            raise TypeError(f"pow: the exponent must be a number, got {type(exponent).__name__} "
                            "(for x ** y with a tensor y use exp(y * log(x)))")
        self.exponent = exponent

    def forward(self, x):
        self.save_for_backward(x)
        return x ** self.exponent

    def backward(self, gy):
        (x,) = self.saved
        p = self.exponent
        if p == 0:  # y = 1: x ** -1 would give inf * 0 = nan at x = 0
            return gy * 0
        return _as_array((gy * p * x ** (p - 1)).astype(x.dtype, copy=False))


class MatMul(Function):
    """y = a @ b with a (..., n, k), b (..., k, m), y (..., n, m); the leading (batch) axes
    broadcast. dL/da = gy @ b^T, dL/db = a^T @ gy (^T swaps the last two axes), each summed
    over the batch axes it was broadcast along. 1-D operands are not supported (reshape first).
    """

    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not fit "
                             "(need (..., n, k) @ (..., k, m))")
        try:
            numpy.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch axes of {tuple(a.shape)} and {tuple(b.shape)} do "
                             "not broadcast") from None
        self.save_for_backward(a, b)
        return a @ b

    def backward(self, gy):
        a, b = self.saved
        xp = get_array_module(gy)
        ga = gy @ xp.swapaxes(b, -1, -2)
        gb = xp.swapaxes(a, -1, -2) @ gy
        return _unbroadcast(ga, a), _unbroadcast(gb, b)


class Reshape(Function):
    """y = x viewed with another shape (same elements, C order); dL/dx = gy reshaped back."""

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Transpose(Function):
    """y = x with its axes permuted (reversed when no axes are given); y.shape[i] is
    x.shape[axes[i]]. dL/dx = gy permuted by the inverse permutation argsort(axes)."""

    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        xp = get_array_module(x)
        if not self.axes:
            self.axes = tuple(reversed(range(x.ndim)))
        if sorted(a % builtins.max(x.ndim, 1) for a in self.axes) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes {tuple(self.axes)} are not a permutation of the "
                             f"{x.ndim} axes of an array of shape {tuple(x.shape)}")
        self.axes = tuple(a % x.ndim for a in self.axes)  # -1 -> ndim-1, so argsort inverts it
        return _contiguous(x.transpose(self.axes))

    def backward(self, gy):
        xp = get_array_module(gy)
        inverse = tuple(numpy.argsort(self.axes))
        return _contiguous(gy.transpose(inverse))


class Sum(Function):
    """y = sum of x over ``axis`` (None: all; an int or a tuple of ints); dL/dx = gy broadcast
    back over the summed axes."""

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        xp = get_array_module(x)
        return xp.asarray(x.sum(axis=self.axis, keepdims=self.keepdims))

    def backward(self, gy):
        xp = get_array_module(gy)
        return _contiguous(xp.broadcast_to(_keep_dims(gy, self.in_shape, self.axis, self.keepdims),
                                                    self.in_shape))


def _keep_dims(g, in_shape, axis, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input's shape."""
    if keepdims or axis is None and g.ndim == len(in_shape):
        return g
    if axis is None:
        return g.reshape((1,) * len(in_shape))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = [a % len(in_shape) for a in axes]
    shape = [1 if i in axes else s for i, s in enumerate(in_shape)]
    return g.reshape(shape)


class Mean(Function):
    """y = mean of x over ``axis`` = sum / count, count = number of elements averaged;
    dL/dx = gy / count broadcast back over the averaged axes."""

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        xp = get_array_module(x)
        total = x.sum(axis=self.axis, keepdims=self.keepdims)
        self.count = x.size // builtins.max(1, total.size)
        # the bits of x.mean (it sums, then divides), without its overhead: 0.16 ms instead of
        # 0.42 for the grey preset's (128, 3, 51, 51) images over the channels
        return xp.asarray(total / total.dtype.type(self.count))

    def backward(self, gy):
        xp = get_array_module(gy)
        g = _keep_dims(gy, self.in_shape, self.axis, self.keepdims) / gy.dtype.type(self.count)
        return _contiguous(xp.broadcast_to(g, self.in_shape)).astype(gy.dtype, copy=False)


class Max(Function):
    """y = max of x over ``axis`` (None, an int or a tuple). The maximum is a kink: dL/dx is gy
    at the first maximum of each group (first in C order) and 0 elsewhere, so ties are broken
    deterministically. Gradient checks must use inputs without ties."""

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        xp = get_array_module(x)
        self.save_for_backward(x)
        return xp.asarray(x.max(axis=self.axis, keepdims=self.keepdims))

    def backward(self, gy):
        (x,) = self.saved
        xp = get_array_module(x)
        if self.axis is None:
            axes = tuple(range(x.ndim))
        else:
            axes = (self.axis,) if isinstance(self.axis, int) else tuple(self.axis)
            axes = tuple(sorted(a % x.ndim for a in axes))
        rest = tuple(i for i in range(x.ndim) if i not in axes)
        order = rest + axes
        # Move the reduced axes last and flatten them into one: groups of shape (rest..., R).
        groups = x.transpose(order).reshape([x.shape[i] for i in rest] + [-1])
        first = groups.argmax(axis=-1)                              # (rest...)
        onehot = xp.arange(groups.shape[-1]) == first[..., None]   # (rest..., R), one True each
        gk = _keep_dims(gy, x.shape, self.axis, self.keepdims).transpose(order)
        g = (onehot * gk.reshape(first.shape + (1,))).astype(x.dtype, copy=False)
        g = g.reshape([x.shape[i] for i in order])
        return _contiguous(g.transpose(tuple(numpy.argsort(order))))


class Exp(Function):
    """y = e ** x; dL/dx = gy * y (reuses the output, so it keeps y rather than x)."""

    def forward(self, x):
        xp = get_array_module(x)
        y = xp.exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved
        return gy * y


class Log(Function):
    """y = ln x (natural logarithm); dL/dx = gy / x."""

    def forward(self, x):
        xp = get_array_module(x)
        self.save_for_backward(x)
        return xp.log(x)

    def backward(self, gy):
        (x,) = self.saved
        return gy / x


class Concat(Function):
    """y = the inputs joined along ``axis``; dL/dx_i = the slice of gy where x_i went.

    In AlexNet this is where the two columns' feature maps meet (after the cross-device copy)."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        xp = get_array_module(*xs)
        self.sizes = [x.shape[self.axis] for x in xs]
        return xp.concatenate(xs, axis=self.axis)

    def backward(self, gy):
        xp = get_array_module(gy)
        cuts = numpy.cumsum(self.sizes)[:-1].tolist()
        return tuple(_contiguous(g) for g in xp.split(gy, cuts, axis=self.axis))


class Split(Function):
    """ys = x cut along ``axis`` (``numpy.split`` rules); dL/dx = the ys' gradients joined
    (zeros for parts that were not used)."""

    def __init__(self, sections, axis):
        self.sections, self.axis = sections, axis

    def forward(self, x):
        xp = get_array_module(x)
        return tuple(_contiguous(p) for p in xp.split(x, self.sections, axis=self.axis))

    def backward(self, *gys):
        xp = get_array_module(*gys)
        return xp.concatenate(gys, axis=self.axis)


class GetItem(Function):
    """y = x[index]: ints, slices, None, Ellipsis, integer or boolean arrays (or Tensors, or
    lists), and tuples of them, with NumPy's meaning.

    dL/dx = zeros of x's shape with gy added at the indexed places. With a fancy (array) index an
    element can be picked twice (x[[0, 0]]), so the add must be unbuffered (``add.at``); with only
    ints and slices every element is picked at most once and a plain assignment is exact.
    """

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_shape, self.in_dtype = x.shape, x.dtype
        xp = get_array_module(x)
        self.index = _index_for(self.index, xp)
        return _contiguous(x[self.index])

    def backward(self, gy):
        xp = get_array_module(gy)
        g = xp.zeros(self.in_shape, dtype=self.in_dtype)
        if _is_basic_index(self.index):
            g[self.index] = gy
        elif xp is numpy:
            numpy.add.at(g, self.index, gy)
        else:
            cupy_add_at(g, self.index, gy)
        return g


def _index_for(index, xp):
    """An index whose array parts (Tensors, lists, arrays of the other library) are ``xp`` arrays."""
    if isinstance(index, tuple):
        return tuple(_index_for(i, xp) for i in index)
    if isinstance(index, Tensor):
        index = index.data
    if isinstance(index, list) or (hasattr(index, "dtype") and get_array_module(index) is not xp):
        index = xp.asarray(as_numpy(index) if xp is numpy else index)
    return index


def _is_basic_index(index) -> bool:
    """Only ints, slices, None and Ellipsis: each element of x is picked at most once."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, numpy.integer, slice))
               and not isinstance(p, bool) for p in parts)


def cupy_add_at(g, index, gy):
    """g[index] += gy, unbuffered, on CuPy: ``cupy.add.at`` (CuPy >= 13) or ``cupyx.scatter_add``."""
    if hasattr(cupy.add, "at"):
        cupy.add.at(g, index, gy)
    else:
        import cupyx
        cupyx.scatter_add(g, index, gy)


class AsType(Function):
    """y = x converted to ``dtype``; dL/dx = gy converted back to x's dtype."""

    def __init__(self, dtype):
        self.dtype = numpy.dtype(dtype)

    def forward(self, x):
        self.in_dtype = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return gy.astype(self.in_dtype)


def add(a, b): return Add()(a, b)
def sub(a, b): return Sub()(a, b)
def mul(a, b): return Mul()(a, b)
def div(a, b): return Div()(a, b)
def neg(a): return Neg()(a)
def pow(x, exponent): return Pow(exponent)(x)  # noqa: A001  (mirrors the operator's name)
def matmul(a, b): return MatMul()(a, b)
def exp(x): return Exp()(x)
def log(x): return Log()(x)
def getitem(x, index): return GetItem(index)(x)


def reshape(x, *shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Reshape(shape)(x)


def transpose(x, *axes):
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    return Transpose(axes or None)(x)


def _axis(axis):
    """NumPy wants a tuple, not a list, for several axes."""
    return tuple(axis) if isinstance(axis, list) else axis


def sum(x, axis=None, keepdims=False):  # noqa: A001
    return Sum(_axis(axis), keepdims)(x)


def mean(x, axis=None, keepdims=False):
    return Mean(_axis(axis), keepdims)(x)


def max(x, axis=None, keepdims=False):  # noqa: A001
    return Max(_axis(axis), keepdims)(x)


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    return Concat(axis)(*tensors)


def split(x: Tensor, sections, axis: int = 0) -> Tuple[Tensor, ...]:
    """Split into equal parts (an int) or at the given indices (a list), like ``numpy.split``."""
    return Split(sections, axis)(x)
