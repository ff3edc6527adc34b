"""conv2d, im2col, col2im: gradient checks, fast == naive, shapes, dtypes and errors (§3.5)."""

import os
import shutil
import subprocess

import numpy
import pytest

import minialex
import minialex.functional as F
from minialex import Tensor, gradcheck, kernels
from minialex.functional.conv import Conv2d, col2im, im2col

# (N, C, H, W, K, kernel, stride, padding, groups)
CASES = [
    pytest.param(2, 3, 7, 6, 4, 3, 1, 0, 1, id="3x3-plain"),
    pytest.param(2, 4, 9, 8, 6, 3, 2, 1, 2, id="3x3-s2-p1-groups2"),
    pytest.param(1, 2, 6, 7, 3, 5, 1, 2, 1, id="5x5-p2-like-conv2"),
    pytest.param(2, 2, 8, 11, 2, (3, 2), (2, 3), (0, 1), 1, id="nonsquare"),
    pytest.param(3, 4, 5, 5, 4, 3, 1, 1, 4, id="depthwise-groups4"),
]


def run_with_grads(fn, arrays, upstream):
    """Forward with every input requiring grad, backward with ``upstream``; (y, [grads])."""
    ts = [Tensor(a, requires_grad=True) for a in arrays]
    y = fn(*ts)
    y.backward(upstream)
    return y.numpy(), [minialex.as_numpy(t.grad) for t in ts]


def random_case(rng, n, c, h, w, k, kernel, groups, device, dtype=numpy.float64):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = device.put(rng.standard_normal((n, c, h, w)), dtype=dtype)
    wt = device.put(rng.standard_normal((k, c // groups, kh, kw)), dtype=dtype)
    b = device.put(rng.standard_normal(k), dtype=dtype)
    return x, wt, b


@pytest.mark.parametrize("n,c,h,w,k,kernel,stride,padding,groups", CASES)
def test_conv2d_gradcheck(device, rng, n, c, h, w, k, kernel, stride, padding, groups):
    x, wt, b = random_case(rng, n, c, h, w, k, kernel, groups, device)
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding, groups), [x, wt, b],
              name="conv2d")


def test_conv2d_gradcheck_conv1_geometry(device, rng):
    """11x11 stride 4 (conv1, §3.5) on a small 27x27 input; direction mode (many inputs)."""
    x, wt, b = random_case(rng, 2, 3, 27, 27, 4, 11, 1, device)
    report = gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride=4), [x, wt, b],
                       name="conv2d conv1", mode="direction", directions=4)
    assert report.compared == 4


@pytest.mark.parametrize("n,c,h,w,k,kernel,stride,padding,groups", CASES[:3])
def test_conv2d_relu_gradcheck(device, rng, n, c, h, w, k, kernel, stride, padding, groups):
    x, wt, b = random_case(rng, n, c, h, w, k, kernel, groups, device)
    y = F.conv2d_relu(Tensor(x), Tensor(wt), Tensor(b), stride, padding, groups).numpy()
    assert (y == 0).mean() > 0.2 and (y > 0).mean() > 0.2    # both sides of the kink are checked
    gradcheck(lambda x, w, b: F.conv2d_relu(x, w, b, stride, padding, groups), [x, wt, b],
              name="conv2d_relu")


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("n,c,h,w,k,kernel,stride,padding,groups", CASES)
def test_conv2d_relu_equals_relu_of_conv2d(device, rng, with_bias, n, c, h, w, k, kernel, stride,
                                           padding, groups):
    """The fused op is exactly the two ops in a row, forward and backward (the fast one-device
    AlexNet relies on it), on every backend."""
    x, wt, b = random_case(rng, n, c, h, w, k, kernel, groups, device)
    arrays = [x, wt, b] if with_bias else [x, wt]
    y_ref = F.conv2d(Tensor(x), Tensor(wt), stride=stride, padding=padding, groups=groups)
    g = device.put(rng.standard_normal(y_ref.shape))
    fused = run_with_grads(lambda *t: F.conv2d_relu(*t, stride=stride, padding=padding,
                                                    groups=groups), arrays, g)
    apart = run_with_grads(lambda *t: F.relu(F.conv2d(*t, stride=stride, padding=padding,
                                                      groups=groups)), arrays, g)
    numpy.testing.assert_allclose(fused[0], apart[0], rtol=1e-12, atol=1e-12)
    for a, r in zip(fused[1], apart[1]):
        numpy.testing.assert_allclose(a, r, rtol=1e-12, atol=1e-12)


def test_conv2d_relu_keeps_nan_and_names_itself(device, rng):
    """max(0, NaN) is NaN, as numpy.maximum has it: a diverging net must not look healthy."""
    x, wt, b = random_case(rng, 1, 2, 5, 5, 3, 3, 1, device)
    x[0, 0, 2, 2] = numpy.nan
    y = F.conv2d_relu(Tensor(x), Tensor(wt), Tensor(b), padding=1).numpy()      # (1, 3, 5, 5)
    assert numpy.isnan(y[0, :, 1:4, 1:4]).all() and not numpy.isnan(y[0, :, 0, 0]).any()
    with pytest.raises(ValueError, match=r"conv2d_relu: weight expects 2 channels.*\(1, 3, 5, 5\)"):
        F.conv2d_relu(Tensor(rng.standard_normal((1, 3, 5, 5))), Tensor(wt))


def test_conv2d_naive_gradcheck(rng):
    x, wt, b = random_case(rng, 2, 4, 5, 6, 4, 3, 2, minialex.Device("cpu"))
    gradcheck(lambda x, w, b: F.conv2d_naive(x, w, b, 2, 1, 2), [x, wt, b], name="conv2d_naive")


@pytest.mark.parametrize("n,c,h,w,k,kernel,stride,padding,groups", CASES + [
    pytest.param(2, 3, 27, 27, 4, 11, 4, 0, 1, id="conv1-11x11-s4"),
    pytest.param(2, 4, 13, 13, 6, 3, 1, 1, 2, id="conv4-3x3-p1-groups2"),
])
def test_conv2d_fast_matches_naive(device, rng, n, c, h, w, k, kernel, stride, padding, groups):
    x, wt, b = random_case(rng, n, c, h, w, k, kernel, groups, device)
    fast = lambda x, w, b: F.conv2d(x, w, b, stride, padding, groups)       # noqa: E731
    naive = lambda x, w, b: F.conv2d_naive(x, w, b, stride, padding, groups)  # noqa: E731
    y = fast(Tensor(x), Tensor(wt), Tensor(b))
    g = device.put(rng.standard_normal(y.shape))
    y_fast, grads_fast = run_with_grads(fast, [x, wt, b], g)
    y_naive, grads_naive = run_with_grads(naive, [x, wt, b], g)
    numpy.testing.assert_allclose(y_fast, y_naive, rtol=1e-10, atol=1e-10)
    for name, gf, gn in zip(["x", "weight", "bias"], grads_fast, grads_naive):
        numpy.testing.assert_allclose(gf, gn, rtol=1e-10, atol=1e-10, err_msg=f"d{name}")


def test_batch_parts_cover_the_batch_one_piece_per_thread_above_split_bytes(monkeypatch):
    """Cache-sized slices, a multiple of the threads; a batch under one chunk is one slice, or
    one per thread once it is worth a thread's start (SPLIT_BYTES)."""
    from minialex import cpu as utils
    monkeypatch.setattr(utils, "THREADS", 2)
    monkeypatch.setattr(utils, "SPLIT_BYTES", 1000)
    assert utils.batch_parts(64, 10, 1 << 20) == [slice(0, 64)]             # 640 bytes
    assert utils.batch_parts(64, 100, 1 << 20) == [slice(0, 32), slice(32, 64)]
    assert utils.batch_parts(1, 5000, 1 << 20) == [slice(0, 1)]             # one image
    parts = utils.batch_parts(10, 1000, 3000)                               # 4 chunks
    assert len(parts) == 4 and [p.start for p in parts] + [10] == [0] + [p.stop for p in parts]
    assert utils.batch_parts(64, 100, 1 << 20, small=True) == [slice(0, 64)]   # the caller's count
    assert utils.batch_parts(64, 10, 1 << 20, small=False) == [slice(0, 32), slice(32, 64)]
    monkeypatch.setattr(utils, "THREADS", 1)
    assert utils.batch_parts(64, 100, 1 << 20) == [slice(0, 64)]


@pytest.mark.parametrize("n,bytes_per_image,chunk_bytes,pieces", [
    (64, 100, 1 << 20, 2),      # fits one chunk but is worth splitting: 2 pieces, even on 1 thread
    (10, 1000, 3000, 4),        # 4 chunks
    (10, 1000, 2500, 6),        # 2 whole images a chunk: 5 chunks, so 6 (not 3 or 7 threads' 6)
    (10, 1000, 1800, 10),       # one image a chunk: no chunk over chunk_bytes
    (16, 3500, 4000, 16),       # the paper's conv2: not 14 pieces, two of them of two images
    (64, 10, 1 << 20, 1)])      # small (under SPLIT_BYTES): one piece
def test_summed_batch_parts_do_not_follow_the_thread_count(monkeypatch, n, bytes_per_image,
                                                           chunk_bytes, pieces):
    """Pieces whose results are added up (a conv's dW) are cut the same way on any number of
    threads, a multiple of SUMMED_PARTS, so that the sum rounds the same (same bits)."""
    from minialex import cpu as utils
    monkeypatch.setattr(utils, "SPLIT_BYTES", 1000)
    cuts = []
    for threads in (1, 2, 3, 7):
        monkeypatch.setattr(utils, "THREADS", threads)
        cuts.append(utils.batch_parts(n, bytes_per_image, chunk_bytes, summed=True))
    assert all(cut == cuts[0] for cut in cuts), cuts
    assert len(cuts[0]) == pieces
    assert [p.start for p in cuts[0]] + [n] == [0] + [p.stop for p in cuts[0]]


def test_a_conv_gives_the_same_bits_on_any_number_of_threads(rng, monkeypatch):
    """float32, cut into 3 chunks' worth of columns: one thread used to sum dW over 3 pieces and
    two threads over 4, and the bits differed. Now every count gives the one thread's bits."""
    from minialex import cpu as utils
    from minialex.functional import conv_cpu
    x = rng.standard_normal((12, 5, 10, 10)).astype(numpy.float32)
    w = rng.standard_normal((7, 5, 3, 3)).astype(numpy.float32)
    b = rng.standard_normal(7).astype(numpy.float32)
    gy = rng.standard_normal((12, 7, 10, 10)).astype(numpy.float32)
    columns = 5 * 9 * 10 * 10 * 4                                 # bytes of one image's columns
    monkeypatch.setattr(conv_cpu, "SPLIT_MACS", 0)
    monkeypatch.setattr(conv_cpu, "CHUNK_BYTES", 4 * columns)     # 12 images: 3 chunks
    runs = []
    for threads in (1, 2, 3):
        monkeypatch.setattr(utils, "THREADS", threads)
        y, grads = run_with_grads(lambda *a: F.conv2d_relu(*a, 1, 1), [x, w, b], gy)
        runs.append([y] + grads)
    for other in runs[1:]:
        for first, second in zip(runs[0], other):
            numpy.testing.assert_array_equal(first, second)


def test_a_conv_goes_to_the_threads_by_its_multiply_adds(monkeypatch):
    """A conv whose columns fit one chunk is shared among the threads only from SPLIT_MACS
    multiply-adds on (tiny's conv2 at batch 128 has 3.8 million: the hand-overs would cost more)."""
    from minialex import cpu as utils
    from minialex.functional import conv_cpu
    monkeypatch.setattr(utils, "THREADS", 2)
    x, w = (8, 4, 9, 9), (6, 4, 3, 3)              # stride 1, padding 1: 9x9 outputs, float32
    macs = 8 * 9 * 9 * 6 * 36                      # every output value of every kernel: C*kh*kw
    monkeypatch.setattr(conv_cpu, "SPLIT_MACS", macs + 1)
    assert conv_cpu.chunks(x, w, (9, 9), 4) == [slice(0, 8)]
    monkeypatch.setattr(conv_cpu, "SPLIT_MACS", macs)
    assert conv_cpu.chunks(x, w, (9, 9), 4) == [slice(0, 4), slice(4, 8)]
    monkeypatch.setattr(conv_cpu, "CHUNK_BYTES", 2 * 9 * 9 * 36 * 4)      # two images' columns
    assert len(conv_cpu.chunks(x, w, (9, 9), 4)) == 4                  # chunks whatever the count


@pytest.mark.parametrize("threads", ["1", "2"])
def test_configure_holds_openblas_to_one_thread(threads):
    """configure() stops OpenBLAS's own threads at once, on one thread (they would spin on the
    other cores) and on more (in_parallel shares the GEMMs; OpenBLAS's own cut could round
    otherwise, and a GEMM before the first parallel call would part from a run on one thread)."""
    import glob
    import sys
    from minialex import cpu as utils
    libs = glob.glob(os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), "numpy.libs",
                                  "*openblas*"))
    if utils._BLAS is None or not libs:
        pytest.skip("NumPy's BLAS is not the bundled OpenBLAS")
    code = (f"import ctypes, minialex.cpu; minialex.cpu.configure(); print(ctypes.CDLL({libs[0]!r})"
            ".scipy_openblas_get_num_threads64_())")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=dict(env, MINIALEX_THREADS=threads),
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1"]


#: The start of a child process that counts the page faults of what follows (``faults() - before``).
FAULTS_IN_A_CHILD = ("import resource, numpy, minialex.cpu\n"
                     "minialex.cpu.configure()\n"
                     "def faults(): return resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
                     "before = faults()\n")


def test_freed_arrays_stay_with_the_process():
    """With glibc, the pages of a step's freed arrays serve the next step's (cpu.MMAP_THRESHOLD,
    TRIM_THRESHOLD): twenty 1 MB arrays made and freed five times fault their pages in once.
    MINIALEX_MALLOC=default leaves glibc to give them back and fault them in every time."""
    import sys
    from minialex import cpu as utils
    if not utils.MALLOC_TUNED:
        pytest.skip("no glibc malloc to tune (or MINIALEX_MALLOC=default)")
    code = (FAULTS_IN_A_CHILD +
            "for _ in range(5):\n"
            "    arrays = [numpy.ones(1 << 18, dtype=numpy.float32) for _ in range(20)]\n"
            "    del arrays\n"
            "print(faults() - before)")
    pages = 20 * (1 << 20) // 4096
    counts = {}
    for malloc in ("", "default"):
        out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, MINIALEX_MALLOC=malloc),
                             capture_output=True, text=True, check=True).stdout
        counts[malloc or "tuned"] = int(out)
    assert counts["tuned"] < 2 * pages, counts         # the first round's pages only
    assert counts["default"] > 4 * pages, counts       # every round's pages again


def test_a_step_that_frees_more_than_512_mb_keeps_it_too():
    """The paper's step at batch 16 frees about 518 MB at its end. With a 512 MB trim threshold
    glibc gave that back every step and the next step faulted it in again; now the heap's top is
    never trimmed (TRIM_THRESHOLD = -1): 600 MB made and freed four times fault in once."""
    import sys
    from minialex import cpu as utils
    if not utils.MALLOC_TUNED:
        pytest.skip("no glibc malloc to tune (or MINIALEX_MALLOC=default)")
    code = (FAULTS_IN_A_CHILD +
            "for _ in range(4):\n"
            "    arrays = [numpy.ones(50 << 20, dtype=numpy.float32) for _ in range(3)]\n"
            "    del arrays\n"
            "    print(faults() - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, *_, last = (int(f) for f in out.stdout.split())   # faults after round 1, after round 4
    assert last < 1.5 * first, out.stdout             # (4 KB or 2 MB pages: NumPy asks for huge ones)


@pytest.mark.parametrize("threads,chunk_bytes,split_bytes,gemm_block", [
    (1, 1 << 22, 1 << 18, 2048), (2, 1 << 22, 1 << 18, 2048), (2, 1 << 22, 0, 2048),
    (2, 3000, 1 << 18, 2048), (3, 3000, 1 << 18, 2048), (1, 1 << 22, 1 << 18, 50),
    (2, 3000, 0, 7)])
def test_chunks_and_threads_give_the_same_conv_every_time(rng, monkeypatch, threads, chunk_bytes,
                                                          split_bytes, gemm_block):
    """The CPU conv splits the batch into cache-sized chunks shared among threads, and a GEMM with
    few kernels into blocks of columns: any split gives the naive conv's result, and the same
    split gives the same bits twice (exact resume)."""
    from minialex import cpu as utils
    from minialex.functional import conv_cpu
    monkeypatch.setattr(utils, "THREADS", threads)
    monkeypatch.setattr(utils, "SPLIT_BYTES", split_bytes)
    monkeypatch.setattr(conv_cpu, "SPLIT_MACS", split_bytes)      # 0: split even this small conv
    monkeypatch.setattr(conv_cpu, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(conv_cpu, "GEMM_BLOCK", gemm_block)           # 3 kernels a group: blocked
    x, w, b = rng.standard_normal((7, 4, 9, 8)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    gy = rng.standard_normal((7, 6, 9, 8))
    runs = []
    for op in (F.conv2d_relu, F.conv2d_relu, lambda *a: F.relu(F.conv2d_naive(*a))):
        ts = [Tensor(a, requires_grad=True) for a in (x, w, b)]
        y = op(*ts, 1, 1, 2)
        y.backward(gy)
        runs.append([y.data] + [t.grad for t in ts])
    for first, second, naive in zip(*runs):
        numpy.testing.assert_array_equal(first, second)
        numpy.testing.assert_allclose(first, naive, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride,padding,groups", [(1, 1, 2), (2, 0, 1)])
def test_a_conv_that_keeps_its_columns_gives_the_same_bits(rng, monkeypatch, stride, padding, groups):
    """Under ``conv_cpu.KEEP_BYTES`` the forward keeps each chunk's columns and the backward
    reuses them instead of unfolding again: the same gradients, bit for bit; the columns are let
    go after the backward, and not kept at all when no backward will come."""
    from minialex.functional import conv_cpu
    monkeypatch.setattr(conv_cpu, "CHUNK_BYTES", 2000)                 # several chunks,
    monkeypatch.setattr(conv_cpu, "SPLIT_MACS", 0)                     # small as the conv is
    x = rng.standard_normal((6, 4, 9, 8)).astype(numpy.float32)
    w = rng.standard_normal((6, 4 // groups, 3, 3)).astype(numpy.float32)
    b, gy = rng.standard_normal(6).astype(numpy.float32), None
    grads = {}
    for keep in (0, 1 << 30):
        monkeypatch.setattr(conv_cpu, "KEEP_BYTES", keep)
        ts = [Tensor(a, requires_grad=True) for a in (x, w, b)]
        y = F.conv2d_relu(*ts, stride, padding, groups)
        assert (y.creator.columns is not None) == bool(keep)
        if gy is None:
            gy = rng.standard_normal(y.shape).astype(numpy.float32)
        op = y.creator
        y.backward(gy)
        assert op.columns is None
        grads[keep] = [y.data] + [t.grad for t in ts]
    for kept, unfolded in zip(grads[1 << 30], grads[0]):
        numpy.testing.assert_array_equal(kept, unfolded)
    op = Conv2d((stride, stride), (padding, padding), groups, relu=True)
    with minialex.no_grad():
        op(*[Tensor(a, requires_grad=True) for a in (x, w, b)])
    assert op.columns is None
    op(Tensor(x), Tensor(w), Tensor(b))                          # nothing needs a gradient
    assert op.columns is None
    op(*[Tensor(a, requires_grad=True) for a in (x, w, b)])
    assert op.columns is not None


def test_conv2d_output_shapes_alexnet():
    """The paper's sizes: 227 -> 55 (conv1, §3.5 with Caffe's 227 crop), 27 -> 27 (conv2, pad 2)."""
    x = Tensor(numpy.zeros((1, 3, 227, 227), numpy.float32))
    w = Tensor(numpy.zeros((4, 3, 11, 11), numpy.float32))
    assert F.conv2d(x, w, stride=4).shape == (1, 4, 55, 55)
    x2 = Tensor(numpy.zeros((1, 4, 27, 27), numpy.float32))
    w2 = Tensor(numpy.zeros((6, 2, 5, 5), numpy.float32))
    assert F.conv2d(x2, w2, padding=2, groups=2).shape == (1, 6, 27, 27)


def test_conv2d_without_bias_and_known_value():
    x = numpy.arange(16, dtype=numpy.float64).reshape(1, 1, 4, 4)
    w = numpy.ones((1, 1, 2, 2))
    y = F.conv2d(Tensor(x), Tensor(w), stride=2).numpy()
    # each output sums one 2x2 block: [[0+1+4+5, 2+3+6+7], [8+9+12+13, 10+11+14+15]]
    numpy.testing.assert_array_equal(y[0, 0], [[10, 18], [42, 50]])


def test_groups_see_only_their_own_channels(rng):
    """groups=2 is the two-column net on one device (§3.2): kernels of group 0 ignore group 1."""
    x = rng.standard_normal((1, 4, 5, 5))
    w = rng.standard_normal((2, 2, 3, 3))
    y = F.conv2d(Tensor(x), Tensor(w), groups=2).numpy()
    x2 = x.copy()
    x2[:, 2:] = 0                                       # change only group 1's channels
    y2 = F.conv2d(Tensor(x2), Tensor(w), groups=2).numpy()
    numpy.testing.assert_array_equal(y[:, 0], y2[:, 0])
    assert not numpy.allclose(y[:, 1], y2[:, 1])
    # and it equals two separate convolutions
    col0 = F.conv2d(Tensor(x[:, :2]), Tensor(w[:1])).numpy()
    numpy.testing.assert_allclose(y[:, :1], col0, rtol=1e-12)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_conv2d_dtype_preserved(device, rng, dtype):
    x, wt, b = random_case(rng, 2, 4, 6, 6, 4, 3, 2, device, dtype=dtype)
    xs, ws, bs = (Tensor(a, requires_grad=True) for a in (x, wt, b))
    y = F.conv2d(xs, ws, bs, padding=1, groups=2)
    assert y.dtype == dtype
    y.sum().backward()
    assert xs.grad.dtype == ws.grad.dtype == bs.grad.dtype == dtype
    ref = F.conv2d_naive(Tensor(x.astype(numpy.float64)), Tensor(wt.astype(numpy.float64)),
                         Tensor(b.astype(numpy.float64)), padding=1, groups=2).numpy()
    tol = 1e-5 if dtype == numpy.float32 else 1e-12
    numpy.testing.assert_allclose(y.numpy(), ref, rtol=tol, atol=tol)


def test_im2col_rows_are_receptive_fields(device, rng):
    x = rng.standard_normal((2, 3, 6, 5))
    cols = minialex.as_numpy(im2col(device.put(x), (3, 2), stride=(2, 1), padding=1))
    xpad = numpy.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    oh, ow = (6 + 2 - 3) // 2 + 1, (5 + 2 - 2) // 1 + 1
    assert cols.shape == (2 * oh * ow, 3 * 3 * 2)
    for n, oy, ox in [(0, 0, 0), (1, 2, 3), (1, oh - 1, ow - 1)]:
        row = cols[(n * oh + oy) * ow + ox]
        numpy.testing.assert_array_equal(row, xpad[n, :, oy * 2:oy * 2 + 3, ox:ox + 2].ravel())


@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 0), (3, 2, 1), ((5, 2), (1, 3), (2, 0)), (11, 4, 0)])
def test_col2im_is_the_adjoint_of_im2col(device, rng, kernel, stride, padding):
    """<im2col(x), c> == <x, col2im(c)> for all x, c: col2im sums overlaps correctly."""
    shape = (2, 3, 23, 19)
    x = rng.standard_normal(shape)
    cols = im2col(device.put(x), kernel, stride, padding)
    c = rng.standard_normal(cols.shape)
    lhs = float((minialex.as_numpy(cols) * c).sum())
    rhs = float((x * minialex.as_numpy(col2im(device.put(c), shape, kernel, stride, padding))).sum())
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


def test_errors_name_the_op_and_shapes():
    x = Tensor(numpy.zeros((2, 3, 8, 8), numpy.float32))
    with pytest.raises(ValueError, match=r"conv2d: groups=2 .*\(2, 3, 8, 8\).*\(4, 1, 3, 3\)"):
        F.conv2d(x, Tensor(numpy.zeros((4, 1, 3, 3), numpy.float32)), groups=2)
    with pytest.raises(ValueError, match=r"conv2d: weight expects 2 channels.*\(2, 3, 8, 8\).*\(4, 2, 3, 3\)"):
        F.conv2d(x, Tensor(numpy.zeros((4, 2, 3, 3), numpy.float32)))
    with pytest.raises(ValueError, match=r"conv2d: kernel \(11, 11\) is larger than the padded input \(10, 10\)"):
        F.conv2d(x, Tensor(numpy.zeros((4, 3, 11, 11), numpy.float32)), padding=1)
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\)"):
        F.conv2d(x, Tensor(numpy.zeros((4, 3, 3, 3), numpy.float32)), Tensor(numpy.zeros(3, numpy.float32)))
    with pytest.raises(ValueError, match=r"conv2d: input must be 4-D"):
        F.conv2d(Tensor(numpy.zeros((3, 8, 8), numpy.float32)), Tensor(numpy.zeros((4, 3, 3, 3), numpy.float32)))
    with pytest.raises(TypeError, match=r"conv2d: input is float32 but weight is float64"):
        F.conv2d(x, Tensor(numpy.zeros((4, 3, 3, 3))))
    with pytest.raises(ValueError, match=r"conv2d_naive: groups=2"):
        F.conv2d_naive(x, Tensor(numpy.zeros((4, 1, 3, 3), numpy.float32)), groups=2)


class WrongConv2d(Conv2d):
    """A deliberately broken backward: the weight gradient keeps only the first kernel row
    (i = 0) and zeroes the rest. Gradcheck must catch it."""

    def backward(self, gy):
        gx, gw, *rest = super().backward(gy)
        gw = gw.copy()
        gw[:, :, 1:, :] = 0
        return (gx, gw, *rest)


def test_gradcheck_catches_a_wrong_conv_backward(rng):
    x, wt, b = random_case(rng, 1, 2, 5, 5, 2, 3, 1, minialex.Device("cpu"))
    report = gradcheck(lambda x, w, b: WrongConv2d((1, 1), (0, 0), 1)(x, w, b), [x, wt, b],
                       raise_on_failure=False)
    assert not report.passed and report.max_rel_error > 0.1
    with pytest.raises(minialex.GradcheckError):
        gradcheck(lambda x, w, b: WrongConv2d((1, 1), (0, 0), 1)(x, w, b), [x, wt, b])


@pytest.mark.gpu
@pytest.mark.skipif(not minialex.gpu_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("stride,padding,groups,kernel", [(4, 0, 1, 11), (1, 2, 2, 5), (1, 1, 2, 3)])
def test_conv2d_cupy_matches_numpy_float32(rng, stride, padding, groups, kernel):
    cpu, gpu = minialex.Device("cpu"), minialex.Device("cuda:0")
    x, wt, b = random_case(rng, 4, 6, 31, 29, 8, kernel, groups, cpu, dtype=numpy.float32)
    fn = lambda x, w, b: F.conv2d(x, w, b, stride, padding, groups)  # noqa: E731
    g = rng.standard_normal(fn(Tensor(x), Tensor(wt), Tensor(b)).shape).astype(numpy.float32)
    y_cpu, grads_cpu = run_with_grads(fn, [x, wt, b], g)
    y_gpu, grads_gpu = run_with_grads(fn, [gpu.put(a) for a in (x, wt, b)], gpu.put(g))
    numpy.testing.assert_allclose(y_gpu, y_cpu, rtol=2e-4, atol=2e-4)
    for gg, gc in zip(grads_gpu, grads_cpu):
        numpy.testing.assert_allclose(gg, gc, rtol=2e-4, atol=2e-3)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (the CUDA compiler)")
@pytest.mark.parametrize("filename", sorted(kernels.KERNELS))
def test_cuda_sources_compile(tmp_path, filename):
    """Every kernel named in minialex.kernels.KERNELS compiles for float and double (sm_90), so a
    syntax error in a .cu file shows up on machines without a GPU too."""
    wrapper = tmp_path / f"check_{filename}"
    lines = [f'#include "{os.path.join(os.path.dirname(kernels.__file__), filename)}"',
             "void instantiate_all() {"]
    lines += [f"  (void)(void*)&{name}<{ctype}>;" for name in kernels.KERNELS[filename]
              for ctype in kernels.C_TYPES.values()]
    wrapper.write_text("\n".join(lines + ["}"]) + "\n")
    result = subprocess.run(["nvcc", "-std=c++14", "-arch=sm_90", "-ptx", str(wrapper),
                             "-o", str(tmp_path / "out.ptx")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not minialex.gpu_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("kernel,stride,padding", [(11, 4, 0), (5, 1, 2), (3, 1, 1), (3, 2, 1)])
def test_transposed_kernels_match_their_numpy_definitions(rng, kernel, stride, padding):
    """im2col_t is im2col(one group's channels).T; col2im_t writes col2im of the transpose into
    that group's channels and leaves the other channels alone."""
    from minialex import kernels
    gpu = minialex.Device("cuda:0")
    n, c, h, w, cg, off = 3, 6, 23, 19, 2, 4
    x = rng.standard_normal((n, c, h, w))
    oh, ow = (h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1
    with gpu:
        cols = kernels.im2col_t(gpu.put(x), off, cg, kernel, kernel, stride, stride, padding,
                                padding, oh, ow)
    expected = im2col(x[:, off:off + cg], kernel, stride, padding).T
    numpy.testing.assert_array_equal(minialex.as_numpy(cols), expected)

    d = rng.standard_normal(expected.shape)
    sentinel = rng.standard_normal((n, c, h, w))
    with gpu:
        out = gpu.put(sentinel.copy())
        kernels.col2im_t(gpu.put(d), out, off, cg, kernel, kernel, stride, stride, padding,
                         padding, oh, ow)
    out = minialex.as_numpy(out)
    numpy.testing.assert_allclose(out[:, off:off + cg],
                                  col2im(numpy.ascontiguousarray(d.T), (n, cg, h, w), kernel, stride,
                                         padding), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_array_equal(out[:, :off], sentinel[:, :off])


@pytest.mark.gpu
@pytest.mark.skipif(not minialex.gpu_available(), reason="needs CuPy and a CUDA GPU")
def test_layout_kernels_and_sgd_kernel(rng):
    from minialex import kernels
    gpu = minialex.Device("cuda:0")
    n, k, p = 3, 5, 7
    src = rng.standard_normal((k, n * p)).astype(numpy.float32)
    bias = rng.standard_normal(k).astype(numpy.float32)
    with gpu:
        y = minialex.as_numpy(kernels.knp_to_nchw(gpu.put(src), gpu.put(bias), n, k, p))
        back = minialex.as_numpy(kernels.nchw_to_knp(gpu.put(y - bias[None, :, None])))
    numpy.testing.assert_allclose(y, src.reshape(k, n, p).transpose(1, 0, 2) + bias[None, :, None],
                                  rtol=1e-6)
    numpy.testing.assert_allclose(back, src, rtol=1e-5, atol=1e-6)
    with gpu:                          # the ReLU folded in, forward and backward
        yr = minialex.as_numpy(kernels.knp_to_nchw(gpu.put(src), gpu.put(bias), n, k, p, relu=True))
        gy = rng.standard_normal((n, k, p)).astype(numpy.float32)
        masked = minialex.as_numpy(kernels.nchw_to_knp(gpu.put(gy), gpu.put(yr)))
    numpy.testing.assert_allclose(yr, numpy.maximum(y, 0), rtol=1e-6)
    expected = numpy.where(yr > 0, gy, 0).transpose(1, 0, 2).reshape(k, n * p)
    numpy.testing.assert_array_equal(masked, expected)

    w, v, g = (rng.standard_normal(10).astype(numpy.float32) for _ in range(3))
    with gpu:
        wg, vg = gpu.put(w), gpu.put(v)
        kernels.sgd_update(wg, vg, gpu.put(g), 0.01, 0.9, 5e-4)
    v_ref = 0.9 * v - 5e-4 * 0.01 * w - 0.01 * g
    numpy.testing.assert_allclose(minialex.as_numpy(vg), v_ref, rtol=1e-5, atol=1e-7)
    numpy.testing.assert_allclose(minialex.as_numpy(wg), w + v_ref, rtol=1e-5, atol=1e-7)
