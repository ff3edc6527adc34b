"""Checks for lessons 1-5: arrays, a new op's backward, the central difference, the naive
convolution, leaky ReLU."""

from __future__ import annotations

from typing import Callable

import numpy

import minialex
import minialex.functional as F
from .verdicts import _Wrong, _check, _call, _array, _compare, _rng, _autograd


# -- lesson 1: arrays --------------------------------------------------------------------------

@_check
def check_sigmoid(sigmoid: Callable) -> str:
    """sigmoid(x) = 1 / (1 + e^-x) with the xp pattern: any shape, the input's dtype, no overflow
    trouble for large |x| (lesson 1)."""
    rng = _rng(1)
    for shape in ((7,), (3, 4)):
        x = rng.standard_normal(shape) * 4
        _compare(f"sigmoid of a {shape} array", _call("sigmoid", sigmoid, x.copy()),
                 1 / (1 + numpy.exp(-x)))
    wide = numpy.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    with numpy.errstate(over="raise"):       # e^800 overflows float64: a stable form never makes it
        _compare("sigmoid at large |x|", _call("sigmoid", sigmoid, wide.copy()),
                 [0.0, 1 / (1 + numpy.exp(40.0)), 0.5, 1 / (1 + numpy.exp(-40.0)), 1.0], atol=1e-300)
    out = _call("sigmoid", sigmoid, numpy.zeros(3, dtype=numpy.float32))
    if not isinstance(out, numpy.ndarray) or out.dtype != numpy.float32:
        raise _Wrong(f"wrong: a float32 NumPy input gave a {type(out).__name__} of dtype "
                     f"{getattr(out, 'dtype', '?')}: keep the input's library and dtype (xp)")
    return "float64 and float32, large |x| included"


@_check
def check_exchange_bytes(exchange_bytes: Callable) -> str:
    """exchange_bytes(batch, dtype): bytes one column sends the other before conv3 (lesson 1):
    its pooled conv2 output, 128 channels of 13×13 per image in the paper's net (§3.2)."""
    for batch in (1, 128, 5):
        for dtype in (numpy.float32, numpy.float16, numpy.float64):
            want = batch * 128 * 13 * 13 * numpy.dtype(dtype).itemsize
            _compare(f"exchange_bytes({batch}, {numpy.dtype(dtype).name})",
                     _call("exchange_bytes", exchange_bytes, batch, dtype), want, rtol=0, atol=0)
    return "batches 1, 5, 128 in float16, float32, float64"


# -- lesson 2: a new operation's backward ---------------------------------------------------------

def _check_function(name: str, op_class, reference: Callable, shapes, rng, low=None) -> float:
    """Run the learner's Function class and minialex's reference ops on the same float64 inputs
    and upstream gradient; compare the outputs and every input's gradient."""
    if not (isinstance(op_class, type) and issubclass(op_class, minialex.Function)):
        raise _Wrong(f"not yet: {name} should be a class derived from minialex.Function")
    inputs = [rng.standard_normal(s) for s in shapes]
    if low is not None:                     # keep inputs away from a kink
        inputs = [numpy.where(numpy.abs(a) < low, numpy.sign(a + 1e-300) * low, a) for a in inputs]
    want_y = reference(*[minialex.Tensor(a) for a in inputs]).numpy()
    g = rng.standard_normal(want_y.shape)
    want_y, want_grads = _autograd(reference, inputs, g)

    def run():
        tensors = [minialex.Tensor(a.copy(), requires_grad=True) for a in inputs]
        y = op_class()(*tensors)
        if not isinstance(y, minialex.Tensor):
            raise _Wrong(f"wrong: {name} gave a {type(y).__name__}, not one Tensor: its forward "
                         "should return one array")
        y.backward(g)
        return y, [t.grad for t in tensors]

    y, grads = _call(name, run)
    worst = _compare(f"the output of {name}", y, want_y)
    names = "xyzw" if len(inputs) > 1 else "x"
    for i, (got, want) in enumerate(zip(grads, want_grads)):
        if got is None:
            raise _Wrong(f"wrong: {name}'s backward gave no gradient for input {names[i]}")
        worst = max(worst, _compare(f"the gradient of {names[i]}", got, want))
    return worst


@_check
def check_exp_function(Exp) -> str:
    """Exp, a minialex.Function: forward e^x, backward from the saved output (lesson 2)."""
    rng = _rng(2)
    worst = max(_check_function("Exp", Exp, lambda x: x.exp(), [s], rng) for s in ((5,), (2, 3, 4)))
    return f"forward and backward agree with minialex (largest relative error {worst:.1e})"


@_check
def check_mul_function(Mul) -> str:
    """Mul, a minialex.Function of two inputs: forward x·y, backward one gradient per input."""
    rng = _rng(3)
    worst = max(_check_function("Mul", Mul, lambda x, y: x * y, [s, s], rng)
                for s in ((4,), (3, 5)))
    return f"both gradients agree with minialex (largest relative error {worst:.1e})"


# -- lesson 3: the central difference -----------------------------------------------------------

@_check
def check_central_difference(central_difference: Callable) -> str:
    """central_difference(f, x, eps): dL/dx by (f(x + eps·e_i) − f(x − eps·e_i)) / (2·eps) for
    every element i of x, where f maps an array to a number (lesson 3). Must leave x unchanged.
    Checked with eps = 1e-4, where a forward difference is off by about 1e-4 and a central one by
    about 1e-9."""
    rng = _rng(4)
    for shape in ((6,), (3, 4)):
        c = rng.standard_normal(shape)
        f = lambda a, c=c: float(numpy.sum(numpy.sin(a) * c * a ** 2))            # noqa: E731
        x = rng.standard_normal(shape)
        keep = x.copy()
        got = _call("central_difference", central_difference, f, x, 1e-4)
        if not numpy.array_equal(x, keep):
            raise _Wrong("wrong: central_difference changed x; restore every element after "
                         "nudging it")
        want = c * (numpy.cos(x) * x ** 2 + 2 * x * numpy.sin(x))
        _compare(f"the numerical gradient of a {shape} array", got, want, rtol=1e-6, atol=1e-7)
    return "every element within 1e-6 of the true derivative at eps = 1e-4"


class _Flip(minialex.Function):
    """y = x reversed along its last axis; the gradient flipped back."""

    def forward(self, x):
        return x[..., ::-1].copy()

    def backward(self, gy):
        return gy[..., ::-1].copy()


class _FlipForgets(_Flip):
    """Passes a gradient of ones (a reversed vector of ones is still ones), fails any other."""

    def backward(self, gy):
        return gy.copy()


class _Cube(minialex.Function):
    def forward(self, x):
        self.save_for_backward(x)
        return x ** 3

    def backward(self, gy):
        (x,) = self.saved
        return 3 * x * x * gy


class _CubeHalf(_Cube):
    def backward(self, gy):
        (x,) = self.saved
        return 1.5 * x * x * gy


@_check
def check_gradient_checker(gradient_error: Callable) -> str:
    """gradient_error(op, x, eps) -> the largest relative error between the op's backward and
    central differences of L = sum(op()(x) * g) (lesson 3). It must find the two wrong backwards
    (relative error above 0.1, one of them invisible with an upstream gradient of ones) and pass
    the two right ones (below 1e-6)."""
    rng = _rng(17)
    x = rng.standard_normal((3, 4))
    for op, right in ((_Flip, True), (_FlipForgets, False), (_Cube, True), (_CubeHalf, False)):
        err = _array("the error", _call("gradient_error", gradient_error, op, x.copy(), 1e-6))
        if err.size != 1:
            raise _Wrong(f"wrong: gradient_error should return one number, got shape {err.shape}")
        err = float(err)
        label = {_Flip: "a flip", _FlipForgets: "a flip whose backward forgets to flip",
                 _Cube: "x^3", _CubeHalf: "x^3 whose backward halves the slope"}[op]
        if right and not err < 1e-6:
            raise _Wrong(f"wrong: for {label} (a right backward) it reports {err:.2g}, not below "
                         "1e-6")
        if not right and not err > 0.1:
            raise _Wrong(f"wrong: for {label} (a wrong backward) it reports {err:.2g}, not above 0.1")
    return "two right backwards passed, two wrong ones caught"


# -- lesson 4: the naive convolution ---------------------------------------------------------------

_CONV_CASES = (((2, 3, 7, 6), (4, 3, 3, 2), 1, 1), ((1, 2, 9, 8), (3, 2, 3, 3), 2, 0),
               ((2, 2, 6, 6), (2, 2, 2, 2), 2, 1))


@_check
def check_conv_forward(conv2d_forward: Callable) -> str:
    """conv2d_forward(x, w, b, stride, padding) -> y (N, K, OH, OW) (lesson 4, §3.5)."""
    rng = _rng(5)
    for xs, ws, stride, pad in _CONV_CASES:
        x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
        want = F.conv2d(minialex.Tensor(x), minialex.Tensor(w), minialex.Tensor(b),
                        stride=stride, padding=pad).numpy()
        got = _call("conv2d_forward", conv2d_forward, x.copy(), w.copy(), b.copy(), stride, pad)
        _compare(f"y for x {xs}, w {ws}, stride {stride}, padding {pad}", got, want)
    return "three geometries (strides 1 and 2, padding 0 and 1, a 3x2 kernel)"


@_check
def check_conv_backward(conv2d_backward: Callable) -> str:
    """conv2d_backward(x, w, gy, stride, padding) -> (dx, dw, db), the gradients of
    sum(conv2d(x, w, b) * gy) (lesson 4)."""
    rng = _rng(6)
    for xs, ws, stride, pad in _CONV_CASES:
        x, w, b = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
        gy = rng.standard_normal(F.conv2d(minialex.Tensor(x), minialex.Tensor(w),
                                          stride=stride, padding=pad).shape)
        _, (dx, dw, db) = _autograd(lambda a, k, c: F.conv2d(a, k, c, stride=stride, padding=pad),
                                    [x, w, b], gy)
        got = _call("conv2d_backward", conv2d_backward, x.copy(), w.copy(), gy.copy(), stride, pad)
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            raise _Wrong("wrong: conv2d_backward should return three arrays (dx, dw, db)")
        case = f" (x {xs}, w {ws}, stride {stride}, padding {pad})"
        for what, g_, want in (("x", got[0], dx), ("w", got[1], dw), ("b", got[2], db)):
            _compare(f"the gradient of {what}{case}", g_, want)
    return "dx, dw and db on three geometries"


# -- lesson 5: leaky ReLU ----------------------------------------------------------------------

@_check
def check_leaky_relu(LeakyReLU) -> str:
    """LeakyReLU, a minialex.Function: f(x) = max(0.01·x, x), and its backward (lesson 5)."""
    rng = _rng(7)
    reference = lambda x: F.relu(x) - 0.01 * F.relu(-x)          # noqa: E731
    worst = max(_check_function("LeakyReLU", LeakyReLU, reference, [s], rng, low=1e-3)
                for s in ((9,), (2, 3, 4)))
    return f"forward and backward agree with minialex (largest relative error {worst:.1e})"
