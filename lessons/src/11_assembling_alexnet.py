# %% [markdown]
# # Lesson 11 · Assembling AlexNet
#
# **The idea.** With convolution (lesson 4), ReLU (5), LRN (6), overlapping pooling (7) and
# dropout (8) in hand, AlexNet is just their composition in the right order with the right sizes.
# The sizes are worth checking by hand: they tell where the parameters are (the fully connected
# layers), where the computation is (the convolutions), and they expose two small puzzles in the
# paper itself.
#
# **What [the paper](../docs/paper.md) says (§3.5, Figure 2).** "The net contains eight layers with weights; the first
# five are convolutional and the remaining three are fully-connected." conv1: 96 kernels of
# 11×11×3, stride 4, on a 224×224×3 image; conv2: 256 of 5×5×48; conv3: 384 of 3×3×256; conv4:
# 384 of 3×3×192; conv5: 256 of 3×3×192; fc6 and fc7: 4096 each; fc8: 1000-way softmax. LRN
# follows conv1 and conv2, max pooling follows both LRNs and conv5, and "the ReLU non-linearity is
# applied to the output of every convolutional and fully-connected layer" — except the last, fc8,
# whose outputs go to the softmax. §4: "Our neural network architecture has 60 million parameters."
#
# **You will build** the paper's network from lessons 4–10's pieces, its parameter count by hand,
# and, yourself, the parameters and multiply-adds of any preset (checked). **You need** lesson 4's
# convolution sizes, lessons 5–8's layers and lesson 10's two columns.

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt

import minialex
import minialex.functional as F
from minialex.models import AlexNet, count_parameters, describe, get_preset, table
from minialex.tools import exercises

CI = os.environ.get("MINIALEX_CI") == "1"  # the test suite sets this to shrink loops

# %% [markdown]
# ## 1. The layer table
#
# `minialex.models.table` computes every row by arithmetic alone (no arrays are made):

# %%
print(table("paper"))

# %% [markdown]
# ## 2. 60,965,224 parameters, by hand
#
# A convolution with K kernels of size C×kh×kw has K·C·kh·kw weights and K biases; a fully
# connected layer from m to n has m·n + n. The columns matter: conv2, conv4 and conv5 see only their
# own column's channels (48, 192, 192), conv3 and the fully connected layers see both.

# %%
def conv_params(k, c, kh, kw):
    return k * c * kh * kw + k


def fc_params(m, n):
    return m * n + n


by_hand = {
    "conv1": conv_params(96, 3, 11, 11),
    "conv2": conv_params(256, 48, 5, 5),      # own column: 48 channels, not 96
    "conv3": conv_params(384, 256, 3, 3),     # both columns
    "conv4": conv_params(384, 192, 3, 3),     # own column
    "conv5": conv_params(256, 192, 3, 3),     # own column
    "fc6": fc_params(6 * 6 * 256, 4096),
    "fc7": fc_params(4096, 4096),
    "fc8": fc_params(4096, 1000),
}
for name, n in by_hand.items():
    print(f"{name:6s} {n:>12,}")
print(f"{'total':6s} {sum(by_hand.values()):>12,}   minialex.models.count_parameters: "
      f"{count_parameters('paper'):,}")

# %% [markdown]
# Two variants that are often confused with it:

# %%
all_see_both = dict(by_hand, conv2=conv_params(256, 96, 5, 5), conv4=conv_params(384, 384, 3, 3),
                    conv5=conv_params(256, 384, 3, 3))
torchvision = {"conv1": conv_params(64, 3, 11, 11), "conv2": conv_params(192, 64, 5, 5),
               "conv3": conv_params(384, 192, 3, 3), "conv4": conv_params(256, 384, 3, 3),
               "conv5": conv_params(256, 256, 3, 3), "fc6": fc_params(9216, 4096),
               "fc7": fc_params(4096, 4096), "fc8": fc_params(4096, 1000)}
print(f"if conv2/4/5 read both columns:           {sum(all_see_both.values()):,}")
print(f"torchvision's one-column 64-192-384-256-256: {sum(torchvision.values()):,}")

# %% [markdown]
# Now build the real thing and count its arrays. Column 0 on `cpu:0`, column 1 on `cpu:1` (two
# logical devices standing in for the two GPUs; lesson 10). `AlexNet` initialises every weight as
# §5 says (normal, standard deviation 0.01; biases 1 in conv2, conv4, conv5, fc6, fc7).

# %%
t = time.perf_counter()
model = AlexNet(num_classes=1000, preset="paper", devices=("cpu:0", "cpu:1"), seed=0)
print(f"built in {time.perf_counter() - t:.1f} s; parameters: {model.num_parameters():,}; "
      f"{model.num_parameters() * 4 / 2**20:.0f} MiB in float32")
for name, p in list(model.named_parameters())[:4]:
    print(f"  {name:24s} {str(p.shape):22s} on {p.device}")
print("  ...")

# %% [markdown]
# Where are the parameters, and where is the work? A convolution layer's multiply-adds are its
# weights times the number of output positions; a fully connected layer uses each weight once per
# image.

# %%
rows = [r for r in describe("paper") if r.params]
macs = {}
for r in rows:
    positions = r.output[1] * r.output[2] if len(r.output) == 3 else 1
    macs[r.layer] = (r.params - (2 * r.output[0] if r.layer != "fc8" else r.output[0])) * positions
params = {r.layer: r.params for r in rows}
fig, ax = plt.subplots(1, 2, figsize=(11, 3.5))
ax[0].bar(list(params), np.array(list(params.values())) / 1e6, color="tab:blue")
ax[0].set_ylabel("millions of parameters"); ax[0].set_title("parameters: the fc layers")
ax[1].bar(list(macs), np.array(list(macs.values())) / 1e6, color="tab:orange")
ax[1].set_ylabel("millions of multiply-adds per image"); ax[1].set_title("work: the conv layers")
plt.tight_layout(); plt.show()
conv_share = sum(v for k, v in params.items() if k.startswith("conv")) / sum(params.values())
work_share = sum(v for k, v in macs.items() if k.startswith("conv")) / sum(macs.values())
print(f"conv layers: {conv_share:.1%} of the parameters, {work_share:.1%} of the multiply-adds "
      f"({sum(macs.values()) / 1e9:.2f} G multiply-adds per image)")

# %% [markdown]
# ## 3. The 224/227 puzzle
#
# §3.5 says the input is 224×224×3 and Figure 2 shows 55×55 maps after conv1. But an 11-wide
# window with stride 4 fits (224 − 11)/4 + 1 = 54.25 times. The implementations answer differently
# ([the paper in our own words](../docs/paper.md#where-the-paper-is-ambiguous-and-what-minialex-chose),
# on 224 and 227):
#
# * Caffe crops **227**×227, no padding: (227 − 11)/4 + 1 = 55 exactly. **minialex does this.**
# * torchvision pads a 224 image by 2 on every side: ⌊(228 − 11)/4⌋ + 1 = 55.
# * cuda-convnet rounds the output size up, which amounts to padding on the right and bottom.
#
# All three then pool 55 → 27 → 13 → 6.

# %%
w1 = minialex.Tensor(np.zeros((1, 3, 11, 11), dtype=np.float32))
for side, pad in ((224, 0), (227, 0), (224, 2)):
    out = F.conv2d(minialex.Tensor(np.zeros((1, 3, side, side), dtype=np.float32)), w1, stride=4,
                   padding=pad)
    print(f"input {side}, padding {pad}: conv1 output {out.shape[2]}x{out.shape[3]}")
print("the model's input size:", model.input_size)

fig, ax = plt.subplots(figsize=(10, 2.2))
for row, (side, pad, label) in enumerate(((224, 0, "224, no pad"), (227, 0, "227 (Caffe, minialex)"),
                                          (224, 2, "224 + pad 2 (torchvision)"))):
    ax.add_patch(plt.Rectangle((-pad, row - 0.3), side + 2 * pad, 0.6, color="lightgray"))
    ax.add_patch(plt.Rectangle((0, row - 0.3), side, 0.6, color="tab:blue", alpha=0.4))
    n = (side + 2 * pad - 11) // 4 + 1
    last = -pad + 4 * (n - 1)
    ax.add_patch(plt.Rectangle((last, row - 0.35), 11, 0.7, fill=False, ec="red", lw=2))
    ax.text(232, row, f"{label}: {n} windows, last covers {last}..{last + 10}", va="center", fontsize=8)
ax.set_xlim(180, 330); ax.set_ylim(-0.6, 2.6); ax.set_yticks([])
ax.set_xlabel("pixel (the right edge of the image)"); ax.set_title("conv1's last window (red)")
plt.show()

# %% [markdown]
# ## 4. Figure 2's neuron counts, and the one that does not add up
#
# The caption of Figure 2 says: "the number of neurons in the network's remaining layers is given
# by 253,440–186,624–64,896–64,896–43,264–4096–4096–1000." Count the outputs of each layer over both
# columns:

# %%
paper_caption = [253_440, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]
ours = [r.neurons for r in rows]
print(f"{'layer':6s} {'output (both columns)':>24s} {'neurons':>10s} {'caption':>10s}")
for r, n, c in zip(rows, ours, paper_caption):
    shape = ("2 x " if r.layer != "fc8" else "") + "x".join(map(str, r.output))
    print(f"{r.layer:6s} {shape:>24s} {n:>10,} {c:>10,} {'' if n == c else '  <- differs'}")
print("55 * 55 * 96 =", f"{55 * 55 * 96:,}", "| 253,440 / 96 =", 253_440 / 96,
      "| sqrt:", round(float(np.sqrt(253_440 / 96)), 3))

# %% [markdown]
# Every count matches except the first: conv1 has 55·55·96 = 290,400 outputs, not 253,440. And no
# square map of 96 channels gives 253,440 (253,440 / 96 = 2,640 is not a square number), so no
# choice of input size or padding explains it: most likely a slip in the caption. It shows why one
# checks a paper's numbers by computing them.
#
# ## 5. One forward pass through the paper's network
#
# One image at the paper's size goes through all eight layers; the transfer log shows the copies
# between the two logical devices (lesson 10 explains them).

# %%
rng = np.random.default_rng(0)
image = minialex.Tensor(rng.standard_normal((1, 3, 227, 227)).astype(np.float32))
model.eval()  # test mode: dropout off, fc6/fc7 outputs scaled by 0.5 (§4.2)
t = time.perf_counter()
with minialex.no_grad(), minialex.transfer_log() as log:
    logits = model(image)
print(f"logits {logits.shape} on {logits.device}, forward in {time.perf_counter() - t:.2f} s")
print(log.table())
probs = F.softmax(logits).numpy()[0]
print("an untrained net is nearly uniform over 1000 classes: max p =", probs.max().round(5))

# %% [markdown]
# ## Your turn (checked)
#
# **Task.** Write `count(preset, num_classes)` returning `(parameters, multiply-adds per image)`
# for any AlexNet preset, from `p = get_preset(preset)`: `p.channels` (kernels per column in
# conv1..conv5), `p.fc` (neurons per column in fc6 and fc7), `p.conv1_kernel` (conv1's side; conv2
# is 5×5, conv3–conv5 3×3) and `p.spatial_sizes()` (the side of each layer's output, e.g.
# `["conv3"]`, `["pool5"]`). Mind which layers read both columns. Count both columns; fc8 is one
# layer of `num_classes` neurons. The check tries `paper`, `mini` and `tiny`.

# %%
def count(preset, num_classes):
    raise NotImplementedError  # your code here


exercises.check_counts(count);

# %% [markdown]
# ## What you built
#
# The paper's AlexNet, layer by layer: 60,965,224 parameters counted by hand, where they sit (the
# fc layers) and where the work is (the convolutions), the 224/227 puzzle and a slip in Figure 2's
# caption. Lesson 12 trains it.
#
# ## Exercise
#
# 1. Which layer would you shrink to halve the parameter count with the least change in the
#    computation? Compute both numbers for your choice.
# 2. Print `table("mini")` and `table("tiny")`: which numbers change between presets and which stay
#    the same (window sizes, strides, crossings)?
# 3. How much memory does one *training* step need for activations at batch 128 in float32? Add up
#    the outputs of every layer (the ReLU, LRN and pooling outputs too) — backward keeps them.
