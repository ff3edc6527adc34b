"""Lesson 4's tasks, solved: the convolution by loops, forward and backward."""
import numpy as np


def _out(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def conv2d_forward(x, w, b, stride, padding):
    n_img, _, h, wd = x.shape
    k_out, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = _out(h, kh, stride, padding), _out(wd, kw, stride, padding)
    y = np.zeros((n_img, k_out, oh, ow))
    for n in range(n_img):
        for k in range(k_out):
            for oy in range(oh):
                for ox in range(ow):
                    patch = xp[n, :, oy * stride:oy * stride + kh, ox * stride:ox * stride + kw]
                    y[n, k, oy, ox] = np.sum(patch * w[k]) + b[k]
    return y


def conv2d_backward(x, w, gy, stride, padding):
    """Every output y[n, k, oy, ox] used one patch and kernel k: send gy back to both."""
    _, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    db = gy.sum(axis=(0, 2, 3))
    n_img, k_out, oh, ow = gy.shape
    for n in range(n_img):
        for k in range(k_out):
            for oy in range(oh):
                for ox in range(ow):
                    rows = slice(oy * stride, oy * stride + kh)
                    cols = slice(ox * stride, ox * stride + kw)
                    dw[k] += gy[n, k, oy, ox] * xp[n, :, rows, cols]
                    dxp[n, :, rows, cols] += gy[n, k, oy, ox] * w[k]   # += : patches overlap
    h, wd = x.shape[2:]
    return dxp[:, :, padding:padding + h, padding:padding + wd], dw, db
