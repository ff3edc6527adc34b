"""A health check of the whole stack: the finite-difference gradient check of every AlexNet op
on one backend (``python cli.py gradcheck``). Run it after installing CuPy on a new GPU: it
exercises the CUDA kernels, the im2col GEMMs and the cross-device copy in float64.

Each check follows the project's rules for checks that can fail: float64, a random upstream
gradient (inside ``minialex.gradcheck``), inputs without ties where the op has kinks (max
pooling, ReLU), a fixed dropout mask, and an LRN alpha large enough that a wrong formula shows.
``CHECKS`` is the list (each op's builder in ``_BUILDERS``); ``run_checks(device)`` runs it and ``format_table`` prints the result.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, List, Optional

import numpy

import minialex.functional as F
from ..autograd import Tensor, concat, to_device
from ..backend import as_device
from ..gradcheck import gradcheck


@dataclasses.dataclass
class CheckResult:
    name: str
    paper: str
    passed: bool
    max_rel_error: float
    seconds: float
    error: Optional[str] = None


def _tie_free(rng, shape, scale=1.0):
    """Distinct values spaced far beyond eps (max pool and ReLU have kinks at ties and zero)."""
    n = int(numpy.prod(shape))
    values = (numpy.arange(n) - n / 2 + 0.5) * (scale / max(n, 1)) * 4
    return rng.permutation(values).reshape(shape)


# Each builder(rng, device) -> (fn, inputs): an op, and inputs that suit its gradient check.


def _conv(groups, stride, padding):
    def build(rng, dev):
        x = rng.standard_normal((2, 4, 7, 7))
        w = rng.standard_normal((6, 4 // groups, 3, 3))
        b = rng.standard_normal(6)
        return (lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding, groups=groups),
                [x, w, b])
    return build


def _conv1_relu(rng, dev):
    # conv1's geometry (11x11, stride 4) with its ReLU folded in, as the one-device AlexNet
    # runs every conv (F.conv2d_relu); the bias keeps half the outputs well below the kink
    x = rng.standard_normal((2, 3, 19, 19))
    w = rng.standard_normal((4, 3, 11, 11)) * 0.1
    b = numpy.array([3.0, -3.0, 2.0, -2.0])
    return (lambda x, w, b: F.conv2d_relu(x, w, b, stride=4), [x, w, b])


def _pool(rng, dev):
    return (lambda x: F.max_pool2d(x, kernel_size=3, stride=2), [_tie_free(rng, (2, 3, 9, 9))])


def _pool_padded(rng, dev):
    return (lambda x: F.max_pool2d(x, kernel_size=3, stride=2, padding=1),
            [_tie_free(rng, (2, 3, 8, 8))])


def _lrn(rng, dev):
    # alpha 0.1 (not 1e-4) so the normaliser differs from k and a wrong formula would show
    return (lambda x: F.local_response_norm(x, size=5, alpha=0.1, beta=0.75, k=2.0),
            [rng.standard_normal((2, 7, 3, 3))])


def _relu(rng, dev):
    return (F.relu, [_tie_free(rng, (3, 8)) + 0.05])


def _tanh(rng, dev):
    return (F.tanh, [rng.standard_normal((3, 8))])


def _dropout(rng, dev):
    mask = rng.random((4, 10)) >= 0.5
    return (lambda x: F.dropout(x, p=0.5, training=True, mask=dev.put(mask)),
            [rng.standard_normal((4, 10))])


def _linear(rng, dev):
    return (F.linear, [rng.standard_normal((3, 7)), rng.standard_normal((5, 7)),
                       rng.standard_normal(5)])


def _log_softmax(rng, dev):
    return (lambda x: F.log_softmax(x, axis=1), [rng.standard_normal((4, 6))])


def _softmax(rng, dev):
    return (lambda x: F.softmax(x, axis=1), [rng.standard_normal((4, 6))])


def _cross_entropy(rng, dev):
    labels = dev.put(rng.integers(0, 6, size=4))
    return (lambda x: F.cross_entropy(x, labels), [rng.standard_normal((4, 6))])


def _crossing(rng, dev):
    # what conv3/fc6/fc7/fc8 do: copy a column's output across and concatenate (§3.2)
    return (lambda a, b: concat([a, to_device(b, dev, label="health check")], axis=1) * 1.5,
            [rng.standard_normal((2, 3)), rng.standard_normal((2, 4))])


#: (name, paper section, builder) for every op.
_BUILDERS = [
    ("conv2d 3x3, stride 1, pad 1", "§3.5", _conv(1, 1, 1)),
    ("conv2d 3x3, stride 2, groups 2", "§3.2", _conv(2, 2, 0)),
    ("conv2d_relu 11x11, stride 4 (conv1's)", "§3.1", _conv1_relu),
    ("max_pool2d 3x3, stride 2 (overlapping)", "§3.4", _pool),
    ("max_pool2d 3x3, stride 2, pad 1", "§3.4", _pool_padded),
    ("local_response_norm (paper form)", "§3.3", _lrn),
    ("relu", "§3.1", _relu),
    ("tanh", "§3.1", _tanh),
    ("dropout (fixed mask)", "§4.2", _dropout),
    ("linear", "§3.5", _linear),
    ("log_softmax", "§5", _log_softmax),
    ("softmax", "§5", _softmax),
    ("cross_entropy", "§5", _cross_entropy),
    ("to_device + concat (a crossing)", "§3.2", _crossing),
]

CHECKS = [(name, paper) for name, paper, _ in _BUILDERS]


def run_checks(device="cpu", seed: int = 0, rtol: float = 1e-5,
               progress: Optional[Callable[[CheckResult], None]] = None) -> List[CheckResult]:
    """Run every check on ``device`` in float64; never raises for a failing op (it is reported)."""
    dev = as_device(device)
    results = []
    for i, (name, paper, build) in enumerate(_BUILDERS):
        rng = numpy.random.default_rng([seed, i])
        t0 = time.perf_counter()
        try:
            fn, inputs = build(rng, dev)
            tensors = [Tensor(dev.put(numpy.asarray(x, dtype=numpy.float64)), device=dev) for x in inputs]
            report = gradcheck(fn, tensors, rtol=rtol, name=name, raise_on_failure=False, seed=seed)
            res = CheckResult(name, paper, report.passed, report.max_rel_error, time.perf_counter() - t0)
        except Exception as e:  # an op that crashes is a failed check, with its message
            res = CheckResult(name, paper, False, float("nan"), time.perf_counter() - t0,
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        results.append(res)
        if progress is not None:
            progress(res)
    return results


def format_table(results: List[CheckResult], device) -> str:
    lines = [f"finite-difference gradient checks on {as_device(device)} (float64, random upstream "
             "gradient; pass: max relative error <= 1e-5)",
             f"{'op':<42} {'paper':<6} {'max rel. error':>15} {'time':>8}  result"]
    for r in results:
        err = "-" if numpy.isnan(r.max_rel_error) else f"{r.max_rel_error:.2e}"
        status = "ok" if r.passed else "FAILED" + (f" ({r.error})" if r.error else "")
        lines.append(f"{r.name:<42} {r.paper:<6} {err:>15} {r.seconds:>7.2f}s  {status}")
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed} of {len(results)} passed")
    return "\n".join(lines)
