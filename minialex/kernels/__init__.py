"""CUDA kernels for the GPU methods (``forward_gpu``/``backward_gpu``) of ``minialex.functional``.

The sources sit beside this file, one per kind of op, each a twin of its NumPy code:

    conv.cu         im2col, col2im (gather, no atomics)             functional/conv.py
                    im2col_t, col2im_t (transposed columns)          conv_gpu.py
    pooling.cu      max_pool_forward (+ argmax), max_pool_backward   functional/pooling.py
    lrn.cu          lrn_forward, lrn_backward                        functional/normalization.py
    layout.cu       knp_to_nchw (+ bias, ReLU), nchw_to_knp (+ the   conv_gpu.py
                    ReLU's backward): the GEMMs' rows <-> NCHW
    elementwise.cu  relu_backward                                    functional/activation.py
                    sgd_update (the paper's update in one pass)      optim.py
    loss.cu         cross_entropy_forward, cross_entropy_backward    functional/loss.py
                    (softmax cross-entropy: three launches, not ~15)
    windows.cuh     covering_windows: the windows over one input position, for the gathers
                    of col2im, col2im_t and max_pool_backward (inlined by ``source``)

``launch.py`` compiles them (once per GPU) and holds the launchers, re-exported here;
``conv_gpu.py`` arranges conv2d on a GPU (transposed columns, cuBLAS GEMMs, these kernels);
``minialex.tools.cuda_host`` runs the same sources on the CPU, which is how the tests check
every kernel on machines without a GPU. Nothing here imports from ``minialex.functional``.
"""

from .launch import (C_TYPES, KERNELS, col2im, col2im_t, cross_entropy_backward,  # noqa: F401
                     cross_entropy_forward, get_function, im2col, im2col_t, knp_to_nchw,
                     lrn_backward, lrn_forward, max_pool_backward, max_pool_forward, nchw_to_knp,
                     relu_backward, sgd_update, source)
