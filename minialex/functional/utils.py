"""Small helpers shared by the ops in ``minialex.functional``: argument checks and sizes.

The CPU's threads (``in_parallel``, ``batch_parts``) are in ``minialex.cpu``."""

from __future__ import annotations

from typing import Tuple

import numpy

from ..kernels.launch import output_size  # noqa: F401  (the one formula, shared with the GPU conv)


def pair(value, op: str, what: str) -> Tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 5) -> (3, 5)``. Raises ValueError naming ``op`` otherwise."""
    if isinstance(value, (int, numpy.integer)):
        return int(value), int(value)
    try:
        a, b = value
        return int(a), int(b)
    except (TypeError, ValueError):
        raise ValueError(f"{op}: {what} must be an int or a pair of ints, got {value!r}") from None


def shape_of(x) -> tuple:
    return tuple(int(s) for s in x.shape)


def check_float(x, op: str, what: str = "input") -> None:
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: {what} must be a floating-point array, got dtype {x.dtype}")


def check_same_dtype(op: str, **arrays) -> None:
    """All given arrays share one dtype (no silent float32/float64 promotion)."""
    items = [(k, v) for k, v in arrays.items() if v is not None]
    first_name, first = items[0]
    for name, a in items[1:]:
        if a.dtype != first.dtype:
            raise TypeError(f"{op}: {first_name} is {first.dtype} but {name} is {a.dtype}; "
                            f"cast one first (e.g. x.astype(numpy.float32))")


def check_ndim(x, ndim: int, op: str, what: str, layout: str) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{op}: {what} must be {ndim}-D {layout}, got shape {shape_of(x)}")
