"""The CPU: its cores, its BLAS and its memory allocator, set in one place (and, when memory runs
out, ``memory_report``: what was asked for, what the process held, and its limit).

Importing minialex changes nothing in the process. A job that wants the CPU's speed calls
``configure()`` once, before its first step (``python cli.py`` does, and so do the benchmarks and
the tests); a lesson or a script that never calls it runs every op on the calling thread, with
NumPy's BLAS as it came.

``configure(threads=None)``:

- threads: ``MINIALEX_THREADS``, else ``OMP_NUM_THREADS`` or ``OPENBLAS_NUM_THREADS`` (so that a
  process under mpiexec keeps to its share, see ``cli.py``), else the CPUs this process may use.
  ``in_parallel`` then shares the independent pieces of an op (batch chunks, a GEMM's rows or
  columns, SGD blocks) among that many threads, the caller included, and OpenBLAS is held to one
  thread: its own idle threads spin after each GEMM and would take the cores from these.
- memory: glibc's malloc is asked to keep freed blocks in the process (``MMAP_THRESHOLD``,
  ``TRIM_THRESHOLD``), so that each step's large arrays do not fault their pages in again.
  ``MINIALEX_MALLOC=default`` leaves malloc alone.

Results do not depend on the thread count: pieces come back in order, whatever is summed over
them is summed in that order, and pieces that are summed are cut the same way on any count
(``batch_parts(..., summed=True)``): a run on one thread and on two agree bit for bit.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import glob
import itertools
import os
import threading

try:
    import resource            # the process's memory limit (POSIX)
except ImportError:
    resource = None

import numpy

from .files import size_text

#: Threads ``in_parallel`` uses: 1 until ``configure()`` is called.
THREADS = 1
_pool = None
_inside = threading.local()


def threads_from_environment() -> int:
    """``MINIALEX_THREADS``, else ``OMP_NUM_THREADS`` or ``OPENBLAS_NUM_THREADS``, else the CPUs
    this process may use."""
    given = next((int(os.environ[v]) for v in ("MINIALEX_THREADS", "OMP_NUM_THREADS",
                                               "OPENBLAS_NUM_THREADS")
                  if os.environ.get(v, "").isdigit()), 0)
    return given or len(os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity")
                        else range(os.cpu_count() or 1))


def configure(threads: int = None) -> int:
    """Use ``threads`` threads (default: ``threads_from_environment()``) and keep freed memory in
    the process (module docstring). Returns the thread count. Calling it again changes the count."""
    global THREADS, MALLOC_TUNED
    global _pool
    THREADS = max(1, int(threads or threads_from_environment()))
    if _pool is not None and _pool._max_workers != THREADS - 1:   # another count: a new pool
        _pool.shutdown()
        _pool = None
    if _BLAS is not None:
        # One thread means one: OpenBLAS would otherwise start its own, which spin on the other
        # cores after each GEMM (two 1-thread runs side by side on 2 cores: 155 images/s each, ~600
        # with OpenBLAS held to one thread too). On more, in_parallel shares the GEMMs out, and a
        # GEMM before the first such call must not run on OpenBLAS's threads either: a product
        # cut among them may round otherwise than on one (the fc layers' at 16 x 4096 x 1024 did
        # here), and a run on two threads would part from a run on one.
        _BLAS(1)
    MALLOC_TUNED = MALLOC_TUNED or _keep_freed_memory()
    return THREADS



def _openblas():
    """The OpenBLAS that NumPy's wheels bundle (ctypes), or None (another BLAS: no pool)."""
    base = os.path.dirname(os.path.dirname(numpy.__file__))
    for lib in glob.glob(os.path.join(base, "numpy.libs", "*openblas*")) + glob.glob(
            os.path.join(os.path.dirname(numpy.__file__), ".dylibs", "*openblas*")):
        try:
            library = ctypes.CDLL(lib)
            library.scipy_openblas_set_num_threads64_       # the name NumPy 2's wheels give it
            return library
        except (OSError, AttributeError):
            continue
    return None


_OPENBLAS = _openblas()
_CORETYPE = os.environ.get("OPENBLAS_CORETYPE")     # as OpenBLAS read it when NumPy loaded it
_BLAS = _OPENBLAS.scipy_openblas_set_num_threads64_ if _OPENBLAS is not None else None


def blas_kernels() -> str:
    """Which of OpenBLAS's kernels run the GEMMs, e.g. 'SkylakeX' (AVX-512) or 'Haswell' (AVX2).

    OpenBLAS picks them for the CPU when NumPy loads it, unless the environment variable
    ``OPENBLAS_CORETYPE`` names others: some machines set it because older OpenBLAS builds
    failed on their processors. On a CPU with AVX-512, Haswell's kernels ran a 2048^2 GEMM at
    about half the rate (docs/performance.md), so a benchmark and a training run say which ran.
    Returns e.g. 'OpenBLAS SkylakeX', 'OpenBLAS Haswell (chosen by OPENBLAS_CORETYPE=Haswell;
    this CPU has AVX-512)' or, with another BLAS, 'not OpenBLAS'."""
    if _OPENBLAS is None:
        return "not OpenBLAS"
    corename = getattr(_OPENBLAS, "scipy_openblas_get_corename64_", None)
    if corename is None:
        return "OpenBLAS"
    corename.restype = ctypes.c_char_p
    name = corename().decode()
    if not _CORETYPE:
        return f"OpenBLAS {name}"
    avx2_only = name in ("Haswell", "Zen") and _cpu_has("avx512f")      # Zen runs Haswell's kernels
    return (f"OpenBLAS {name} (chosen by OPENBLAS_CORETYPE={_CORETYPE}"
            + ("; this CPU has AVX-512" if avx2_only else "") + ")")


def _cpu_has(flag: str) -> bool:
    """Whether Linux's /proc/cpuinfo lists ``flag`` (e.g. 'avx512f'); False where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return f" {flag}" in f.read()
    except OSError:
        return False


def summary() -> str:
    """The thread count and the BLAS kernels, as ``info``, ``bench`` and a training run say them."""
    return f"{THREADS} threads, GEMMs by {blas_kernels()}"


#: glibc's malloc serves blocks over its mmap threshold (128 KB at first, raised as such blocks are
#: freed) with fresh pages from the kernel and gives them back on free, so the next step's arrays
#: fault every 4 KB page in again and the kernel zeroes it. How often depends on the order of
#: earlier allocations: the mini step took 13,432 page faults and 129 ms after a tiny run in the
#: same process, 185 and 86 ms with these thresholds, the paper's at batch 16 24,000 and 713 ms,
#: 43 and 610 ms (2 threads; benchmarks/cpu_step.py interleaves with PyTorch and saw the same).
#: Blocks up to MMAP_THRESHOLD come from the heap, and the free memory at its top is never given
#: back (TRIM_THRESHOLD = -1, glibc's "never"): a step frees what the next one needs again. A
#: limit of 512 MB was a knife edge: the paper's step at batch 16 frees about 518 MB at its end,
#: and depending on where its arrays lay in the heap, it shrank by that much every step and the
#: next forward faulted 15,000-25,000 pages in (2 MB pages where NumPy asks for them): 0.92 of
#: the time without, at batch 16 on one thread, 0.82 at batch 64 on two (benchmarks/ab_ops.py
#: --trim). The process keeps its largest step's memory until it ends, as it would every step.
#: Set MINIALEX_MALLOC=default to leave malloc alone.
MMAP_THRESHOLD, TRIM_THRESHOLD = 256 << 20, -1


def _keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds (``mallopt``); False where there is no glibc."""
    if os.environ.get("MINIALEX_MALLOC", "").lower() == "default":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):          # macOS, Windows, musl: their own allocators
        return False
    # mallopt(int, int): with the types given, a value past 2**31 - 1 raises instead of wrapping
    # around (a 4 GB trim threshold would have become 0, giving every free page back at once)
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    m_trim_threshold, m_mmap_threshold = -1, -3                       # glibc's <malloc.h>
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and bool(
        mallopt(m_trim_threshold, TRIM_THRESHOLD))


#: Whether ``configure`` set malloc's thresholds.
MALLOC_TUNED = False


def in_parallel(fn, items) -> list:
    """``[fn(item) for item in items]``, the items shared among ``THREADS`` threads: NumPy's
    copies, elementwise ops and GEMMs release the GIL, so the pieces (and not only the GEMMs) use
    every core. Results come back in order, so whatever the caller sums stays deterministic.
    Serial when there is one thread, one item, no known BLAS to hold to one thread, or when called
    from inside another ``in_parallel``.

    The first parallel call sets OpenBLAS to one thread per call, for good: its own idle threads
    keep spinning after each GEMM and would take the cores from these (measured: the mini step
    took twice as long when OpenBLAS's threads were given back between calls). NumPy's GEMMs
    elsewhere in the process then run on one thread too; minialex's large ones come here.

    NumPy's error state (``numpy.errstate``) is per thread: each piece runs under the caller's,
    so an overflow the caller chose to ignore (a diverging run, reported once) stays quiet."""
    global _pool
    items = list(items)
    if THREADS < 2 or len(items) < 2 or _BLAS is None or getattr(_inside, "active", False):
        return [fn(item) for item in items]
    if _pool is None:
        _BLAS(1)
        _pool = concurrent.futures.ThreadPoolExecutor(THREADS - 1, initializer=_inside.__setattr__,
                                                      initargs=("active", True))
    state, results, taken, started = numpy.geterr(), [None] * len(items), itertools.count(), []

    def work(helper=False):         # take the next item until none is left
        if helper:
            started.append(True)    # before its first take: see below
        with numpy.errstate(**state):
            for i in taken:
                if i >= len(items):
                    return
                results[i] = fn(items[i])
    helpers = [_pool.submit(work, True) for _ in range(min(THREADS, len(items)) - 1)]
    _inside.active = True           # the caller works too: one hand-over fewer per call
    try:
        work()
    finally:
        _inside.active = False
        # Every piece has stopped writing once each helper that started has returned. A helper
        # that had not started when the caller ran out of items can take none (the count is
        # spent), so the caller need not wait for it to wake: waking an idle core took 45 us.
        done = [h.exception() for h in helpers] if started else []
    for error in done:
        if error is not None:
            raise error
    return results


#: Below this many bytes an op runs as one piece: handing it to the threads would cost more.
SPLIT_BYTES = 1 << 18


def equal_slices(n: int, count: int) -> list:
    """``range(n)`` cut into ``count`` slices of nearly equal length, in order (empty ones left out)."""
    return [s for s in (slice(n * i // count, n * (i + 1) // count) for i in range(count))
            if s.stop > s.start]


#: A batch whose pieces' results are added up (a convolution's weight gradient) is cut into a
#: multiple of this many pieces, whatever the thread count: a float sum rounds differently when
#: its terms are grouped differently, so a cut that followed the threads gave other bits on one
#: thread than on two (mini's conv2: 5 chunks on one thread, 6 on two).
SUMMED_PARTS = 2


def batch_parts(n: int, bytes_per_image: int, chunk_bytes: int = 1 << 20, small=None,
                summed: bool = False) -> list:
    """Equal slices of a batch of ``n`` whose data take at most ``chunk_bytes`` each, or one image
    where one is larger (so that an op's passes over one slice run in the CPU's cache), as many as
    a multiple of the threads that share them out (``in_parallel``). Slices are cut by whole
    images per chunk: the paper's conv2 (3.5 MB of columns an image, 4 MB chunks) had been cut
    into 14 slices for 16 images, two of them of two images, and took 0.92 of its time (forward
    and backward, 2 threads) once each of its slices was one image. A batch that fits one chunk is one slice per
    thread, or a single slice when the work is small: data under ``SPLIT_BYTES``, or ``small``
    where the caller counts its work otherwise (a convolution counts multiply-adds).

    ``summed``: the caller adds the slices' results together, so the cut must not depend on the
    thread count (or the sum's bits would): a multiple of ``SUMMED_PARTS`` slices instead, the
    same on one thread as on two (the count this project's machines have; any other count still
    shares them out, the same bits)."""
    count = -(-n // max(1, chunk_bytes // bytes_per_image))    # chunks of whole images
    if small is None:
        small = n * bytes_per_image < SPLIT_BYTES
    if summed:
        return [slice(0, n)] if small else equal_slices(
            n, min(n, -(-count // SUMMED_PARTS) * SUMMED_PARTS))
    if count <= 1:       # fits one chunk: one piece per thread, if each is worth a thread's start
        if THREADS < 2 or n < THREADS or small:
            return [slice(0, n)]
        count = THREADS
    return equal_slices(n, min(n, -(-count // THREADS) * THREADS))


#: A product shared among the threads is cut into this many pieces (fewer if it has fewer rows
#: or columns), whatever the thread count: OpenBLAS may round a row or column of a product
#: differently depending on how many rows or columns its call holds (on this project's AMD EPYC,
#: with the Haswell kernels its environment chooses (``blas_kernels``), a (16, 4096) @ (4096,
#: 1024) product's first 1, 2, 4 or 8 rows came out other than the same rows of the whole
#: product; with the SkylakeX kernels only a call of one row did), so a cut that followed the
#: threads gave other bits on one thread than on two. 6 pieces share out evenly on 1, 2, 3 and 6
#: threads.
PIECES = 6


def pieces(n: int) -> list:
    """``range(n)`` cut into ``PIECES`` slices (the same on any thread count), for a product's
    rows or columns."""
    return equal_slices(n, min(n, PIECES))


def parallel_matmul(a, b):
    """``a @ b`` for 2-D arrays (R, D) @ (D, M), shared among the threads (one single-threaded GEMM
    each, see ``in_parallel``): the fully connected layers' products. At batch 16 they are bound
    by memory, so each thread takes a slice of the largest array and reads only its share of it:
    columns of ``b`` (and of the result) when ``b`` is the largest, rows of ``a`` and of the result
    otherwise. dx = dy (16, 4096) @ W (4096, 9216) cut by dy's rows would have each thread read
    all of W's 151 MB; dW = dy.T @ x writes 151 MB, in rows: whole rows of the result per thread
    (a cut by its columns wrote strided rows and took 1.17x as long). Every element of the result
    is computed by the same call whichever thread takes its piece (``PIECES``), so the bits do
    not depend on the thread count (tests/test_threads.py). Small products (under 2**25
    multiply-adds) run as one call: the hand-over would cost more."""
    if a.shape[0] * a.shape[1] * b.shape[1] < 1 << 25:
        return a @ b
    out = numpy.empty((a.shape[0], b.shape[1]), dtype=numpy.result_type(a, b))
    if b.size > max(a.size, out.size):
        in_parallel(lambda cols: numpy.matmul(a, b[:, cols], out=out[:, cols]), pieces(b.shape[1]))
    else:
        in_parallel(lambda rows: numpy.matmul(a[rows], b, out=out[rows]), pieces(a.shape[0]))
    return out


def memory_report(e: MemoryError) -> str:
    """What a MemoryError asked for, what the process held and its limit, for the one line a
    user sees: 'a step wanted 567.0 MB more on top of the 1.9 GB held, of a 2.0 GB limit
    (ulimit -v)'."""
    wanted = getattr(e, "_total_size", None)       # numpy's _ArrayMemoryError knows
    held = limit = None
    try:
        with open("/proc/self/status") as fh:     # Linux: the address space the process holds
            for line in fh:
                if line.startswith("VmSize:"):
                    held = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    if resource is not None:
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        limit = None if soft == resource.RLIM_INFINITY else soft
    return ((f"a step wanted {size_text(wanted)} more" if wanted else "an allocation failed")
            + (f" on top of the {size_text(held)} held" if held else "")
            + (f", of a {size_text(limit)} limit (ulimit -v)" if limit else ""))
