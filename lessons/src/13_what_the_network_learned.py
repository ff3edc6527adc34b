# %% [markdown]
# # Lesson 13 · What the network learned
#
# **The idea.** A trained network can be looked at, not just scored. The first layer's kernels
# act directly on pixels, so they can be drawn as little images. The last hidden layer turns each
# image into a vector; images the network considers similar get nearby vectors, whatever their
# pixels look like.
#
# **What [the paper](../docs/paper.md) says (§6.1).** Figure 3 shows the 96 conv1 kernels, 11×11×3: "The network has
# learned a variety of frequency- and orientation-selective kernels, as well as various colored
# blobs. Notice the specialization exhibited by the two GPUs ... The kernels on GPU 1 are largely
# color-agnostic, while the kernels on GPU 2 are largely color-specific. This kind of specialization
# occurs during every run and is independent of any particular random weight initialization."
# Figure 4 (left) shows test images with the net's top-5 predictions; (right) test images with the
# six training images whose last-hidden-layer (4096-d) vectors are nearest in Euclidean distance:
# "the retrieved training images ... are not close in L2 [pixel space]."
#
# Here: a `mini` AlexNet trained briefly on Fashion-MNIST inside this notebook, then the same three
# pictures. A few minutes on a CPU is not six days on two GPUs: expect rougher filters. (Why not the
# built-in shapes? On their cluttered backgrounds the `mini` net needs many epochs before it beats
# chance — fine for `python cli.py train`, too long for a lesson. Fashion-MNIST is learned within a
# few hundred steps.)
#
# **You will build** a short training run, Figure 3's kernels per column, Figure 4's top-5
# predictions and its nearest neighbours, with a nearest-neighbour search of your own (checked).
# **You need** lesson 9's data, lesson 11's AlexNet and lesson 12's training loop.

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt

import minialex
import minialex.functional as F
from minialex.data import DataLoader, open_dataset
from minialex.models import AlexNet
from minialex.optim import SGD
from minialex.tools import exercises
from minialex.tools.viz import filters_grid
from minialex.train.evaluate import class_probabilities
from minialex.tools.inference import colourfulness, last_hidden_features, nearest

CI = os.environ.get("MINIALEX_CI") == "1"  # the test suite sets this to shrink loops

# %% [markdown]
# ## 1. Train briefly
#
# Fashion-MNIST (lesson 9), stored at the side that keeps the paper's 256:224 ratio to the
# network's input, with the paper's augmentation and SGD (lesson 12).

# %%
model = AlexNet(num_classes=10, preset="mini", seed=0)
S = model.input_size
base = round(S * 256 / 224)
train_set = open_dataset("fashion-mnist", "train", limit=1000 if CI else 5000, base_size=base)
val_set = open_dataset("fashion-mnist", "val", limit=200 if CI else 500, base_size=base)
initial_conv1 = [model.column0.conv1.weight.numpy().copy(), model.column1.conv1.weight.numpy().copy()]

steps = 12 if CI else 300
opt = SGD(model.named_parameters(), lr=0.01, momentum=0.9, weight_decay=0.0005)
losses, step, epoch = [], 0, 0
start = time.perf_counter()
while step < steps:
    for images, labels in DataLoader(train_set, batch_size=32, input_size=S, train=True, seed=0,
                                     epoch=epoch):
        loss = F.cross_entropy(model(minialex.Tensor(images)), labels)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
        step += 1
        if step == steps:
            break
    epoch += 1
print(f"{steps} steps ({epoch} epoch(s) begun) in {time.perf_counter() - start:.0f} s")

val_images, val_labels = next(iter(DataLoader(val_set, batch_size=len(val_set), input_size=S,
                                              train=False)))
probs = class_probabilities(model, val_images)
print(f"validation top-1 error {np.mean(probs.argmax(1) != val_labels):.1%}, "
      f"top-5 error {np.mean([l not in p for l, p in zip(val_labels, np.argsort(-probs, 1)[:, :5])]):.1%}"
      f" (chance: 90% and 50%)")
fig, ax = plt.subplots(figsize=(6, 2.8))
ax.plot(losses); ax.set_xlabel("step"); ax.set_ylabel("training loss"); plt.show()

# %% [markdown]
# ## 2. Figure 3: the first layer's kernels, per column
#
# `minialex.tools.viz.filters_grid` draws each conv1 kernel (11×11×3 in the paper, 7×7×3 in the `mini`
# preset trained here) as a small RGB image (each stretched to its
# own range), one block per column. `colourfulness` measures how much of a kernel's energy differs
# between R, G and B (0 for a grey kernel).

# %%
trained = [model.column0.conv1.weight.numpy(), model.column1.conv1.weight.numpy()]
fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
for ax, weights, title in ((axes[0], initial_conv1, "before training"), (axes[1], trained, "after training")):
    ax.imshow(filters_grid(weights, per_row=12, zoom=3))
    ax.set_title(f"conv1 {title}: column 0 (top), column 1 (bottom)"); ax.axis("off")
plt.tight_layout(); plt.show()
for c, (w0, w1) in enumerate(zip(initial_conv1, trained)):
    print(f"column {c}: colourfulness {colourfulness(w0):.3f} at init -> {colourfulness(w1):.3f} trained; "
          f"mean |change| of weights {np.abs(w1 - w0).mean():.4f}")

# %% [markdown]
# In the paper, after 90 epochs on ImageNet, one column's kernels are grey edge and frequency
# detectors and the other's are colour blobs. The restricted connectivity is what allows it: the
# columns meet only at conv3, so each can specialise. Two things keep that from showing here. The
# kernels have had minutes, not days, to move from their random start. And Fashion-MNIST is grey:
# R = G = B, so only the *sum* of a kernel's three colour planes affects its output, and the
# differences between the planes (what `colourfulness` measures) receive no gradient beyond weight
# decay — they stay as random as they started. Colour specialisation needs colour that matters: see
# the exercise. (The `fashion` preset that `python cli.py train --data fashion-mnist` takes draws
# the conclusion: it averages the three channels and gives conv1 one input channel, a third of the
# work for the same function; `mini`, used here, keeps three.)
#
# ## 3. Figure 4 (left): top-5 predictions

# %%
show = 6
fig, axes = plt.subplots(2, show, figsize=(14, 4.5), gridspec_kw={"height_ratios": [3, 2]})
for j in range(show):
    image, label = val_set.load(j)
    top = np.argsort(-probs[j])[:5]
    axes[0, j].imshow(image); axes[0, j].axis("off")
    axes[0, j].set_title(val_set.classes[label], fontsize=9)
    colours = ["tab:red" if k == label else "tab:gray" for k in top]
    axes[1, j].barh(range(5), probs[j, top], color=colours)
    axes[1, j].set_yticks(range(5), [val_set.classes[k] for k in top], fontsize=8)
    axes[1, j].invert_yaxis(); axes[1, j].set_xlim(0, 1)
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 4. Figure 4 (right): nearest neighbours in feature space
#
# `last_hidden_features` gives each image's last hidden layer (fc7 after ReLU, both columns: 512
# numbers for `mini`, 4096 for the paper's net). For a few validation images, find the six training
# images with the nearest vectors, as Figure 4 shows six — and, for comparison, the nearest in raw
# pixels.

# %%
search = 300 if CI else 1500
train_images, train_labels = next(iter(DataLoader(train_set, batch_size=search, input_size=S,
                                                  train=False)))
train_features = last_hidden_features(model, train_images)
query_ids = [0, 1, 2, 3]
query_features = last_hidden_features(model, val_images[query_ids])
neighbours = 6                       # Figure 4: "the six images from the training set"
by_features = nearest(query_features, train_features, k=neighbours)
by_pixels = nearest(val_images[query_ids].reshape(len(query_ids), -1),
                    train_images.reshape(search, -1), k=neighbours)

fig, axes = plt.subplots(2 * len(query_ids), 1 + neighbours, figsize=(10.5, 3 * len(query_ids)))
for r, q in enumerate(query_ids):
    for row, (found, kind) in enumerate(((by_features[r], "features"), (by_pixels[r], "pixels"))):
        ax_row = axes[2 * r + row]
        image, label = val_set.load(q)
        ax_row[0].imshow(image); ax_row[0].set_title(f"query: {val_set.classes[label]}", fontsize=8)
        ax_row[0].set_ylabel(kind)
        for ax, i in zip(ax_row[1:], found):
            img, lab = train_set.load(int(i))
            ax.imshow(img)
            ax.set_title(train_set.classes[lab], fontsize=8,
                         color="tab:green" if lab == label else "tab:red")
        for ax in ax_row:
            ax.set_xticks([]); ax.set_yticks([])
        ax_row[0].set_ylabel(f"by {kind}", fontsize=9)
plt.tight_layout(); plt.show()
same_f = np.mean([train_labels[i] == val_labels[q] for q, row in zip(query_ids, by_features) for i in row])
same_p = np.mean([train_labels[i] == val_labels[q] for q, row in zip(query_ids, by_pixels) for i in row])
print(f"neighbours of the same class: by features {same_f:.0%}, by pixels {same_p:.0%}")

# %% [markdown]
# Green titles: a neighbour of the query's class. On ImageNet the contrast is stark — neighbours in
# pixel space share a background or a colour, neighbours in feature space share an *object*, in any
# pose (§6.1). Fashion-MNIST's garments are centred and alike in pose, so raw pixels already find
# many same-class neighbours, and a briefly trained net's features are only beginning to do better;
# compare the two percentages above, then train longer (exercise 1). The point of Figure 4 stands: the
# last hidden layer is a representation of the image's content, which is why features of
# ImageNet-trained networks became the standard starting point for other tasks.
#
# ## Your turn (checked)
#
# **Task 1.** Write `my_nearest(queries, keys, k)` (section 4 used minialex's `nearest`): for queries (Q, D) and keys (M, D), the indices of
# the k keys nearest to each query in Euclidean distance, nearest first, as a (Q, k) integer
# array. (Hint: |q − x|² for every pair at once by broadcasting, then `np.argsort`.)

# %%
def my_nearest(queries, keys, k):
    raise NotImplementedError  # your code here


exercises.check_nearest(my_nearest);

# %% [markdown]
# **Task 2.** Write `topk_error(probs, labels, k)`: the fraction of rows of `probs` (N, classes)
# whose label is not among the k highest probabilities — section 1's top-1 and top-5 errors, the
# figures the paper reports (§6).

# %%
def topk_error(probs, labels, k):
    raise NotImplementedError  # your code here


exercises.check_topk_error(topk_error);

# %% [markdown]
# ## What you built
#
# A briefly trained AlexNet looked at three ways: its first-layer kernels per column (Figure 3),
# its top-5 predictions and its nearest neighbours in feature space against pixel space (Figure
# 4). With lessons 1–13 you have built, trained and inspected the whole network; lessons 14 and 15
# look at the hardware that makes it fast: a GPU's kernels, and many machines.
#
# ## Exercise
#
# 1. Train for longer (`steps = 1000`, a few minutes) and redraw Figure 3. Do the columns specialise?
#    Measure each column's `colourfulness` as training goes on.
# 2. Train on the built-in shapes instead (`open_dataset("builtin", ...)`, colour images) for a few
#    thousand steps with `python cli.py train`, then `python cli.py filters RUN/best.h5`. Do the
#    two columns differ in `colourfulness`?
# 3. Write a cosine-similarity version of `my_nearest` and redraw section 4 with it. Do the
#    neighbours change?
