"""Run minialex's CUDA kernels on the CPU: the same ``.cu`` source, compiled by the host's C++ compiler.

A CUDA kernel is an ordinary C++ function that every GPU thread runs, each with its own
``blockIdx`` and ``threadIdx``. Compiled for the host after a short prelude, in which ``__global__``
means nothing and ``blockIdx``, ``threadIdx``, ``blockDim``, ``gridDim`` are plain global variables,
it can be run by a loop:

    for every block (x, y, z) of the grid, for every thread (x, y, z) of the block:
        blockIdx, threadIdx = block, thread
        kernel<T>(arguments)                      # one emulated GPU thread, start to finish

The threads of a block run one after another, which is exact for kernels in which every thread
writes its own outputs and never waits for another: all of minialex's kernels so far. A kernel
that uses ``__shared__`` arrays or ``__syncthreads()`` gets its block's threads run at once as CPU
threads instead, with ``__shared__`` arrays shared by them and ``__syncthreads()`` a real barrier
(blocks still one after another; fixed-size shared arrays only, no atomics, no warp intrinsics). What it checks, on any machine with ``g++``:
the index arithmetic of every kernel, and the launchers in ``minialex.kernels`` (grid sizes,
argument order, argument *types*), against the NumPy twins. What it cannot check: speed,
coalescing, or races between real threads. The gpu-marked tests do that on a GPU.

Arguments are checked as CuPy would pack them: a ``const int`` parameter needs a ``numpy.int32``,
a ``long long`` a ``numpy.int64``, a ``T`` the array dtype's scalar, a pointer a C-contiguous
array of the right dtype. On a GPU a wrong width is not an error but silent garbage; here it is a
``TypeError`` naming the kernel and the parameter.

    from minialex.tools import cuda_host as host
    with host.emulate():                          # minialex.kernels now runs on NumPy arrays
        cols = kernels.im2col_t(x, 0, 3, 11, 11, 4, 4, 0, 0, 55, 55)
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy

from ..kernels import conv_gpu, launch
from ..kernels.launch import KERNELS, source


PRELUDE = """
#include <cmath>
#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>
using std::min;
using std::max;
struct minialex_uint3 { unsigned int x, y, z; };
static minialex_uint3 blockIdx, blockDim, gridDim;
static thread_local minialex_uint3 threadIdx;        // each emulated thread has its own
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static                           // one block runs at a time: shared by its threads

// __syncthreads(): every thread of the block that has not returned waits for the others.
struct minialex_barrier {
    std::mutex m;
    std::condition_variable cv;
    unsigned expected = 0, waiting = 0, generation = 0;
    void release() { waiting = 0; ++generation; cv.notify_all(); }
    void arrive() {
        std::unique_lock<std::mutex> lock(m);
        if (expected == 0) return;                 // threads run one after another: no waiting
        const unsigned gen = generation;
        if (++waiting == expected) release();
        else cv.wait(lock, [&] { return gen != generation; });
    }
    void leave() {                                 // a thread returned from the kernel
        std::unique_lock<std::mutex> lock(m);
        --expected;
        if (waiting > 0 && waiting == expected) release();
    }
};
static minialex_barrier minialex_block;
inline void __syncthreads() { minialex_block.arrive(); }
"""

_SIGNATURE = re.compile(r"template\s*<\s*typename\s+T\s*>\s*__global__\s+void\s+(\w+)\s*\(([^)]*)\)")
_SCALARS = {"int": numpy.int32, "long long": numpy.int64, "unsigned int": numpy.uint32}
_CTYPES = {"int": ctypes.c_int, "long long": ctypes.c_longlong, "unsigned int": ctypes.c_uint,
           "float": ctypes.c_float, "double": ctypes.c_double}
C_TYPES = {numpy.dtype(numpy.float32): "float", numpy.dtype(numpy.float64): "double"}


class Parameter(NamedTuple):
    name: str
    base: str          # 'T', 'int', 'long long', ...
    pointer: bool


def parse_kernels(source: str) -> Dict[str, List[Parameter]]:
    """{kernel name: its parameters} for every ``template <typename T> __global__`` in ``source``."""
    kernels = {}
    for name, params in _SIGNATURE.findall(source):
        parsed = []
        for text in params.split(","):
            words = text.replace("*", " * ").replace("__restrict__", " ").replace("const", " ").split()
            pointer = "*" in words
            words = [w for w in words if w != "*"]
            parsed.append(Parameter(words[-1], " ".join(words[:-1]), pointer))
        kernels[name] = parsed
    return kernels


def _wrapper(name: str, params: List[Parameter], ctype: str, threaded: bool) -> str:
    """C source of an ``extern "C"`` function that runs kernel ``name<ctype>`` over a whole grid:
    blocks one after another; inside a block the threads one after another, or, for kernels that
    use ``__syncthreads`` or ``__shared__`` (``threaded``), all at once on CPU threads."""
    def c_type(p):
        base = ctype if p.base == "T" else p.base
        return f"{base}*" if p.pointer else base
    decl = ", ".join(f"{c_type(p)} {p.name}" for p in params)
    call = f"{name}<{ctype}>({', '.join(p.name for p in params)});"
    threads = "for (unsigned t_z = 0; t_z < b_z; ++t_z) for (unsigned t_y = 0; t_y < b_y; ++t_y)\n" \
              "        for (unsigned t_x = 0; t_x < b_x; ++t_x)"
    if threaded:
        block = f"""minialex_block.expected = b_x * b_y * b_z;
        std::vector<std::thread> pool;
        {threads}
            pool.emplace_back([=] {{ threadIdx = {{t_x, t_y, t_z}}; {call} minialex_block.leave(); }});
        for (auto& thread : pool) thread.join();"""
    else:
        block = f"""{threads} {{
            threadIdx = {{t_x, t_y, t_z}};
            {call}
        }}"""
    return f"""
extern "C" void minialex_host_{name}_{ctype}(unsigned g_x, unsigned g_y, unsigned g_z,
        unsigned b_x, unsigned b_y, unsigned b_z, {decl}) {{
    gridDim = {{g_x, g_y, g_z}}; blockDim = {{b_x, b_y, b_z}};
    for (unsigned k_z = 0; k_z < g_z; ++k_z) for (unsigned k_y = 0; k_y < g_y; ++k_y)
    for (unsigned k_x = 0; k_x < g_x; ++k_x) {{
        blockIdx = {{k_x, k_y, k_z}};
        {block}
    }}
}}
"""


def compiler() -> str:
    """The host C++ compiler (``$CXX`` or g++), or '' when there is none."""
    return shutil.which(os.environ.get("CXX", "g++")) or ""


class HostModule:
    """One ``.cu`` source compiled for the CPU; ``get_function(name, dtype)`` as CuPy's RawModule."""

    def __init__(self, source: str, label: str = "kernel source", threaded: Optional[bool] = None):
        """``threaded``: run each block's threads at once on CPU threads (default: when the
        source uses ``__syncthreads`` or ``__shared__``)."""
        self.label = label
        self.kernels = parse_kernels(source)
        if not self.kernels:
            raise ValueError(f"minialex.tools.cuda_host: no 'template <typename T> __global__' kernel in {label}")
        cxx = compiler()
        if not cxx:
            raise RuntimeError("minialex.tools.cuda_host: no C++ compiler (g++ or $CXX) on this machine")
        if threaded is None:
            threaded = "__syncthreads" in source or "__shared__" in source
        text = PRELUDE + "#line 1\n" + source + "".join(
            _wrapper(n, p, t, threaded) for n, p in self.kernels.items() for t in C_TYPES.values())
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        folder = os.path.join(tempfile.gettempdir(), "minialex-host-kernels")
        os.makedirs(folder, exist_ok=True)
        library = os.path.join(folder, f"{digest}.so")
        if not os.path.exists(library):
            src = os.path.join(folder, f"{digest}.cpp")
            with open(src, "w", encoding="utf-8") as f:
                f.write(text)
            partial = f"{library}.{os.getpid()}.tmp"
            result = subprocess.run([cxx, "-std=c++14", "-O1", "-shared", "-fPIC", "-pthread", src,
                                     "-o", partial],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"minialex.tools.cuda_host: {label} does not compile for the host:\n"
                                   f"{result.stderr[-3000:]}")
            os.replace(partial, library)        # atomic: parallel test runs never see half a file
        self.library = ctypes.CDLL(library)

    def get_function(self, name: str, dtype) -> "HostKernel":
        dtype = numpy.dtype(dtype)
        if name not in self.kernels:
            raise KeyError(f"minialex.tools.cuda_host: no kernel {name!r} in {self.label}")
        return HostKernel(self, name, dtype)


class HostKernel:
    """``kernel(grid, block, args)``: the call of a CuPy RawKernel, run on the CPU."""

    def __init__(self, module: HostModule, name: str, dtype):
        self.name, self.dtype = name, numpy.dtype(dtype)
        self.params = module.kernels[name]
        self.function = getattr(module.library, f"minialex_host_{name}_{C_TYPES[self.dtype]}")
        self.function.restype = None

    def _check(self, param: Parameter, value):
        where = f"minialex.tools.cuda_host: {self.name}<{C_TYPES[self.dtype]}> parameter {param.name!r}"
        base = C_TYPES[self.dtype] if param.base == "T" else param.base
        if param.pointer:
            want = self.dtype if param.base == "T" else numpy.dtype(_SCALARS[param.base])
            if not isinstance(value, numpy.ndarray) or value.dtype != want or not value.flags.c_contiguous:
                got = f"{type(value).__name__} {getattr(value, 'dtype', '')}".strip()
                raise TypeError(f"{where} ({base}*) needs a C-contiguous {want} array, got {got}")
            return ctypes.c_void_p(value.ctypes.data)
        want = self.dtype if param.base == "T" else numpy.dtype(_SCALARS[param.base])
        if not isinstance(value, numpy.generic) or value.dtype != want:
            got = ("numpy." if isinstance(value, numpy.generic) else "") + type(value).__name__
            raise TypeError(f"{where} ({base}) needs a numpy.{want} scalar, got {got}: CuPy would "
                            "pass it with the wrong width")
        return _CTYPES[base](value.item())

    def __call__(self, grid: Tuple[int, ...], block: Tuple[int, ...], args: Tuple) -> None:
        if len(args) != len(self.params):
            raise TypeError(f"minialex.tools.cuda_host: {self.name} takes {len(self.params)} arguments "
                            f"({', '.join(p.name for p in self.params)}), got {len(args)}")
        grid, block = (tuple(grid) + (1, 1))[:3], (tuple(block) + (1, 1))[:3]
        converted = [self._check(p, v) for p, v in zip(self.params, args)]
        self.function(*(ctypes.c_uint(int(d)) for d in grid + block), *converted)


_modules: Dict[str, HostModule] = {}


def get_function(name: str, dtype) -> HostKernel:
    """The host twin of ``minialex.kernels.get_function``: kernel ``name`` for ``dtype``, on the CPU."""
    dtype = numpy.dtype(dtype)
    if dtype not in C_TYPES:
        raise TypeError(f"minialex.kernels.{name}: no kernel for dtype {dtype} (float32 or float64)")
    filename = next(f for f, names in KERNELS.items() if name in names)
    if filename not in _modules:
        _modules[filename] = HostModule(source(filename), filename)
    return _modules[filename].get_function(name, dtype)


class PoisonedNumpy:
    """NumPy, except that ``empty`` and ``empty_like`` hand out arrays filled with NaN (integers:
    their most negative value), as uninitialised GPU memory might hold anything: an element that
    no kernel writes cannot pass for a result."""

    def __getattr__(self, name):
        return getattr(numpy, name)

    @staticmethod
    def empty(shape, dtype=float, order="C"):
        dtype = numpy.dtype(dtype)
        fill = numpy.nan if dtype.kind in "fc" else numpy.iinfo(dtype).min
        return numpy.full(shape, fill, dtype=dtype, order=order)

    @staticmethod
    def empty_like(a, dtype=None):
        return PoisonedNumpy.empty(a.shape, a.dtype if dtype is None else dtype)


@contextlib.contextmanager
def emulate():
    """Inside: ``minialex.kernels`` and the GPU conv2d run on NumPy arrays (new ones poisoned, see
    ``PoisonedNumpy``), every CUDA kernel on the CPU through this module. (CuPy's own kernels,
    which ops such as ``sum`` call on a GPU, are NumPy's here.)"""
    saved = launch.cupy, launch.get_function, conv_gpu.cupy
    poisoned = PoisonedNumpy()
    launch.cupy, launch.get_function, conv_gpu.cupy = poisoned, get_function, poisoned
    try:
        yield
    finally:
        launch.cupy, launch.get_function, conv_gpu.cupy = saved
