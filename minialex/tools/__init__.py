"""Jobs that use the core and that the core never imports.

    cli.py                the command line (``python cli.py``, the ``minialex`` script)
    distributed.py        data-parallel training: N processes under MPI (NCCL between GPUs), a
                          ``minialex.train.World``                                       [mpi]
    cuda_host.py          runs the CUDA sources of ``minialex.kernels`` on the CPU with g++
                          (the kernel tests, lesson 14)
    prepare.py            one HDF5 cache from any data source (``python cli.py prepare``)
    imagenet_archives.py  the official ILSVRC-2012 archives, read by prepare     [imagenet]
    inference.py          the jobs on a checkpoint: evaluate, predict, neighbours, kernels
    export_onnx.py        a trained network as an ONNX graph                        [onnx]
    viz.py                pictures: filters, neighbours, top-5, training curves
    health.py             ``python cli.py gradcheck``: every op's gradient, checked
    benchmark.py          ``python cli.py bench``: one training step, timed

The pip extra a tool needs is in brackets. The rule, checked by tests/test_layering.py: nothing
in ``minialex`` outside this folder imports from it.
"""
