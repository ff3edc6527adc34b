"""Where the GPU conv2d's time goes: every piece of conv_gpu.py, timed alone, at AlexNet's shapes.

    python benchmarks/conv_gemms.py                      # fp32 (CUPY_TF32 unset or 0)
    CUPY_TF32=1 python benchmarks/conv_gemms.py          # the same with TF32 GEMMs
    python benchmarks/conv_gemms.py --only conv1,conv2 --repeat 20 --json out.json

For conv1..conv5 of the paper preset, both columns on one GPU (conv2, conv4, conv5 with groups=2)
at batch 128, each step of ``conv2d_relu``'s forward and backward as conv_gpu.py runs it:

    forward   im2col_t, the GEMM  Y^T = W @ colsT,  knp_to_nchw (+ bias, ReLU)
    backward  nchw_to_knp (ReLU mask), im2col_t again, the GEMM  dW = dY^T @ colsT^T,
              the GEMM  dcolsT = W^T @ dY^T, col2im_t, the bias sum

with the GEMMs' achieved TFLOPS beside their floor (the arithmetic at the card's measured GEMM
rate, from a large square product timed first), and the whole op through ``F.conv2d_relu`` for
comparison with the sum of its pieces. Per group, times are summed over the groups.

conv1's shared dimension, 3*11*11 = 363, is odd, which can keep cuBLAS from its fastest (and, with
TF32, its tensor-core) kernels; the ``K padded`` rows time conv1's two GEMMs with a zero row added
to reach 368. The dW product has a short output (conv1: 96 x 363) and a very long shared dimension (N*OH*OW =
387,200), the shape that gives a GEMM few output tiles to spread over the GPU. The ``split`` rows
time the same product cut into S pieces along that dimension, as one batched GEMM followed by a
sum over the pieces (the inputs are laid out for it beforehand, so a real version would need
im2col to write that layout): if they are much faster, splitting is worth building.

Times: CUDA events, median of ``--repeat`` runs after two warm-up runs. GPU only (CuPy).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONVS = [   # name, input (N, C, H, W), weight (K, C/groups, kh, kw), stride, padding, groups
    ("conv1", (128, 3, 227, 227), (96, 3, 11, 11), 4, 0, 1),
    ("conv2", (128, 96, 27, 27), (256, 48, 5, 5), 1, 2, 2),
    ("conv3", (128, 256, 13, 13), (384, 256, 3, 3), 1, 1, 1),
    ("conv4", (128, 384, 13, 13), (384, 192, 3, 3), 1, 1, 2),
    ("conv5", (128, 384, 13, 13), (256, 192, 3, 3), 1, 1, 2),
]
SPLITS = (4, 16, 64)


def timer(cupy, repeat):
    def median_ms(fn):
        for _ in range(2):
            fn()
        times = []
        for _ in range(repeat):
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end))
        return statistics.median(times)
    return median_ms


def gemm_rate(cupy, median_ms, size=8192):
    """TFLOPS of one large square float32 product: the ceiling the GEMM floors are drawn from."""
    a = cupy.random.standard_normal((size, size), dtype=cupy.float32)
    b = cupy.random.standard_normal((size, size), dtype=cupy.float32)
    ms = median_ms(lambda: a @ b)
    return 2 * size ** 3 / (ms * 1e-3) / 1e12


def conv_pieces(cupy, median_ms, name, xshape, wshape, stride, padding, groups):
    """[(piece, ms, GFLOP or None)] for one conv layer, and the whole op's forward+backward ms."""
    import minialex
    import minialex.functional as F
    from minialex import kernels

    n, c, h, w = xshape
    k, cg, kh, kw = wshape
    kg = k // groups
    oh, ow = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    p, np_, ckk = oh * ow, n * oh * ow, cg * kh * kw
    x = cupy.random.standard_normal(xshape, dtype=cupy.float32)
    weight = cupy.random.standard_normal(wshape, dtype=cupy.float32) * 0.05
    bias = cupy.random.standard_normal((k,), dtype=cupy.float32)
    gy = cupy.random.standard_normal((n, k, oh, ow), dtype=cupy.float32)
    geom = (kh, kw, stride, stride, padding, padding, oh, ow)
    cols = kernels.im2col_t(x, 0, cg, *geom)
    wmat = weight[:kg].reshape(kg, ckk)
    yt = cupy.empty((kg, np_), dtype=cupy.float32)
    gyt = cupy.random.standard_normal((kg, np_), dtype=cupy.float32)
    gw = cupy.empty((kg, ckk), dtype=cupy.float32)
    y = kernels.knp_to_nchw(cupy.random.standard_normal((k, np_), dtype=cupy.float32), bias, n, k,
                            p, True)
    gemm_gflop = 2 * kg * ckk * np_ / 1e9
    rows = [
        ("fwd im2col_t", median_ms(lambda: kernels.im2col_t(x, 0, cg, *geom)) * groups, None),
        ("fwd GEMM W@colsT", median_ms(lambda: cupy.matmul(wmat, cols, out=yt)) * groups,
         gemm_gflop * groups),
        ("fwd knp_to_nchw+relu", median_ms(lambda: kernels.knp_to_nchw(
            cupy.empty((k, np_), dtype=cupy.float32), bias, n, k, p, True)), None),
        ("bwd nchw_to_knp+mask", median_ms(lambda: kernels.nchw_to_knp(
            gy.reshape(n, k, p), y)), None),
        ("bwd im2col_t again", median_ms(lambda: kernels.im2col_t(x, 0, cg, *geom)) * groups, None),
        ("bwd GEMM dW", median_ms(lambda: cupy.matmul(gyt, cols.T, out=gw)) * groups,
         gemm_gflop * groups),
    ]
    if ckk % 8:            # conv1: 3*11*11 = 363, an odd leading dimension for cuBLAS
        padded = -(-ckk // 8) * 8
        wpad = cupy.zeros((kg, padded), dtype=cupy.float32)
        wpad[:, :ckk] = wmat
        cpad = cupy.zeros((padded, np_), dtype=cupy.float32)
        cpad[:ckk] = cols
        gwpad = cupy.empty((kg, padded), dtype=cupy.float32)
        rows += [(f"  fwd GEMM, K padded to {padded}",
                  median_ms(lambda: cupy.matmul(wpad, cpad, out=yt)) * groups, gemm_gflop * groups),
                 (f"  dW GEMM, K padded to {padded}",
                  median_ms(lambda: cupy.matmul(gyt, cpad.T, out=gwpad)) * groups, gemm_gflop * groups)]
        del wpad, cpad
    for s in SPLITS:
        length = np_ // s
        a3 = cupy.ascontiguousarray(gyt[:, :s * length].reshape(kg, s, length).transpose(1, 0, 2))
        b3 = cupy.ascontiguousarray(cols[:, :s * length].reshape(ckk, s, length).transpose(1, 2, 0))
        rows.append((f"  dW split {s} (batched)",
                     median_ms(lambda a3=a3, b3=b3: cupy.matmul(a3, b3).sum(axis=0)) * groups,
                     2 * kg * ckk * s * length / 1e9 * groups))
    if name != "conv1":                      # conv1 reads the image: no input gradient
        gx = cupy.empty(xshape, dtype=cupy.float32)
        rows += [
            ("bwd GEMM dcols W.T@dY", median_ms(lambda: wmat.T @ gyt) * groups, gemm_gflop * groups),
            ("bwd col2im_t", median_ms(lambda: kernels.col2im_t(cols, gx, 0, cg, *geom)) * groups, None),
        ]
    rows.append(("bwd bias sum", median_ms(lambda: gyt.sum(axis=1)) * groups, None))

    dev = minialex.Device("cuda:0")
    xt = minialex.Tensor(x, device=dev, requires_grad=name != "conv1")
    wt = minialex.Tensor(weight, device=dev, requires_grad=True)
    bt = minialex.Tensor(bias, device=dev, requires_grad=True)

    def whole():
        for t in (xt, wt, bt):
            t.grad = None
        F.conv2d_relu(xt, wt, bt, stride, padding, groups).backward(gy)

    return rows, median_ms(whole)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--only", default=None, help="comma-separated conv names (conv1,...)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    import cupy

    median_ms = timer(cupy, args.repeat)
    tf32 = os.environ.get("CUPY_TF32", "0") == "1"
    rate = gemm_rate(cupy, median_ms)
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    print(f"{name}, CuPy {cupy.__version__}, {'TF32' if tf32 else 'fp32'} GEMMs; "
          f"8192^3 GEMM: {rate:.1f} TFLOPS (the floors below use this rate)")
    keep = set(args.only.split(",")) if args.only else None
    report = {"gpu": name, "tf32": tf32, "gemm_tflops": rate, "convs": {}}
    for conv in CONVS:
        if keep and conv[0] not in keep:
            continue
        rows, whole = conv_pieces(cupy, median_ms, *conv)
        print(f"\n{conv[0]}: input {conv[1]}, weight {conv[2]}, stride {conv[3]}, padding {conv[4]}, "
              f"groups {conv[5]}")
        print(f"  {'piece':<28} {'ms':>7} {'TFLOPS':>7} {'floor ms':>9}")
        total = 0.0
        for piece, ms, gflop in rows:
            if not piece.startswith("  "):
                total += ms
            extra = (f" {gflop / ms:>7.1f} {gflop / rate:>9.2f}" if gflop else "")
            print(f"  {piece:<28} {ms:>7.2f}{extra}")
        print(f"  {'sum of the pieces':<28} {total:>7.2f}")
        print(f"  {'conv2d_relu fwd+bwd':<28} {whole:>7.2f}")
        report["convs"][conv[0]] = {"pieces": rows, "sum_ms": total, "whole_ms": whole}
        cupy.get_default_memory_pool().free_all_blocks()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
