"""Checks for the lessons' "write it yourself" tasks: is the learner's function right?

Each ``check_*`` function takes the learner's function (or class, or CUDA source), runs it on
random inputs in float64 and compares the result with minialex's own op (or with a count minialex
computes), then prints and returns a ``Verdict``:

    correct: ...                                            the answer matches on every case
    wrong: the gradient of x differs at [2, 0, 3, 1] by 0.4 (relative error 0.31)
    not yet: conv2d_forward raises NotImplementedError: fill in its body

A verdict is true when the answer is correct, so ``assert check_conv_forward(f)`` works in a test.
The checks never show the expected values, only where and by how much the answer differs, and a
mistake in the learner's code (an exception, a wrong shape, a blank template) gives a one-line
verdict, never a traceback. The relative error is |got − want| / max(|got|, |want|, floor), as in
lesson 3; a value fails when |got − want| > atol + rtol·|want|.

The solutions live in ``lessons/solutions/``; ``tests/test_exercises.py`` shows that every
solution passes, the blank templates fail with "not yet", and typical slips are caught.

Files, one per part of the course: ``verdicts.py`` (what every check answers, and how a learner's
function is run safely), ``ops.py`` (lessons 1-5), ``layers.py`` (6-8), ``network.py`` (9-13),
``machines.py`` (14-15).
"""

from .layers import check_dropout, check_lrn_backward, check_lrn_pytorch, check_max_pool_backward
from .machines import (RELU_SIGNATURE, check_allreduce_bytes, check_crossover_batch,
                       check_relu_kernel, column_bytes_per_image)
from .network import (check_counts, check_grouped_conv, check_lighting, check_nearest,
                      check_sgd_update, check_ten_crops, check_topk_error, network_counts)
from .ops import (check_central_difference, check_conv_backward, check_conv_forward,
                  check_exchange_bytes, check_exp_function, check_gradient_checker,
                  check_leaky_relu, check_mul_function, check_sigmoid)
from .verdicts import Verdict

__all__ = [
    "Verdict", "check_sigmoid", "check_exchange_bytes", "check_exp_function",
    "check_mul_function", "check_central_difference", "check_gradient_checker",
    "check_conv_forward", "check_conv_backward",
    "check_leaky_relu", "check_lrn_backward", "check_lrn_pytorch", "check_max_pool_backward",
    "check_dropout", "check_lighting", "check_ten_crops", "check_grouped_conv", "check_counts",
    "check_sgd_update", "check_nearest", "check_topk_error", "check_relu_kernel",
    "check_allreduce_bytes", "check_crossover_batch", "RELU_SIGNATURE", "column_bytes_per_image",
    "network_counts",
]
