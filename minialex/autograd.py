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
The basic ops (add, matmul, sum, max, getitem, ...) are written this way in ops.py.

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

import contextlib
import threading
import weakref
from typing import Optional, Tuple

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

    ``Tensor(data, requires_grad=False, device=None, dtype=None)``: ``data`` is an array (kept
    as it is, dtype included), a Python number or a nested list. Python floats become float32,
    Python ints int64. ``device=None`` means the array's own device ('cpu' for NumPy).

    Attributes
    ----------
    data : numpy.ndarray or cupy.ndarray
    grad : array of the same shape and dtype, or None
        filled by ``backward`` for leaves
    requires_grad : bool
    device : Device
        'cpu', 'cpu:0', 'cpu:1' or 'cuda:N'
    creator : Function or None
        the Function that produced this tensor (None for leaves)
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

    A class may also define ``forward_gpu`` and/or ``backward_gpu`` (Chainer's split): on a GPU
    those run instead, so ``forward``/``backward`` stay the readable NumPy algorithm.

    The graph: ``self.inputs`` holds the input tensors (strong references, so the graph stays
    alive while its output does) and ``self.outputs`` weak references to the outputs (so an
    unused output, e.g. one part of a ``split``, can be collected; its gradient is then zero).
    """

    #: the name used in error messages (defaults to the class name)
    name: Optional[str] = None
    #: set by each call: whether it runs the ``*_gpu`` methods
    on_gpu = False

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
        self.on_gpu = runs_on_gpu(device)
        with device:
            outs = self.method("forward")(*[x.data for x in inputs])
        single = not isinstance(outs, (tuple, list))
        outs = (outs,) if single else tuple(outs)
        outs = tuple(_as_array(a) for a in outs)
        out_device = self.output_device()
        for arr in outs:
            if not (hasattr(arr, "shape") and hasattr(arr, "dtype")):
                raise TypeError(f"{op}.forward returned a {type(arr).__name__}, not an array")
            if not compatible(arr, out_device):
                raise DeviceError(f"{op}.forward returned an array on {array_device(arr)} for "
                                  f"an op on {out_device}")
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

    def method(self, name: str):
        """``forward``/``backward``, or its ``_gpu`` form when this call runs on a GPU and the
        class has one."""
        gpu_form = getattr(self, name + "_gpu", None) if self.on_gpu else None
        return gpu_form or getattr(self, name)

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


def runs_on_gpu(device: Device) -> bool:
    """Whether an op on ``device`` takes its ``*_gpu`` methods (tests patch this to run the GPU
    methods on NumPy arrays, with the CUDA kernels emulated by ``minialex.tools.cuda_host``)."""
    return device.is_cuda


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


def _store_grad(t: Tensor, g, handed: set) -> None:
    """Add ``g`` into ``t.grad``. A first gradient is copied if it was handed out before in this
    pass (``handed``: ids of the gradient arrays given out) or views another array: Add passes
    ``gy`` to both inputs, and an optimizer updating one ``.grad`` in place must not change the
    other. (A stale id of a freed array only costs a needless copy.)"""
    if t.grad is not None:
        t.grad = _as_array(t.grad + g)
    elif id(g) in handed or getattr(g, "base", None) is not None:
        t.grad = g.copy()
    else:
        t.grad = g
    handed.add(id(g))


def _backward_pass(root: Tensor, grad, retain_graph: bool) -> None:
    """Reverse-mode sweep: ``grads`` maps each waiting tensor (by id) to dL/dtensor so far."""
    if not root.requires_grad:
        raise RuntimeError("backward(): this tensor does not require grad (no input to it had "
                           "requires_grad=True, or it was computed under no_grad())")
    handed = {id(grad)}       # the caller holds the upstream gradient
    if root.creator is None:  # a leaf: its gradient is the upstream gradient itself
        _store_grad(root, grad, handed)
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
                _store_grad(t, g, handed)
            gys.append(g)
        if any(g is not None for g in gys):
            out_device = fn.output_device()
            for i, g in enumerate(gys):
                if g is None:  # an output nobody used: its gradient is zero
                    shape, dtype = fn.output_meta[i]
                    with out_device:
                        gys[i] = out_device.xp.zeros(shape, dtype=dtype)
            with fn.device:
                gxs = fn.method("backward")(*gys)
            _collect_input_grads(fn, op, gxs, grads, handed)
        if not retain_graph:  # free the graph: saved arrays and the links to the inputs
            fn.inputs = None
            fn.saved = ()


def _collect_input_grads(fn, op: str, gxs, grads: dict, handed: set) -> None:
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
            _store_grad(x, gx, handed)
        else:
            prev = grads.get(id(x))
            grads[id(x)] = gx if prev is None else _as_array(prev + gx)
            handed.add(id(grads[id(x)]))


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


def tensor(data, requires_grad=False, device=None, dtype=None) -> Tensor:
    """Make a Tensor (a convenience alias of the constructor)."""
    return Tensor(data, requires_grad=requires_grad, device=device, dtype=dtype)


# The basic ops (add, mul, matmul, sum, max, getitem, ...) live in ops.py. Tensor's operators call
# them by these names, and ``minialex.autograd.add`` etc. keep working. Imported last because
# ops.py builds on Tensor and Function defined above.
from .ops import (Add, AsType, Concat, Div, Exp, GetItem, Log, MatMul, Max, Mean, Mul, Neg, Pow,
                  Reshape, Split, Sub, Sum, Transpose, add, concat, cupy_add_at, div, exp,
                  getitem, log, matmul, max, mean, mul, neg, pow, reshape, split, sub, sum,
                  sum_to, transpose)  # noqa: E402,F401
