"""The verdicts every check gives, and the helpers that run a learner's function safely."""

from __future__ import annotations

import functools
import os
import traceback
from typing import Callable, Tuple

import numpy

import minialex


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
