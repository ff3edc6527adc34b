# %% [markdown]
# # Lesson 10 · Two GPUs: columns, copies and grouped convolutions
#
# **The idea.** In 2012 AlexNet did not fit in the 3 GB of one GPU, so Krizhevsky split it into two
# **columns**, one per GPU, each with half of every layer's kernels. Copying activations between
# GPUs is slow compared with computing on them, so the columns talk only at a few layers. Everywhere
# else each column reads only its own half — which, seen on one device, is a *grouped* convolution.
#
# **What [the paper](../docs/paper.md) says (§3.2).** "The parallelization scheme that we employ essentially puts half
# of the kernels (or neurons) on each GPU, with one additional trick: the GPUs communicate only in
# certain layers. This means that, for example, the kernels of layer 3 take input from all kernel
# maps in layer 2. However, kernels in layer 4 take input only from those kernel maps in layer 3
# which reside on the same GPU." Compared with a net with half as many kernels trained on one GPU,
# "this scheme reduces our top-1 and top-5 error rates by 1.7% and 1.2%", and "the two-GPU net
# takes slightly less time to train".
#
# minialex runs the two columns on two devices: `cuda:0` and `cuda:1` on a two-GPU machine, and on a
# laptop the logical devices `cpu:0` and `cpu:1` (lesson 1), which enforce the same rules: an op
# refuses inputs from two devices, and `minialex.to_device` is the only way across — logged.
#
# **You will build** a training step of a two-column AlexNet on two devices, the bytes it moves
# counted two ways, and a grouped convolution from ungrouped ones (checked). **You need** lesson
# 1's devices and transfer log, lesson 4's grouped convolution, and lessons 5–8's layers, which the
# `mini` AlexNet here is made of (lesson 11 assembles it in full).

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt

import minialex
import minialex.functional as F
from minialex.models import AlexNet, get_preset
from minialex.tools import exercises

CI = os.environ.get("MINIALEX_CI") == "1"  # the test suite sets this to shrink loops
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. A training step on two devices, logged
#
# The `mini` preset is AlexNet with the same topology — two columns, the same four crossings — but
# fewer kernels and a small input (`model.input_size`), so a CPU can run it. One forward and
# backward pass:

# %%
model = AlexNet(num_classes=10, preset="mini", devices=("cpu:0", "cpu:1"), seed=0)
batch = 8
S = model.input_size
print("mini preset input:", S, "x", S)
images = minialex.Tensor(rng.standard_normal((batch, 3, S, S)).astype(np.float32))
labels = rng.integers(0, 10, batch)
with minialex.transfer_log() as log:
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
print(log.table())
print(f"\nforward {log.total_bytes('forward'):,} bytes, backward {log.total_bytes('backward'):,} bytes")

# %% [markdown]
# Read the log from the top:
#
# * the image batch is copied to **both** columns (host → device; in the backward nothing returns,
#   since the image needs no gradient);
# * before conv3, fc6, fc7 each column receives the other's output, so each device holds
#   both halves (**column 0's channels first**, so the weights see the same order on either device);
# * fc8 lives with column 0 (the paper does not say where; cuda-convnet2 put it on GPU 0), so
#   only column 1's fc7 output crosses;
# * in the backward every crossing sends the gradient back the other way: same bytes.
#
# Nothing else crosses: conv1, conv2, conv4 and conv5 read only their own column.
#
# ## 2. Bytes per step by arithmetic
#
# Each crossing moves one column's activations: batch × (channels × height × width) × 4 bytes in
# float32. Written out, and checked against the log:

# %%
def crossing_bytes(preset, batch, num_classes=1000, itemsize=4):
    """Bytes crossing between the two devices per training step, per crossing (fwd + bwd)."""
    p = get_preset(preset)
    s = p.spatial_sizes()
    c1, c2, c3, c4, c5 = p.channels
    one = {  # one column's output, per image
        "conv3": c2 * s["pool2"] ** 2,
        "fc6": c5 * s["pool5"] ** 2,
        "fc7": p.fc,
    }
    out = {layer: 2 * 2 * batch * n * itemsize for layer, n in one.items()}  # 2 ways, fwd + bwd
    out["fc8"] = 2 * batch * p.fc * itemsize                             # column 1 -> 0, fwd + bwd
    return out


expected = crossing_bytes("mini", batch, num_classes=10)
logged = sum(t.nbytes for t in log if not t.label.startswith("image"))
print("between the columns, by arithmetic:", f"{sum(expected.values()):,}", "| logged:", f"{logged:,}")

# %% [markdown]
# For the paper's network at its batch size of 128 (§5):

# %%
paper = crossing_bytes("paper", 128)
for layer, n in paper.items():
    print(f"{layer:6s} {n / 2**20:8.2f} MiB per step")
total = sum(paper.values())
print(f"total  {total / 2**20:8.2f} MiB per step")
step_time = 128 / 230  # 90 epochs of 1.2M images in five to six days: about 230 images/s (§5)
for name, bw in (("PCIe 2.0 x16, ~6 GB/s", 6e9), ("NVLink-class, ~300 GB/s", 300e9)):
    print(f"at {name}: {total / bw * 1e3:6.2f} ms of a {step_time * 1e3:.0f} ms step")

# %% [markdown]
# What if every layer read both columns, as in a single wide network? conv2, conv4 and conv5 would
# need their inputs exchanged too:

# %%
p = get_preset("paper")
s = p.spatial_sizes()
c1, c2, c3, c4, c5 = p.channels
all_talk = dict(paper)
all_talk["conv2"] = 2 * 2 * 128 * c1 * s["pool1"] ** 2 * 4
all_talk["conv4"] = 2 * 2 * 128 * c3 * s["conv3"] ** 2 * 4
all_talk["conv5"] = 2 * 2 * 128 * c4 * s["conv4"] ** 2 * 4
order = ["conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]

fig, ax = plt.subplots(figsize=(8, 3.5))
xs = np.arange(len(order))
ax.bar(xs - 0.2, [all_talk[k] / 2**20 for k in order], width=0.4, label="every layer reads both columns")
ax.bar(xs + 0.2, [paper.get(k, 0) / 2**20 for k in order], width=0.4, label="AlexNet (§3.2)")
ax.set_xticks(xs, order); ax.set_ylabel("MiB per step (batch 128)")
ax.set_title("bytes crossing between the GPUs per training step, by the layer that reads them")
ax.legend(); plt.show()
print(f"AlexNet: {sum(paper.values()) / 2**20:.0f} MiB per step; "
      f"fully connected columns: {sum(all_talk.values()) / 2**20:.0f} MiB")

# %% [markdown]
# ## 3. The two columns, drawn
#
# Each box is a layer on its device; the red arrows are the copies, labelled with the paper
# network's bytes per training step (forward + backward, both directions).

# %%
layers = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
fig, ax = plt.subplots(figsize=(7, 6))
for col, x in ((0, 0.0), (1, 3.0)):
    for i, name in enumerate(layers):
        y = -i
        ax.add_patch(plt.Rectangle((x - 0.7, y - 0.3), 1.4, 0.6,
                                   fc="tab:blue" if col == 0 else "tab:green", alpha=0.35))
        ax.text(x, y, f"{name}\ncolumn {col}", ha="center", va="center", fontsize=8)
        if i:
            ax.annotate("", xy=(x, y + 0.3), xytext=(x, y + 0.7), arrowprops=dict(arrowstyle="->"))
ax.add_patch(plt.Rectangle((0.8, -len(layers) - 0.3), 1.4, 0.6, fc="tab:orange", alpha=0.4))
ax.text(1.5, -len(layers), "fc8 (device 0)", ha="center", va="center", fontsize=8)
for name in ("conv3", "fc6", "fc7"):
    y = -layers.index(name) + 0.5
    ax.annotate("", xy=(2.3, y - 0.2), xytext=(0.7, y + 0.1),
                arrowprops=dict(arrowstyle="->", color="red"))
    ax.annotate("", xy=(0.7, y - 0.2), xytext=(2.3, y + 0.1),
                arrowprops=dict(arrowstyle="->", color="red"))
    ax.text(1.5, y + 0.2, f"{paper[name] / 2**20:.1f} MiB", ha="center", color="red", fontsize=8)
for x in (0.0, 3.0):
    ax.annotate("", xy=(1.5 + (x - 1.5) / 4, -len(layers) + 0.3), xytext=(x, -len(layers) + 0.7),
                arrowprops=dict(arrowstyle="->", color="red" if x else "black"))
ax.text(2.5, -len(layers) + 0.25, f"{paper['fc8'] / 2**20:.1f} MiB", color="red", fontsize=8)
ax.set_xlim(-1, 4); ax.set_ylim(-len(layers) - 0.8, 0.8); ax.axis("off")
ax.set_title("AlexNet's two columns and where they talk (§3.2)")
plt.show()

# %% [markdown]
# ## 4. The discipline: an op refuses two devices
#
# Feed column 1's data into column 0's conv2 by mistake, and the op stops you, naming both devices:

# %%
x1 = minialex.Tensor(rng.standard_normal((1, 12, 30, 30)).astype(np.float32), device="cpu:1")
try:
    model.column0.conv2(F.max_pool2d(x1))
except minialex.DeviceError as err:
    print("DeviceError:", err)

# %% [markdown]
# ## 5. One device: grouped convolutions
#
# On a single device the copies are no-ops, and a column pair is a **grouped convolution** (lesson
# 4): stack the two columns' conv2 weights (column 0 first) and `F.conv2d(..., groups=2)` over both
# columns' channels computes exactly what the two columns compute apart. Here is conv2 both ways:

# %%
c1 = model.column0.conv1.weight.shape[0]                    # kernels per column in conv1
pooled = minialex.Tensor(rng.standard_normal((2, 2 * c1, 11, 11)).astype(np.float32))
a, b = model.column0.conv2, model.column1.conv2             # on cpu:0 and cpu:1
w0, b0, w1, b1 = (minialex.Tensor(t.numpy()) for t in (a.weight, a.bias, b.weight, b.bias))
apart = np.concatenate([F.conv2d(pooled[:, :c1], w0, b0, padding=2).numpy(),
                        F.conv2d(pooled[:, c1:], w1, b1, padding=2).numpy()], axis=1)
stacked_w = np.concatenate([w0.numpy(), w1.numpy()])
stacked_b = np.concatenate([b0.numpy(), b1.numpy()])
grouped = F.conv2d(pooled, minialex.Tensor(stacked_w), minialex.Tensor(stacked_b), padding=2,
                   groups=2).numpy()
print("conv2 weight, stacked:", stacked_w.shape, "= two columns of", a.weight.shape)
print("two columns vs one grouped conv, max |difference|:", float(np.abs(apart - grouped).max()))

# %% [markdown]
# This is what `AlexNet` itself does when both columns share a device. Its `forward` states the
# network once; a **placement** (`minialex/models/placement.py`) decides how the columns run:
# `ColumnByColumn` (two devices, copies at the crossings) or `ColumnsTogether` (one device:
# grouped convolutions over the same weights, no copies). `fuse_columns=False` forces the first.
# Same function either way:

# %%
together = AlexNet(num_classes=10, preset="mini", devices=("cpu", "cpu"), seed=0)
print("placements:", type(model.placement()).__name__, "|", type(together.placement()).__name__)
model.eval(); together.eval()   # test mode: no random dropout masks
test_images = minialex.Tensor(rng.standard_normal((4, 3, S, S)).astype(np.float32))
with minialex.no_grad():
    with minialex.transfer_log() as log_two:
        a = model(test_images).numpy()
    with minialex.transfer_log() as log_one:
        b = together(test_images).numpy()
print("column by column vs together, max |difference| of the logits:", float(np.abs(a - b).max()))
print("copies in the forward pass: two devices", len(log_two), "| one device", len(log_one))

# %% [markdown]
# One detail (in `minialex/models/common.py`): LRN sums over neighbouring channels *of one column*.
# Run over all 96 channels of the stacked columns at once, channels 47 and 48 would see each other,
# so `lrn_in_groups` normalises each half separately. Caffe's grouped AlexNet does not bother.
#
# ## 6. On real GPUs
#
# With two GPUs, `minialex.default_devices()` gives `cuda:0` and `cuda:1`, and the same code runs
# the columns there (each op with its device made current; copies are device-to-device). With one
# GPU both columns share `cuda:0` and the copies become no-ops.

# %%
print("default devices here:", minialex.default_devices())
if minialex.gpu_available():
    gpu_model = AlexNet(num_classes=10, preset="mini", seed=0)  # default_devices()
    x = minialex.Tensor(rng.standard_normal((32, 3, S, S)).astype(np.float32))
    with minialex.transfer_log() as glog:
        F.cross_entropy(gpu_model(x), rng.integers(0, 10, 32)).backward()
    print(glog.table())
else:
    print("no GPU: the cell above ran the same network on cpu:0 and cpu:1")

# %% [markdown]
# **What the second column is worth.** `python cli.py train --data fashion-mnist --without columns`
# trains `OneColumnAlexNet` (half the kernels in conv1–conv4, conv5 and the fc layers at full width,
# as §3.2's footnote says). In the ablation of [docs/ablation.md](../docs/ablation.md) it ended 0.5
# points behind the two columns on average (§3.2: 1.7), one seed level with them.
#
# ## Your turn (checked)
#
# **Task.** Write `grouped_conv(x, w, b, groups)` with padding 1, the way section 5 did for two
# columns but for any number of groups, calling `F.conv2d` *without* its `groups` argument: cut
# the input's channels and the kernels into `groups` equal slices, convolve each slice with its
# own kernels, and stack the outputs in order. x, w, b are NumPy arrays; return one.

# %%
def grouped_conv(x, w, b, groups):
    raise NotImplementedError  # your code here


exercises.check_grouped_conv(grouped_conv);

# %% [markdown]
# ## What you built
#
# AlexNet's two columns on two devices, the copies between them from the transfer log and by
# arithmetic, and the equivalence with grouped convolutions on one device. Lesson 11 assembles the
# whole network and counts its parameters and work.
#
# ## Exercise
#
# 1. Use `crossing_bytes` to find the batch size at which the paper's crossings would take 10% of
#    a 0.55 s step over a 6 GB/s link.
# 2. Split fc8 500/500 between the columns instead (each column computes half the classes from
#    both fc7 outputs). Which copies change, and how many bytes per step cross then?
# 3. Time a training step of the `mini` preset with devices `("cpu", "cpu")` and with
#    `("cpu:0", "cpu:1")`. Is the difference the copies? Check with the transfer log.
