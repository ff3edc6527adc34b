# %% [markdown]
# # Lesson 6 · Local response normalisation
#
# **The idea.** After the ReLU of conv1 and conv2, AlexNet divides every activation by a measure
# of how active its *neighbouring channels* are at the same pixel. A channel that fires strongly
# makes its neighbours look weaker: a "competition for big activities amongst neuron outputs computed
# using different kernels", like lateral inhibition in real neurons.
#
# **What [the paper](../docs/paper.md) says (§3.3).** For activity a at channel i, position (x, y), with N channels:
#
# b_i = a_i / (k + α · Σ_{j = max(0, i−n/2)}^{min(N−1, i+n/2)} a_j²)^β
#
# with k = 2, n = 5, α = 1e-4, β = 0.75, applied after the ReLU of conv1 and conv2. It "reduces
# our top-1 and top-5 error rates by 1.4% and 1.2%". In the two-column net each column normalises
# over its own channels. Later work (VGG, 2014) found LRN gave no gain, and batch normalisation
# replaced it; we build it because AlexNet used it.
#
# **You will build** LRN from its formula, the three conventions for its constants, a gradient
# check that can fail, and, yourself, its backward and PyTorch's convention (both checked).
# **You need** lesson 2's `Function`, lesson 3's gradient checks, and lesson 5's ReLU, which LRN
# follows in AlexNet.

# %%
import os

import numpy as np
import matplotlib.pyplot as plt

import minialex
import minialex.functional as F
import minialex.nn
from minialex.tools import exercises

CI = os.environ.get("MINIALEX_CI") == "1"  # the test suite sets this to shrink loops
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The formula as loops, from scratch

# %%
def lrn_loops(a, size=5, alpha=1e-4, beta=0.75, k=2.0):
    """a: (N, C, H, W). Literal §3.3: alpha multiplies the plain sum of squares."""
    n_img, channels, h, w = a.shape
    b = np.empty_like(a)
    half = size // 2
    for i in range(channels):
        lo, hi = max(0, i - half), min(channels - 1, i + half)
        s = (a[:, lo:hi + 1] ** 2).sum(axis=1)          # the window of neighbouring channels
        b[:, i] = a[:, i] / (k + alpha * s) ** beta
    return b


a = np.maximum(rng.standard_normal((2, 16, 5, 5)) * 30, 0)  # ReLU outputs of some size
ours = lrn_loops(a)
mini = F.local_response_norm(minialex.Tensor(a), size=5, alpha=1e-4, beta=0.75, k=2.0).numpy()
naive = F.local_response_norm_naive(minialex.Tensor(a)).numpy()
print("from scratch == F.local_response_norm:", np.allclose(ours, mini))
print("F.local_response_norm_naive == F.local_response_norm:", np.allclose(naive, mini))

# %% [markdown]
# ## 2. Three conventions for the same constants
#
# The formula is simple, but implementations disagree on what "alpha" means
# ([the paper in our own words](../docs/paper.md#local-response-normalisation), on LRN):
#
# | source | denominator | AlexNet constants |
# |---|---|---|
# | the paper, literally (also Chainer, **minialex**) | k + α·Σ | k = 2, α = 1e-4 |
# | cuda-convnet2 (`scale` divided by size) | k + (α/n)·Σ | k = 2, α = 1e-4, so 2e-5 per term |
# | Caffe, PyTorch (`alpha` divided by size) | k + (α/n)·Σ | Caffe's AlexNet leaves k = 1 |
#
# minialex's `F.local_response_norm` is the literal form; the others are the same function with
# α/n (and k = 1 for Caffe). So PyTorch's `LocalResponseNorm(5, alpha=5e-4, k=2)` is the paper's
# layer, while `LocalResponseNorm(5, alpha=1e-4, k=2)` is five times weaker.

# %%
def convention(x, name):
    t = minialex.Tensor(x)
    if name == "paper (minialex)":
        return F.local_response_norm(t, size=5, alpha=1e-4, beta=0.75, k=2.0).numpy()
    if name == "cuda-convnet2":
        return F.local_response_norm(t, size=5, alpha=1e-4 / 5, beta=0.75, k=2.0).numpy()
    if name == "Caffe (k=1)":
        return F.local_response_norm(t, size=5, alpha=1e-4 / 5, beta=0.75, k=1.0).numpy()
    raise ValueError(name)


names = ["paper (minialex)", "cuda-convnet2", "Caffe (k=1)"]
scales = np.logspace(-1, 3, 9 if CI else 25)   # typical activation size
gains = {n: [] for n in names}
for s in scales:
    x = np.full((1, 5, 1, 1), s)               # five equally active channels
    for n in names:
        gains[n].append(convention(x, n)[0, 2, 0, 0] / s)  # output / input of the middle one

fig, ax = plt.subplots(figsize=(6.5, 4))
for n in names:
    ax.semilogx(scales, gains[n], "o-", label=n)
ax.set_xlabel("activation of each of 5 neighbouring channels")
ax.set_ylabel("b / a  (the gain)")
ax.set_title("LRN gain by convention (n=5, beta=0.75)")
ax.legend(); ax.grid(alpha=0.3); plt.show()
print("paper gain for small activations: 2**-0.75 =", round(2 ** -0.75, 4))

# %% [markdown]
# Two lessons in that plot. For small activations LRN is just a constant scale, k^−β (0.59 for
# k = 2, 1 for k = 1): the competition only starts when Σa² approaches k/α = 20,000, i.e. when
# activations are in the tens to hundreds. That is the regime of the paper's network, whose inputs
# are raw pixel values in 0–255 minus the mean (§2). If you feed images scaled to [0, 1], LRN with
# the paper's constants does almost nothing. And the conventions differ by a factor of five in
# where the competition starts.
#
# ## 3. The effect on activations: competition between channels
#
# One channel fires strongly; its neighbours fire moderately. After LRN the neighbours within
# n/2 = 2 channels are pushed down; channels further away are not.

# %%
x = np.full((1, 12, 1, 1), 40.0)
x[0, 6] = 250.0
y = F.local_response_norm(minialex.Tensor(x)).numpy()
fig, ax = plt.subplots(figsize=(7, 3.2))
ch = np.arange(12)
ax.bar(ch - 0.2, x[0, :, 0, 0] * 2 ** -0.75, width=0.4, label="a · k^-β (what LRN does to a lone unit)")
ax.bar(ch + 0.2, y[0, :, 0, 0], width=0.4, label="b = LRN(a)")
ax.set_xlabel("channel"); ax.set_ylabel("activation"); ax.set_yscale("log")
ax.set_title("channel 6 fires at 250, the others at 40")
ax.legend(fontsize=8); plt.show()
calm = F.local_response_norm(minialex.Tensor(np.full_like(x, 40.0))).numpy()  # no channel at 250
pushed = [c for c in range(12) if c != 6 and y[0, c, 0, 0] < calm[0, c, 0, 0] * (1 - 1e-9)]
print("channels pushed below what they give when all fire at 40:", pushed)

# %% [markdown]
# ## 4. The gradient, checked
#
# LRN couples channels, so its backward has two terms: the direct one, g_j · s_j^−β with
# s_j = k + αΣ_j, and the one through every window that contains channel j:
#
# ∂L/∂a_j = g_j · s_j^−β − 2αβ · a_j · Σ_{i: j ∈ window(i)} g_i · b_i / s_i
#
# A gradient check with the paper's α = 1e-4 on activations near 1 would barely see the second
# term (α·Σ ≪ k), so a backward that forgot it might pass a loose check. Check with a large α,
# where a wrong formula shows: a gradient check is only worth something if it can fail.

# %%
x64 = rng.standard_normal((2, 7, 3, 3))
for alpha in (1e-4, 0.5):
    rep = minialex.gradcheck(lambda t: F.local_response_norm(t, size=5, alpha=alpha, beta=0.75, k=2.0),
                             [x64], name=f"lrn alpha={alpha}")
    print(rep)


def window_sq(a, size=5):
    """Σ a_j² over the window of each channel (as in lrn_loops)."""
    half = size // 2
    out = np.empty_like(a)
    for i in range(a.shape[1]):
        out[:, i] = (a[:, max(0, i - half):i + half + 1] ** 2).sum(axis=1)
    return out


class LRNForgetsNeighbours(minialex.Function):
    """A plausible but wrong backward: only the direct term g_j · s_j^-β."""

    def __init__(self, alpha):
        self.alpha = alpha

    def forward(self, a):
        self.save_for_backward(a)
        return lrn_loops(a, 5, self.alpha, 0.75, 2.0)

    def backward(self, g):
        (a,) = self.saved
        return g * (2.0 + self.alpha * window_sq(a)) ** -0.75


wrong = {}
for alpha in (1e-4, 0.5):
    wrong[alpha] = minialex.gradcheck(lambda t: LRNForgetsNeighbours(alpha)(t), [x64],
                                      name=f"wrong lrn alpha={alpha}", raise_on_failure=False)
    print(wrong[alpha])
# what the next paragraph says, checked against the two runs above
assert 1e-5 < wrong[1e-4].max_rel_error < 0.01 and wrong[0.5].max_rel_error > 0.5

# %% [markdown]
# With α = 1e-4 the wrong backward is off by less than 1% at worst: caught by gradcheck's strict
# float64 tolerance (1e-5), but a looser one (1e-2 is common for float32 checks) would let it through. With α = 0.5
# the error is of order 1 — unmistakable. minialex's tests check LRN with a large α for this reason.
#
# ## 5. As a layer
#
# `minialex.nn.LocalResponseNorm` wraps the function with the paper's constants as defaults.

# %%
layer = minialex.nn.LocalResponseNorm()
print(layer)
acts = np.maximum(rng.standard_normal((1, 48, 27, 27)) * 60, 0).astype(np.float32)
out = layer(minialex.Tensor(acts)).numpy()
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.hist(acts.ravel()[acts.ravel() > 0], bins=60, alpha=0.6, label="ReLU output a > 0")
ax.hist(out.ravel()[out.ravel() > 0], bins=60, alpha=0.6, label="after LRN")
ax.set_yscale("log"); ax.set_xlabel("activation"); ax.legend()
ax.set_title("one column's 48 channels (conv1-sized), paper constants")
plt.show()

# %% [markdown]
# **What LRN is worth on a whole network.** `python cli.py train --data fashion-mnist --without lrn`
# drops both LRN layers; in the ablation of [docs/ablation.md](../docs/ablation.md) (two seeds, a
# short budget) the test error rose by 0.7 points, 14.3% against 13.7%: the same direction as §3.3's
# 1.4 points, half the size.
#
# ## Your turn (checked)
#
# **Task 1.** Write `lrn_backward(a, g, size, alpha, beta, k)`: the gradient ∂L/∂a of
# L = Σ LRN(a)·g, for a and g of shape (N, C, H, W), from the formula of section 4. (Hint: the
# windows are symmetric, so "every i whose window contains j" is j's own window; `window_sq` above
# shows how to sum over one.) The check uses a large α too, so forgetting the second term fails.

# %%
def lrn_backward(a, g, size, alpha, beta, k):
    raise NotImplementedError  # your code here


exercises.check_lrn_backward(lrn_backward);

# %% [markdown]
# **Task 2.** Write `lrn_pytorch(x, size, alpha, beta, k)`: LRN in PyTorch's and Caffe's
# convention (α divided by the window size), by calling `F.local_response_norm` (x is a NumPy
# array; return one). Then `lrn_pytorch(x, 5, 5e-4, 0.75, 2)` is the paper's layer.

# %%
def lrn_pytorch(x, size, alpha, beta, k):
    raise NotImplementedError  # your code here


exercises.check_lrn_pytorch(lrn_pytorch);

# %% [markdown]
# ## What you built
#
# Local response normalisation from §3.3's formula, its three conventions, where it starts to
# bite (activations in the tens to hundreds), and its backward, checked with constants large
# enough to catch a wrong one. Lesson 7 adds the layer that follows it in conv1 and conv2's blocks.
#
# ## Exercise
#
# 1. The paper normalises across channels. Write a version that normalises across a 5×5 spatial
#    neighbourhood within one channel instead, and compare the outputs on the example of section 3.
# 2. In the two-column net each column normalises its own 48 channels. How many channels' outputs
#    change if you apply LRN to all 96 channels at once instead? (Hint: only the window edges.)
