"""minialex: a small deep-learning framework that builds AlexNet (Krizhevsky, Sutskever and
Hinton, 2012) from arrays up, on NumPy or CuPy.

The core, in the order a reader meets it (each part depends only on those above it):

- ``minialex.backend``     NumPy or CuPy, devices ('cpu', 'cpu:0', 'cpu:1', 'cuda:N'), the transfer log
- ``minialex.files``       files written whole (temporary file, fsync, rename) and one writer per folder
- ``minialex.cpu``         the CPU's threads, BLAS and allocator, set by ``configure()`` (jobs call it)
- ``minialex.autograd``    Tensor, Function, backward, ``to_device`` (basic ops in ``minialex.ops``)
- ``minialex.gradcheck``   finite-difference checks
- ``minialex.kernels``     the CUDA sources of the GPU paths and their launchers
- ``minialex.functional``  the layers as functions (conv2d, max_pool2d, local_response_norm, ...),
  each naive and fast
- ``minialex.nn``          Module, Parameter and the layer classes
- ``minialex.models``      AlexNet (two columns), its presets, the grouped and one-column forms
- ``minialex.optim``       SGD as §5 writes it, learning-rate schedules
- ``minialex.checkpoint``  HDF5 ``save``/``load``
- ``minialex.data``        datasets, the paper's preprocessing and augmentation, the loader
- ``minialex.train``       the training loop, its setup, resume and run folder

Around the core, ``minialex.tools`` holds the jobs that use it (the command line, data-parallel
training, prepare, inference, export, pictures, the CUDA host runner); the core never imports them.
"""
from .backend import (Device, DeviceError, Transfer, TransferLog, as_numpy, default_device,
                      default_devices, get_array_module, gpu_available, gpu_count, transfer_log)
from .autograd import (Function, Tensor, concat, enable_grad, is_grad_enabled, no_grad, split,
                       tensor, to_device)
from .gradcheck import GradcheckError, GradcheckReport, gradcheck
from . import functional, nn  # noqa: E402  (the layers: minialex.functional as F, minialex.nn)
from . import models  # noqa: E402  (AlexNet, its presets and forms)
from .checkpoint import VERSION as __version__  # noqa: E402  (pyproject.toml's)
from .checkpoint import CheckpointError, load, save  # noqa: E402  (HDF5 files)

#: Modules that moved when the package became a core and its tools: importing the old name says
#: where each went.
MOVED = {
    "minialex.cli": "minialex.tools.cli", "minialex.distributed": "minialex.tools.distributed",
    "minialex.inference": "minialex.tools.inference", "minialex.viz": "minialex.tools.viz",
    "minialex.export_onnx": "minialex.tools.export_onnx", "minialex.health": "minialex.tools.health",
    "minialex.benchmark": "minialex.tools.benchmark", "minialex.kernels.host": "minialex.tools.cuda_host",
    "minialex.data.prepare": "minialex.tools.prepare",
    "minialex.data.imagenet_archives": "minialex.tools.imagenet_archives",
    "minialex.evaluate": "minialex.train.evaluate", "minialex.resume": "minialex.train.resume",
    "minialex.run_setup": "minialex.train.setup", "minialex.run_folder": "minialex.train.run_folder",
    "minialex.rng_state": "minialex.train.rng_state", "minialex.stop_flag": "minialex.train.stop_flag",
    "minialex.run_lock": "minialex.files",
}


class _MovedModules:
    """An import hook that turns ``import minialex.viz`` into an ImportError naming the new place."""

    def find_spec(self, name, path=None, target=None):
        if name in MOVED:
            raise ImportError(f"{name} moved to {MOVED[name]}: import it from there", name=name)
        return None


import sys as _sys  # noqa: E402
_sys.meta_path.append(_MovedModules())

__all__ = [
    "Device", "DeviceError", "Transfer", "TransferLog", "as_numpy", "default_device",
    "default_devices", "get_array_module", "gpu_available", "gpu_count", "transfer_log",
    "Function", "Tensor", "concat", "enable_grad", "is_grad_enabled", "no_grad", "split",
    "tensor", "to_device", "GradcheckError", "GradcheckReport", "gradcheck",
    "models", "save", "load", "CheckpointError",
]
