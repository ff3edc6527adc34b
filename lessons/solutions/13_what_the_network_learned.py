"""Lesson 13's task, solved."""
import numpy as np


def nearest(queries, keys, k):
    d2 = ((queries[:, None, :] - keys[None, :, :]) ** 2).sum(axis=-1)   # (Q, M) squared distances
    return np.argsort(d2, axis=1)[:, :k]


def topk_error(probs, labels, k):
    top = np.argsort(-probs, axis=1)[:, :k]                 # the k highest, per row
    return float(np.mean(~(top == labels[:, None]).any(axis=1)))
