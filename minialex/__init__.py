"""minialex: a small deep-learning framework that builds AlexNet (Krizhevsky, Sutskever and
Hinton, 2012) from arrays up, on NumPy or CuPy.

The parts, in the order a reader meets them (each depends only on those above it):

- ``minialex.backend``     NumPy or CuPy, devices ('cpu', 'cpu:0', 'cpu:1', 'cuda:N'), the transfer log
- ``minialex.autograd``    Tensor, Function, backward, ``to_device`` (basic ops in ``minialex.ops``)
- ``minialex.gradcheck``   finite-difference checks
- ``minialex.functional``  the layers as functions (conv2d, max_pool2d, local_response_norm, ...),
  each naive and fast; ``minialex.kernels`` holds their CUDA sources, and
  ``minialex.kernels.host`` runs those sources on the CPU (for tests and lesson 14)
- ``minialex.nn``          Module, Parameter and the layer classes
- ``minialex.models``      AlexNet (two columns), its presets, the grouped and one-column forms
- ``minialex.optim``       SGD as §5 writes it, learning-rate schedules
- ``minialex.data``        datasets, the paper's preprocessing and augmentation, the loader
- ``minialex.checkpoint``  HDF5 ``save``/``load``
- ``minialex.train``, ``evaluate``, ``viz``  the jobs behind ``python cli.py`` (with ``run_setup``:
  devices, preset, precision, data; ``rng_state``: the generators' states for exact resume)
"""
from .backend import (Device, DeviceError, Transfer, TransferLog, as_numpy, default_device,
                      default_devices, get_array_module, gpu_available, gpu_count, transfer_log)
from .autograd import (Function, Tensor, concat, enable_grad, is_grad_enabled, no_grad, split,
                       tensor, to_device)
from .gradcheck import GradcheckError, GradcheckReport, gradcheck
from . import functional, nn  # noqa: E402  (the layers: minialex.functional as F, minialex.nn)
from . import models  # noqa: E402  (AlexNet, its presets and forms)
from .checkpoint import CheckpointError, load, save  # noqa: E402  (HDF5 files)

__version__ = "0.1.0"

__all__ = [
    "Device", "DeviceError", "Transfer", "TransferLog", "as_numpy", "default_device",
    "default_devices", "get_array_module", "gpu_available", "gpu_count", "transfer_log",
    "Function", "Tensor", "concat", "enable_grad", "is_grad_enabled", "no_grad", "split",
    "tensor", "to_device", "GradcheckError", "GradcheckReport", "gradcheck",
    "models", "save", "load", "CheckpointError",
]
