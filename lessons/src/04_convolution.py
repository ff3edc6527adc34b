# %% [markdown]
# # Lesson 4 · Convolution: the loop, then im2col and one matrix product
#
# **The idea.** A convolutional layer slides each of its K kernels (small C×kh×kw blocks of
# weights) over the image and, at every position, takes the dot product of the kernel with the
# patch of input under it. Written as loops that is seven nested loops — clear but slow in Python.
# The trick every fast implementation uses: copy each input patch into one row of a matrix
# (**im2col**), and then all K kernels at all positions are **one matrix product** (GEMM), the
# operation GPUs and BLAS libraries are best at.
#
# **What [the paper](../docs/paper.md) says (§3.5, §3.2).** AlexNet's first layer filters the 224×224×3 image with
# 96 kernels of size 11×11×3 at a stride of 4 pixels; conv2 has 256 kernels of 5×5×48, and so on.
# "5×5×48", not 5×5×96: the kernels of conv2, conv4 and conv5 see only the channels of their own
# GPU (§3.2). On one device that is a **grouped convolution** with two groups. The paper's
# cuda-convnet code made convolution fast on the GPU; "our network takes between five and six days
# to train on two GTX 580 3GB GPUs" (§1).
#
# **You will build** the convolution three ways (seven loops, im2col + one GEMM, Winograd's F(2, 3)
# for one tile) and, yourself, the naive forward and backward, checked against minialex's
# `F.conv2d`. **You need** lesson 1's arrays, lesson 2's `Function`, and lesson 3's gradient check.

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt

import minialex
import minialex.functional as F
from minialex.tools import exercises

CI = os.environ.get("MINIALEX_CI") == "1"  # the test suite sets this to shrink loops
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Output size
#
# A window of size kh moving with stride s over H rows (padded by p on each side) fits at
# OH = ⌊(H + 2p − kh) / s⌋ + 1 positions. For conv1: (224 − 11)/4 + 1 = 54.25 — not a whole number;
# lesson 11 shows how implementations get 55. With 227 inputs it is exactly 55.

# %%
def output_size(size, kernel, stride=1, padding=0):
    return (size + 2 * padding - kernel) // stride + 1


print("conv1 on 224:", (224 - 11) / 4 + 1, "-> floor", output_size(224, 11, 4))
print("conv1 on 227:", output_size(227, 11, 4))
print("conv2 on 27 with pad 2:", output_size(27, 5, 1, 2))

# %% [markdown]
# ## 2. The loop, from scratch
#
# y[n, k, oy, ox] = b[k] + Σ_{c,i,j} w[k, c, i, j] · x[n, c, oy·s + i, ox·s + j]

# %%
def conv2d_loops(x, w, b, stride=1, padding=0):
    n_img, c_in, h, wd = x.shape
    k_out, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = output_size(h, kh, stride, padding), output_size(wd, kw, stride, padding)
    y = np.zeros((n_img, k_out, oh, ow), dtype=x.dtype)
    for n in range(n_img):
        for k in range(k_out):
            for oy in range(oh):
                for ox in range(ow):
                    patch = xp[n, :, oy * stride:oy * stride + kh, ox * stride:ox * stride + kw]
                    y[n, k, oy, ox] = np.sum(patch * w[k]) + b[k]  # the c, i, j loops
    return y


x = rng.standard_normal((2, 3, 8, 8))
w = rng.standard_normal((4, 3, 3, 3))
b = rng.standard_normal(4)
y_loops = conv2d_loops(x, w, b, stride=1, padding=1)
y_fast = F.conv2d(minialex.Tensor(x), minialex.Tensor(w), minialex.Tensor(b), stride=1, padding=1)
print("output shape", y_loops.shape, "| same as F.conv2d:", np.allclose(y_loops, y_fast.numpy()))

# %% [markdown]
# ## 3. im2col: patches as rows
#
# Take a 1-channel 4×4 image and a 2×2 kernel with stride 1: there are 3×3 = 9 positions, each
# patch has 4 values. im2col builds a 9×4 matrix, one patch per row. Overlapping patches mean each
# input value is **copied** into several rows — im2col trades memory for speed.

# %%
def im2col_loops(x, kh, kw, stride=1):
    n_img, c_in, h, wd = x.shape
    oh, ow = output_size(h, kh, stride), output_size(wd, kw, stride)
    rows = []
    for n in range(n_img):
        for oy in range(oh):
            for ox in range(ow):
                rows.append(x[n, :, oy * stride:oy * stride + kh, ox * stride:ox * stride + kw].ravel())
    return np.array(rows)  # (N*OH*OW, C*kh*kw)


tiny = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
cols = im2col_loops(tiny, 2, 2)
print("from scratch equals F.im2col:", np.array_equal(cols, F.im2col(tiny, 2)))

fig, (a0, a1) = plt.subplots(1, 2, figsize=(8, 4), gridspec_kw={"width_ratios": [1, 1]})
a0.imshow(tiny[0, 0], cmap="Blues")
for (i, j), v in np.ndenumerate(tiny[0, 0]):
    a0.text(j, i, int(v), ha="center", va="center")
a0.add_patch(plt.Rectangle((0.5, 0.5), 2, 2, fill=False, ec="red", lw=2))
a0.set_title("4x4 input; one 2x2 patch (red)"); a0.set_xticks([]); a0.set_yticks([])
a1.imshow(cols, cmap="Blues", aspect="auto")
for (i, j), v in np.ndenumerate(cols):
    a1.text(j, i, int(v), ha="center", va="center", color="red" if i == 4 else "black")
a1.set_title("im2col: 9 patches x 4 values"); a1.set_xlabel("value in patch (c, i, j)")
a1.set_ylabel("output position (oy, ox)")
plt.tight_layout(); plt.show()

# %% [markdown]
# Now every output is a row of `cols` times a kernel: with the K kernels reshaped into a
# K × (C·kh·kw) matrix W, **Y = cols · Wᵀ** gives all outputs at once, shape (N·OH·OW, K); a
# reshape and transpose return NCHW.

# %%
def conv2d_im2col(x, w, b, stride=1, padding=0):
    n_img, c_in, h, wd = x.shape
    k_out, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = output_size(h, kh, stride, padding), output_size(wd, kw, stride, padding)
    cols = im2col_loops(xp, kh, kw, stride)
    y = cols @ w.reshape(k_out, -1).T + b  # the one GEMM
    return y.reshape(n_img, oh, ow, k_out).transpose(0, 3, 1, 2)


print("im2col + GEMM equals the loops:", np.allclose(conv2d_im2col(x, w, b, 1, 1), y_loops))

# %% [markdown]
# ## 4. Same answer, very different time
#
# minialex has both: `F.conv2d_naive` (loops that read like the formula; the tests' oracle) and
# `F.conv2d` (im2col as a strided view plus one copy, then one GEMM per group). Both are
# differentiable and give the same outputs and gradients.

# %%
shape = (2, 8, 16, 16) if CI else (4, 16, 32, 32)
xb = rng.standard_normal(shape).astype(np.float32)
wb = (rng.standard_normal((16, shape[1], 3, 3)) * 0.1).astype(np.float32)
bb = np.zeros(16, dtype=np.float32)


def best_time(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter(); fn(); best = min(best, time.perf_counter() - t)
    return best


X, W, B = minialex.Tensor(xb), minialex.Tensor(wb), minialex.Tensor(bb)
times = {
    "loops (this notebook)": best_time(lambda: conv2d_loops(xb, wb, bb, 1, 1), 1),
    "F.conv2d_naive": best_time(lambda: F.conv2d_naive(X, W, B, padding=1), 1),
    "im2col loops + GEMM (this notebook)": best_time(lambda: conv2d_im2col(xb, wb, bb, 1, 1), 2),
    "F.conv2d (im2col + GEMM)": best_time(lambda: F.conv2d(X, W, B, padding=1), 5),
}
ref = F.conv2d_naive(X, W, B, padding=1).numpy()
fast = F.conv2d(X, W, B, padding=1).numpy()
print("input", shape, "| max |naive - fast| =", float(np.abs(ref - fast).max()))
for name, s in times.items():
    print(f"{name:38s} {s * 1e3:9.2f} ms")

fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(times), [s * 1e3 for s in times.values()], color=["gray", "gray", "tab:blue", "tab:blue"])
ax.set_xscale("log"); ax.set_xlabel("milliseconds (log scale)")
ax.set_title(f"3x3 convolution, 16 kernels, input {shape}")
ax.invert_yaxis(); plt.show()

# %% [markdown]
# The gradients agree too. And, as lesson 3 demands, the fast op passes a float64 gradient check
# with respect to input, weights and bias:

# %%
xs = minialex.Tensor(rng.standard_normal((2, 4, 6, 6)), requires_grad=True)
ws = minialex.Tensor(rng.standard_normal((6, 4, 3, 3)), requires_grad=True)
g = rng.standard_normal((2, 6, 3, 3))
F.conv2d(xs, ws, stride=2, padding=1).backward(g)
gx_fast, gw_fast = xs.grad, ws.grad
xs.zero_grad(); ws.zero_grad()
F.conv2d_naive(xs, ws, stride=2, padding=1).backward(g)
print("backward: fast equals naive:", np.allclose(gx_fast, xs.grad), np.allclose(gw_fast, ws.grad))
print(minialex.gradcheck(lambda a, k, c: F.conv2d(a, k, c, stride=2, padding=1),
                         [rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((6, 4, 3, 3)),
                          rng.standard_normal(6)], name="conv2d"))

# %% [markdown]
# ## 5. AlexNet's conv1 as one GEMM
#
# For a batch of N images at 227×227 (or 224 padded; lesson 11), conv1's im2col matrix has
# N·55·55 rows and 11·11·3 = 363 columns, and the GEMM multiplies it by 363×96.

# %%
n_img = 2 if CI else 8
img = rng.standard_normal((n_img, 3, 227, 227)).astype(np.float32)
k1 = (rng.standard_normal((96, 3, 11, 11)) * 0.01).astype(np.float32)
rows, cols_n = n_img * 55 * 55, 363
flops = 2 * rows * cols_n * 96
s = best_time(lambda: F.conv2d(minialex.Tensor(img), minialex.Tensor(k1), stride=4), 2 if CI else 3)
print(f"im2col matrix {rows:,} x {cols_n} ({rows * cols_n * 4 / 2**20:.0f} MiB float32), "
      f"GEMM {flops / 1e9:.2f} GFLOP")
print(f"F.conv2d conv1, batch {n_img}: {s * 1e3:.0f} ms = {flops / s / 1e9:.1f} GFLOP/s on this CPU")

# %% [markdown]
# ## 6. Groups: two columns on one device
#
# With `groups=2` the input channels and the kernels are split in two halves; kernels of half g
# see only input channels of half g. That is exactly the two-GPU net's conv2: each column's 128
# kernels see only its own 48 channels (§3.2). So a grouped convolution equals two separate
# convolutions on the halves, concatenated — and has half the weights of a full one.

# %%
xg = rng.standard_normal((2, 8, 7, 7))
wg = rng.standard_normal((6, 4, 3, 3))           # K=6 kernels, each sees C/groups = 4 channels
grouped = F.conv2d(minialex.Tensor(xg), minialex.Tensor(wg), padding=1, groups=2).numpy()
left = F.conv2d(minialex.Tensor(xg[:, :4]), minialex.Tensor(wg[:3]), padding=1).numpy()
right = F.conv2d(minialex.Tensor(xg[:, 4:]), minialex.Tensor(wg[3:]), padding=1).numpy()
print("grouped == concat(two halves):", np.allclose(grouped, np.concatenate([left, right], axis=1)))
print("conv2 weights, two columns (groups=2):", 256 * 48 * 5 * 5 + 256,
      "| if every kernel saw all 96 channels:", 256 * 96 * 5 * 5 + 256)

fig, axes = plt.subplots(1, 2, figsize=(7, 3))
for ax, groups in zip(axes, (1, 2)):
    mask = np.zeros((6, 8))
    for k in range(6):
        g_k = k // (6 // groups)
        mask[k, g_k * 8 // groups:(g_k + 1) * 8 // groups] = 1
    ax.imshow(mask, cmap="Greens")
    ax.set_title(f"groups={groups}: who sees what")
    ax.set_xlabel("input channel"); ax.set_ylabel("kernel")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 7. Fewer multiplications: Winograd's F(2, 3)
#
# im2col + GEMM does every multiply-add of the formula. Winograd's minimal filtering (Lavin &
# Gray, 2016) needs fewer. Two outputs of a 3-tap kernel g over four inputs d,
# y0 = d0·g0 + d1·g1 + d2·g2 and y1 = d1·g0 + d2·g1 + d3·g2, take 6 multiplications; these 4 give
# the same two numbers (the kernel's sums are made once per kernel, not per input):
#
#     m1 = (d0 − d2)·g0      m2 = (d1 + d2)·(g0 + g1 + g2)/2
#     m3 = (d2 − d1)·(g0 − g1 + g2)/2      m4 = (d1 − d3)·g2
#     y0 = m1 + m2 + m3      y1 = m2 − m3 − m4
#
# Nested in two dimensions, F(2×2, 3×3) makes a 2×2 block of outputs from the 4×4 tile under it
# with 16 multiplications instead of 36: Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A, with small constant
# matrices B, G and A (`minialex/functional/winograd.py`).

# %%
d, g = rng.standard_normal(4), rng.standard_normal(3)
m1, m2 = (d[0] - d[2]) * g[0], (d[1] + d[2]) * (g[0] + g[1] + g[2]) / 2
m3, m4 = (d[2] - d[1]) * (g[0] - g[1] + g[2]) / 2, (d[1] - d[3]) * g[2]
print("1-D, direct:", np.round([d[0:3] @ g, d[1:4] @ g], 6), "| Winograd:",
      np.round([m1 + m2 + m3, m2 - m3 - m4], 6))

from minialex.functional import winograd  # noqa: E402

tile, kernel = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
block = np.array([[np.sum(tile[i:i + 3, j:j + 3] * kernel) for j in range(2)] for i in range(2)])
B_T, G, A_T = winograd.B_T, winograd.G, winograd.A_T
print("2x2 block, direct:", block.ravel().round(6), "| Winograd:",
      (A_T @ ((G @ kernel @ G.T) * (B_T @ tile @ B_T.T)) @ A_T.T).ravel().round(6))

# %% [markdown]
# Where do B, G and A come from? Two outputs of a 3-tap kernel are the transpose of multiplying
# two polynomials, (u0 + u1·x)(g0 + g1·x + g2·x²), and a polynomial product can be computed by
# evaluating both factors at a few points, multiplying the values (the only multiplications that
# involve the data) and interpolating the product back (Toom–Cook). The points 0, 1, −1 and
# "infinity" (the leading coefficient) give exactly the matrices above;
# `winograd.minimal_filter(m, r)` builds them for any F(m, r) from its points. More outputs per
# tile need more points: the paper's conv2 (5×5 kernels) takes F(3×3, 5×5), 49 multiplications
# for 9 outputs instead of 225, built from 0, ±1, ±2, ½ and infinity.

# %%
a_t, g35, b_t = winograd.minimal_filter(3, 5)          # F(3, 5): 7 inputs, 3 outputs
d7, g5 = rng.standard_normal(7), rng.standard_normal(5)
print("F(2, 3) from its points equals the matrices above:",
      all(np.array_equal(x, y) for x, y in zip(winograd.minimal_filter(2, 3), (A_T, G, B_T))))
print("F(3, 5), direct:", np.round([d7[i:i + 5] @ g5 for i in range(3)], 6), "| Winograd:",
      np.round(a_t @ ((g35 @ g5) * (b_t @ d7)), 6))

# %% [markdown]
# Summed over the input channels, each of the 16 products of a tile is a matrix product over all
# tiles of the batch, so a conv becomes 16 GEMMs with 4/9 of im2col's multiply-adds, plus the
# transforms, which are passes over memory. Those only pay when there are many channels to share
# them. On the CPU, minialex takes this path for the paper's conv3–conv5 (13×13 maps, 192–384
# channels a column): by F(2×2, 3×3) the training step's three layers took 194 ms instead of 253,
# and by F(3×3, 3×3) (25 products for 9 outputs) 0.93 of that, which is what minialex uses now.
# Its conv2 takes F(3×3, 5×5) (27×27 maps, 48 channels in and 128 out), where forward and
# backward took 0.52 of im2col's time. mini's narrow layers keep im2col: Winograd was slower
# there. `F.conv2d` gives the same numbers either way, up to float32 rounding:

# %%
xw = rng.standard_normal((8, 256, 13, 13)).astype(np.float32)       # 8 images: Winograd's path
ww = (rng.standard_normal((384, 256, 3, 3)) * 0.02).astype(np.float32)
y_wino = F.conv2d(minialex.Tensor(xw), minialex.Tensor(ww), padding=1).numpy()
y_gemm = conv2d_im2col(xw, ww, np.zeros(384, np.float32), padding=1)
print("conv3 shape, batch 8: largest difference from im2col, relative to the largest output:",
      float(np.abs(y_wino - y_gemm).max() / np.abs(y_gemm).max()))

# %% [markdown]
# ## Your turn (checked)
#
# **Task 1.** Write `conv2d_forward(x, w, b, stride, padding)` from the formula of section 2 with
# all seven loops written out (n, k, oy, ox and c, i, j: no `np.sum` over a patch), for x
# (N, C, H, W), w (K, C, kh, kw) with kh and kw possibly different, b (K,).

# %%
def conv2d_forward(x, w, b, stride, padding):
    raise NotImplementedError  # your code here


exercises.check_conv_forward(conv2d_forward);

# %% [markdown]
# **Task 2.** Write `conv2d_backward(x, w, gy, stride, padding)` returning `(dx, dw, db)`, the
# gradients of L = Σ y·gy. Each output y[n, k, oy, ox] used one patch of x and kernel k: it sends
# gy[n, k, oy, ox] times the kernel back to the patch, and times the patch to the kernel. Patches
# overlap, so the sends into dx must *add*. Work in the padded input and cut the padding off dx at
# the end. The check compares each gradient with `F.conv2d`'s and names the first that differs.

# %%
def conv2d_backward(x, w, gy, stride, padding):
    raise NotImplementedError  # your code here


exercises.check_conv_backward(conv2d_backward);

# %% [markdown]
# ## What you built
#
# The convolution from its formula, the same thing as im2col and one matrix product (the way
# minialex's `F.conv2d` and most fast libraries compute it), grouped convolutions, Winograd's
# F(2, 3), and the backward by hand. Every convolutional layer from lesson 5 on runs on `F.conv2d`.
#
# ## Exercise
#
# 1. How many times is each input pixel copied by im2col for AlexNet's conv1 (11×11, stride 4)?
#    For conv2 (5×5, stride 1)? Check with `F.im2col` on a small input filled with ones, by
#    summing the copies per pixel (hint: `F.col2im` does exactly this sum).
# 2. Time `F.conv2d` for 1, 2, 4 and 8 groups at a fixed total number of kernels. Why does it get
#    cheaper?
# 3. Write the backward of `conv2d_im2col` in matrices: dW = dYᵀ·cols, dcols = dY·W, and dx by
#    adding every row of dcols back where its patch came from (`F.col2im`). Check it with your
#    `conv2d_backward`: the two must agree.
# 4. Count the multiplications of conv3 (384 kernels of 3×3×256 on 13×13 maps) per image, by
#    im2col and by F(2×2, 3×3), whose 2×2 blocks cover 14×14 and drop what overhangs. What
#    fraction is left, and why is the time saved smaller?
