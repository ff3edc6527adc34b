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

    Parameters
    ----------
    fn : callable taking Tensors and returning a Tensor, or a tuple of Tensors (then
        L = sum_k sum(y_k * g_k) with one random g_k per output)
    inputs : arrays or Tensors; float64 is required (cast them first)
    wrt : indices of the inputs to differentiate (default: every floating-point input)
    mode : 'elementwise', 'direction', or 'auto' (elementwise if the inputs hold at most
        ``max_elements`` values in all)
    rtol : largest relative error that passes
    floor : relative-error denominator floor, so that values near zero compare absolutely;
        raised to the numeric derivatives' rounding noise / rtol (see the module docstring)

    Returns a ``GradcheckReport``; raises ``GradcheckError`` with a table when the check fails
    (unless ``raise_on_failure`` is False).
    """
    name = name or getattr(fn, "__name__", "fn")
    tensors = [x if isinstance(x, Tensor) else Tensor(x) for x in inputs]
    if wrt is None:
        wrt = [i for i, t in enumerate(tensors) if t.dtype.kind == "f"]
    for i in wrt:
        if tensors[i].dtype != numpy.float64:
            raise TypeError(f"gradcheck({name}): input {i} is {tensors[i].dtype}; finite "
                            "differences need float64 (float32 rounding swamps eps)")
    base = [t.data.copy() for t in tensors]

    def make_inputs(datas, grad: bool):
        out = []
        for i, (t, d) in enumerate(zip(tensors, datas)):
            x = Tensor(d, device=t.device)
            x.requires_grad = grad and i in wrt
            out.append(x)
        return out

    def outputs(xs) -> tuple:
        ys = fn(*xs)
        ys = tuple(ys) if isinstance(ys, (tuple, list)) else (ys,)
        if not all(isinstance(y, Tensor) for y in ys):
            raise TypeError(f"gradcheck({name}): fn must return a Tensor or a tuple of Tensors, "
                            f"got {[type(y).__name__ for y in ys]}")
        return ys

    # Analytic gradients with a random upstream gradient g_k per output (backprop of each
    # output in turn; the leaves' .grad add up to dL/dx).
    xs = make_inputs(base, grad=True)
    ys = outputs(xs)
    rng = numpy.random.default_rng(seed)
    g_np = [rng.standard_normal(y.shape) for y in ys]
    scale = sum(float(numpy.abs(as_numpy(y.data).astype(numpy.float64) * g).sum())
                for y, g in zip(ys, g_np))
    noise = 8 * numpy.finfo(numpy.float64).eps * scale / eps
    floor = max(floor, noise / rtol)
    for k, (y, g) in enumerate(zip(ys, g_np)):
        if y.requires_grad:
            y.backward(y.device.put(g.astype(y.dtype)), retain_graph=k < len(ys) - 1)
    analytic = {i: (as_numpy(xs[i].grad) if xs[i].grad is not None else numpy.zeros(xs[i].shape))
                for i in wrt}

    def loss(datas) -> float:
        with no_grad():
            ys = outputs(make_inputs(datas, grad=False))
        return float(sum(numpy.sum(as_numpy(y.data).astype(numpy.float64) * g)
                         for y, g in zip(ys, g_np)))

    total = sum(tensors[i].size for i in wrt)
    if mode == "auto":
        mode = "elementwise" if total <= max_elements else "direction"

    rows = []  # (input, index, analytic, numeric, rel)
    per_input = []
    compared = 0
    if mode == "elementwise":
        for i in wrt:
            num = numpy.zeros(tensors[i].shape)
            host = as_numpy(base[i]).astype(numpy.float64)
            for idx in numpy.ndindex(*host.shape):
                plus, minus = host.copy(), host.copy()
                plus[idx] += eps
                minus[idx] -= eps
                dp, dm = list(base), list(base)
                dp[i], dm[i] = tensors[i].device.put(plus), tensors[i].device.put(minus)
                num[idx] = (loss(dp) - loss(dm)) / (2 * eps)
            rel = relative_error(analytic[i], num, floor)
            per_input.append(float(rel.max()) if rel.size else 0.0)
            compared += rel.size
            for flat in numpy.argsort(rel, axis=None)[::-1][:5]:
                idx = numpy.unravel_index(flat, rel.shape)
                rows.append((i, tuple(int(k) for k in idx), analytic[i][idx], num[idx], rel[idx]))
    elif mode == "direction":
        worst = {i: 0.0 for i in wrt}
        for k in range(directions):
            ds = {i: rng.standard_normal(tensors[i].shape) for i in wrt}
            norm = numpy.sqrt(sum(float((d * d).sum()) for d in ds.values()))
            ds = {i: d / norm for i, d in ds.items()}
            dp, dm = list(base), list(base)
            for i in wrt:
                host = as_numpy(base[i]).astype(numpy.float64)
                dp[i] = tensors[i].device.put(host + eps * ds[i])
                dm[i] = tensors[i].device.put(host - eps * ds[i])
            num = (loss(dp) - loss(dm)) / (2 * eps)
            ana = sum(float((analytic[i] * ds[i]).sum()) for i in wrt)
            rel = float(relative_error(ana, num, floor))
            compared += 1
            rows.append(("all", f"direction {k}", ana, num, rel))
            for i in wrt:
                worst[i] = max(worst[i], rel)
        per_input = [worst[i] for i in wrt]
    else:
        raise ValueError(f"gradcheck: unknown mode {mode!r} (use 'elementwise', 'direction' or 'auto')")

    report = GradcheckReport(name, mode, max(per_input) if per_input else 0.0, per_input,
                             compared, rtol, noise)
    if not report.passed and raise_on_failure:
        rows.sort(key=lambda r: -r[4])
        lines = [f"gradcheck({name}) failed: max relative error {report.max_rel_error:.3e} > "
                 f"rtol {rtol:.1e} ({mode}, eps={eps}, values below {floor:.1e} compared "
                 "absolutely)",
                 f"{'input':>6} {'where':>20} {'analytic':>14} {'numeric':>14} {'rel.err':>10}"]
        for inp, where, a, n, r in rows[:10]:
            lines.append(f"{str(inp):>6} {str(where):>20} {a:>14.6e} {n:>14.6e} {r:>10.2e}")
        raise GradcheckError("\n".join(lines))
    return report
