# %% [markdown]
# # Lesson 7 · Overlapping pooling
#
# **The idea.** Max pooling summarises each small window of a feature map by its largest value,
# shrinking the map and making the response a little insensitive to where exactly a feature sits.
# Usually the windows tile the map (size z = stride s = 2). AlexNet uses z = 3, s = 2: each window
# shares a row or column with its neighbour — **overlapping** pooling.
#
# **What [the paper](../docs/paper.md) says (§3.4).** "If we set s < z, we obtain overlapping pooling. This is what we
# use throughout our network, with s = 2 and z = 3. This scheme reduces the top-1 and top-5 error
# rates by 0.4% and 0.3%, respectively, as compared with the non-overlapping scheme s = 2, z = 2,
# which produces output of equivalent dimensions. We generally observe during training that models
# with overlapping pooling find it slightly more difficult to overfit." Pooling follows LRN1, LRN2
# and conv5.
#
# The subtle part is the backward pass: a pixel can be the maximum of *several* windows, and then it
# must receive the gradient of **every** one of them.
#
# **You will build** max pooling by loops, forward and backward, the picture of gradients
# through overlapping windows, and, yourself, a backward that adds (checked). **You need** lesson
# 3's gradient checks and lesson 4's output-size formula.

# %%
import os

import numpy as np
import matplotlib.pyplot as plt

import minialex
import minialex.functional as F
from minialex.tools import exercises

CI = os.environ.get("MINIALEX_CI") == "1"  # the test suite sets this to shrink loops
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Output sizes: "equivalent dimensions"
#
# OH = ⌊(H − z)/s⌋ + 1. Along AlexNet's maps the two schemes give the same sizes, as the paper says:

# %%
def out_size(h, z, s):
    return (h - z) // s + 1


print(f"{'input':>6} {'3x3/2':>6} {'2x2/2':>6}")
for h in (55, 27, 13):
    print(f"{h:>6} {out_size(h, 3, 2):>6} {out_size(h, 2, 2):>6}")

# %% [markdown]
# ## 2. Pooling by loops, from scratch
#
# Forward: take the maximum of each window and remember *where* it was. Backward: send each
# window's gradient to the pixel that won, **adding** (`+=`) because windows overlap.

# %%
def maxpool_forward(x, z=3, s=2):
    n, c, h, w = x.shape
    oh, ow = out_size(h, z, s), out_size(w, z, s)
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    argmax = np.empty((n, c, oh, ow, 2), dtype=int)
    for i in range(n):
        for k in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    win = x[i, k, oy * s:oy * s + z, ox * s:ox * s + z]
                    dy, dx = np.unravel_index(np.argmax(win), win.shape)  # first maximum wins ties
                    y[i, k, oy, ox] = win[dy, dx]
                    argmax[i, k, oy, ox] = (oy * s + dy, ox * s + dx)
    return y, argmax


def maxpool_backward(gy, argmax, x_shape):
    gx = np.zeros(x_shape)
    n, c, oh, ow = gy.shape
    for i in range(n):
        for k in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    py, px = argmax[i, k, oy, ox]
                    gx[i, k, py, px] += gy[i, k, oy, ox]   # "+=": a pixel may win several windows
    return gx


x = rng.standard_normal((2, 3, 13, 13))
y, am = maxpool_forward(x)
xt = minialex.Tensor(x, requires_grad=True)
yt = F.max_pool2d(xt, kernel_size=3, stride=2)
g = rng.standard_normal(y.shape)
yt.backward(g)
print("forward equals F.max_pool2d:", np.allclose(y, yt.numpy()),
      "| backward equals:", np.allclose(maxpool_backward(g, am, x.shape), xt.grad))
print("F.max_pool2d_naive agrees:", np.allclose(F.max_pool2d_naive(minialex.Tensor(x)).numpy(), y))

# %% [markdown]
# ## 3. The backward through overlaps, visualised
#
# Left: how many 3×3/2 windows cover each pixel of a 9×9 map — 1, 2 or 4, since every other row and
# column is shared. Middle: with an upstream gradient of ones, the gradient each pixel receives is
# the number of windows it *won*: some pixels get 2 or more. Right: the same for 2×2/2, where
# windows do not overlap and no pixel can get more than 1.

# %%
h = 9
xm = rng.standard_normal((1, 1, h, h))
cover = np.zeros((h, h))
for oy in range(out_size(h, 3, 2)):
    for ox in range(out_size(h, 3, 2)):
        cover[oy * 2:oy * 2 + 3, ox * 2:ox * 2 + 3] += 1

grads = {}
for z in (3, 2):
    t = minialex.Tensor(xm, requires_grad=True)
    out = F.max_pool2d(t, kernel_size=z, stride=2)
    out.backward(np.ones(out.shape))
    grads[z] = t.grad[0, 0]

fig, axes = plt.subplots(1, 3, figsize=(12, 4))
for ax, data, title in zip(axes, (cover, grads[3], grads[2]),
                           ("windows covering each pixel (3x3/2)", "gradient received, 3x3/2",
                            "gradient received, 2x2/2")):
    im = ax.imshow(data, cmap="viridis", vmin=0, vmax=4)
    for (i, j), v in np.ndenumerate(data):
        if v:
            ax.text(j, i, int(v), ha="center", va="center", color="white", fontsize=8)
    ax.set_title(title, fontsize=10); ax.set_xticks([]); ax.set_yticks([])
plt.tight_layout(); plt.show()
print("largest gradient on one pixel: 3x3/2 ->", grads[3].max(), "| 2x2/2 ->", grads[2].max())
print("windows 3x3/2:", out_size(h, 3, 2) ** 2, "= total gradient", grads[3].sum())

# %% [markdown]
# A backward that *assigned* (`=`) instead of adding would silently drop gradient wherever a pixel
# wins two windows — it would still train, a little worse. A gradient check catches it, provided the
# input has no ties (where the maximum is not differentiable):

# %%
def max_pool_assigning(x):
    """Wrong: each window overwrites instead of adding."""
    class Bad(minialex.Function):
        def forward(self, a):
            y, self.argmax = maxpool_forward(a)
            self.shape = a.shape
            return y

        def backward(self, gy):
            gx = np.zeros(self.shape)
            for idx in np.ndindex(*gy.shape):
                py, px = self.argmax[idx]
                gx[idx[0], idx[1], py, px] = gy[idx]      # "=" instead of "+="
            return gx
    return Bad()(x)


tie_free = rng.permutation(2 * 2 * 9 * 9).reshape(2, 2, 9, 9).astype(np.float64) / 10
print(minialex.gradcheck(lambda t: F.max_pool2d(t, 3, 2), [tie_free], name="max_pool2d 3x3/2"))
print(minialex.gradcheck(max_pool_assigning, [tie_free], name="assigning backward",
                         raise_on_failure=False))

# %% [markdown]
# ## 4. What overlapping costs and gives
#
# Overlapping windows look at 9 values instead of 4 per output, so the forward does about twice the
# comparisons, and the maxima are less "blocky": neighbouring outputs can share a winner. Below, the
# fraction of output pairs (horizontally adjacent) that share the same winning pixel, on a
# conv-like smooth random map:

# %%
smooth = rng.standard_normal((1, 8, 55, 55))
for _ in range(3):   # a little blur makes neighbouring pixels correlated, like real feature maps
    smooth = (smooth + np.roll(smooth, 1, 2) + np.roll(smooth, 1, 3)) / 3
_, am3 = maxpool_forward(smooth, 3, 2)
_, am2 = maxpool_forward(smooth, 2, 2)
for name, a in (("3x3/2", am3), ("2x2/2", am2)):
    same = np.all(a[:, :, :, 1:] == a[:, :, :, :-1], axis=-1).mean()
    print(f"{name}: output {a.shape[2]}x{a.shape[3]}, neighbours sharing a winner: {same:.1%}")

# %% [markdown]
# **A maximum of maxima.** The loops above look at all 9 values of every window, and neighbouring
# windows look at their shared row or column twice. The maximum of a window is also the maximum,
# down its 3 rows, of each row's maximum across its 3 columns. Taken for every pixel at once, that
# is two maxima across and two down, whatever the stride; keeping every second row and column of
# the result gives the pooled map. `F.max_pool2d`'s CPU forward does this over the batch's flat
# memory, in long runs, and took about 0.6 of the time of a maximum over the 9 window views
# (docs/performance.md):

# %%
def maxpool_separable(x, z=3, s=2):
    """The maximum across z columns, then down z rows, for every pixel; every s-th kept."""
    h, w = x.shape[2:]
    across = x[..., 0:w - z + 1]
    for j in range(1, z):
        across = np.maximum(across, x[..., j:w - z + 1 + j])
    down = across[:, :, 0:h - z + 1]
    for i in range(1, z):
        down = np.maximum(down, across[:, :, i:h - z + 1 + i])
    return down[:, :, ::s, ::s]


print("separable maximum equals the loops':",
      np.array_equal(maxpool_separable(smooth), maxpool_forward(smooth)[0]))

# %% [markdown]
# **On a whole network.** `python cli.py train --data fashion-mnist --without overlap` pools 2×2 with
# stride 2 everywhere (the maps keep their sizes, as computed above). In the ablation of
# [docs/ablation.md](../docs/ablation.md) the test error rose by 0.6 points on average (§3.4: 0.4),
# but one seed's run was within 0.2 points of the full net's: two seeds cannot separate half a
# point.
#
# ## Your turn (checked)
#
# **Task.** Write `max_pool_backward(x, gy, size, stride)`: the gradient of L = Σ maxpool(x)·gy
# with respect to x (N, C, H, W), for square windows of side `size` and no padding. Find each
# window's maximum again (the first one, in row-major order, as `np.argmax` gives it) and send the
# window's gradient there. The check uses 3×3/2 windows, where one pixel can win two or four.

# %%
def max_pool_backward(x, gy, size, stride):
    raise NotImplementedError  # your code here


exercises.check_max_pool_backward(max_pool_backward);

# %% [markdown]
# ## What you built
#
# Max pooling with overlapping windows, forward and backward, a backward that adds where windows
# share a winner, and a gradient check that catches one that assigns. With lessons 4–7 you have
# every layer of AlexNet's convolutional part; lesson 8 adds the trick of its fully connected part.
#
# ## Exercise
#
# 1. With stride 2 and no padding, which window sides z keep AlexNet's 55 → 27 → 13 → 6? Show that
#    only z = 2 and z = 3 do. Then compute the sizes for 3×3/2 with 1 pixel of padding and for
#    3×3/3: what do they give instead?
# 2. On a GPU `F.max_pool2d` saves one small integer per output (the offset of the maximum inside
#    its window) and the backward reads it; on the CPU it saves the input and output and finds the
#    winners again. Why is the offset enough for the backward pass, and what does each way cost in
#    memory and in time for pool1 at batch 128?
# 3. Lesson 5's network pools 2×2/2. Train it with 3×3/2 pooling instead (it needs padding 1 to
#    keep the sizes: check with `out_size`) and compare the gap between training and test error
#    after the same number of steps. Does the 2×2/2 net overfit more, as §3.4 says?
