"""Reverse-mode automatic differentiation: ``Tensor``, ``Function`` and the backward pass.

A ``Tensor`` wraps one NumPy or CuPy array and remembers its ``device``. Calling a ``Function``
on tensors runs its ``forward`` on the raw arrays and, when gradients are wanted, records the
call as a node of a graph. ``loss.backward()`` walks that graph once in reverse topological order
(an explicit stack, never recursion, so a chain of 100,000 ops is fine), calling each node's
``backward`` with the gradient of its output(s) and adding up gradients where a tensor was used
more than once (y = x*x + x gives dy/dx = 2x + 1).

Writing a new op::

    class Square(Function):
        def forward(self, x):            # raw arrays in, raw array(s) out
            self.save_for_backward(x)
            return x * x
        def backward(self, gy):          # gradient of the output in, one gradient per input out
            (x,) = self.saved
            return 2 * x * gy

    def square(x):
        return Square()(x)

Every input must live on one device; an op that gets tensors from two devices raises a
``DeviceError`` naming the op and both devices. ``minialex.to_device`` is the only way across.
"""

from __future__ import annotations

import builtins
import contextlib
import threading
from typing import Optional, Sequence, Tuple

import numpy

from .backend import (Device, DeviceError, array_device, as_device, as_numpy, compatible,
                      copy_array, get_array_module, record_transfer)

# --------------------------------------------------------------------------------------------
# Gradient mode
# --------------------------------------------------------------------------------------------

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is recorded: forward passes use less memory (evaluation)."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


@contextlib.contextmanager
def enable_grad():
    previous = is_grad_enabled()
    _state.grad_enabled = True
    try:
        yield
    finally:
        _state.grad_enabled = previous


# --------------------------------------------------------------------------------------------
# Tensor
# --------------------------------------------------------------------------------------------

def _to_array(data, device: Optional[Device], dtype=None):
    """Turn ``data`` into an array of the right library for ``device``."""
    if device is None:
        device = array_device(data) if hasattr(data, "__array__") or hasattr(data, "device") \
            else Device("cpu")
    if compatible(data, device) and hasattr(data, "dtype") and hasattr(data, "shape"):
        xp = get_array_module(data)
        arr = data if dtype is None else data.astype(dtype, copy=False)
        if arr.ndim == 0 and xp is numpy:  # keep 0-d arrays as arrays, not NumPy scalars
            arr = numpy.asarray(arr)
        return arr, device
    return device.put(data, dtype=dtype), device


class Tensor:
    """An array plus what autograd needs.

    Attributes
    ----------
    data : numpy.ndarray or cupy.ndarray
    grad : array of the same shape and dtype, or None (filled by ``backward`` for leaves)
    requires_grad : bool
    device : Device  ('cpu', 'cpu:0', 'cpu:1', 'cuda:N')
    creator : the Function that produced this tensor (None for leaves)
    """

    __array_priority__ = 1000  # so that ndarray * Tensor calls Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, device=None, dtype=None, name=None):
        if isinstance(data, Tensor):
            data = data.data
        if device is not None:
            device = as_device(device)
        if not hasattr(data, "dtype") and dtype is None:
            dtype = numpy.float32 if isinstance(data, float) or (
                isinstance(data, (list, tuple)) and numpy.asarray(data).dtype == numpy.float64) else None
        self.data, self.device = _to_array(data, device, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self.creator: Optional[Function] = None
        self.name = name
        self._retain_grad = False

    # -- basic facts -------------------------------------------------------------------------
    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def xp(self):
        return get_array_module(self.data)

    @property
    def is_leaf(self) -> bool:
        return self.creator is None

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        body = numpy.array2string(as_numpy(self.data), precision=4, threshold=20, prefix="Tensor(")
        extra = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({body}, device='{self.device}', dtype={self.dtype}{extra})"

    def numpy(self) -> numpy.ndarray:
        """The data as a NumPy array (copied from the GPU if needed)."""
        return as_numpy(self.data)

    def item(self) -> float:
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return as_numpy(self.data).reshape(()).item()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        out = Tensor.__new__(Tensor)
        out.data, out.device, out.grad, out.requires_grad = self.data, self.device, None, False
        out.creator, out.name, out._retain_grad = None, self.name, False
        return out

    def retain_grad(self) -> "Tensor":
        """Keep ``.grad`` on this non-leaf tensor after backward (for inspection in lessons)."""
        self._retain_grad = True
        return self

    def zero_grad(self) -> None:
        self.grad = None

    def astype(self, dtype) -> "Tensor":
        return AsType(dtype)(self)

    def to(self, device, label: str = "to") -> "Tensor":
        return to_device(self, device, label=label)

    # -- backward ----------------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Backpropagate from this tensor.

        ``grad`` is the gradient of some scalar with respect to this tensor; it may be left out
        only when this tensor holds a single value (then it is 1). After the pass the graph is
        freed (each Function drops its saved arrays) unless ``retain_graph`` is True.
        """
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward() on a tensor of shape {self.shape} needs an upstream gradient: "
                    "pass grad= of the same shape, or reduce to a scalar first (e.g. .sum())")
            grad = self.xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            if not compatible(grad, self.device):
                grad = self.device.put(grad)
            grad = grad.astype(self.dtype, copy=False)
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"backward(): grad has shape {tuple(grad.shape)} but the tensor "
                                 f"has shape {self.shape}")
        _backward_pass(self, grad, retain_graph)

    # -- operators ---------------------------------------------------------------------------
    def __add__(self, other): return add(self, other)
    def __radd__(self, other): return add(other, self)
    def __sub__(self, other): return sub(self, other)
    def __rsub__(self, other): return sub(other, self)
    def __mul__(self, other): return mul(self, other)
    def __rmul__(self, other): return mul(other, self)
    def __truediv__(self, other): return div(self, other)
    def __rtruediv__(self, other): return div(other, self)
    def __neg__(self): return neg(self)
    def __pow__(self, exponent): return pow(self, exponent)
    def __matmul__(self, other): return matmul(self, other)
    def __rmatmul__(self, other): return matmul(other, self)
    def __getitem__(self, index): return getitem(self, index)

    def reshape(self, *shape): return reshape(self, *shape)
    def transpose(self, *axes): return transpose(self, *axes)
    @property
    def T(self): return transpose(self)
    def sum(self, axis=None, keepdims=False): return sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return max(self, axis, keepdims)
    def exp(self): return exp(self)
    def log(self): return log(self)


# --------------------------------------------------------------------------------------------
# Function
# --------------------------------------------------------------------------------------------

class Function:
    """One differentiable operation. Subclasses define ``forward`` and ``backward`` on raw arrays.

    ``forward(*arrays)`` returns one array or a tuple of arrays.
    ``backward(*grads_of_outputs)`` returns one gradient per input (None where an input needs
    none). Gradients of outputs that were not used downstream arrive as zeros.
    All inputs must be on one device; the forward and backward run with it made current.
    """

    #: the name used in error messages (defaults to the class name)
    name: Optional[str] = None

    def __call__(self, *inputs):
        op = self.name or type(self).__name__
        tensors = [x for x in inputs if isinstance(x, Tensor)]
        device = tensors[0].device if tensors else None
        for t in tensors[1:]:
            if t.device != device:
                raise DeviceError(
                    f"{op}: inputs live on different devices ({device} and {t.device}); "
                    "move one with minialex.to_device(x, device) first")
        like = tensors[0] if tensors else None
        inputs = [x if isinstance(x, Tensor) else _constant(x, device, like, op) for x in inputs]
        if device is None:
            device = inputs[0].device
        self.inputs = inputs
        self.device = device
        self.saved = ()
        with device:
            outs = self.forward(*[x.data for x in inputs])
        single = not isinstance(outs, tuple)
        outs = (outs,) if single else outs
        needs_graph = is_grad_enabled() and any(x.requires_grad for x in inputs)
        results = []
        for arr in outs:
            t = Tensor.__new__(Tensor)
            t.data, t.device, t.grad, t.name, t._retain_grad = arr, device, None, None, False
            t.requires_grad = needs_graph
            t.creator = self if needs_graph else None
            results.append(t)
        if needs_graph:
            self.outputs = [_WeakRef(t) for t in results]
            self.output_meta = [(tuple(a.shape), a.dtype) for a in outs]
        else:
            self.inputs = None  # nothing will call backward: keep no references
            self.saved = ()
        return results[0] if single else tuple(results)

    def save_for_backward(self, *arrays) -> None:
        self.saved = arrays

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, *grads):
        raise NotImplementedError


class _WeakRef:
    """A weak reference that tolerates tensors which have been collected."""

    def __init__(self, t):
        import weakref
        self._ref = weakref.ref(t)

    def __call__(self):
        return self._ref()


def _constant(value, device, like, op):
    """Wrap a Python number or raw array given to an op as a constant on the op's device."""
    if device is None:
        device = array_device(value) if hasattr(value, "dtype") else Device("cpu")
    dtype = like.dtype if like is not None and not hasattr(value, "dtype") else None
    if hasattr(value, "dtype") and not compatible(value, device):
        raise DeviceError(f"{op}: got a raw array on {array_device(value)} for an op on {device}")
    t = Tensor.__new__(Tensor)
    t.data, t.device = _to_array(value, device, dtype)
    t.grad, t.requires_grad, t.creator, t.name, t._retain_grad = None, False, None, None, False
    return t


def _topological_order(root: Tensor):
    """Functions reachable from ``root``, each after every function that consumes its outputs."""
    order, seen = [], set()
    if root.creator is None:
        return order
    stack = [(root.creator, False)]
    while stack:
        fn, expanded = stack.pop()
        if expanded:
            order.append(fn)
            continue
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        stack.append((fn, True))
        for x in fn.inputs:
            if x.creator is not None and id(x.creator) not in seen:
                stack.append((x.creator, False))
    order.reverse()  # post-order reversed: consumers before producers
    return order


def _backward_pass(root: Tensor, grad, retain_graph: bool) -> None:
    if not root.requires_grad:
        raise RuntimeError("backward(): this tensor does not require grad (no input to it had "
                           "requires_grad=True, or it was computed under no_grad())")
    if root.creator is None:  # a leaf: its gradient is the upstream gradient itself
        root.grad = grad if root.grad is None else root.grad + grad
        return
    grads = {id(root): grad}
    order = _topological_order(root)
    # Hold every intermediate tensor until the pass ends: freeing a node's inputs below would
    # otherwise let Python collect tensors whose gradients are still waiting in ``grads``.
    alive = [x for fn in order if fn.inputs is not None for x in fn.inputs]  # noqa: F841
    for fn in order:
        op = fn.name or type(fn).__name__
        if fn.inputs is None:
            raise RuntimeError(f"backward through {op} a second time: its graph was freed. "
                               "Pass retain_graph=True to the first backward() to keep it")
        outs = [ref() for ref in fn.outputs]
        gys = []
        xp = None
        for t, (shape, dtype) in zip(outs, fn.output_meta):
            g = grads.pop(id(t), None) if t is not None else None
            if g is not None and t is not None and t._retain_grad:
                t.grad = g
            gys.append(g)
        if all(g is None for g in gys):
            continue
        for i, g in enumerate(gys):
            if g is None:
                shape, dtype = fn.output_meta[i]
                xp = fn.device.xp
                with fn.device:
                    gys[i] = xp.zeros(shape, dtype=dtype)
        with fn.device:
            gxs = fn.backward(*gys)
        if not isinstance(gxs, tuple):
            gxs = (gxs,)
        if len(gxs) != len(fn.inputs):
            raise RuntimeError(f"{op}.backward returned {len(gxs)} gradients for "
                               f"{len(fn.inputs)} inputs")
        for x, gx in zip(fn.inputs, gxs):
            if gx is None or not x.requires_grad:
                continue
            if tuple(gx.shape) != x.shape or gx.dtype != x.dtype:
                raise RuntimeError(
                    f"{op}.backward returned a gradient of shape {tuple(gx.shape)} and dtype "
                    f"{gx.dtype} for an input of shape {x.shape} and dtype {x.dtype}")
            if x.creator is None:  # leaf: accumulate into .grad
                x.grad = gx if x.grad is None else x.grad + gx
            else:
                prev = grads.get(id(x))
                grads[id(x)] = gx if prev is None else prev + gx
        if not retain_graph:
            fn.inputs = None
            fn.saved = ()
            for t in outs:
                if t is not None:
                    t.creator = None


# --------------------------------------------------------------------------------------------
# Crossing devices
# --------------------------------------------------------------------------------------------

class ToDevice(Function):
    """Copy a tensor to another device; the backward copies the gradient back (both logged)."""

    def __init__(self, destination: Device, label: str):
        self.destination = destination
        self.label = label

    def __call__(self, x):
        out = super().__call__(x)
        out.device = self.destination
        return out

    def forward(self, x):
        src = self.device
        record_transfer(self.label, src, self.destination, x.nbytes, "forward")
        return copy_array(x, src, self.destination)

    def backward(self, gy):
        record_transfer(self.label, self.destination, self.device, gy.nbytes, "backward")
        return copy_array(gy, self.destination, self.device)


def to_device(x: Tensor, device, label: str = "to_device") -> Tensor:
    """Copy ``x`` to ``device`` as a differentiable op and record it in the transfer log.

    The only way data crosses between devices in minialex. If ``x`` is already on ``device`` it
    is returned unchanged and nothing is logged.
    """
    device = as_device(device)
    if not isinstance(x, Tensor):
        x = Tensor(x)
    if x.device == device:
        return x
    return ToDevice(device, label)(x)


# --------------------------------------------------------------------------------------------
# Basic ops
# --------------------------------------------------------------------------------------------

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
    return xp.ascontiguousarray(out.reshape(shape))


class Add(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a + b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(gy, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return a - b

    def backward(self, gy):
        return sum_to(gy, self.shapes[0]), sum_to(-gy, self.shapes[1])


class Mul(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a * b

    def backward(self, gy):
        a, b = self.saved
        return sum_to(gy * b, a.shape), sum_to(gy * a, b.shape)


class Div(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, gy):
        a, b = self.saved
        ga = gy / b
        gb = -gy * a / (b * b)
        return sum_to(ga, a.shape), sum_to(gb, b.shape)


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, gy):
        return -gy


class Pow(Function):
    """y = x ** p for a constant exponent p."""

    def __init__(self, exponent):
        self.exponent = exponent

    def forward(self, x):
        self.save_for_backward(x)
        return x ** self.exponent

    def backward(self, gy):
        (x,) = self.saved
        p = self.exponent
        return (gy * p * x ** (p - 1)).astype(x.dtype, copy=False)


class MatMul(Function):
    """(..., n, k) @ (..., k, m); 1-D operands are not supported (reshape them first)."""

    def forward(self, a, b):
        if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-2]:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not fit "
                             "(need (..., n, k) @ (..., k, m))")
        self.save_for_backward(a, b)
        return a @ b

    def backward(self, gy):
        a, b = self.saved
        xp = get_array_module(gy)
        ga = gy @ xp.swapaxes(b, -1, -2)
        gb = xp.swapaxes(a, -1, -2) @ gy
        return sum_to(ga, a.shape), sum_to(gb, b.shape)


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Transpose(Function):
    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        xp = get_array_module(x)
        self.axes = self.axes or tuple(reversed(range(x.ndim)))
        return xp.ascontiguousarray(x.transpose(self.axes))

    def backward(self, gy):
        xp = get_array_module(gy)
        inverse = tuple(numpy.argsort(self.axes))
        return xp.ascontiguousarray(gy.transpose(inverse))


class Sum(Function):
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        xp = get_array_module(x)
        return xp.asarray(x.sum(axis=self.axis, keepdims=self.keepdims))

    def backward(self, gy):
        xp = get_array_module(gy)
        return xp.ascontiguousarray(xp.broadcast_to(_keep_dims(gy, self.in_shape, self.axis, self.keepdims),
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
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        xp = get_array_module(x)
        y = xp.asarray(x.mean(axis=self.axis, keepdims=self.keepdims))
        self.count = x.size // builtins.max(1, y.size)
        return y

    def backward(self, gy):
        xp = get_array_module(gy)
        g = _keep_dims(gy, self.in_shape, self.axis, self.keepdims) / gy.dtype.type(self.count)
        return xp.ascontiguousarray(xp.broadcast_to(g, self.in_shape)).astype(gy.dtype, copy=False)


class Max(Function):
    """Maximum over axes; the gradient goes to the first maximum (ties broken deterministically)."""

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        xp = get_array_module(x)
        self.save_for_backward(x)
        return xp.asarray(x.max(axis=self.axis, keepdims=self.keepdims))

    def backward(self, gy):
        (x,) = self.saved
        xp = get_array_module(x)
        axis = self.axis
        if axis is None:
            flat = xp.zeros(x.size, dtype=x.dtype)
            flat[int(xp.argmax(x))] = gy.reshape(())
            return flat.reshape(x.shape)
        axes = (axis,) if isinstance(axis, int) else tuple(a % x.ndim for a in axis)
        axes = tuple(a % x.ndim for a in axes)
        rest = tuple(i for i in range(x.ndim) if i not in axes)
        moved = x.transpose(rest + axes).reshape([x.shape[i] for i in rest] + [-1])
        idx = moved.argmax(axis=-1)
        g = xp.zeros(moved.shape, dtype=x.dtype)
        gk = _keep_dims(gy, x.shape, axis, self.keepdims).transpose(rest + axes).reshape(idx.shape)
        xp.put_along_axis(g, idx[..., None], gk[..., None], axis=-1)
        g = g.reshape([x.shape[i] for i in rest] + [x.shape[i] for i in axes])
        return xp.ascontiguousarray(g.transpose(numpy.argsort(rest + axes)))


class Exp(Function):
    def forward(self, x):
        xp = get_array_module(x)
        y = xp.exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved
        return gy * y


class Log(Function):
    def forward(self, x):
        xp = get_array_module(x)
        self.save_for_backward(x)
        return xp.log(x)

    def backward(self, gy):
        (x,) = self.saved
        return gy / x


class Concat(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, *xs):
        xp = get_array_module(*xs)
        self.sizes = [x.shape[self.axis] for x in xs]
        return xp.concatenate(xs, axis=self.axis)

    def backward(self, gy):
        xp = get_array_module(gy)
        cuts = numpy.cumsum(self.sizes)[:-1].tolist()
        return tuple(xp.ascontiguousarray(g) for g in xp.split(gy, cuts, axis=self.axis))


class Split(Function):
    def __init__(self, sections, axis):
        self.sections, self.axis = sections, axis

    def forward(self, x):
        xp = get_array_module(x)
        return tuple(xp.ascontiguousarray(p) for p in xp.split(x, self.sections, axis=self.axis))

    def backward(self, *gys):
        xp = get_array_module(*gys)
        return xp.concatenate(gys, axis=self.axis)


class GetItem(Function):
    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_shape, self.in_dtype = x.shape, x.dtype
        xp = get_array_module(x)
        return xp.ascontiguousarray(x[self.index])

    def backward(self, gy):
        xp = get_array_module(gy)
        g = xp.zeros(self.in_shape, dtype=self.in_dtype)
        xp.add.at(g, self.index, gy) if xp is numpy else cupy_add_at(g, self.index, gy)
        return g


def cupy_add_at(g, index, gy):
    import cupyx  # only reached with CuPy arrays, so CuPy is installed
    cupyx.scatter_add(g, index, gy)


class AsType(Function):
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


def sum(x, axis=None, keepdims=False):  # noqa: A001
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    return Mean(axis, keepdims)(x)


def max(x, axis=None, keepdims=False):  # noqa: A001
    return Max(axis, keepdims)(x)


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    return Concat(axis)(*tensors)


def split(x: Tensor, sections, axis: int = 0) -> Tuple[Tensor, ...]:
    """Split into equal parts (an int) or at the given indices (a list), like ``numpy.split``."""
    return Split(sections, axis)(x)


def tensor(data, requires_grad=False, device=None, dtype=None) -> Tensor:
    """Make a Tensor (a convenience alias of the constructor)."""
    return Tensor(data, requires_grad=requires_grad, device=device, dtype=dtype)
