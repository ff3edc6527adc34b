"""Finite-difference gradient checks: is an op's ``backward`` the derivative of its ``forward``?

For a function f of tensors x_1..x_m with output y, draw a random upstream gradient g (never all
ones: a ones vector hides errors that cancel across outputs) and the scalar

    L(x) = sum(f(x) * g).

Backprop gives the analytic gradient dL/dx_i. The central difference

    (L(x + eps*e) - L(x - eps*e)) / (2*eps)          error O(eps^2)

gives the numeric one, in float64 (float32 has only ~7 digits: with eps = 1e-6 the difference
of two nearly equal values would be mostly rounding noise).

Two modes:

* ``elementwise``: e runs over every element of every input (exact, but 2 forward passes per
  element; used for small inputs).
* ``direction``: e is a few random unit directions d over all inputs at once, comparing the
  numeric directional derivative with sum_i <dL/dx_i, d_i> (cheap for large inputs).

Relative error: |a - n| / max(|a|, |n|, floor). In float64 a correct op gives ~1e-8 or less;
a wrong backward gives something near 1.

The floor. L itself is only known to about u * S, where u = 2.2e-16 (float64's machine epsilon)
and S = sum |f(x) * g|, so every numeric derivative carries rounding noise of about u * S / eps
(1e-8 for S = 50): a tiny gradient (a saturated sigmoid's 1e-8) cannot be resolved better than
that. So values below noise / rtol are compared absolutely, at the noise level:
floor = max(floor argument, noise / rtol), noise = 8 * u * S / eps.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence

import numpy

from .autograd import Tensor, no_grad
from .backend import as_numpy


class GradcheckError(AssertionError):
    """A gradient check failed; the message holds a table of the worst elements."""


@dataclasses.dataclass
class GradcheckReport:
    """What a check found: the largest relative error over all compared values."""

    name: str
    mode: str
    max_rel_error: float
    per_input: List[float]
    compared: int
    rtol: float
    noise: float = 0.0  # estimated rounding noise of the numeric derivatives (absolute)

    @property
    def passed(self) -> bool:
        return self.max_rel_error <= self.rtol

    def __str__(self) -> str:
        status = "ok" if self.passed else "FAILED"
        return (f"{self.name}: {status}, max relative error {self.max_rel_error:.2e} over "
                f"{self.compared} values ({self.mode})")


def relative_error(analytic, numeric, floor: float = 1e-8):
    """|a - n| / max(|a|, |n|, floor), elementwise (NumPy arrays)."""
    a, n = numpy.asarray(analytic, dtype=numpy.float64), numpy.asarray(numeric, dtype=numpy.float64)
    return numpy.abs(a - n) / numpy.maximum(numpy.maximum(numpy.abs(a), numpy.abs(n)), floor)


def gradcheck(fn: Callable[..., Tensor], inputs: Sequence, *, eps: float = 1e-6,
              rtol: float = 1e-5, floor: float = 1e-7, mode: str = "auto",
              max_elements: int = 2000, directions: int = 3, seed: int = 0,
              wrt: Optional[Sequence[int]] = None, name: Optional[str] = None,
              raise_on_failure: bool = True) -> GradcheckReport:
    """Compare ``fn``'s backprop gradients with central finite differences.

    Returns a ``GradcheckReport``; raises ``GradcheckError`` with a table when the check fails
    (unless ``raise_on_failure`` is False).

    Parameters
    ----------
    fn
        callable taking Tensors and returning a Tensor, or a tuple of Tensors (then
        L = sum_k sum(y_k * g_k) with one random g_k per output)
    inputs
        arrays or Tensors; float64 is required (cast them first)
    wrt
        indices of the inputs to differentiate (default: every floating-point input)
    mode
        'elementwise', 'direction', or 'auto' (elementwise if the inputs hold at most
        ``max_elements`` values in all)
    rtol
        largest relative error that passes
    floor
        relative-error denominator floor, so that values near zero compare absolutely;
        raised to the numeric derivatives' rounding noise / rtol (see the module docstring)
    """
    check = _Check(fn, inputs, wrt, name or getattr(fn, "__name__", "fn"), eps, seed)
    floor = max(floor, check.noise / rtol)      # below the rounding noise: compare absolutely
    if mode == "auto":
        mode = "elementwise" if check.size <= max_elements else "direction"
    if mode == "elementwise":
        per_input, rows = check.elementwise(floor)
    elif mode == "direction":
        per_input, rows = check.directional(floor, directions)
    else:
        raise ValueError(f"gradcheck: unknown mode {mode!r} (use 'elementwise', 'direction' or 'auto')")
    report = GradcheckReport(check.name, mode, max(per_input) if per_input else 0.0, per_input,
                             check.compared, rtol, check.noise)
    if not report.passed and raise_on_failure:
        raise GradcheckError(_failure_table(report, rows, eps, floor))
    return report


class _Check:
    """One gradient check's pieces: the inputs, the random upstream gradients g_k, the analytic
    gradients dL/dx_i by backprop, and L(x) = sum_k sum(f(x)_k * g_k) for the differences."""

    def __init__(self, fn, inputs, wrt, name: str, eps: float, seed: int):
        self.fn, self.name, self.eps = fn, name, eps
        self.tensors = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
        self.wrt = ([i for i, t in enumerate(self.tensors) if t.dtype.kind == "f"]
                    if wrt is None else list(wrt))
        for i in self.wrt:
            if self.tensors[i].dtype != numpy.float64:
                raise TypeError(f"gradcheck({name}): input {i} is {self.tensors[i].dtype}; finite "
                                "differences need float64 (float32 rounding swamps eps)")
        self.base = [t.data.copy() for t in self.tensors]
        self.size = sum(self.tensors[i].size for i in self.wrt)
        self.rng = numpy.random.default_rng(seed)
        self.compared = 0
        # Analytic gradients with a random upstream gradient g_k per output (backprop of each
        # output in turn; the leaves' .grad add up to dL/dx).
        xs = self.make_inputs(self.base, grad=True)
        ys = self.outputs(xs)
        self.g = [self.rng.standard_normal(y.shape) for y in ys]
        scale = sum(float(numpy.abs(as_numpy(y.data).astype(numpy.float64) * g).sum())
                    for y, g in zip(ys, self.g))
        self.noise = 8 * numpy.finfo(numpy.float64).eps * scale / eps
        for k, (y, g) in enumerate(zip(ys, self.g)):
            if y.requires_grad:
                y.backward(y.device.put(g.astype(y.dtype)), retain_graph=k < len(ys) - 1)
        self.analytic = {i: (as_numpy(xs[i].grad) if xs[i].grad is not None
                             else numpy.zeros(xs[i].shape)) for i in self.wrt}

    def make_inputs(self, datas, grad: bool):
        out = []
        for i, (t, d) in enumerate(zip(self.tensors, datas)):
            x = Tensor(d, device=t.device)
            x.requires_grad = grad and i in self.wrt
            out.append(x)
        return out

    def outputs(self, xs) -> tuple:
        ys = self.fn(*xs)
        ys = tuple(ys) if isinstance(ys, (tuple, list)) else (ys,)
        if not all(isinstance(y, Tensor) for y in ys):
            raise TypeError(f"gradcheck({self.name}): fn must return a Tensor or a tuple of "
                            f"Tensors, got {[type(y).__name__ for y in ys]}")
        return ys

    def loss(self, datas) -> float:
        """L at the inputs ``datas``, in float64."""
        with no_grad():
            ys = self.outputs(self.make_inputs(datas, grad=False))
        return float(sum(numpy.sum(as_numpy(y.data).astype(numpy.float64) * g)
                         for y, g in zip(ys, self.g)))

    def moved(self, steps) -> float:
        """The central difference (L(x + step) - L(x - step)) / (2 eps), ``steps``: {i: step}."""
        plus, minus = list(self.base), list(self.base)
        for i, step in steps.items():
            host = as_numpy(self.base[i]).astype(numpy.float64)
            plus[i] = self.tensors[i].device.put(host + step)
            minus[i] = self.tensors[i].device.put(host - step)
        return (self.loss(plus) - self.loss(minus)) / (2 * self.eps)

    def elementwise(self, floor: float):
        """Every element of every input in turn: (worst error per input, the 5 worst rows of
        each, as (input, index, analytic, numeric, relative error))."""
        per_input, rows = [], []
        for i in self.wrt:
            num = numpy.zeros(self.tensors[i].shape)
            for idx in numpy.ndindex(*num.shape):
                step = numpy.zeros(num.shape)
                step[idx] = self.eps
                num[idx] = self.moved({i: step})
            rel = relative_error(self.analytic[i], num, floor)
            per_input.append(float(rel.max()) if rel.size else 0.0)
            self.compared += rel.size
            for flat in numpy.argsort(rel, axis=None)[::-1][:5]:
                idx = numpy.unravel_index(flat, rel.shape)
                rows.append((i, tuple(int(k) for k in idx), self.analytic[i][idx], num[idx],
                             rel[idx]))
        return per_input, rows

    def directional(self, floor: float, directions: int):
        """A few random unit directions d over all inputs at once: the numeric directional
        derivative against sum_i <dL/dx_i, d_i>. Returns (worst error per input, one row each)."""
        rows, worst = [], {i: 0.0 for i in self.wrt}
        for k in range(directions):
            ds = {i: self.rng.standard_normal(self.tensors[i].shape) for i in self.wrt}
            norm = numpy.sqrt(sum(float((d * d).sum()) for d in ds.values()))
            ds = {i: d / norm for i, d in ds.items()}
            num = self.moved({i: self.eps * d for i, d in ds.items()})
            ana = sum(float((self.analytic[i] * ds[i]).sum()) for i in self.wrt)
            rel = float(relative_error(ana, num, floor))
            self.compared += 1
            rows.append(("all", f"direction {k}", ana, num, rel))
            for i in self.wrt:
                worst[i] = max(worst[i], rel)
        return [worst[i] for i in self.wrt], rows


def _failure_table(report: GradcheckReport, rows, eps: float, floor: float) -> str:
    """The failure message: the worst ten compared values."""
    rows = sorted(rows, key=lambda r: -r[4])
    lines = [f"gradcheck({report.name}) failed: max relative error {report.max_rel_error:.3e} > "
             f"rtol {report.rtol:.1e} ({report.mode}, eps={eps}, values below {floor:.1e} "
             "compared absolutely)",
             f"{'input':>6} {'where':>20} {'analytic':>14} {'numeric':>14} {'rel.err':>10}"]
    for inp, where, a, n, r in rows[:10]:
        lines.append(f"{str(inp):>6} {str(where):>20} {a:>14.6e} {n:>14.6e} {r:>10.2e}")
    return "\n".join(lines)
