"""Checks for lessons 14-15: a CUDA kernel run on the CPU, the bytes that cross per step."""

from __future__ import annotations

from typing import Callable

import numpy

from minialex.models import count_parameters, get_preset
from minialex.tools import cuda_host
from .verdicts import _Wrong, _check, _call, _compare, _rng


# -- lesson 14: a CUDA kernel, run on the CPU -------------------------------------------------------

RELU_SIGNATURE = ("template <typename T>\n__global__ void relu_forward(T* __restrict__ out, "
                  "const T* __restrict__ x, const long long total)")


@_check
def check_relu_kernel(source) -> str:
    """``source``: CUDA C++ defining ``relu_forward`` with the signature ``RELU_SIGNATURE``,
    out[i] = max(0, x[i]) for every i < total with NaN kept, any grid and block size (a grid-stride
    loop). Compiled for the CPU by the host runner (needs g++) and run on float32 and float64 with
    a launch of fewer threads than elements (lesson 14)."""
    if not isinstance(source, str) or "__global__" not in source:
        raise _Wrong("not yet: write the kernel's CUDA source as a string (see RELU_SIGNATURE)")
    host = cuda_host
    if not host.compiler():
        raise _Wrong("not yet: this machine has no C++ compiler (g++) to run the kernel on")
    try:
        module = host.HostModule(source, "your kernel")
    except ValueError:
        raise _Wrong("wrong: your source has no 'template <typename T> __global__ void' kernel") \
            from None
    except RuntimeError as err:
        lines = [ln for ln in str(err).splitlines() if "error" in ln] or str(err).splitlines()
        raise _Wrong(f"wrong: your kernel does not compile: {lines[0].split('error:')[-1].strip()}"
                     ) from None
    if "relu_forward" not in module.kernels:
        raise _Wrong(f"wrong: no kernel named relu_forward in your source (found "
                     f"{', '.join(module.kernels)})")
    rng = _rng(16)
    for dtype in (numpy.float64, numpy.float32):
        x = rng.standard_normal(1000).astype(dtype)
        x[[3, 500, 999]] = numpy.nan
        out = numpy.full(1000, 1234.5, dtype=dtype)        # a value no correct thread writes
        _call("relu_forward", lambda: module.get_function("relu_forward", dtype)(
            (3,), (32,), (out, x, numpy.int64(x.size))) or True)
        unwritten = numpy.nonzero(out == 1234.5)[0]
        if len(unwritten) == x.size:
            raise _Wrong("not yet: relu_forward wrote no element of out (is its body empty?)")
        if len(unwritten):
            raise _Wrong(f"wrong: out[{unwritten[0]}] was never written ({len(unwritten)} of "
                         f"{x.size} elements) by 3 blocks of 32 threads")
        _compare(f"out ({numpy.dtype(dtype).name})", out, numpy.maximum(x, 0))
    return "float32 and float64, 96 threads for 1000 elements, NaN kept"


# -- lesson 15: bytes per step ----------------------------------------------------------------------

def column_bytes_per_image(preset: str, itemsize: int = 4) -> int:
    """Bytes the two columns exchange per image in one training step (forward and backward): each
    column's pooled conv2, pooled conv5 and fc7 outputs cross both ways before conv3, fc6 and fc7,
    and column 1's fc7 output crosses to fc8 on column 0 (§3.2; lesson 10 counts the same)."""
    p = get_preset(preset)
    s = p.spatial_sizes()
    both_ways = p.channels[1] * s["pool2"] ** 2 + p.channels[4] * s["pool5"] ** 2 + p.fc
    return itemsize * (2 * 2 * both_ways + 2 * p.fc)


@_check
def check_allreduce_bytes(allreduce_bytes: Callable) -> str:
    """allreduce_bytes(preset, num_classes, itemsize) -> the bytes of gradients one rank hands to
    the allreduce per step in data parallelism: one value per parameter (lesson 15)."""
    for preset, classes, itemsize in (("paper", 1000, 4), ("mini", 10, 4), ("tiny", 5, 2)):
        want = count_parameters(preset, classes) * itemsize
        got = _call("allreduce_bytes", allreduce_bytes, preset, classes, itemsize)
        _compare(f"allreduce_bytes({preset!r}, {classes}, {itemsize})", got, want, rtol=0, atol=0)
    return "presets paper, mini and tiny"


@_check
def check_crossover_batch(crossover_batch: Callable) -> str:
    """crossover_batch(preset, num_classes) -> the smallest batch (per process) at which the two
    columns exchange more bytes per step than one rank's float32 gradients (lesson 15)."""
    for preset, classes in (("paper", 1000), ("mini", 10), ("tiny", 10)):
        want = 4 * count_parameters(preset, classes) // column_bytes_per_image(preset) + 1
        got = _call("crossover_batch", crossover_batch, preset, classes)
        _compare(f"crossover_batch({preset!r}, {classes})", got, want, rtol=0, atol=0)
    return "presets paper, mini and tiny"
