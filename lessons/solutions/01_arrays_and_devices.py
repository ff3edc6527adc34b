"""Lesson 1's tasks, solved."""
from minialex.backend import get_array_module


def sigmoid(x):
    """1 / (1 + e^-x) with the xp pattern. For x < 0 it is computed as e^x / (1 + e^x), so that
    e^-x never overflows; both forms take e^-|x|."""
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def exchange_bytes(batch, dtype):
    """One column's pooled conv2 output (128 channels of 13x13 per image) in ``dtype``."""
    import numpy as np
    return batch * 128 * 13 * 13 * np.dtype(dtype).itemsize
