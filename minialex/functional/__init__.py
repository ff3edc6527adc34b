"""The ops of AlexNet as functions on Tensors: ``import minialex.functional as F``.

One module per kind of op, each a ``minialex.Function`` subclass plus the lowercase wrapper you call:

    conv.py           conv2d (im2col + GEMM), conv2d_relu, im2col, col2im,          §3.5
                      conv2d_naive
    conv_cpu.py       how the CPU runs conv2d fast: chunks, threads, GEMM blocks, Winograd's choice
    winograd.py       the CPU's wide 3x3 convs (conv3-conv5) by Winograd's F(2x2, 3x3)
    pooling.py        max_pool2d (overlapping), max_pool2d_naive                     §3.4
    normalization.py  local_response_norm (paper literal), local_response_norm_naive §3.3
    activation.py     relu, tanh                                                     §3.1
    dropout.py        dropout (paper or inverted form)                               §4.2
    linear.py         linear                                                         §3.5
    loss.py           log_softmax, softmax, cross_entropy                            §5

The ``*_naive`` versions are loops that read like the formulas; they are differentiable too, give
the same results as the fast versions (the tests check forward and backward), and are slow.
Every op works on NumPy and CuPy arrays (CUDA kernels in ``minialex.kernels``), float32 and
float64, and returns the input's dtype.
"""

from .activation import relu, tanh
from .conv import col2im, conv2d, conv2d_naive, conv2d_relu, im2col
from .dropout import dropout
from .linear import linear
from .loss import cross_entropy, log_softmax, softmax
from .normalization import local_response_norm, local_response_norm_naive
from .pooling import max_pool2d, max_pool2d_naive

__all__ = [
    "conv2d", "conv2d_relu", "conv2d_naive", "im2col", "col2im", "max_pool2d", "max_pool2d_naive",
    "local_response_norm", "local_response_norm_naive", "relu", "tanh", "dropout", "linear",
    "log_softmax", "softmax", "cross_entropy",
]
