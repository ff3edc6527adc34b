"""Lesson 10's task, solved."""
import numpy as np

import minialex
import minialex.functional as F


def grouped_conv(x, w, b, groups):
    c, k = x.shape[1] // groups, w.shape[0] // groups
    parts = [F.conv2d(minialex.Tensor(x[:, g * c:(g + 1) * c]),
                      minialex.Tensor(w[g * k:(g + 1) * k]),
                      minialex.Tensor(b[g * k:(g + 1) * k]), padding=1).numpy()
             for g in range(groups)]
    return np.concatenate(parts, axis=1)
