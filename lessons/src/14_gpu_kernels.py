# %% [markdown]
# # Lesson 14 · Inside the GPU: CUDA kernels, read and run on your CPU
#
# **The idea.** AlexNet was trainable in 2012 because Krizhevsky wrote the convolution for the GPU
# himself (cuda-convnet): "a highly-optimized GPU implementation of 2D convolution and all the
# other operations inherent in training convolutional neural networks" ([§1](../docs/paper.md)).
# On a GPU, thousands of
# threads run the *same* small function at once, each on its own element. That function is a
# **kernel**. minialex's kernels live in `minialex/kernels/*.cu`, a few dozen lines each.
#
# You do not need a GPU for this lesson. `minialex.tools.cuda_host` compiles the very same `.cu`
# files with your C++ compiler (g++) and runs the GPU's threads one after another on the CPU. That is far
# too slow to train with, but it is the same code, so you can read a kernel, run it on a tiny input
# and compare it with the NumPy you already know. The test suite does exactly this for every
# kernel.
#
# This lesson follows the GPU path of lesson 4's convolution: im2col on the GPU, the
# layout change after the matrix product, and the ReLU folded into it.
#
# **You will build** kernels read, launched and checked on the CPU, the whole GPU convolution run
# through them, and a ReLU kernel of your own (checked by compiling and running it). **You need**
# lesson 4's im2col, lesson 5's ReLU and lesson 11's layer sizes; a C++ compiler, not a GPU.

# %%
import matplotlib.pyplot as plt
import numpy as np

from minialex import Tensor, kernels
import minialex.functional as F
from minialex.kernels import conv_gpu
from minialex.functional.conv import im2col
from minialex.tools import cuda_host
from minialex.tools import exercises

print("C++ compiler for the host runs:",
      cuda_host.compiler() or "none (install g++ to run this lesson)")
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Threads, blocks and the grid-stride loop
#
# A kernel is launched on a **grid** of **blocks**, each block a group of **threads** (up to 1024).
# Every thread knows where it is: `blockIdx.x` (which block), `threadIdx.x` (which thread in the
# block), `blockDim.x` (threads per block) and `gridDim.x` (blocks in the grid). The usual pattern,
# used by every minialex kernel, is the *grid-stride loop*: thread number
# `blockIdx.x * blockDim.x + threadIdx.x` takes that element, then jumps ahead by the total number
# of threads, until the array ends. So any grid size covers any array size.
#
# Here is a kernel that writes, for every element, *which thread* handled it:

# %%
WHO = r"""
template <typename T>
__global__ void who(T* __restrict__ out, const long long total) {
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)blockDim.x * gridDim.x) {
        out[idx] = T(blockIdx.x * 100 + threadIdx.x);     // block 1, thread 3 -> 103
    }
}
"""
module = cuda_host.HostModule(WHO, "who.cu")
out = np.full(20, -1.0)
module.get_function("who", np.float64)((2,), (4,), (out, np.int64(out.size)))   # grid 2, block 4
print(out.astype(int).reshape(4, 5))

# %% [markdown]
# The same table as a picture, one colour per thread, with a bigger launch: 3 blocks of 8 threads
# over 100 elements.

# %%
out = np.full(100, -1.0)
module.get_function("who", np.float64)((3,), (8,), (out, np.int64(out.size)))
block, thread = out.astype(int) // 100, out.astype(int) % 100
fig, ax = plt.subplots(figsize=(10, 2.6))
ax.imshow((block * 8 + thread).reshape(5, 20), cmap="tab20b")
for i, (bl, th) in enumerate(zip(block, thread)):
    ax.text(i % 20, i // 20, f"{bl}.{th}", ha="center", va="center", fontsize=7, color="white")
ax.set_title("element i (row-major, 5 x 20) handled by block.thread: 24 threads, grid-stride")
ax.set_xticks([]), ax.set_yticks([])
plt.show()

# %% [markdown]
# In the first table, 2 blocks × 4 threads = 8 threads for 20 elements: elements 0–3 went to block 0's threads 0–3,
# elements 4–7 to block 1's, and then every thread came round again (element 8 is thread 0 of
# block 0 once more). On a real GPU those 8 threads run *at the same time*; here they run one after
# another, which gives the same answer because no thread reads what another writes.
#
# Neighbouring threads handle neighbouring elements. That matters on a GPU: 32 threads (a *warp*)
# load together, and when they read 32 neighbouring addresses the hardware serves them in one
# memory transaction (*coalesced*). Most of the design of a fast kernel is about keeping that true.

# %% [markdown]
# ## 2. im2col as a kernel
#
# Lesson 4 built im2col with NumPy: every receptive field copied into a column of a matrix, so the
# convolution becomes one matrix product. On the GPU minialex builds the *transposed* matrix,
# `colsT` of shape (C·kh·kw, N·OH·OW): one row per (channel, kernel row, kernel column), one column
# per output position. Read the kernel; each block row `blockIdx.y` fills one row of colsT, and
# the threads of that block run along the output positions `q`:

# %%
source = kernels.source("conv.cu")
start = source.index("template <typename T>\n__global__ void im2col_t")
print(source[start:source.index("\n}\n", start) + 3])

# %% [markdown]
# Why the transposed layout? Thread `q` and thread `q + 1` are neighbouring output positions, so
# they read neighbouring pixels of `x` (for a stride of 1) and write neighbouring entries of
# `out`: both coalesced. And the products the convolution needs, `Y^T = W @ colsT` forward and
# `dW = dY^T @ colsT^T` backward, read colsT as it lies.
#
# Now run it. `cuda_host.emulate()` makes `minialex.kernels` work on NumPy arrays, with every
# CUDA kernel executed on the CPU from its `.cu` source:

# %%
x = rng.standard_normal((2, 3, 9, 9))                    # N=2 images, C=3 channels, 9x9
kh = kw = 3
oh = ow = 7                                              # (9 - 3) // 1 + 1
with cuda_host.emulate():
    cols_t = kernels.im2col_t(x, 0, 3, kh, kw, 1, 1, 0, 0, oh, ow)
print("colsT shape:", cols_t.shape, " = (C*kh*kw, N*OH*OW)")
print("same as NumPy im2col(x).T:", np.array_equal(cols_t, im2col(x, 3).T))

# %% [markdown]
# ## 3. A bug the GPU would not tell you about
#
# A kernel takes raw values: CuPy packs each argument with the width of its NumPy type, and the
# kernel reads as many bytes as its C parameter says. Pass a 64-bit integer where the kernel
# declares `int` and the GPU silently reads garbage for this and every following argument.
# minialex's launchers wrap every count in `numpy.int32` for that reason. The host runner checks
# widths, and says so:

# %%
fn = cuda_host.get_function("im2col_t", np.float64)
good = [np.int32(v) for v in (3, 0, 27, 98, 9, 9, 3, 3, 1, 1, 0, 0, 7, 7)]
bad = [np.int64(3)] + good[1:]                           # C_total as a 64-bit integer
try:
    fn((1, 27), (128,), (x, np.empty((27, 98)), *bad))
except TypeError as err:
    print("TypeError:", err)

# %% [markdown]
# ## 4. Folding the ReLU into a pass that already happens
#
# After the matrix product the output is kernel-major, `(K, N·OH·OW)`, and the next layer wants
# NCHW, `(N, K, OH·OW)`: one kernel, `knp_to_nchw`, moves every value, adding the bias on the way.
# Every AlexNet convolution is followed by a ReLU (§3.1). As a separate op the ReLU reads and writes
# the whole activation again (and its backward reads two arrays and writes one), so minialex folds
# it into the move: `y = v < 0 ? 0 : v` costs nothing extra when `v` is already in a register.

# %%
layout = kernels.source("layout.cu")
start = layout.index("template <typename T>\n__global__ void knp_to_nchw")
print(layout[start:layout.index("\n}\n", start) + 3])

# %% [markdown]
# Why `v < 0 ? 0 : v` and not `v > 0 ? v : 0`? For a NaN both comparisons are false: the first
# keeps the NaN, the second would turn it into 0 and hide a diverging network from the training
# loop's NaN guard. Check it, along with the bias and the layout:

# %%
k, n, p = 4, 2, 3
src = rng.standard_normal((k, n * p))
src[1, 2] = np.nan
bias = rng.standard_normal(k)
with cuda_host.emulate():
    y = kernels.knp_to_nchw(src, bias, n, k, p, relu=True)
expected = np.maximum(src.reshape(k, n, p).transpose(1, 0, 2) + bias[:, None], 0)
print("equal to max(0, layout change + bias), NaN included:",
      np.array_equal(y, expected, equal_nan=True), "| NaNs kept:", int(np.isnan(y).sum()))

# %% [markdown]
# How much does the fold save? Count bytes, as a GPU programmer would: the activations after
# conv1–conv5 of the paper's network at batch 128, in float32.

# %%
shapes = {"conv1": (96, 55, 55), "conv2": (256, 27, 27), "conv3": (384, 13, 13),
          "conv4": (384, 13, 13), "conv5": (256, 13, 13)}
total = sum(128 * c * h * w * 4 for c, h, w in shapes.values())
print(f"conv activations: {total / 1e6:.0f} MB per batch")
print(f"a separate ReLU moves 5 passes (2 forward, 3 backward): {5 * total / 1e9:.2f} GB per step")
print(f"folded, one extra pass remains (the mask read in the backward): {total / 1e9:.2f} GB")
print(f"saved at ~4 TB/s (an H200's memory): {4 * total / 4e12 * 1e3:.2f} ms per step")

# %% [markdown]
# ## 5. The whole GPU convolution, on the CPU
#
# `conv_gpu.py` strings the kernels and the matrix products together: im2col_t, one GEMM per group,
# knp_to_nchw forward; nchw_to_knp (with the ReLU's mask), im2col_t again, two GEMMs and col2im_t
# backward. One detail is there for the GPU's sake: the products' shared dimension C·kh·kw is
# padded with zeros to a multiple of 8 (`conv_gpu.PAD_K`), so that every matrix row starts on a
# 32-byte boundary, which the fastest matrix-product kernels want (conv1's 3·11·11 = 363 becomes
# 368; the zeros change no sum). Under `cuda_host.emulate()` all of it runs exactly as on a GPU, and
# must agree with the NumPy convolution of lesson 4 — here conv2's geometry (5×5, padding 2, two
# groups), made small, whose 2·5·5 = 50 is padded to 56:

# %%
x = rng.standard_normal((2, 4, 9, 7))
w = rng.standard_normal((6, 2, 5, 5))
b = rng.standard_normal(6)
with cuda_host.emulate():
    y_gpu = conv_gpu.conv2d_forward(x, w, b, (1, 1), (2, 2), 2, relu=True)
    gy = rng.standard_normal(y_gpu.shape)
    gx, gw, gb = conv_gpu.conv2d_backward(x, w, gy, (1, 1), (2, 2), 2, True, True, y_gpu)
xt, wt, bt = (Tensor(a, requires_grad=True) for a in (x, w, b))
y_ref = F.conv2d_relu(xt, wt, bt, padding=2, groups=2)
y_ref.backward(gy)
for name, got, ref in [("y", y_gpu, y_ref.data), ("dx", gx, xt.grad), ("dW", gw, wt.grad),
                       ("db", gb, bt.grad)]:
    print(f"{name:>2}: largest difference from the NumPy path {np.abs(got - ref).max():.1e}")

# %% [markdown]
# ## 6. What the GPU makes of it
#
# The per-layer times measured on an NVIDIA H200 on 2026-11-26 (`python benchmarks/layers.py
# --device cuda:0 --torch`, forward + backward, float32, batch 128; the table in docs/performance.md), before the
# ReLU was folded into the convolutions:

# %%
layers = ["conv1", "relu1", "lrn1", "pool1", "conv2", "lrn2", "pool2", "conv3", "conv4", "conv5",
          "pool5", "fc6", "fc7", "fc8", "loss"]
minialex_ms = [5.92, 0.64, 1.13, 0.93, 8.47, 0.71, 0.58, 3.50, 3.67, 3.06, 0.24, 1.00, 0.51, 0.42, 0.86]
pytorch_ms = [3.47, 0.63, 3.56, 0.74, 4.87, 2.46, 0.48, 2.53, 2.92, 2.52, 0.29, 0.90, 0.54, 0.49, 0.24]
convs = [i for i, name in enumerate(layers) if name.startswith("conv")]
print(f"the convolutions: {sum(minialex_ms[i] - pytorch_ms[i] for i in convs):.1f} ms more in "
      f"minialex | LRN: {sum(pytorch_ms[i] - minialex_ms[i] for i in (2, 5)):.1f} ms less")
pos = np.arange(len(layers))
fig, ax = plt.subplots(figsize=(10, 3.5))
ax.bar(pos - 0.2, minialex_ms, 0.4, label="minialex (im2col + cuBLAS, own kernels)")
ax.bar(pos + 0.2, pytorch_ms, 0.4, label="PyTorch + cuDNN")
ax.set_xticks(pos, layers)
ax.set_ylabel("ms, forward + backward")
ax.set_title("AlexNet layer by layer on an H200 (float32, batch 128)")
ax.legend()
plt.show()

# %% [markdown]
# The convolutions are where minialex loses (printed above), and LRN where it wins (its kernel
# reads each pixel's five neighbours in one pass). The loss bar is too tall: that run checked the
# labels on every call, which waits for the GPU; the training step skips the check, and the
# benchmark now does too. It was also about fifteen small kernels (max, subtract, exp, sum, log,
# ...) for a matrix of only 128 × 1000; `kernels/loss.cu` now does it in two kernels, a forward
# with one block per row (as in exercise 3) and a backward, three launches with CuPy's sum for the
# mean; not yet timed on a GPU. For the whole training step: 28.9 ms in minialex
# and 24.5 ms in PyTorch with cuDNN, in float32 (docs/performance.md). The
# floor for the step is the arithmetic: 529 billion floating-point operations, 10.6 ms at the
# 50 TFLOPS a float32 matrix product reaches on that card (`benchmarks/NOTES.md`). Neither
# framework is near it; the gap is in the convolutions, where cuDNN's kernels never write the
# unfolded columns that im2col does. `benchmarks/conv_gemms.py` times every piece of the
# convolution above on a GPU, to find where the rest goes.
#
# ## Your turn (checked)
#
# **Task.** Write `relu_forward` as a CUDA kernel: out[i] = max(0, x[i]) for every i < total, one
# element per thread with a grid-stride loop (section 1), and a NaN kept as NaN (section 4). The
# signature is given (`exercises.RELU_SIGNATURE`); write the body. The check compiles your source
# with the host runner and launches 3 blocks of 32 threads on 1000 elements, in float32 and
# float64.

# %%
RELU_SOURCE = exercises.RELU_SIGNATURE + """ {
    // your code here
}
"""

exercises.check_relu_kernel(RELU_SOURCE);

# %% [markdown]
# ## What you built
#
# CUDA kernels read and run on the CPU from their own `.cu` source: threads, blocks and
# grid-stride loops, im2col as a kernel, why argument widths matter, the ReLU folded into the
# layout pass, the whole GPU convolution checked against NumPy, and a kernel of your own. Lesson 15
# goes from one device to many.
#
# ## Exercises
#
# 1. Change `who` to a 2-D grid, like `im2col_t`: rows by `blockIdx.y`, columns by the x threads.
#    Print the ownership table of a (3, 8) array with grid (1, 3) and block (4,).
# 2. Break `im2col_t`: in a copy of `kernels.source("conv.cu")`, replace `+ j;` in the line
#    computing `ix` with `+ i;`, build it with `cuda_host.HostModule`, and compare with
#    `im2col(x).T`.
#    Which entries go wrong, and why do the ones where i == j survive?
# 3. Threads of a block can cooperate: a `__shared__ T partial[64];` array is shared by the block,
#    and `__syncthreads()` makes every thread wait for the others. Write a kernel that sums each
#    block's share of an array with a tree reduction in shared memory (the host runner then runs
#    the block's threads at once, on CPU threads, with a real barrier). What goes wrong if you
#    leave out the `__syncthreads()` inside the loop? (`tests/test_kernels_on_host.py` has one;
#    `kernels.source("loss.cu")` reduces each row of the logits this way, for the max and then
#    the sum of exponentials.)
