"""Training-set statistics: the mean to subtract (§2) and the RGB PCA for lighting noise (§4.1).

Conventions (chosen once, used everywhere):

- **Pixel scale [0, 1].** All three statistics are computed on pixel values divided by 255. This
  is the scale on which fb.resnet.torch quotes ImageNet's PCA (eigenvalues 0.2175, 0.0188,
  0.0045), so the paper's formula [p1 p2 p3][a1·λ1, a2·λ2, a3·λ3]ᵀ with a ~ N(0, 0.1) can be
  applied *literally* with true eigenvalues of the covariance and gives a shift of a few percent
  of the range. (On the 0–255 scale the literal eigenvalues would be 65025 times larger;
  cuda-convnet2 avoids that by using standard deviations instead — see docs/paper.md.)
- **Per-channel mean.** ``mean`` is the (3,) mean RGB value over every pixel of every training
  image — the common simplification of the paper's mean *image* (which would tie the statistics
  to one stored size and position). Subtracting it from any crop is position independent.
- **PCA.** ``pca_eigenvalues`` (3,), descending, are the eigenvalues of the 3×3 covariance of RGB
  values over all training pixels; ``pca_eigenvectors`` (3, 3) holds the matching unit
  eigenvectors as *columns* (``eigenvectors[:, i]`` is p_i). Each column's sign is fixed so that
  its components sum to a positive number (eigh's sign is arbitrary; this makes files comparable).

A validation dataset carries the training set's statistics: they describe the data the net was
trained on.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy


@dataclasses.dataclass(frozen=True)
class DataStats:
    """mean (3,), pca_eigenvalues (3,), pca_eigenvectors (3, 3) — all on the [0, 1] pixel scale."""

    mean: numpy.ndarray
    pca_eigenvalues: numpy.ndarray
    pca_eigenvectors: numpy.ndarray
    num_pixels: int = 0

    def __post_init__(self):
        for name, shape in (("mean", (3,)), ("pca_eigenvalues", (3,)), ("pca_eigenvectors", (3, 3))):
            value = numpy.asarray(getattr(self, name), dtype=numpy.float64)
            if value.shape != shape:
                raise ValueError(f"DataStats.{name} must have shape {shape}, got {value.shape}")
            object.__setattr__(self, name, value)

    def lighting(self, alpha: numpy.ndarray) -> numpy.ndarray:
        """The paper's PCA colour shift for each image, on the [0, 1] scale (§4.1).

        alpha (N, 3) ~ N(0, 0.1): one draw per image per presentation.
        Returns (N, 3): row n is [p1 p2 p3] · [a_n1·λ1, a_n2·λ2, a_n3·λ3]ᵀ, the RGB value added to
        every pixel of image n.
        """
        alpha = numpy.asarray(alpha, dtype=numpy.float64)
        return (alpha * self.pca_eigenvalues) @ self.pca_eigenvectors.T

    def to_dict(self) -> dict:
        return {"mean": self.mean, "pca_eigenvalues": self.pca_eigenvalues,
                "pca_eigenvectors": self.pca_eigenvectors}

    def __repr__(self) -> str:
        m = ", ".join(f"{v:.4f}" for v in self.mean)
        e = ", ".join(f"{v:.5f}" for v in self.pca_eigenvalues)
        return f"DataStats(mean=[{m}], pca_eigenvalues=[{e}], scale='[0, 1]')"


class StatsAccumulator:
    """Streaming sums for ``DataStats``: memory stays constant however many images are added.

    Keeps, in float64 on the 0–255 scale (exact for integer pixels up to ~10^11 pixels),
    the pixel count n, the channel sums s = Σx (3,) and the cross sums S = Σ x xᵀ (3, 3).
    Then mean = s/n and covariance = S/n − mean·meanᵀ, both rescaled to [0, 1].
    """

    def __init__(self, count: int = 0, total=None, outer=None):
        self.count = int(count)
        self.total = numpy.zeros(3) if total is None else numpy.array(total, dtype=numpy.float64)
        self.outer = numpy.zeros((3, 3)) if outer is None else numpy.array(outer, dtype=numpy.float64)

    def add(self, image: numpy.ndarray) -> None:
        """Add one (H, W, 3) or a batch (..., 3) of uint8 RGB pixels."""
        x = numpy.asarray(image).reshape(-1, 3).astype(numpy.float64)
        self.count += x.shape[0]
        self.total += x.sum(axis=0)
        self.outer += x.T @ x

    def result(self) -> DataStats:
        if self.count == 0:
            raise ValueError("cannot compute dataset statistics from zero images")
        mean = self.total / self.count / 255.0
        cov = self.outer / self.count / 255.0 ** 2 - numpy.outer(mean, mean)
        cov = (cov + cov.T) / 2
        values, vectors = numpy.linalg.eigh(cov)
        order = numpy.argsort(values)[::-1]
        values = numpy.clip(values[order], 0.0, None)  # rounding can make a zero slightly negative
        vectors = vectors[:, order]
        signs = numpy.sign(vectors.sum(axis=0))
        signs[signs == 0] = 1.0
        return DataStats(mean, values, vectors * signs, num_pixels=self.count)


def compute_stats(images: Iterable[numpy.ndarray]) -> DataStats:
    """DataStats of an iterable of (H, W, 3) uint8 RGB images (see the module docstring)."""
    acc = StatsAccumulator()
    for image in images:
        acc.add(image)
    return acc.result()
