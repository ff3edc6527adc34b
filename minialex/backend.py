"""Arrays and devices: where NumPy or CuPy is chosen, and where data crosses devices.

Everything in minialex that touches an array picks its library from the array itself
(`get_array_module(x)`), never from a global flag. CuPy is imported here, once, behind a guard,
so the package imports and runs on machines without a GPU.

Devices
-------
``Device('cpu')``              plain NumPy.
``Device('cpu:0')``, ``'cpu:1'``  *logical* CPU devices. The arrays are ordinary NumPy arrays, but
                               tensors remember which logical device they belong to and ops refuse
                               to mix them. They stand in for two GPUs, so that tests on a CPU-only
                               machine enforce the placement a two-GPU AlexNet needs (paper §3.2).
``Device('cuda:N')``           CuPy arrays on GPU N; ops run with that GPU made current.

Crossing between devices is explicit and logged: see ``minialex.to_device`` (autograd.py), which
uses ``copy_array`` and ``record_transfer`` from here. Open ``transfer_log()`` as a context to see
every crossing (label, source, destination, bytes, forward or backward).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Iterator, List, Optional, Union

import numpy

try:  # the one guarded import of CuPy in the package
    import cupy  # type: ignore
    try:
        _GPU_COUNT = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # CuPy installed but no driver or no GPU
        _GPU_COUNT = 0
except Exception:  # ImportError, or a broken CUDA install
    cupy = None
    _GPU_COUNT = 0


def gpu_count() -> int:
    """Number of CUDA GPUs CuPy can use (0 without CuPy or without a GPU)."""
    return _GPU_COUNT


def gpu_available() -> bool:
    return _GPU_COUNT > 0


def get_array_module(*arrays):
    """``numpy`` or ``cupy``, chosen from the arrays (the first CuPy array wins)."""
    if cupy is not None:
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return numpy


def is_cupy_array(a) -> bool:
    return cupy is not None and isinstance(a, cupy.ndarray)


def as_numpy(a) -> numpy.ndarray:
    """A NumPy copy (or view) of any array: CuPy arrays are copied to the host."""
    if is_cupy_array(a):
        return cupy.asnumpy(a)
    return numpy.asarray(a)


class DeviceError(RuntimeError):
    """Raised when an op is given inputs that live on different devices."""


@dataclasses.dataclass(frozen=True)
class Device:
    """A place where arrays live: 'cpu', 'cpu:0', 'cpu:1', ... or 'cuda:0', 'cuda:1', ...

    ``Device('cuda')`` means 'cuda:0'. Two devices are equal when kind and index are equal, so
    'cpu' and 'cpu:0' are *different* devices (plain CPU versus logical column 0).
    """

    kind: str
    index: Optional[int] = None

    def __init__(self, spec: Union[str, "Device"] = "cpu", index: Optional[int] = None):
        if isinstance(spec, Device):
            kind, index = spec.kind, spec.index
        else:
            text = str(spec).strip().lower()
            kind, colon, idx = text.partition(":")
            if colon:
                if not idx.isdigit():
                    raise ValueError(f"bad device {spec!r}: the index after ':' must be a number "
                                     "such as 'cpu:0' or 'cuda:1'")
                index = int(idx)
            if kind == "gpu":
                kind = "cuda"
            if kind not in ("cpu", "cuda"):
                raise ValueError(f"unknown device {spec!r}: use 'cpu', 'cpu:N' or 'cuda:N'")
            if kind == "cuda" and index is None:
                index = 0
        if index is not None and (not isinstance(index, int) or index < 0):
            raise ValueError(f"bad device index {index!r}: must be an int >= 0")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "index", index)

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    def __repr__(self) -> str:
        return f"Device('{self}')"

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def xp(self):
        """The array module for this device: numpy or cupy."""
        if self.is_cuda:
            _require_cuda(self)
            return cupy
        return numpy

    def __enter__(self):
        """Make this device current for CuPy work (a no-op on the CPU)."""
        if self.is_cuda:
            _require_cuda(self)
            ctx = cupy.cuda.Device(self.index)
            _entered.stack = getattr(_entered, "stack", []) + [ctx]
            ctx.__enter__()
        return self

    def __exit__(self, *exc):
        if self.is_cuda:
            ctx = _entered.stack.pop()
            ctx.__exit__(*exc)
        return False

    def put(self, array, dtype=None):
        """``array`` as an array of this device's library (copying host<->GPU if needed)."""
        if self.is_cuda:
            _require_cuda(self)
            with cupy.cuda.Device(self.index):
                return cupy.asarray(array, dtype=dtype)
        return numpy.asarray(as_numpy(array), dtype=dtype)


_entered = threading.local()


def _require_cuda(device: Device) -> None:
    if cupy is None:
        raise DeviceError(f"device {device} needs CuPy, which is not installed "
                          "(pip install -e '.[cuda12]' or '.[cuda13]')")
    if device.index >= _GPU_COUNT:
        raise DeviceError(f"device {device} does not exist: CuPy sees {_GPU_COUNT} GPU(s)")


def as_device(device: Union[str, Device, None]) -> Device:
    """Accept a Device, a name such as 'cuda:1', or None (meaning 'cpu')."""
    if device is None:
        return Device("cpu")
    return device if isinstance(device, Device) else Device(device)


def array_device(a) -> Device:
    """The physical device of a raw array: 'cuda:N' for CuPy, 'cpu' for NumPy."""
    if is_cupy_array(a):
        return Device("cuda", a.device.id)
    return Device("cpu")


def compatible(array, device: Device) -> bool:
    """Can ``array`` be used as data of a tensor on ``device`` without a copy?"""
    if device.is_cuda:
        return is_cupy_array(array) and array.device.id == device.index
    return not is_cupy_array(array)


def default_devices() -> tuple:
    """Where AlexNet's two columns go by default (§3.2).

    Two or more GPUs: cuda:0 and cuda:1. One GPU: both columns on cuda:0. No GPU: plain 'cpu'.
    """
    if _GPU_COUNT >= 2:
        return Device("cuda:0"), Device("cuda:1")
    if _GPU_COUNT == 1:
        return Device("cuda:0"), Device("cuda:0")
    return Device("cpu"), Device("cpu")


def default_device() -> Device:
    return default_devices()[0]


# --------------------------------------------------------------------------------------------
# Copies between devices and the transfer log
# --------------------------------------------------------------------------------------------

def copy_array(array, src: Device, dst: Device):
    """Copy a raw array from ``src`` to ``dst``. The caller logs it (see ``to_device``).

    Between two GPUs the copy is one device-to-device memcpy (peer copy where the GPUs allow).
    Even on the same device a *new* array is returned, so the two sides never alias.
    """
    if dst.is_cuda:
        _require_cuda(dst)
        with cupy.cuda.Device(dst.index):
            if is_cupy_array(array):
                array = cupy.ascontiguousarray(array) if array.device.id == dst.index else array
                if not array.flags.c_contiguous:
                    with cupy.cuda.Device(array.device.id):
                        array = cupy.ascontiguousarray(array)
                out = cupy.empty(array.shape, dtype=array.dtype)
                out.data.copy_from_device(array.data, array.nbytes)
                return out
            return cupy.asarray(array)
    if is_cupy_array(array):
        return cupy.asnumpy(array)
    return numpy.array(array, copy=True)


@dataclasses.dataclass(frozen=True)
class Transfer:
    """One crossing between devices."""

    label: str
    source: str
    destination: str
    nbytes: int
    direction: str  # 'forward' (the value) or 'backward' (its gradient going back)


class TransferLog:
    """The crossings recorded while the log is open. Use via ``with minialex.transfer_log() as log``."""

    def __init__(self):
        self.transfers: List[Transfer] = []

    def __iter__(self) -> Iterator[Transfer]:
        return iter(self.transfers)

    def __len__(self) -> int:
        return len(self.transfers)

    def total_bytes(self, direction: Optional[str] = None) -> int:
        return sum(t.nbytes for t in self.transfers if direction in (None, t.direction))

    def labels(self, direction: Optional[str] = None) -> List[str]:
        return [t.label for t in self.transfers if direction in (None, t.direction)]

    def table(self) -> str:
        """A readable table of the crossings, one per line."""
        lines = [f"{'label':<28} {'dir':<9} {'from':<7} {'to':<7} {'bytes':>14}"]
        for t in self.transfers:
            lines.append(f"{t.label:<28} {t.direction:<9} {t.source:<7} {t.destination:<7} {t.nbytes:>14,}")
        lines.append(f"{'total':<54} {self.total_bytes():>14,}")
        return "\n".join(lines)


_logs = threading.local()


@contextlib.contextmanager
def transfer_log():
    """Record every ``to_device`` crossing (forward and backward) made inside the block."""
    log = TransferLog()
    stack = getattr(_logs, "stack", None)
    if stack is None:
        stack = _logs.stack = []
    stack.append(log)
    try:
        yield log
    finally:
        stack.remove(log)


def record_transfer(label: str, src: Device, dst: Device, nbytes: int, direction: str) -> None:
    for log in getattr(_logs, "stack", []):
        log.transfers.append(Transfer(label, str(src), str(dst), int(nbytes), direction))
