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

Rules a new op follows (the engine checks the first two and names the op when they break):

- ``backward`` returns, for each input, a gradient of exactly that input's shape and dtype
  (undo broadcasting with ``sum_to``), or None.
- Gradients arriving in ``backward`` may be shared with other ops: never modify them in place.
- One ``Function`` object per call (``Square()(x)``): the object stores that call's inputs.

Dtypes. Arrays keep their dtype. Python floats (and lists of them) become float32, the dtype
AlexNet trains in; pass ``dtype=numpy.float64`` or a float64 array for gradient checks. A Python
number mixed with a tensor follows NumPy's rules for Python scalars: ``float32_tensor * 0.5`` stays
float32, ``int_tensor * 0.5`` becomes float64 (as ``numpy.arange(3) * 0.5`` does).
"""

from __future__ import annotations

import builtins
import contextlib
import threading
import weakref
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

def _as_array(a):
    """NumPy scalars (what ``0-d array * 2`` returns) as 0-d arrays, so ``.data`` and ``.grad``
    are always real arrays that can be written in place (``p.data -= lr * g``)."""
    return numpy.asarray(a) if isinstance(a, numpy.generic) else a


def _to_array(data, device: Optional[Device], dtype=None):
    """Turn ``data`` into an array of the right library for ``device``.

    An array already on ``device`` is used as it is (no copy; a ``Tensor`` made from a NumPy
    array shares its memory, like ``torch.from_numpy``). Anything else (lists, numbers, arrays of
    the other library) is converted by ``device.put``.
    """
    if device is None:
        device = array_device(data)
    if compatible(data, device) and hasattr(data, "dtype") and hasattr(data, "shape"):
        arr = data if dtype is None else data.astype(dtype, copy=False)
        return _as_array(arr), device
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

    ``Tensor(data, requires_grad=False, device=None, dtype=None)``: ``data`` is an array (kept
    as it is, dtype included), a Python number or a nested list. Python floats become float32,
    Python ints int64. ``device=None`` means the array's own device ('cpu' for NumPy).
    """

    # So that ``ndarray * tensor`` calls Tensor.__rmul__ instead of NumPy building an object
    # array: NumPy and CuPy both defer to a type with __array_ufunc__ = None, or a higher priority.
    __array_ufunc__ = None
    __array_priority__ = 1000

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
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
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
            if not (compatible(grad, self.device) and hasattr(grad, "dtype")):
                grad = self.device.put(grad)  # a list, a number, or an array of the other library
            grad = _as_array(grad.astype(self.dtype, copy=False))
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
    All inputs must be on one device; the forward and backward run with it made current
    (``with device:`` selects the GPU on CuPy; a no-op on the CPU).

    The graph: ``self.inputs`` holds the input tensors (strong references, so the graph stays
    alive while its output does) and ``self.outputs`` weak references to the outputs (so an
    unused output, e.g. one part of a ``split``, can be collected; its gradient is then zero).
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
        single = not isinstance(outs, (tuple, list))
        outs = (outs,) if single else tuple(outs)
        outs = tuple(_as_array(a) for a in outs)
        out_device = self.output_device()
        needs_graph = is_grad_enabled() and any(x.requires_grad for x in inputs)
        results = []
        for arr in outs:
            t = Tensor.__new__(Tensor)
            t.data, t.device, t.grad, t.name, t._retain_grad = arr, out_device, None, None, False
            t.requires_grad = needs_graph
            t.creator = self if needs_graph else None
            results.append(t)
        if needs_graph:
            self.outputs = [weakref.ref(t) for t in results]
            self.output_meta = [(tuple(a.shape), a.dtype) for a in outs]
        else:
            self.inputs = None  # nothing will call backward: keep no references
            self.saved = ()
        return results[0] if single else tuple(results)

    def save_for_backward(self, *arrays) -> None:
        """Keep arrays for ``backward`` (read them back as ``self.saved``); freed after backward."""
        self.saved = arrays

    def output_device(self) -> Device:
        """Where the outputs live: the inputs' device (only ``ToDevice`` says otherwise)."""
        return self.device

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, *grads):
        raise NotImplementedError


def _constant(value, device, like, op):
    """Wrap a Python number or raw array given to an op as a constant on the op's device.

    A Python number takes the dtype NumPy's rules give it next to ``like`` (the op's first
    tensor): float32 next to float32, float64 next to an integer tensor when it is a float.
    """
    if device is None:
        device = array_device(value) if hasattr(value, "dtype") else Device("cpu")
    dtype = None
    if like is not None and not hasattr(value, "dtype"):
        dtype = numpy.result_type(like.dtype, value) if isinstance(value, (bool, int, float)) \
            else like.dtype
    if hasattr(value, "dtype") and not compatible(value, device):
        raise DeviceError(f"{op}: got a raw array on {array_device(value)} for an op on {device}")
    t = Tensor.__new__(Tensor)
    t.data, t.device = _to_array(value, device, dtype)
    t.grad, t.requires_grad, t.creator, t.name, t._retain_grad = None, False, None, None, False
    return t


def _op_name(fn) -> str:
    return fn.name or type(fn).__name__


def _freed_error(fn) -> RuntimeError:
    return RuntimeError(f"backward through {_op_name(fn)} a second time: its graph was freed by "
                        "the first backward(). Pass retain_graph=True to the first backward() "
                        "to keep it")


def _topological_order(root: Tensor):
    """Functions reachable from ``root``, each after every function that consumes its outputs.

    Depth-first search with an explicit stack (no recursion, so no recursion limit): a function
    is appended after everything it depends on (post-order); reversing gives consumers first.
    Raises before any gradient is touched if part of the graph was already freed.
    """
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
        if fn.inputs is None:
            raise _freed_error(fn)
        seen.add(id(fn))
        stack.append((fn, True))
        for x in fn.inputs:
            if x.creator is not None and id(x.creator) not in seen:
                stack.append((x.creator, False))
    order.reverse()  # post-order reversed: consumers before producers
    return order


def _store_grad(t: Tensor, g) -> None:
    """Add ``g`` into ``t.grad``. The first gradient is copied: the same array may also be another
    tensor's gradient (Add passes ``gy`` to both inputs), and an optimizer updating one ``.grad``
    in place must not change the other."""
    t.grad = g.copy() if t.grad is None else _as_array(t.grad + g)


def _backward_pass(root: Tensor, grad, retain_graph: bool) -> None:
    """Reverse-mode sweep: ``grads`` maps each waiting tensor (by id) to dL/dtensor so far."""
    if not root.requires_grad:
        raise RuntimeError("backward(): this tensor does not require grad (no input to it had "
                           "requires_grad=True, or it was computed under no_grad())")
    if root.creator is None:  # a leaf: its gradient is the upstream gradient itself
        _store_grad(root, grad)
        return
    grads = {id(root): grad}
    order = _topological_order(root)
    # Hold every intermediate tensor until the pass ends: freeing a node's inputs below would
    # otherwise let Python collect tensors whose gradients are still waiting in ``grads`` (and
    # then reuse their ids).
    alive = [x for fn in order for x in fn.inputs]  # noqa: F841
    for fn in order:
        op = _op_name(fn)
        outs = [ref() for ref in fn.outputs]  # None where an output was collected (unused)
        gys = []
        for t in outs:
            g = grads.pop(id(t), None) if t is not None else None
            if g is not None and t._retain_grad:
                _store_grad(t, g)
            gys.append(g)
        if any(g is not None for g in gys):
            out_device = fn.output_device()
            for i, g in enumerate(gys):
                if g is None:  # an output nobody used: its gradient is zero
                    shape, dtype = fn.output_meta[i]
                    with out_device:
                        gys[i] = out_device.xp.zeros(shape, dtype=dtype)
            with fn.device:
                gxs = fn.backward(*gys)
            _collect_input_grads(fn, op, gxs, grads)
        if not retain_graph:  # free the graph: saved arrays and the links to the inputs
            fn.inputs = None
            fn.saved = ()


def _collect_input_grads(fn, op: str, gxs, grads: dict) -> None:
    """Check each gradient ``fn.backward`` returned, then add it to its input's total."""
    gxs = tuple(gxs) if isinstance(gxs, (tuple, list)) else (gxs,)
    if len(gxs) != len(fn.inputs):
        raise RuntimeError(f"{op}.backward returned {len(gxs)} gradient(s) for "
                           f"{len(fn.inputs)} input(s)")
    for k, (x, gx) in enumerate(zip(fn.inputs, gxs)):
        if gx is None or not x.requires_grad:
            continue
        gx = _as_array(gx)
        if not hasattr(gx, "shape") or tuple(gx.shape) != x.shape or gx.dtype != x.dtype:
            raise RuntimeError(
                f"{op}.backward returned a gradient of shape {tuple(getattr(gx, 'shape', ()))} "
                f"and dtype {getattr(gx, 'dtype', type(gx).__name__)} for input {k} of shape "
                f"{x.shape} and dtype {x.dtype}")
        if not compatible(gx, x.device):
            raise DeviceError(f"{op}.backward returned a gradient on {array_device(gx)} for "
                              f"input {k} on {x.device}")
        if x.creator is None:  # leaf: accumulate into .grad
            _store_grad(x, gx)
        else:
            prev = grads.get(id(x))
            grads[id(x)] = gx if prev is None else _as_array(prev + gx)


# --------------------------------------------------------------------------------------------
# Crossing devices
# --------------------------------------------------------------------------------------------

class ToDevice(Function):
    """Copy a tensor to another device; the backward copies the gradient back (both logged).

    y = x (same shape and dtype, new memory on ``destination``); dL/dx = dL/dy copied back.
    In AlexNet these are the paper's cross-GPU connections (§3.2: conv3, fc6, fc7, fc8).
    """

    def __init__(self, destination: Device, label: str):
        self.destination = destination
        self.label = label

    def output_device(self) -> Device:
        return self.destination

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
        y = xp.asarray(x.mean(axis=self.axis, keepdims=self.keepdims))
        self.count = x.size // builtins.max(1, y.size)
        return y

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
    from .backend import cupy
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


def tensor(data, requires_grad=False, device=None, dtype=None) -> Tensor:
    """Make a Tensor (a convenience alias of the constructor)."""
    return Tensor(data, requires_grad=requires_grad, device=device, dtype=dtype)
