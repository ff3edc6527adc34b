"""Lesson 13's task, solved."""
import numpy as np


def nearest(queries, keys, k):
    d2 = ((queries[:, None, :] - keys[None, :, :]) ** 2).sum(axis=-1)   # (Q, M) squared distances
    return np.argsort(d2, axis=1)[:, :k]
