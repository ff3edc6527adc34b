"""Checks for the lessons' "write it yourself" tasks: is the learner's function right?

Each ``check_*`` function takes the learner's function (or class, or CUDA source), runs it on
random inputs in float64 and compares the result with minialex's own op (or with a count minialex
computes), then prints and returns a ``Verdict``:

    correct: ...                                            the answer matches on every case
    wrong: the gradient of x differs at [2, 0, 3, 1] by 0.4 (relative error 0.31)
    not yet: conv2d_forward raises NotImplementedError: fill in its body

A verdict is true when the answer is correct, so ``assert check_conv_forward(f)`` works in a test.
The checks never show the expected values, only where and by how much the answer differs, and a
mistake in the learner's code (an exception, a wrong shape, a blank template) gives a one-line
verdict, never a traceback. The relative error is |got − want| / max(|got|, |want|, floor), as in
lesson 3; a value fails when |got − want| > atol + rtol·|want|.

The solutions live in ``lessons/solutions/``; ``tests/test_exercises.py`` shows that every
solution passes, the blank templates fail with "not yet", and typical slips are caught.
"""

from __future__ import annotations

import functools
import os
import traceback
from typing import Callable, Tuple

import numpy

import minialex
import minialex.functional as F
from minialex.data import compute_stats
from minialex.data.transforms import ten_crops as reference_ten_crops
from minialex.models import count_parameters, describe, get_preset
from minialex.nn import Parameter
from minialex.optim import SGD
from minialex.tools import cuda_host
from minialex.train.evaluate import topk_hits

__all__ = [
    "Verdict", "check_sigmoid", "check_exchange_bytes", "check_exp_function",
    "check_mul_function", "check_central_difference", "check_gradient_checker",
    "check_conv_forward", "check_conv_backward",
    "check_leaky_relu", "check_lrn_backward", "check_lrn_pytorch", "check_max_pool_backward",
    "check_dropout", "check_lighting", "check_ten_crops", "check_grouped_conv", "check_counts",
    "check_sgd_update", "check_nearest", "check_topk_error", "check_relu_kernel", "check_allreduce_bytes", "check_crossover_batch",
]


# -- verdicts ------------------------------------------------------------------------------------

class Verdict:
    """The outcome of a check: true when correct; ``str`` is the one-line message."""

    def __init__(self, passed: bool, message: str):
        self.passed, self.message = bool(passed), message

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"Verdict({self.message!r})"


class _Wrong(Exception):
    """Raised inside a check to stop at the first problem; its message is the verdict."""


def _check(fn: Callable) -> Callable:
    """Turn a function that raises ``_Wrong`` or returns a success note into a printed verdict."""
    @functools.wraps(fn)
    def run(*args, **kwargs) -> Verdict:
        try:
            note = fn(*args, **kwargs)
            verdict = Verdict(True, "correct" + (f": {note}" if note else ""))
        except _Wrong as wrong:
            verdict = Verdict(False, str(wrong))
        except Exception as err:  # an answer of a form no check foresaw: still one line
            text = str(err).strip().splitlines()
            verdict = Verdict(False, f"wrong: the check could not use your answer "
                                     f"({type(err).__name__}" + (f": {text[0]}" if text else "") + ")")
        print(verdict)
        return verdict
    return run


def _where(err: BaseException) -> str:
    """' (line N, in name)' of the innermost frame outside minialex, where the learner's code is."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if not os.path.abspath(frame.filename).startswith(here):
            return f" (line {frame.lineno}, in {frame.name})"
    return ""


def _call(name: str, fn: Callable, *args):
    """fn(*args), with the learner's blank templates and exceptions turned into verdicts."""
    if fn is None or not callable(fn):
        raise _Wrong(f"not yet: {name} is {type(fn).__name__}, not a function")
    try:
        out = fn(*args)
    except _Wrong:
        raise
    except NotImplementedError:
        raise _Wrong(f"not yet: {name} raises NotImplementedError: fill in its body") from None
    except Exception as err:  # the learner's mistake: one line, not a traceback
        text = str(err).strip().splitlines()
        raise _Wrong(f"wrong: {name} raised {type(err).__name__}"
                     + (f": {text[0]}" if text else "") + _where(err)) from None
    if out is None:
        raise _Wrong(f"not yet: {name} returned None (the template's blank)")
    return out


def _array(what: str, value) -> numpy.ndarray:
    """The learner's result as a float64 NumPy array (a Tensor's data, a list, a number)."""
    if isinstance(value, minialex.Tensor):
        value = value.data
    try:
        return numpy.asarray(minialex.as_numpy(value), dtype=numpy.float64)
    except (TypeError, ValueError):
        raise _Wrong(f"wrong: {what} is a {type(value).__name__}, not an array of numbers") from None


def _compare(what: str, got, want, rtol: float = 1e-7, atol: float = 1e-9,
             floor: float = 1e-12) -> float:
    """Raise ``_Wrong`` naming the worst element where ``got`` and ``want`` disagree.

    ``atol`` is scaled by the largest |want|, so that it means "relative to the array's size".
    Returns the largest relative error (for the success note).
    """
    got, want = _array(what, got), numpy.asarray(want, dtype=numpy.float64)
    if got.shape != want.shape:
        raise _Wrong(f"wrong: {what} has shape {got.shape}, expected shape {want.shape}")
    bad_nan = numpy.isnan(got) != numpy.isnan(want)
    if bad_nan.any():
        idx = numpy.unravel_index(int(numpy.argmax(bad_nan)), got.shape)
        state = "NaN" if numpy.isnan(got[idx]) else "a number where NaN should stay NaN"
        raise _Wrong(f"wrong: {what} is {state} at {_index(idx)}")
    g, w = numpy.nan_to_num(got), numpy.nan_to_num(want)
    diff = numpy.abs(g - w)
    scale = float(numpy.abs(w).max()) if w.size else 0.0
    rel = diff / numpy.maximum(numpy.maximum(numpy.abs(g), numpy.abs(w)), floor)
    failing = diff > atol * max(scale, 1e-300) + rtol * numpy.abs(w)
    if failing.any():
        idx = numpy.unravel_index(int(numpy.argmax(numpy.where(failing, rel, -1.0))), got.shape)
        at = f" at {_index(idx)}" if got.ndim else ""
        raise _Wrong(f"wrong: {what} differs{at} by {_number(diff[idx])} "
                     f"(relative error {rel[idx]:.2g})")
    return float(rel.max()) if rel.size else 0.0


def _number(value: float) -> str:
    """A count as 10,624; anything else with three significant digits."""
    return f"{value:,.0f}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:.3g}"


def _index(idx) -> str:
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def _rng(seed: int = 0) -> numpy.random.Generator:
    return numpy.random.default_rng(seed)


def _autograd(fn: Callable, arrays, g) -> Tuple[numpy.ndarray, list]:
    """minialex's forward output and the gradients of sum(fn(*arrays) * g), in float64."""
    tensors = [minialex.Tensor(a.copy(), requires_grad=True) for a in arrays]
    y = fn(*tensors)
    y.backward(g)
    return y.numpy(), [t.grad for t in tensors]


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


# -- lesson 6: LRN ------------------------------------------------------------------------------

@_check
def check_lrn_backward(lrn_backward: Callable) -> str:
    """lrn_backward(a, g, size, alpha, beta, k) -> dL/da for L = sum(lrn(a) * g), the paper's LRN
    (§3.3). Checked with a large alpha, where forgetting the neighbours' term shows (lesson 6)."""
    rng = _rng(8)
    for shape, size, alpha in (((2, 7, 3, 3), 5, 0.5), ((1, 6, 2, 4), 3, 0.2),
                               ((2, 7, 2, 2), 5, 1e-4)):
        a = rng.standard_normal(shape) * (30 if alpha < 1e-3 else 1)
        g = rng.standard_normal(shape)
        _, (want,) = _autograd(lambda t: F.local_response_norm(t, size, alpha, 0.75, 2.0), [a], g)
        got = _call("lrn_backward", lrn_backward, a.copy(), g.copy(), size, alpha, 0.75, 2.0)
        _compare(f"the gradient of a (size {size}, alpha {alpha})", got, want)
    return "sizes 3 and 5, small and large alpha"


@_check
def check_lrn_pytorch(lrn_pytorch: Callable) -> str:
    """lrn_pytorch(x, size, alpha, beta, k): LRN in PyTorch's and Caffe's convention, where alpha
    is divided by the window size (lesson 6)."""
    rng = _rng(9)
    for size, alpha, k in ((5, 5e-4, 2.0), (3, 1e-3, 1.0)):
        x = numpy.maximum(rng.standard_normal((2, 8, 3, 3)) * 60, 0)
        want = F.local_response_norm(minialex.Tensor(x), size, alpha / size, 0.75, k).numpy()
        got = _call("lrn_pytorch", lrn_pytorch, x.copy(), size, alpha, 0.75, k)
        _compare(f"the output (size {size}, alpha {alpha}, k {k})", got, want)
    return "two windows and two k"


# -- lesson 7: pooling backward -------------------------------------------------------------------

@_check
def check_max_pool_backward(max_pool_backward: Callable) -> str:
    """max_pool_backward(x, gy, size, stride) -> dL/dx for L = sum(max_pool2d(x) * gy): every
    window's gradient added to its maximum, also where windows overlap (lesson 7, §3.4)."""
    rng = _rng(10)
    for shape, size, stride in (((2, 3, 9, 9), 3, 2), ((1, 2, 11, 7), 3, 2), ((1, 2, 8, 8), 2, 2)):
        x = rng.permutation(int(numpy.prod(shape))).reshape(shape) / 10.0   # no ties
        gy = rng.standard_normal(F.max_pool2d(minialex.Tensor(x), size, stride).shape)
        _, (want,) = _autograd(lambda t: F.max_pool2d(t, size, stride), [x], gy)
        got = _call("max_pool_backward", max_pool_backward, x.copy(), gy.copy(), size, stride)
        _compare(f"the gradient of x ({size}x{size}/{stride}, x {shape})", got, want)
    return "3x3/2 (overlapping) and 2x2/2, square and oblong maps"


# -- lesson 8: dropout ------------------------------------------------------------------------------

@_check
def check_dropout(dropout: Callable) -> str:
    """dropout(x, keep, p, training, mode): the paper's form (train y = keep·x, test y = (1 − p)·x)
    and the inverted form (train y = keep·x / (1 − p), test y = x) (lesson 8, §4.2)."""
    rng = _rng(11)
    for p in (0.5, 0.2):
        x = rng.standard_normal((4, 6))
        keep = (rng.random((4, 6)) >= p).astype(numpy.float64)
        for mode in ("paper", "inverted"):
            for training in (True, False):
                want = F.dropout(minialex.Tensor(x), p, training=training, mode=mode,
                                 mask=keep).numpy()
                got = _call("dropout", dropout, x.copy(), keep.copy(), p, training, mode)
                phase = "training" if training else "test"
                _compare(f"the {phase} output in mode {mode!r} with p = {p}", got, want)
    return "both forms, training and test, p = 0.5 and 0.2"


# -- lesson 9: PCA lighting ---------------------------------------------------------------------------

@_check
def check_lighting(lighting_shift: Callable) -> str:
    """lighting_shift(images, alpha) -> (n, 3): the RGB shift [p1 p2 p3][α1λ1, α2λ2, α3λ3]ᵀ of
    §4.1 for each row of alpha, from the PCA of the images' pixels on the [0, 1] scale (each
    eigenvector's sign chosen so that its components sum to a positive number) (lesson 9)."""
    rng = _rng(12)
    n, side = 24, 16                              # 6,144 pixels, colours that prefer brightness
    light = rng.uniform(0.2, 0.8, (n, side, side, 1))
    tint = rng.standard_normal((n, side, side, 3)) * numpy.array([0.12, 0.06, 0.03])
    images = (numpy.clip(light + tint, 0, 1) * 255).round().astype(numpy.uint8)
    alpha = rng.standard_normal((5, 3)) * 0.1
    want = compute_stats(images).lighting(alpha)
    got = _call("lighting_shift", lighting_shift, images.copy(), alpha.copy())
    # The covariance divided by M (pixels) or M - 1 differs by 1/M: allow that.
    _compare("the RGB shift", got, want, rtol=1e-3, atol=1e-6)
    return "five draws of alpha on a set of colour images"


@_check
def check_ten_crops(ten_crops: Callable) -> str:
    """ten_crops(image, size) -> (10, size, size, 3): the four corner patches (top-left,
    top-right, bottom-left, bottom-right), the centre, then their mirror images in the same order
    (§4.1; lesson 9); compared with ``minialex.data.transforms.ten_crops``."""
    rng = _rng(18)
    for base, size in ((12, 8), (11, 8), (9, 9)):
        image = rng.integers(0, 256, (base, base, 3), dtype=numpy.uint8)
        got = _call("ten_crops", ten_crops, image.copy(), size)
        _compare(f"the stack of patches of a {base}x{base} image, size {size}", got,
                 reference_ten_crops(image, size), rtol=0, atol=0)
    return "even and odd margins, and no margin"


# -- lesson 10: grouped convolution ------------------------------------------------------------------

@_check
def check_grouped_conv(grouped_conv: Callable) -> str:
    """grouped_conv(x, w, b, groups): F.conv2d with groups, built from one ungrouped F.conv2d per
    group (padding 1) (lesson 10, §3.2)."""
    rng = _rng(13)
    for groups, c, k in ((2, 4, 6), (4, 8, 8), (1, 3, 2)):
        x = rng.standard_normal((2, c, 5, 5))
        w = rng.standard_normal((k, c // groups, 3, 3))
        b = rng.standard_normal(k)
        want = F.conv2d(minialex.Tensor(x), minialex.Tensor(w), minialex.Tensor(b), padding=1,
                        groups=groups).numpy()
        got = _call("grouped_conv", grouped_conv, x.copy(), w.copy(), b.copy(), groups)
        _compare(f"the output with {groups} group(s)", got, want)
    return "1, 2 and 4 groups"


# -- lesson 11: parameter and multiply-add counts ---------------------------------------------------

def network_counts(preset: str, num_classes: int) -> Tuple[int, int]:
    """(parameters, multiply-adds per image) of an AlexNet preset, from its layer table.

    A layer's multiply-adds are its weights (parameters less biases) times its output positions
    (1 for a fully connected layer); both columns counted."""
    macs = 0
    for r in describe(preset, num_classes):
        if not r.params:
            continue
        biases = r.output[0] if r.layer == "fc8" else 2 * r.output[0]
        positions = r.output[1] * r.output[2] if len(r.output) == 3 else 1
        macs += (r.params - biases) * positions
    return count_parameters(preset, num_classes), macs


@_check
def check_counts(count: Callable) -> str:
    """count(preset, num_classes) -> (parameters, multiply-adds per image) for any AlexNet preset
    (``minialex.models.get_preset``): lesson 11, §3.5."""
    for preset, classes in (("paper", 1000), ("mini", 10), ("tiny", 7)):
        got = _call("count", count, preset, classes)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise _Wrong("wrong: count should return two numbers (parameters, multiply-adds)")
        params, macs = network_counts(preset, classes)
        _compare(f"the parameter count of {preset!r}", got[0], params, rtol=0, atol=0)
        _compare(f"the multiply-adds of {preset!r}", got[1], macs, rtol=0, atol=0)
    return "presets paper, mini and tiny"


# -- lesson 12: the §5 update -------------------------------------------------------------------------

@_check
def check_sgd_update(sgd_update: Callable) -> str:
    """sgd_update(weights, velocities, grads, lr, momentum, weight_decay) -> (weights, velocities),
    dicts by parameter name: v ← μ·v − λ·ε·w − ε·g, w ← w + v (§5), with no weight decay on
    parameters whose name ends in 'bias' (lesson 12). Compared with minialex.optim.SGD over five
    steps, the learning rate divided by 10 after the third."""
    rng = _rng(14)
    shapes = {"conv1.weight": (3, 2, 2, 2), "conv1.bias": (3,), "fc.weight": (4, 5), "fc.bias": (4,)}
    start = {n: rng.standard_normal(s) for n, s in shapes.items()}
    params = {n: Parameter(a.copy(), name=n) for n, a in start.items()}
    opt = SGD(list(params.items()), lr=0.1, momentum=0.9, weight_decay=0.05)
    weights = {n: a.copy() for n, a in start.items()}
    velocities = {n: numpy.zeros(s) for n, s in shapes.items()}
    for step in range(5):
        lr = 0.1 if step < 3 else 0.01
        opt.lr = lr
        grads = {n: rng.standard_normal(s) for n, s in shapes.items()}
        for n, p in params.items():
            p.grad = grads[n].copy()
        opt.step()
        got = _call("sgd_update", sgd_update, {n: a.copy() for n, a in weights.items()},
                    {n: a.copy() for n, a in velocities.items()},
                    {n: a.copy() for n, a in grads.items()}, lr, 0.9, 0.05)
        if not isinstance(got, (tuple, list)) or len(got) != 2 or not all(
                isinstance(d, dict) for d in got):
            raise _Wrong("wrong: sgd_update should return two dicts (weights, velocities)")
        weights, velocities = got
        for n in shapes:
            if n not in weights or n not in velocities:
                raise _Wrong(f"wrong: the returned dicts have no entry {n!r}")
            _compare(f"the velocity of {n} after step {step + 1}", velocities[n], opt.velocity[n])
            _compare(f"{n} after step {step + 1}", weights[n], params[n].data)
    return "five steps of four parameters, biases undecayed, a learning-rate drop included"


# -- lesson 13: nearest neighbours ---------------------------------------------------------------------

@_check
def check_nearest(nearest: Callable) -> str:
    """nearest(queries, keys, k) -> (Q, k) indices into keys, nearest first in Euclidean distance
    (Figure 4's right half, §6.1; lesson 13)."""
    rng = _rng(15)
    for q, m, d, k in ((4, 30, 8, 5), (2, 12, 3, 1)):
        queries, keys = rng.standard_normal((q, d)), rng.standard_normal((m, d))
        dist = ((queries[:, None, :] - keys[None, :, :]) ** 2).sum(-1)
        want = numpy.argsort(dist, axis=1)[:, :k]
        got = _array("the neighbours", _call("nearest", nearest, queries.copy(), keys.copy(), k))
        if got.shape != want.shape:
            raise _Wrong(f"wrong: the neighbours have shape {got.shape}, expected shape "
                         f"{want.shape} (queries, k)")
        if (got != want).any():
            row, rank = numpy.argwhere(got != want)[0]
            raise _Wrong(f"wrong: neighbour {rank + 1} of query {row} (k = {k}) is not the "
                         f"{_ordinal(rank + 1)} nearest key")
    return "two sets of queries, k = 5 and 1"


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


@_check
def check_topk_error(topk_error: Callable) -> str:
    """topk_error(probs, labels, k) -> the fraction of rows whose label is not among the k
    highest probabilities (lesson 13; the paper's top-1 and top-5 errors, §6); compared with
    ``minialex.train.evaluate.topk_hits``."""
    rng = _rng(19)
    probs = rng.dirichlet(numpy.ones(10), size=200)
    labels = rng.integers(0, 10, 200)
    for k in (5, 1, 3):
        hits = topk_hits(probs, labels, k)[1]
        got = _call("topk_error", topk_error, probs.copy(), labels.copy(), k)
        _compare(f"the top-{k} error", got, 1.0 - hits.mean())
    return "k = 1, 3 and 5 on 200 rows of 10 classes"


# -- lesson 14: a CUDA kernel, run on the CPU -------------------------------------------------------

RELU_SIGNATURE = ("template <typename T>\n__global__ void relu_forward(T* __restrict__ out, "
                  "const T* __restrict__ x, const long long total)")


@_check
def check_relu_kernel(source) -> str:
    """``source``: CUDA C++ defining ``relu_forward`` with the signature ``RELU_SIGNATURE``,
    out[i] = max(0, x[i]) for every i < total with NaN kept, any grid and block size (a grid-stride
    loop). Compiled for the CPU by the host runner (needs g++) and run on float32 and float64 with
    a launch of fewer threads than elements (lesson 14)."""
    if not isinstance(source, str) or "__global__" not in source:
        raise _Wrong("not yet: write the kernel's CUDA source as a string (see RELU_SIGNATURE)")
    host = cuda_host
    if not host.compiler():
        raise _Wrong("not yet: this machine has no C++ compiler (g++) to run the kernel on")
    try:
        module = host.HostModule(source, "your kernel")
    except ValueError:
        raise _Wrong("wrong: your source has no 'template <typename T> __global__ void' kernel") \
            from None
    except RuntimeError as err:
        lines = [ln for ln in str(err).splitlines() if "error" in ln] or str(err).splitlines()
        raise _Wrong(f"wrong: your kernel does not compile: {lines[0].split('error:')[-1].strip()}"
                     ) from None
    if "relu_forward" not in module.kernels:
        raise _Wrong(f"wrong: no kernel named relu_forward in your source (found "
                     f"{', '.join(module.kernels)})")
    rng = _rng(16)
    for dtype in (numpy.float64, numpy.float32):
        x = rng.standard_normal(1000).astype(dtype)
        x[[3, 500, 999]] = numpy.nan
        out = numpy.full(1000, 1234.5, dtype=dtype)        # a value no correct thread writes
        _call("relu_forward", lambda: module.get_function("relu_forward", dtype)(
            (3,), (32,), (out, x, numpy.int64(x.size))) or True)
        unwritten = numpy.nonzero(out == 1234.5)[0]
        if len(unwritten) == x.size:
            raise _Wrong("not yet: relu_forward wrote no element of out (is its body empty?)")
        if len(unwritten):
            raise _Wrong(f"wrong: out[{unwritten[0]}] was never written ({len(unwritten)} of "
                         f"{x.size} elements) by 3 blocks of 32 threads")
        _compare(f"out ({numpy.dtype(dtype).name})", out, numpy.maximum(x, 0))
    return "float32 and float64, 96 threads for 1000 elements, NaN kept"


# -- lesson 15: bytes per step ----------------------------------------------------------------------

def column_bytes_per_image(preset: str, itemsize: int = 4) -> int:
    """Bytes the two columns exchange per image in one training step (forward and backward): each
    column's pooled conv2, pooled conv5 and fc7 outputs cross both ways before conv3, fc6 and fc7,
    and column 1's fc7 output crosses to fc8 on column 0 (§3.2; lesson 10 counts the same)."""
    p = get_preset(preset)
    s = p.spatial_sizes()
    both_ways = p.channels[1] * s["pool2"] ** 2 + p.channels[4] * s["pool5"] ** 2 + p.fc
    return itemsize * (2 * 2 * both_ways + 2 * p.fc)


@_check
def check_allreduce_bytes(allreduce_bytes: Callable) -> str:
    """allreduce_bytes(preset, num_classes, itemsize) -> the bytes of gradients one rank hands to
    the allreduce per step in data parallelism: one value per parameter (lesson 15)."""
    for preset, classes, itemsize in (("paper", 1000, 4), ("mini", 10, 4), ("tiny", 5, 2)):
        want = count_parameters(preset, classes) * itemsize
        got = _call("allreduce_bytes", allreduce_bytes, preset, classes, itemsize)
        _compare(f"allreduce_bytes({preset!r}, {classes}, {itemsize})", got, want, rtol=0, atol=0)
    return "presets paper, mini and tiny"


@_check
def check_crossover_batch(crossover_batch: Callable) -> str:
    """crossover_batch(preset, num_classes) -> the smallest batch (per process) at which the two
    columns exchange more bytes per step than one rank's float32 gradients (lesson 15)."""
    for preset, classes in (("paper", 1000), ("mini", 10), ("tiny", 10)):
        want = 4 * count_parameters(preset, classes) // column_bytes_per_image(preset) + 1
        got = _call("crossover_batch", crossover_batch, preset, classes)
        _compare(f"crossover_batch({preset!r}, {classes})", got, want, rtol=0, atol=0)
    return "presets paper, mini and tiny"
