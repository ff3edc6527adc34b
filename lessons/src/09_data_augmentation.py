# %% [markdown]
# # Lesson 9 · Data augmentation and the mean image
#
# **The idea.** A network with 60 million parameters memorises 1.2 million images. The cheapest
# cure is more data, and a label-preserving transformation makes new training images for free: a
# cat shifted by a few pixels, mirrored, or seen under slightly different light is still a cat.
# Before any of that, the images are centred by subtracting the mean.
#
# **What [the paper](../docs/paper.md) says.** §2: images are rescaled so the shorter side is 256, the central 256×256
# is cropped, and "we did not pre-process the images in any other way, except for subtracting the
# mean activity over the training set from each pixel." §4.1: (1) "extracting random 224×224
# patches (and their horizontal reflections) from the 256×256 images ... This increases the size of
# our training set by a factor of 2048"; at test time, ten patches (four corners and the centre,
# and their reflections), softmax averaged. (2) PCA on the RGB pixel values of the training set; to
# each image add [p1 p2 p3][α1λ1, α2λ2, α3λ3]ᵀ with α_i ~ N(0, 0.1) drawn once per presentation. "This
# scheme reduces the top-1 error rate by over 1%."
#
# **You will build** the mean image, random crops and reflections, the ten test patches, and PCA
# lighting from scratch (checked against minialex's). **You need** lesson 1's arrays; the loader
# built here feeds the training runs of lessons 12 and 13.

# %%
import os

import numpy as np
import matplotlib.pyplot as plt

from minialex.data import DataLoader, compute_stats, open_dataset
from minialex.tools import exercises

CI = os.environ.get("MINIALEX_CI") == "1"  # the test suite sets this to shrink loops
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Two datasets
#
# The **built-in** set (ten kinds of drawn shapes on cluttered colour backgrounds, no download) and
# **Fashion-MNIST** (real photographs of clothes, 28×28 grey, upscaled here). minialex serves every
# image as an RGB square of `base_size` pixels, `uint8`; crops of `input_size` are cut from it
# (the paper's 256 and 224; small presets keep about the same ratio: the `mini` preset stores 58
# and crops 51, the built-in set's default store is 73 = base_size_for(64)).

# %%
shapes = open_dataset("builtin", "train", num_train=1000 if CI else 5000)
fashion = open_dataset("fashion-mnist", "train", base_size=36, limit=2000 if CI else 10000)
print(f"built-in: {len(shapes)} images of {shapes.base_size}x{shapes.base_size}; "
      f"Fashion-MNIST subset: {len(fashion)} of {fashion.base_size}x{fashion.base_size}")

fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
for j in range(8):
    img, label = shapes.load(j)
    axes[0, j].imshow(img); axes[0, j].set_title(shapes.classes[label], fontsize=8)
    img, label = fashion.load(j * 97)
    axes[1, j].imshow(img); axes[1, j].set_title(fashion.classes[label], fontsize=8)
for ax in axes.ravel():
    ax.axis("off")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 2. The mean image, and the per-channel mean
#
# The paper subtracts the **mean image**: the average over the training set of each pixel position.
# minialex subtracts the **per-channel mean** (one RGB value for every pixel), a common
# simplification: it does not depend on the stored size or the crop position. Here is the mean
# image, from scratch:

# %%
def mean_image(ds, count):
    total = np.zeros((ds.base_size, ds.base_size, 3))
    for i in range(count):
        total += ds.load(i)[0]
    return total / count


count = 200 if CI else 2000
means = {"built-in": mean_image(shapes, count), "Fashion-MNIST": mean_image(fashion, min(count, len(fashion)))}
fig, axes = plt.subplots(1, 2, figsize=(6, 3))
for ax, (name, m) in zip(axes, means.items()):
    ax.imshow(m.astype(np.uint8)); ax.set_title(f"mean image, {name}", fontsize=9); ax.axis("off")
plt.tight_layout(); plt.show()
for name, (ds, m) in {"built-in": (shapes, means["built-in"]),
                      "Fashion-MNIST": (fashion, means["Fashion-MNIST"])}.items():
    print(f"{name:14s} per-channel mean of the mean image: {(m.mean(axis=(0, 1)) / 255).round(4)}"
          f" | minialex's stats.mean: {ds.stats.mean.round(4)}")

# %% [markdown]
# The built-in shapes stay near the centre (they wander over only part of the free room), so their
# mean image is a soft central blob on an even background: the per-channel mean keeps the colour
# balance and loses only that blob. Fashion-MNIST's garments are centred, so its mean image is a ghostly average
# garment; subtracting it removes that position-dependent bias, which a per-channel mean does not.
# (ImageNet's mean image is close to flat grey-brown, which is why the simplification is common.)
#
# ## 3. Random crops and reflections
#
# From a 256×256 image, a 224×224 crop can start at 33 × 33 positions (offsets 0..32), and each
# crop can be mirrored. The paper counts 32·32·2 = 2048; strictly it is 33·33·2 = 2178 patches. Here
# for one built-in image (73 → 64, offsets 0..9):

# %%
from minialex.data.transforms import crop, hflip, random_crop_offsets, random_flips, ten_crops

image, label = shapes.load(3)
size = 64
tops, lefts = random_crop_offsets(rng, 8, shapes.base_size, size)
flips = random_flips(rng, 8)
fig, axes = plt.subplots(1, 9, figsize=(14, 2))
axes[0].imshow(image); axes[0].set_title(f"{shapes.base_size}x{shapes.base_size} original", fontsize=8)
for ax, t, l, f in zip(axes[1:], tops, lefts, flips):
    patch = crop(image, t, l, size)
    ax.imshow(hflip(patch) if f else patch)
    ax.set_title(f"({t},{l}){' flipped' if f else ''}", fontsize=8)
for ax in axes:
    ax.axis("off")
plt.show()
print("distinct patches per image: paper", (256 - 224 + 1) ** 2 * 2,
      "| here", (shapes.base_size - size + 1) ** 2 * 2)

# %% [markdown]
# At test time the paper uses ten fixed patches and averages the network's softmax over them:

# %%
patches = ten_crops(image, size)
fig, axes = plt.subplots(1, 10, figsize=(14, 1.8))
names = ["top-left", "top-right", "bottom-left", "bottom-right", "centre"]
for k, ax in enumerate(axes):
    ax.imshow(patches[k]); ax.axis("off")
    ax.set_title(names[k % 5] + (" (m)" if k >= 5 else ""), fontsize=7)
plt.show()

# %% [markdown]
# ## 4. PCA colour augmentation, from scratch
#
# Collect RGB values of (a sample of) all training pixels, centre them, and eigen-decompose their
# 3×3 covariance: eigenvectors p_i (directions in colour space) and eigenvalues λ_i (variance along
# each). Natural photographs (ImageNet) vary most along p_1 ≈ (1, 1, 1)/√3, **brightness**, then
# along colour contrasts. The augmentation shifts every pixel of an image by the same RGB vector
# Σ α_i λ_i p_i, α_i ~ N(0, 0.1): a change of illumination intensity and colour. minialex computes
# the PCA on the [0, 1] pixel scale (the convention of fb.resnet.torch; see
# `minialex/data/stats.py` and [the paper in our own words](../docs/paper.md#data), on PCA lighting).

# %%
def rgb_pca(ds, count):
    pixels = np.concatenate([ds.load(i)[0].reshape(-1, 3) for i in range(count)]) / 255.0
    cov = np.cov(pixels, rowvar=False)
    values, vectors = np.linalg.eigh(cov)          # ascending
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    vectors = vectors * np.sign(vectors.sum(axis=0))  # fix the arbitrary sign, as minialex does
    return values, vectors


pca = {}
for name, ds in (("built-in", shapes), ("Fashion-MNIST", fashion)):
    pca[name] = values, vectors = rgb_pca(ds, 300 if CI else 1000)
    print(f"{name}: eigenvalues (this notebook, a sample) {values.round(5)}")
    print(f"{' ' * len(name)}  eigenvalues (minialex stats)       {ds.stats.pca_eigenvalues.round(5)}")
    print(f"{' ' * len(name)}  first eigenvector {vectors[:, 0].round(3)} "
          f"(minialex {ds.stats.pca_eigenvectors[:, 0].round(3)})")
print("ImageNet (fb.resnet.torch): eigenvalues [0.2175, 0.0188, 0.0045], "
      "p1 = (-0.5675, -0.5808, -0.5836) (sign is arbitrary)")
# the next paragraph, checked: built-in has one large eigenvalue and two close smaller ones,
# Fashion-MNIST (grey) a single non-zero one along (1, 1, 1)/sqrt(3)
lam = pca["built-in"][0]
assert lam[0] > 2 * lam[1] and lam[1] < 1.3 * lam[2]
assert abs(pca["Fashion-MNIST"][0][1]) < 1e-9 and np.allclose(pca["Fashion-MNIST"][1][:, 0], 3 ** -0.5)

# %% [markdown]
# The built-in set's colours give one component well above the others, along a mix of all three
# channels (its shapes and backgrounds differ in brightness), and two smaller ones of nearly equal
# size. Where two eigenvalues are nearly equal their eigenvectors are not well determined (any
# rotation of them within their plane fits almost as well), so a sample and the full set can
# disagree about those two — harmless, since the shift they produce has nearly the same
# distribution.
# Fashion-MNIST is grey: R = G = B for every pixel, so the covariance has a single non-zero
# eigenvalue with eigenvector (1, 1, 1)/√3 — the colour augmentation degenerates to a brightness
# change, correctly. ImageNet is in between: brightness dominates (λ1 = 0.2175), and two colour
# contrasts follow.
#
# Below, one image under several draws of α: with the paper's σ = 0.1 the effect is subtle (as it
# should be: illumination, not a new image); exaggerated fifty times, σ = 5, it becomes visible.

# %%
def lighting(image, stats, alpha):
    shift = (alpha * stats.pca_eigenvalues) @ stats.pca_eigenvectors.T  # RGB, [0, 1] scale
    return np.clip(image / 255.0 + shift, 0, 1)


img, _ = shapes.load(7)
fig, axes = plt.subplots(2, 6, figsize=(12, 4.4))
for row, sigma in enumerate((0.1, 5.0)):
    axes[row, 0].imshow(img); axes[row, 0].set_title("original", fontsize=8)
    for ax in axes[row, 1:]:
        alpha = sigma * rng.standard_normal(3)
        ax.imshow(lighting(img, shapes.stats, alpha))
        ax.set_title(f"σ={sigma}: α=({alpha[0]:+.2f},{alpha[1]:+.2f},{alpha[2]:+.2f})", fontsize=6)
for ax in axes.ravel():
    ax.axis("off")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 5. All of it in the loader
#
# `minialex.data.DataLoader` does every step for a training batch — random crop, flip with
# probability ½, PCA lighting with fresh α, subtraction of the training mean — reproducibly from
# (seed, epoch, batch index), in background threads if asked.
#
# When a dataset holds its images in memory, as the built-in shapes and Fashion-MNIST do, the loader
# does not loop over the images at all. `numpy.lib.stride_tricks.sliding_window_view(stack, (S, S),
# axis=(1, 2))` shows every S×S window of every image as a view, without copying a pixel, and one
# fancy index, `windows[range(n), tops, lefts]`, copies out each image's crop at its random corner:
# the same pixels as cropping image by image, for a batch of 128 in about a tenth of the time.
#
# The result is float32 NCHW on the 0–255 scale minus the mean, as the paper's own code used. Undo
# the mean to look at it:

# %%
loader = DataLoader(shapes, batch_size=8, input_size=64, train=True, seed=0)
images, labels = next(iter(loader))
print(type(images).__name__, images.shape, images.dtype,
      f"| values from {images.min():.0f} to {images.max():.0f}, batch mean {images.mean():.1f}")
view = np.clip(images.transpose(0, 2, 3, 1) + 255 * shapes.stats.mean, 0, 255).astype(np.uint8)
fig, axes = plt.subplots(1, 8, figsize=(13, 2))
for ax, v, l in zip(axes, view, labels):
    ax.imshow(v); ax.set_title(shapes.classes[l], fontsize=8); ax.axis("off")
plt.show()

# %% [markdown]
# **A finding, not a failure.** On Fashion-MNIST's centred, size-normalised 28×28 images, the
# paper's crop margin cost more than it gave in a short run: `train --without augmentation` lowered
# the test error by 0.9 points in the ablation of [docs/ablation.md](../docs/ablation.md), and the
# full recipe keeps only a small margin (crops of 51 from 54 pixels, not 58; docs/training.md). The
# paper's claim is about a network that would otherwise overfit; one that underfits pays for every
# harder training image.
#
# ## Your turn (checked)
#
# **Task 1.** Write `lighting_shift(images, alpha)`: from a stack of uint8 images (N, H, W, 3), the
# PCA of their RGB values on the [0, 1] scale, then for each row of `alpha` (n, 3) the shift
# [p1 p2 p3][α1λ1, α2λ2, α3λ3]ᵀ, an (n, 3) array. Order the components by falling eigenvalue and
# turn each eigenvector so that its components sum to a positive number, as minialex does
# (`rgb_pca` above does both). The check compares with `compute_stats(images).lighting(alpha)`.

# %%
def lighting_shift(images, alpha):
    raise NotImplementedError  # your code here


exercises.check_lighting(lighting_shift);

# %% [markdown]
# **Task 2.** Write `my_ten_crops(image, size)` (minialex's `ten_crops` is imported above) for an (S, S, 3) image: the patches at the four
# corners (top-left, top-right, bottom-left, bottom-right) and the centre (rounding its offset
# down), then their mirror images in the same order, stacked into (10, size, size, 3) — what
# section 3 drew.

# %%
def my_ten_crops(image, size):
    raise NotImplementedError  # your code here


exercises.check_ten_crops(my_ten_crops);

# %% [markdown]
# ## What you built
#
# The paper's preprocessing (the mean subtracted) and its three augmentations (random crops,
# reflections, PCA lighting), the ten test patches, and the loader that applies them to every
# batch. Lesson 10 turns to the hardware the paper trained on.
#
# ## Exercise
#
# 1. Build a `DataLoader` with `train=False, ten_crop=True` and check the shape of a batch. How
#    would you average the softmax over the ten patches?
# 2. Subtract Fashion-MNIST's mean *image* (section 2) instead of the per-channel mean from a
#    batch, and plot the result next to the per-channel version. Where do they differ most?
# 3. With `lighting_std=0.1`, what is the typical size of the RGB shift on the 0–255 scale for the
#    built-in set? (Hint: √λ_i is a standard deviation, but the paper multiplies α by λ_i itself.)
