"""Fully connected layer (fc6, fc7, fc8 in §3.5).

    x (N, in)   weight (out, in)   bias (out,)   ->   y (N, out)
    y = x @ weight.T + bias
    dx = dy @ weight      dweight = dy.T @ x      dbias = sum_n dy[n]

The weight layout (out, in) is PyTorch's, so weights can be compared one to one.
"""

from __future__ import annotations

import numpy

from ..autograd import Function
from ..cpu import parallel_matmul
from .utils import check_float, check_ndim, check_same_dtype, shape_of


class Linear(Function):
    name = "linear"

    def forward(self, x, weight, bias=None):
        # y = x @ weight.T, written as (weight @ x.T).T: OpenBLAS runs it 2-4x faster at fc6's
        # shapes; each GEMM here shares the rows of its result among the threads
        return self._add_bias(numpy.ascontiguousarray(parallel_matmul(weight, x.T).T), x, weight, bias)

    def forward_gpu(self, x, weight, bias=None):
        return self._add_bias(x @ weight.T, x, weight, bias)   # one 2-D GEMM (TF32-eligible)

    def _add_bias(self, y, x, weight, bias):
        self.save_for_backward(x, weight)
        self.has_bias = bias is not None
        if bias is not None:
            y += bias
        return y

    def backward(self, gy):
        x, weight = self.saved
        # dx = dy @ weight: each thread takes a share of weight's columns (cpu.parallel_matmul)
        return self._grads(gy, parallel_matmul(gy, weight), parallel_matmul(gy.T, x))

    def backward_gpu(self, gy):
        x, weight = self.saved
        return self._grads(gy, gy @ weight, gy.T @ x)

    def _grads(self, gy, gx, gw):
        return (gx, gw, gy.sum(axis=0)) if self.has_bias else (gx, gw)


def linear(x, weight, bias=None):
    """y = x @ weight.T + bias for x (N, in), weight (out, in), bias (out,)."""
    check_ndim(x, 2, "linear", "input", "(N, in_features) (flatten conv outputs first)")
    check_ndim(weight, 2, "linear", "weight", "(out_features, in_features)")
    check_float(x, "linear")
    check_same_dtype("linear", input=x, weight=weight, bias=bias)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"linear: input has {x.shape[1]} features but weight expects "
                         f"{weight.shape[1]} (input shape {shape_of(x)}, weight shape {shape_of(weight)})")
    if bias is not None and shape_of(bias) != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},) for weight shape "
                         f"{shape_of(weight)}, got {shape_of(bias)}")
    op = Linear()
    return op(x, weight) if bias is None else op(x, weight, bias)
